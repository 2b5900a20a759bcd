"""ResNet-34 and SE-ResNet-34, as Géron builds them in chapter 14 of *Hands-On Machine Learning*.

No pretrained weights exist for these backbones: they start from ``backbone.init:
pretrain`` or a weights file. The builders take the ``keras.applications`` arguments,
so a :class:`~visionflow.models.backbones.BackboneSpec` builds them like any other.
"""

from __future__ import annotations

from functools import partial

import keras

# Géron's DefaultConv2D: no bias, since the BatchNorm after each convolution has its own offset.
Conv = partial(keras.layers.Conv2D, kernel_size=3, padding="same", kernel_initializer="he_normal", use_bias=False)
STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))  # ResNet-34's (filters, residual units) per stage


def preprocess_input(x):
    """Float images in 0..255 -> [-1, 1], the range these backbones are trained on."""
    return x / 127.5 - 1.0


@keras.saving.register_keras_serializable(package="visionflow")
class ResidualUnit(keras.layers.Layer):
    """Two 3x3 convolutions plus a skip connection, optionally squeezed and excited.

    ``se_ratio`` (0 or None: off) adds Hu et al.'s squeeze-and-excitation block: the main
    path's channels are rescaled by weights learned from their global averages, before
    the skip connection is added.
    """

    def __init__(self, filters: int, strides: int = 1, se_ratio: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides, self.se_ratio = filters, strides, se_ratio
        self.conv1 = Conv(filters, strides=strides, name="conv1")
        self.bn1 = keras.layers.BatchNormalization(name="bn1")
        self.conv2 = Conv(filters, name="conv2")
        self.bn2 = keras.layers.BatchNormalization(name="bn2")
        self.squeeze = self.excite = None
        if se_ratio:
            self.squeeze = keras.layers.Dense(filters // se_ratio, activation="relu", name="se_squeeze")
            self.excite = keras.layers.Dense(filters, activation="sigmoid", name="se_excite")
        self.skip_conv = self.skip_bn = None

    def build(self, input_shape):
        """Add the 1x1 projection the skip path needs when the unit strides or changes the channel count.

        Only here is the input's channel count known; Keras builds the sub-layers on first call.
        """
        if self.strides > 1 or input_shape[-1] != self.filters:
            self.skip_conv = Conv(self.filters, kernel_size=1, strides=self.strides, name="skip_conv")
            self.skip_bn = keras.layers.BatchNormalization(name="skip_bn")

    def call(self, inputs):
        x = keras.ops.relu(self.bn1(self.conv1(inputs)))
        x = self.bn2(self.conv2(x))
        if self.squeeze is not None:
            x = x * self.excite(self.squeeze(keras.ops.mean(x, axis=(1, 2), keepdims=True)))
        skip = inputs if self.skip_conv is None else self.skip_bn(self.skip_conv(inputs))
        return keras.ops.relu(x + skip)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides, "se_ratio": self.se_ratio}


def _resnet34(name: str, se_ratio: int | None, input_shape, include_top: bool, weights, classes: int, **kwargs):
    """The functional ResNet-34; unit ``j`` of stage ``i`` is named ``stage{i}_unit{j}``."""
    if weights is not None:
        raise ValueError(f"no pretrained weights exist for {name} (weights={weights!r}); "
                         "use backbone.init: pretrain or a weights file")
    inputs = keras.Input(input_shape or (None, None, 3))
    x = Conv(64, kernel_size=7, strides=2, name="conv1")(inputs)
    x = keras.layers.Activation("relu", name="conv1_relu")(keras.layers.BatchNormalization(name="conv1_bn")(x))
    x = keras.layers.MaxPool2D(3, strides=2, padding="same", name="pool1")(x)
    x = _stages(x, se_ratio)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, **{"name": name, **kwargs})


def _stages(x, se_ratio: int | None):
    """The first unit of each stage after the first halves the map, as its filters double."""
    for stage, (filters, units) in enumerate(STAGES, start=1):
        for unit in range(1, units + 1):
            strides = 2 if unit == 1 and stage > 1 else 1
            x = ResidualUnit(filters, strides, se_ratio, name=f"stage{stage}_unit{unit}")(x)
    return x


def ResNet34(input_shape=None, include_top=False, weights=None, classes=1000, **kwargs) -> keras.Model:
    """ResNet-34 (He et al. 2016); ``kwargs`` go to :class:`keras.Model`."""
    return _resnet34("resnet34", None, input_shape, include_top, weights, classes, **kwargs)


def SEResNet34(input_shape=None, include_top=False, weights=None, classes=1000, **kwargs) -> keras.Model:
    """ResNet-34 with squeeze-and-excitation in every unit (Hu et al. 2018, ratio 16)."""
    return _resnet34("se_resnet34", 16, input_shape, include_top, weights, classes, **kwargs)
