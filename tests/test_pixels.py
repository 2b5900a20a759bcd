"""Saved models read raw pixels: each backbone's ``preprocess_input`` folded into a frozen first layer."""

import keras
import numpy as np
import pytest

from visionflow.models.backbones import BACKBONES
from visionflow.models.pixels import affine_of, with_pixel_input


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbones_preprocessing_is_read_off_as_an_affine_map(name):
    preprocess = BACKBONES.get(name).preprocess_input
    matrix, offset = affine_of(preprocess)
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    np.testing.assert_allclose(pixels @ matrix + offset, preprocess(pixels.copy()), atol=1e-3)


def test_caffe_preprocessing_flips_the_channels_and_tf_preprocessing_scales_them():
    caffe, _ = affine_of(BACKBONES.get("resnet50").preprocess_input)
    np.testing.assert_allclose(caffe, np.fliplr(np.eye(3)), atol=1e-6)  # RGB -> BGR, then the means subtracted
    tf_mode, offset = affine_of(BACKBONES.get("mobilenet_v2").preprocess_input)
    np.testing.assert_allclose(tf_mode, np.eye(3) / 127.5, atol=1e-7)
    np.testing.assert_allclose(offset, -1.0, atol=1e-6)


def test_a_preprocessing_that_is_not_affine_is_refused():
    with pytest.raises(ValueError, match="not affine per pixel"):
        affine_of(lambda x: np.sqrt(x))


def test_the_wrapped_model_reads_raw_pixels_keeps_its_output_names_and_loads_as_plain_keras(tmp_path):
    inputs = keras.Input((8, 8, 3))
    inner = keras.Model(inputs, {"box": keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(inputs)),
                                 "class": keras.layers.Conv2D(2, 1)(inputs)})
    preprocess = BACKBONES.get("resnet50").preprocess_input
    served = with_pixel_input(inner, preprocess)
    served.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    pixels = np.random.default_rng(2).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    expected = inner.predict_on_batch(preprocess(pixels.copy()))
    got = loaded.predict_on_batch(pixels)
    assert set(got) == {"box", "class"}
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-3)
    assert not loaded.get_layer("pixels_to_backbone").trainable
