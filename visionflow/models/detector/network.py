"""The detector's Keras model: backbone maps at strides 8, 16 and 32, a light feature pyramid, a YOLO head each.

Fully convolutional: it reads any input whose sides are multiples of 32. Each head is a
1x1 convolution to ``anchors x (4 box + 1 objectness + classes)`` raw values per cell;
the objectness bias starts at a prior of 1 %, so the first steps are not spent
learning that most cells hold nothing.
"""

from __future__ import annotations

import math

import keras

from visionflow.models.backbones import STRIDES, BackboneSpec

OBJECTNESS_PRIOR = 0.01


def conv_block(x, filters: int, kernel: int, name: str):
    x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation("swish", name=f"{name}_act")(x)


def feature_pyramid(maps: dict, channels: int) -> dict:
    """Top-down FPN: each map's 1x1 lateral plus the coarser level upsampled, then a 3x3 block."""
    merged, out = None, {}
    for stride in sorted(maps, reverse=True):
        lateral = conv_block(maps[stride], channels, 1, f"neck_lateral{stride}")
        if merged is not None:
            up = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"neck_up{stride}")(merged)
            lateral = keras.layers.Add(name=f"neck_add{stride}")([lateral, up])
        merged = lateral
        out[stride] = conv_block(lateral, channels, 3, f"neck_out{stride}")
    return out


def head_bias(num_anchors: int, num_classes: int) -> list[float]:
    per_anchor = [0.0] * 4 + [math.log(OBJECTNESS_PRIOR / (1 - OBJECTNESS_PRIOR))] + [0.0] * num_classes
    return per_anchor * num_anchors


def build_detector(spec: BackboneSpec, num_classes: int, width: float = 1.0, backbone_weights: str | None = None,
                   anchors_per_scale: int = 3, neck_channels: int = 64):
    """Returns ``(model, backbone)``; outputs ``s8``, ``s16``, ``s32``: (B, H/s, W/s, A * (5 + K)) raw values."""
    backbone = spec.build(None, weights=None, width=width)
    if backbone_weights:
        backbone.load_weights(backbone_weights)
    maps = spec.feature_maps(backbone, STRIDES)
    # A list, in stride order: a dict keyed by stride would not keep its order through a .keras file.
    features = keras.Model(backbone.input, [maps[stride] for stride in STRIDES], name=f"{backbone.name}_features")
    inputs = keras.Input((None, None, 3), name="image")
    levels = features(inputs, training=False)  # BatchNorm in inference mode, frozen or not
    pyramid = feature_pyramid(dict(zip(STRIDES, levels)), neck_channels)
    size = anchors_per_scale * (5 + num_classes)
    bias = keras.initializers.Constant(head_bias(anchors_per_scale, num_classes))
    # float32 under any dtype policy: the loss and the decoder exponentiate these raw values
    outputs = {f"s{stride}": keras.layers.Conv2D(size, 1, bias_initializer=bias, name=f"s{stride}",
                                                 dtype="float32")(pyramid[stride])
               for stride in STRIDES}
    return keras.Model(inputs, outputs, name="detector"), backbone
