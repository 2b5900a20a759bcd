"""Saved models take raw RGB pixels: a backbone's ``preprocess_input`` as the model's first layer.

Every ``keras.applications`` preprocessing is affine per pixel: scale and shift
("tf", "torch" modes), a channel flip and mean subtraction ("caffe"), or nothing
(EfficientNet rescales inside the model). So it is one 3x3 matrix and an offset,
which :func:`affine_of` reads off ``preprocess_input`` itself (checking on random
pixels that it is affine), and a frozen 1x1 convolution applies. The saved model
then needs neither visionflow nor the backbone's module to be used, and cannot be
fed pixels preprocessed twice or not at all without it showing in its signature.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

PIXEL_LAYER = "pixels_to_backbone"


def affine_of(preprocess_input: Callable, tolerance: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix (3, 3), offset (3,))`` with ``preprocess_input(x) == x @ matrix + offset`` per pixel.

    Raises ValueError if ``preprocess_input`` is not affine on random pixels.
    """
    probe = np.concatenate([np.zeros((1, 3)), 255.0 * np.eye(3)]).astype("float32")
    out = _apply(preprocess_input, probe)
    offset = out[0]
    matrix = (out[1:] - offset) / 255.0
    check = np.random.default_rng(0).uniform(0, 255, (64, 3)).astype("float32")
    if not np.allclose(_apply(preprocess_input, check), check @ matrix + offset, atol=tolerance * 255):
        raise ValueError(f"{getattr(preprocess_input, '__module__', preprocess_input)}: preprocess_input is not "
                         "affine per pixel, so it cannot be folded into the saved model")
    return matrix, offset


def _apply(preprocess_input: Callable, pixels: np.ndarray) -> np.ndarray:
    image = pixels.reshape(1, 1, -1, 3).copy()  # some preprocess_input functions work in place
    return np.asarray(preprocess_input(image), np.float32).reshape(-1, 3)


def with_pixel_input(model, preprocess_input: Callable):
    """``model`` (which reads preprocessed images) behind a frozen layer that preprocesses raw 0..255 RGB.

    Any input size the model accepts is kept; the outputs keep their names.
    """
    import keras

    matrix, offset = affine_of(preprocess_input)
    pixels = keras.Input(model.inputs[0].shape[1:], name="pixels")
    layer = keras.layers.Conv2D(3, 1, name=PIXEL_LAYER, trainable=False)
    prepared = layer(pixels)
    layer.set_weights([matrix[None, None].astype("float32"), offset.astype("float32")])
    outputs = model(prepared)
    named = {name: keras.layers.Identity(name=name)(outputs[name]) for name in outputs}
    return keras.Model(pixels, named, name=model.name)
