"""ResNet-34 and SE-ResNet-34: their maps, parameter counts checked against torchvision
and by hand, and a residual unit that serialises and exposes its BatchNorm layers."""

from functools import cache

import keras
import numpy as np
import pytest

from visionflow.models.backbones import BACKBONES
from visionflow.models.resnet import STAGES, ResidualUnit, ResNet34, SEResNet34, preprocess_input
from visionflow.models.transfer import batchnorm_layers

NAMES = ("resnet34", "se_resnet34")
TORCHVISION_RESNET34 = 21_797_672  # sum(p.numel() for p in torchvision.models.resnet34().parameters())


@cache
def backbone(name, size):
    return BACKBONES.get(name).build(size)


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def conv(k, c_in, c_out):
    return k * k * c_in * c_out


def by_hand(classes=1000, se_ratio=None):
    """ResNet-34's trainable parameters: bias-free convolutions, BatchNorm gammas and betas, SE, the top."""
    total, c_in = conv(7, 3, 64) + 2 * 64, 64
    for stage, (c, units) in enumerate(STAGES, start=1):
        for unit in range(1, units + 1):
            total += conv(3, c_in, c) + conv(3, c, c) + 2 * (2 * c)
            if stage > 1 and unit == 1:
                total += conv(1, c_in, c) + 2 * c  # the strided projection on the skip path
            if se_ratio:
                total += se_parameters(c, se_ratio)
            c_in = c
    return total + c_in * classes + classes


def se_parameters(c, ratio=16):
    return 2 * c * c // ratio + c // ratio + c


def test_both_are_registered_with_their_preprocessing():
    for name in NAMES:
        spec = BACKBONES.get(name)
        assert spec.min_size == 32 and spec.strides == (8, 16, 32)
        np.testing.assert_allclose(spec.preprocess_input(np.array([0.0, 127.5, 255.0])), [-1, 0, 1])
    assert preprocess_input(np.float32(51)) == pytest.approx(-0.6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", (224, 128))
def test_maps_at_1_8_1_16_and_1_32(name, size):
    spec, model = BACKBONES.get(name), backbone(name, size)
    assert tuple(model.output.shape) == (None, size // 32, size // 32, 512)
    maps = spec.feature_maps(model)
    assert {s: tuple(m.shape[1:]) for s, m in maps.items()} == {
        8: (size // 8, size // 8, 128), 16: (size // 16, size // 16, 256), 32: (size // 32, size // 32, 512)}


def test_the_backbone_splits_at_1_16():
    model = backbone("resnet34", 128)
    trunk, top = BACKBONES.get("resnet34").split(model)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype("float32")
    fine = trunk(x)
    assert tuple(fine.shape) == (1, 8, 8, 256)
    np.testing.assert_allclose(top(fine), model(x), rtol=1e-4, atol=1e-5)


def test_resnet34_has_torchvision_resnet34s_parameter_count():
    model = ResNet34(input_shape=(224, 224, 3), include_top=True, classes=1000)
    assert trainable_count(model) == by_hand() == TORCHVISION_RESNET34
    assert trainable_count(backbone("resnet34", 224)) == TORCHVISION_RESNET34 - (512 * 1000 + 1000)
    moving_stats = 2 * (64 + 2 * sum(c * units for c, units in STAGES) + 128 + 256 + 512)
    assert model.count_params() - trainable_count(model) == moving_stats


def test_squeeze_and_excitation_adds_only_its_dense_layers():
    added = sum(units * se_parameters(c) for c, units in STAGES)
    assert added == 161_196
    model = SEResNet34(input_shape=(224, 224, 3), include_top=True)
    assert trainable_count(model) == by_hand(se_ratio=16) == TORCHVISION_RESNET34 + added
    assert trainable_count(backbone("se_resnet34", 224)) == trainable_count(backbone("resnet34", 224)) + added


def test_there_are_no_pretrained_weights():
    with pytest.raises(ValueError, match="no pretrained weights exist for resnet34.*backbone.init: pretrain"):
        ResNet34(weights="imagenet")


def three_units(se_ratio):
    """An identity skip, a strided projection, and a projection that only changes the channel count."""
    inputs = keras.Input((8, 8, 8))
    x = ResidualUnit(8, se_ratio=se_ratio, name="same")(inputs)
    x = ResidualUnit(16, strides=2, se_ratio=se_ratio, name="strided")(x)
    x = ResidualUnit(24, se_ratio=se_ratio, name="wider")(x)
    return keras.Model(inputs, x)


def randomise(model, seed=0):
    """Weights away from their initial values (positive, for the moving variances), so loading must restore them."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in model.get_weights()])


@pytest.mark.parametrize("se_ratio", (None, 4))
def test_a_model_of_residual_units_round_trips_through_a_keras_file(se_ratio, tmp_path):
    model = three_units(se_ratio)
    randomise(model)
    assert [model.get_layer(n).skip_conv is None for n in ("same", "strided", "wider")] == [True, False, False]
    model.save(tmp_path / "units.keras")
    loaded = keras.models.load_model(tmp_path / "units.keras")
    assert loaded.get_layer("strided").get_config() == model.get_layer("strided").get_config()
    x = np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 8)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True))


@pytest.mark.parametrize("se_ratio", (None, 4))
def test_batchnorm_layers_finds_every_batchnorm_inside_the_units(se_ratio):
    model = three_units(se_ratio)
    found = batchnorm_layers(model)
    units = [model.get_layer(n) for n in ("same", "strided", "wider")]
    inside = [bn for unit in units for bn in (unit.bn1, unit.bn2, unit.skip_bn) if bn is not None]
    assert len(found) == len(inside) == 8 and all(any(bn is f for f in found) for bn in inside)


def test_batchnorm_layers_finds_all_36_in_resnet34():
    assert len(batchnorm_layers(backbone("resnet34", 224))) == 1 + 2 * 16 + 3
