"""Backbones by name: their maps at strides 8, 16 and 32 at any input size, the 1/16
split, weights shared by fixed- and any-size builds, and an import without Keras."""

import subprocess
import sys
from functools import cache
from pathlib import Path

import keras
import numpy as np
import pytest

from visionflow.models.backbones import BACKBONES, STRIDES, BackboneSpec

NAMES = BACKBONES.names()
WIDTH = {"mobilenet_v2": 0.35}  # the narrowest, to keep the tests fast
SIZES = (96, 160)  # two sizes that every backbone takes (Xception needs 71), both multiples of 32


@cache
def any_size(name):
    """One ``image_size=None`` build per backbone, shared: no test depends on its weight values."""
    return BACKBONES.get(name).build(None, width=WIDTH.get(name, 1.0))


def images(size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (1, size, size, 3)).astype("float32")


def test_the_registry_holds_the_builtin_backbones():
    assert {"mobilenet_v2", "xception", "resnet50", "resnet50_v2", "efficientnet_b0"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_one_any_size_build_gives_maps_at_strides_8_16_32_at_two_sizes(name):
    spec = BACKBONES.get(name)
    features = spec.feature_model(any_size(name))
    for size in SIZES:
        maps = features(images(size))
        assert sorted(maps) == list(STRIDES)
        assert {s: tuple(m.shape[1:3]) for s, m in maps.items()} == {s: (size // s, size // s) for s in STRIDES}


@pytest.mark.parametrize("name", NAMES)
def test_the_feature_model_shares_the_backbone_layers_and_ends_at_its_output(name):
    spec, backbone = BACKBONES.get(name), any_size(name)
    features = spec.feature_model(backbone)
    assert features.get_layer(backbone.layers[1].name) is backbone.layers[1]
    x = images(SIZES[0])
    np.testing.assert_allclose(features(x)[32], backbone(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_split_at_1_16_reproduces_the_any_size_backbone(name):
    trunk, top = BACKBONES.get(name).split(any_size(name))
    x = images(SIZES[0])
    np.testing.assert_allclose(top(trunk(x)), any_size(name)(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_an_any_size_build_called_on_a_fixed_input_has_static_map_sizes(name):
    """What the heads rely on: the attention box head reads rows and cols from the 1/16 KerasTensor."""
    spec, backbone = BACKBONES.get(name), any_size(name)
    inputs = keras.Input((128, 128, 3))
    trunk, top = spec.split(backbone)
    fine = trunk(inputs)
    assert tuple(fine.shape[1:3]) == (8, 8) and tuple(top(fine).shape[1:3]) == (4, 4)
    assert tuple(backbone(inputs).shape[1:3]) == (4, 4)
    maps = spec.feature_model(backbone)(inputs)
    assert {s: tuple(m.shape[1:3]) for s, m in maps.items()} == {8: (16, 16), 16: (8, 8), 32: (4, 4)}


@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip_between_fixed_size_and_any_size_builds(name, tmp_path):
    spec, anysize = BACKBONES.get(name), any_size(name)
    fixed = spec.build(SIZES[0], width=WIDTH.get(name, 1.0))
    assert [type(layer) for layer in fixed.layers] == [type(layer) for layer in anysize.layers]
    assert [w.shape for w in fixed.weights] == [w.shape for w in anysize.weights]
    x = images(SIZES[0])
    fixed_weights, fixed_y, any_weights = fixed.get_weights(), fixed(x), anysize.get_weights()
    fixed.save_weights(tmp_path / "fixed.weights.h5")
    anysize.save_weights(tmp_path / "any.weights.h5")
    fixed.load_weights(tmp_path / "any.weights.h5")
    anysize.load_weights(tmp_path / "fixed.weights.h5")
    for loaded, saved in ((fixed, any_weights), (anysize, fixed_weights)):
        assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), saved, strict=True))
    np.testing.assert_allclose(anysize(x), fixed_y, rtol=1e-5, atol=1e-6)  # the same function, too


def test_a_stride_a_spec_does_not_name_raises_listing_those_it_has():
    spec = BackboneSpec("keras.applications:MobileNetV2", "keras.applications.mobilenet_v2", "block_13_expand_relu")
    assert spec.strides == (16, 32)
    with pytest.raises(ValueError, match=r"no map at stride 8; it has \(16, 32\)"):
        spec.feature_maps(backbone=None)


def test_importing_the_registry_and_reading_a_spec_imports_neither_keras_nor_tensorflow():
    code = ("import sys, visionflow.models.backbones as b; b.BACKBONES.get('xception').min_size; "
            "loaded = [m for m in ('keras', 'tensorflow') if m in sys.modules]; assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
