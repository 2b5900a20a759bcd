"""Classification + localization on a pretrained backbone (Géron ch. 14).

Two named outputs: ``class`` (softmax) and ``box`` (cx, cy, sqrt w, sqrt h), all
normalised to 0..1.

BatchNorm stays in inference mode in both phases. Calling the backbone with
``training=False`` is not enough in Keras 3: a functional model passes its own
``training`` on to nested models, overriding that argument once the backbone is
unfrozen. So :func:`set_backbone_trainable` also keeps every BatchNorm layer
non-trainable, which in Keras 3 always means inference mode.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from visionflow.models.backbones import BackboneSpec


@keras.saving.register_keras_serializable(package="visionflow")
class BoxIoU(keras.metrics.Mean):
    """Mean IoU of predicted and true boxes encoded as (cx, cy, sqrt w, sqrt h).

    Box IoU, not ``keras.metrics.MeanIoU`` (which is segmentation IoU over classes).
    """

    def __init__(self, name: str = "iou", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(sqrt_cxcywh_iou(y_true, y_pred), sample_weight=sample_weight)


def _to_xyxy(encoded):
    cx, cy, sw, sh = tf.unstack(tf.cast(encoded, tf.float32), axis=-1)
    w, h = tf.square(sw), tf.square(sh)
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def sqrt_cxcywh_iou(y_true, y_pred):
    """Elementwise IoU of boxes encoded as (cx, cy, sqrt w, sqrt h)."""
    ax1, ay1, ax2, ay2 = _to_xyxy(y_true)
    bx1, by1, bx2, by2 = _to_xyxy(y_pred)
    inter = tf.nn.relu(tf.minimum(ax2, bx2) - tf.maximum(ax1, bx1)) * tf.nn.relu(tf.minimum(ay2, by2) - tf.maximum(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return tf.math.divide_no_nan(inter, union)


BOX_HEAD_CHANNELS = 32


def build_localizer(spec: BackboneSpec, image_size: int, num_classes: int, width: float = 1.0,
                    backbone_weights: str | None = None, class_pooling: str = "avg", box_pooling: str = "flatten",
                    box_feature_stride: int = 32, box_hidden_units: int = 0):
    """Returns ``(model, backbone)``; load ``backbone_weights`` (a ``.weights.h5``) if given.

    ``class_pooling``: ``"avg"`` is Géron's head; ``"max"`` suits small objects, whose
    features an average over the whole map dilutes. ``box_pooling="flatten"`` keeps the
    feature map's layout for the box head (a 1x1 convolution first narrows it), which
    locates far better than ``"avg"``, Géron's variant. ``box_feature_stride=16`` feeds
    the box head the backbone's 1/16-resolution features instead of its final 1/32 ones:
    at 128 px that is an 8x8 map instead of 4x4, so coordinates are read off finer cells.
    ``box_hidden_units`` > 0 puts a ReLU layer before the box output, which is linear as
    in Géron's head (a sigmoid saturates and slows the regression).
    """
    backbone = spec.build(image_size, weights=None, width=width)
    if backbone_weights:
        backbone.load_weights(backbone_weights)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    if box_feature_stride == 16:
        both = keras.Model(backbone.input, [backbone.get_layer(spec.stride16_layer).output, backbone.output],
                           name=f"{backbone.name}_strides_16_32")
        box_features, features = both(inputs, training=False)
    else:
        features = backbone(inputs, training=False)
        box_features = features
    pool = keras.layers.GlobalMaxPooling2D if class_pooling == "max" else keras.layers.GlobalAveragePooling2D
    class_out = keras.layers.Dense(num_classes, activation="softmax", name="class")(pool(name="class_pool")(features))
    if box_pooling == "flatten":
        narrow = keras.layers.Conv2D(BOX_HEAD_CHANNELS, 1, activation="relu", name="box_conv")(box_features)
        box_in = keras.layers.Flatten(name="box_flatten")(narrow)
    else:
        box_in = keras.layers.GlobalAveragePooling2D(name="box_pool")(box_features)
    if box_hidden_units:
        box_in = keras.layers.Dense(box_hidden_units, activation="relu", name="box_hidden")(box_in)
    box_out = keras.layers.Dense(4, name="box")(box_in)
    model = keras.Model(inputs, {"class": class_out, "box": box_out}, name="localizer")
    return model, backbone


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


def compile_localizer(model, optimizer, class_weight: float, box_weight: float) -> None:
    """Recompile after every change of ``trainable``: it only takes effect on compile."""
    model.compile(
        optimizer=optimizer,
        loss={"class": "sparse_categorical_crossentropy", "box": "mse"},
        loss_weights={"class": class_weight, "box": box_weight},
        metrics={"class": ["accuracy"], "box": [BoxIoU()]},
    )


def inference_model(model):
    """The same layers and weights, uncompiled: loadable with plain Keras, no visionflow needed."""
    outputs = {name: model.get_layer(name).output for name in ("class", "box")}
    return keras.Model(model.inputs, outputs, name=model.name)


def build_classifier(spec: BackboneSpec, image_size: int, num_classes: int, width: float = 1.0):
    """Backbone + pooled softmax head, for pretraining the backbone itself (BatchNorm trains)."""
    backbone = spec.build(image_size, weights=None, width=width)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="class")(pooled)
    return keras.Model(inputs, outputs, name="pretrain_classifier"), backbone
