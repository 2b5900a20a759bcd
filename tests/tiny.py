"""A tiny backbone and random data: real Keras models that train in a second."""

import keras
import numpy as np

from visionflow.models.backbones import BackboneSpec

SIZE = 32


def tiny_backbone(input_shape, include_top=False, weights=None):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stride4")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    return keras.Model(inputs, x, name="tiny")


SPEC = BackboneSpec("tests.tiny:tiny_backbone", "keras.applications.mobilenet_v2", "stride4")


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, SIZE, SIZE, 3)).astype("float32")
    y = {"class": rng.integers(0, 3, n), "box": rng.uniform(0.2, 0.8, (n, 4)).astype("float32")}
    return x, y
