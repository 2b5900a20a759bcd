"""The localizer on the model-family interface.

Its Keras code is imported inside the methods, so that this module (and its config)
loads without TensorFlow when ``params.yaml`` is checked.
"""

from __future__ import annotations

import numpy as np

from visionflow.models.family import Detections, ModelFamily
from visionflow.models.localizer.config import LocalizerConfig


class Localizer(ModelFamily):
    """One object per image: its class (softmax) and its box, encoded (cx, cy, sqrt w, sqrt h)."""

    name = "localizer"
    Config = LocalizerConfig
    headline_metric = "mean_iou"

    def build(self, backbone_spec, image_size: int, width: float, backbone_weights: str | None):
        from visionflow.models.localizer.network import build_localizer

        c = self.config
        return build_localizer(backbone_spec, image_size, len(self.classes), width, backbone_weights, c.class_head,
                               c.box_head, c.class_gradient)

    def targets(self, boxes_xyxy_norm, labels, valid, image_labels=None):
        """The first object's class and encoded box."""
        from visionflow.models.localizer.encoding import encode_sqrt_cxcywh

        return {"class": labels[:, 0], "box": encode_sqrt_cxcywh(boxes_xyxy_norm[:, 0, :])}

    def compile(self, model, optimizer) -> None:
        from visionflow.models.localizer.network import compile_localizer

        compile_localizer(model, optimizer, self.config.loss_weights.class_, self.config.loss_weights.box)

    def inference_model(self, model):
        from visionflow.models.localizer.network import inference_model

        return inference_model(model, self.config.flip_average)

    def decode(self, outputs: dict[str, np.ndarray]) -> list[Detections]:
        """One detection per image: the most likely class, its probability as score, and the box."""
        from keras import ops

        from visionflow.models.localizer.encoding import decode_sqrt_cxcywh

        probs = np.asarray(outputs["class"])
        labels = probs.argmax(axis=1)
        boxes = ops.convert_to_numpy(decode_sqrt_cxcywh(outputs["box"]))
        return [Detections(box[None], label[None], prob[label][None]) for box, label, prob in zip(boxes, labels, probs)]

    def metrics(self, outputs, targets, iou_thresholds=(0.5, 0.75)) -> dict[str, float]:
        """Accuracy, mean box IoU and the share of images whose IoU reaches each threshold."""
        from keras import ops

        from visionflow.models.localizer.encoding import encoded_iou

        labels = np.asarray(targets["class"])
        if len(labels) == 0:
            raise ValueError("no examples to evaluate")
        ious = ops.convert_to_numpy(encoded_iou(targets["box"], outputs["box"]))
        out = {"num_examples": int(len(labels)),
               "accuracy": float(np.mean(np.argmax(outputs["class"], axis=-1) == labels)),
               "mean_iou": float(np.mean(ious))}
        out.update({f"share_iou_ge_{t:g}": float(np.mean(ious >= t)) for t in iou_thresholds})
        return out

    def evidence(self, truth: dict, detections: list[dict]):
        """Per test image, its box's IoU: the headline is their mean."""
        from visionflow.metrics.evidence import top_box_iou

        return top_box_iou(truth, detections)
