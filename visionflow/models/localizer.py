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
import numpy as np
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


def scale_gradient(x, scale: float, name: str):
    """``x`` unchanged going forward, ``scale`` times its gradient going back; stock layers only."""
    if scale == 1.0:
        return x
    held = keras.ops.stop_gradient(x)
    if scale == 0.0:
        return held
    return keras.layers.Add(name=name)([keras.layers.Rescaling(scale, name=f"{name}_passed")(x),
                                        keras.layers.Rescaling(1.0 - scale, name=f"{name}_held")(held)])


def build_localizer(spec: BackboneSpec, image_size: int, num_classes: int, width: float = 1.0,
                    backbone_weights: str | None = None, class_head: str = "avg", box_head: str = "pooled",
                    class_gradient: float = 1.0):
    """Returns ``(model, backbone)``; load ``backbone_weights`` (a ``.weights.h5``) if given.

    The heads are chosen by name from :mod:`visionflow.models.heads`; both see the
    backbone's 1/16 and 1/32 feature maps. ``avg`` + ``pooled`` is Géron's model.

    ``class_gradient`` scales the gradient that the class loss sends into the backbone's
    layers up to the 1/16 map, which the box head reads too; the losses and their
    weights are unchanged. With boxes normalised to 0..1 the box MSE is about a
    thousandth of the cross-entropy, so at 1.0 those shared layers learn almost only
    what the class needs, and the boxes stay loose.
    """
    from visionflow.models.heads import BOX_HEADS, CLASS_HEADS, FeatureMaps

    backbone = spec.build(image_size, weights=None, width=width)
    if backbone_weights:
        backbone.load_weights(backbone_weights)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    # The class loss trains the layers past 1/16 at full rate (only the class head reads
    # them) and sends the scaled gradient into the layers the box head shares.
    trunk, top = spec.split(backbone)
    fine = trunk(inputs, training=False)
    class_fine = scale_gradient(fine, class_gradient, "class_gradient")
    coarse = top(class_fine, training=False)
    maps = FeatureMaps(fine=fine, coarse=coarse)
    box = BOX_HEADS.get(box_head)(maps, num_classes)  # first: it may tell the class head where to look
    class_maps = FeatureMaps(fine=class_fine, coarse=coarse, where=maps.where)
    outputs = {"class": CLASS_HEADS.get(class_head)(class_maps, num_classes), "box": box}
    return keras.Model(inputs, outputs, name="localizer"), backbone


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


def inference_model(model, flip_average: bool = False):
    """The same layers and weights, uncompiled: loadable with plain Keras, no visionflow needed.

    With ``flip_average`` the model also reads the image mirrored left to right and
    returns the mean of the two predictions: the class probabilities, and the boxes
    with the mirrored one's centre mirrored back. This test-time augmentation costs a
    second forward pass and needs classes that a mirror does not change.
    """
    outputs = {name: model.get_layer(name).output for name in ("class", "box")}
    plain = keras.Model(model.inputs, outputs, name=model.name)
    if not flip_average:
        return plain
    L = keras.layers
    image = keras.Input(plain.inputs[0].shape[1:], name="image")
    seen, mirrored = plain(image), plain(keras.ops.flip(image, axis=2))
    unmirror = L.Rescaling(np.array([-1, 1, 1, 1], "float32"), offset=np.array([1, 0, 0, 0], "float32"),
                           name="box_mirrored_back")  # cx -> 1 - cx; cy and the sizes stay
    averaged = {"class": L.Average(name="class")([seen["class"], mirrored["class"]]),
                "box": L.Average(name="box")([seen["box"], unmirror(mirrored["box"])])}
    return keras.Model(image, averaged, name=f"{model.name}_flip_averaged")


def build_classifier(spec: BackboneSpec, image_size: int, num_classes: int, width: float = 1.0):
    """Backbone + pooled softmax head, for pretraining the backbone itself (BatchNorm trains)."""
    backbone = spec.build(image_size, weights=None, width=width)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="class")(pooled)
    return keras.Model(inputs, outputs, name="pretrain_classifier"), backbone
