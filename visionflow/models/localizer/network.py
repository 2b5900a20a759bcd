"""Classification + localization on a backbone (Géron ch. 14): the Keras model.

Two named outputs: ``class`` (softmax) and ``box`` (cx, cy, sqrt w, sqrt h), all
normalised to 0..1 (see :mod:`visionflow.models.localizer.encoding`).
"""

from __future__ import annotations

import keras
import numpy as np

from visionflow.models.backbones import BackboneSpec
from visionflow.models.localizer.config import BOX_HEADS, CLASS_HEADS
from visionflow.models.localizer.encoding import encoded_iou
from visionflow.models.localizer.heads import FeatureMaps


@keras.saving.register_keras_serializable(package="visionflow")
class BoxIoU(keras.metrics.Mean):
    """Mean IoU of predicted and true encoded boxes.

    Box IoU, not ``keras.metrics.MeanIoU`` (which is segmentation IoU over classes).
    """

    def __init__(self, name: str = "iou", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(encoded_iou(y_true, y_pred), sample_weight=sample_weight)


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

    The heads are chosen by name (see :mod:`visionflow.models.localizer.heads`); both see
    the backbone's 1/16 and 1/32 feature maps. ``avg`` + ``pooled`` is Géron's model.

    ``class_gradient`` scales the gradient that the class loss sends into the backbone's
    layers up to the 1/16 map, which the box head reads too; the losses and their
    weights are unchanged. With boxes normalised to 0..1 the box MSE is about a
    thousandth of the cross-entropy, so at 1.0 those shared layers learn almost only
    what the class needs, and the boxes stay loose.
    """
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
    box = BOX_HEADS.get(box_head)(FeatureMaps(fine=fine, coarse=coarse), num_classes)
    probs = CLASS_HEADS.get(class_head)(FeatureMaps(fine=class_fine, coarse=coarse), num_classes, where=box.where)
    return keras.Model(inputs, {"class": probs, "box": box.box}, name="localizer"), backbone


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
