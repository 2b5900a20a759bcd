"""What transfer learning does to any backbone: freeze, unfreeze, and keep BatchNorm in inference mode.

Calling the backbone with ``training=False`` is not enough in Keras 3: a functional
model passes its own ``training`` on to nested models, overriding that argument once
the backbone is unfrozen. So :func:`set_backbone_trainable` also keeps every BatchNorm
layer non-trainable, which in Keras 3 always means inference mode.
"""

from __future__ import annotations

import keras


def batchnorm_layers(model) -> list:
    """Every BatchNormalization layer inside ``model``, nested models included."""
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def set_backbone_trainable(backbone, trainable: bool) -> None:
    """Freeze or unfreeze the backbone; its BatchNorm layers stay frozen either way."""
    backbone.trainable = trainable
    for layer in batchnorm_layers(backbone):
        layer.trainable = False


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9, clipnorm: float | None = 1.0):
    """SGD with momentum (Géron's choice) or Adam.

    Clipping the gradient norm keeps a high SGD head learning rate stable on a flattened
    feature map, which has an order of magnitude more inputs than a pooled one.
    """
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=clipnorm)
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum, clipnorm=clipnorm)
