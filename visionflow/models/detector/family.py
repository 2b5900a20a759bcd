"""The detector on the model-family interface: every object of an image, YOLOv3-style.

Its anchors are the dataset's (the ``anchors@<dataset>`` stage's k-means), smallest
first: the first ``anchors_per_scale`` go to the 1/8 map, the next to 1/16, the last to
1/32. Keras code is imported inside the methods, so that this module (and its config)
loads without TensorFlow when ``params.yaml`` is checked.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from visionflow.errors import DataError
from visionflow.layout import anchors_file
from visionflow.models.backbones import STRIDES
from visionflow.models.detector.config import DetectorConfig
from visionflow.models.family import Detections, ModelFamily

OUTPUTS = tuple(f"s{stride}" for stride in STRIDES)


class Detector(ModelFamily):
    """Per cell and anchor of three maps: logistic centre offsets, log scales on the anchor, objectness, classes."""

    name = "detector"
    Config = DetectorConfig
    headline_metric = "map50"

    @functools.cached_property
    def anchors(self) -> list[list[float]]:
        """The dataset's k-means anchors (normalised width, height), smallest first."""
        path = anchors_file(self.config.dataset)
        hint = f"run `dvc repro anchors@{self.config.dataset}`"
        if not path.is_file():
            raise DataError(f"{path}: no such file; {hint}")
        anchors = json.loads(path.read_text())["anchors"]
        needed = len(STRIDES) * self.config.anchors_per_scale
        if len(anchors) != needed:
            raise DataError(f"{path}: {len(anchors)} anchors, but the detector needs {needed} "
                            f"({len(STRIDES)} scales x anchors_per_scale {self.config.anchors_per_scale}); "
                            f"set datasets.{self.config.dataset}.anchors.num_anchors to {needed} and {hint}")
        return anchors

    def anchors_by_scale(self) -> list[list[list[float]]]:
        a = self.config.anchors_per_scale
        return [self.anchors[i * a:(i + 1) * a] for i in range(len(STRIDES))]

    def build(self, backbone_spec, image_size: int, width: float, backbone_weights: str | None):
        from visionflow.models.detector.network import build_detector

        return build_detector(backbone_spec, len(self.classes), width, backbone_weights,
                              self.config.anchors_per_scale, self.config.neck_channels)

    def targets(self, boxes_xyxy_norm, labels, valid, image_labels):
        """Every output gets the padded ground truth, (B, max_boxes, 5) ``[x1, y1, x2, y2, label]``; it assigns itself."""
        import tensorflow as tf

        m = self.config.max_boxes
        gt = tf.concat([tf.cast(boxes_xyxy_norm, tf.float32), tf.cast(labels, tf.float32)[..., None]], axis=-1)
        padding = tf.concat([tf.zeros_like(gt[:, :1, :4]), -tf.ones_like(gt[:, :1, 4:])], axis=-1)
        gt = tf.concat([gt, tf.tile(padding, [1, m, 1])], axis=1)[:, :m]  # static (B, m, 5) for XLA
        return {name: gt for name in OUTPUTS}

    def compile(self, model, optimizer) -> None:
        from visionflow.models.detector.loss import ScaleLoss

        c, a = self.config, self.config.anchors_per_scale
        losses = {name: ScaleLoss(self.anchors, i * a, a, len(self.classes), c.match_threshold, c.ignore_threshold,
                                  c.loss_weights.box, c.loss_weights.objectness, c.loss_weights.class_,
                                  c.objectness_balance[i], c.objectness_target, name=f"{name}_loss")
                  for i, name in enumerate(OUTPUTS)}
        # Not XLA-compiled: multi-scale training would compile every step once per input size, for longer than
        # the steps take.
        model.compile(optimizer=optimizer, loss=losses, jit_compile=False)

    def inference_model(self, model):
        """The trained model with its decoder: at most ``nms.max_detections`` boxes per image, after class-aware NMS."""
        import keras

        from visionflow.models.detector.decode import DetectionDecoder

        n = self.config.nms
        decoder = DetectionDecoder(self.anchors_by_scale(), len(self.classes), n.iou_threshold, n.score_threshold,
                                   n.pre_nms_top_k, n.max_per_class, n.max_detections, name="detections")
        return keras.Model(model.input, decoder([model.output[name] for name in OUTPUTS]), name="detector")

    def input_sizes(self) -> tuple[tuple[int, ...], int]:
        return self.config.input_sizes, self.config.size_every

    def decode(self, outputs: dict[str, np.ndarray]) -> list[Detections]:
        counts = np.asarray(outputs["num_detections"]).reshape(-1)
        return [Detections(np.asarray(outputs["boxes"][i, :n]), np.asarray(outputs["classes"][i, :n]).astype(np.int64),
                           np.asarray(outputs["scores"][i, :n])) for i, n in enumerate(counts)]

    def metrics(self, outputs, targets, iou_thresholds=(0.5, 0.75)) -> dict[str, float]:
        """COCO AP over the model-input frame (``map``, ``map50``) and detections per image, whole split."""
        from visionflow.models.detector.scoring import input_frame_ap

        truth = np.asarray(targets[OUTPUTS[0]])
        if len(truth) == 0:
            raise ValueError("no examples to evaluate")
        ap = input_frame_ap(truth, self.decode(outputs), len(self.classes))
        return {"num_examples": int(len(truth)), "map": ap["AP"], "map50": ap["AP50"],
                "mean_detections": float(np.mean(np.asarray(outputs["num_detections"])))}
