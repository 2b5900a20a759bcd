"""The saved detector's last layer: raw head outputs -> at most ``max_detections`` boxes per image.

Every scale is decoded (:func:`visionflow.models.detector.boxes.decode_boxes`) and scored
sigmoid(objectness) x softmax(classes). Each class keeps its ``pre_nms_top_k`` best
candidates, and one class-aware ``tf.image.combined_non_max_suppression`` over those runs
for the whole batch, so no IoU matrix over all candidates is ever built. That op reads boxes
as [y1, x1, y2, x2], but IoU and clipping to [0, 1] treat both axes alike, so normalised
xyxy goes in and comes out unchanged.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from visionflow.models.detector.boxes import decode_boxes, per_anchor


@keras.saving.register_keras_serializable(package="visionflow")
class DetectionDecoder(keras.layers.Layer):
    """A list of raw scale outputs (B, H_s, W_s, A * (5 + K)) -> a dict of padded detections.

    ``boxes`` (B, D, 4) normalised xyxy, ``scores`` (B, D), ``classes`` (B, D) float32 class
    indices and ``num_detections`` (B,) int32, with D = ``max_detections``; entries past
    ``num_detections`` are zeros.
    """

    def __init__(self, anchors, num_classes: int, iou_threshold: float = 0.6, score_threshold: float = 0.001,
                 pre_nms_top_k: int = 200, max_per_class: int = 100, max_detections: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.anchors = [[[float(w), float(h)] for w, h in scale] for scale in anchors]
        self.num_classes, self.pre_nms_top_k = int(num_classes), int(pre_nms_top_k)
        self.iou_threshold, self.score_threshold = float(iou_threshold), float(score_threshold)
        self.max_per_class, self.max_detections = int(max_per_class), int(max_detections)

    def call(self, raw_outputs):
        raw_outputs = list(raw_outputs) if isinstance(raw_outputs, (list, tuple)) else [raw_outputs]
        if len(raw_outputs) != len(self.anchors):
            raise ValueError(f"{len(raw_outputs)} head outputs for {len(self.anchors)} scales of anchors")
        boxes, scores = self._candidates(raw_outputs)
        boxes, scores = self._top_k_per_class(boxes, scores)
        found = tf.image.combined_non_max_suppression(
            boxes, scores, max_output_size_per_class=self.max_per_class, max_total_size=self.max_detections,
            iou_threshold=self.iou_threshold, score_threshold=self.score_threshold, clip_boxes=True)
        return {"boxes": found.nmsed_boxes, "scores": found.nmsed_scores, "classes": found.nmsed_classes,
                "num_detections": tf.cast(found.valid_detections, tf.int32)}

    def _candidates(self, raw_outputs):
        """Every cell and anchor of every scale: boxes (B, N, 4) and class scores (B, N, K)."""
        boxes, scores = [], []
        for raw, anchors in zip(raw_outputs, self.anchors):
            raw = per_anchor(raw, len(anchors), self.num_classes)
            batch = tf.shape(raw)[0]
            boxes.append(tf.reshape(decode_boxes(raw, anchors), [batch, -1, 4]))
            score = tf.sigmoid(raw[..., 4:5]) * tf.nn.softmax(raw[..., 5:], axis=-1)
            scores.append(tf.reshape(score, [batch, -1, self.num_classes]))
        return tf.concat(boxes, axis=1), tf.concat(scores, axis=1)

    def _top_k_per_class(self, boxes, scores):
        """Each class's k = min(pre_nms_top_k, N) best: boxes (B, k, K, 4), scores (B, k, K)."""
        k = tf.minimum(self.pre_nms_top_k, tf.shape(scores)[1])
        best, index = tf.math.top_k(tf.transpose(scores, [0, 2, 1]), k=k)  # (B, K, k)
        boxes = tf.gather(boxes, index, batch_dims=1)  # (B, K, k, 4)
        return tf.transpose(boxes, [0, 2, 1, 3]), tf.transpose(best, [0, 2, 1])

    def get_config(self):
        return {**super().get_config(), "anchors": self.anchors, "num_classes": self.num_classes,
                "iou_threshold": self.iou_threshold, "score_threshold": self.score_threshold,
                "pre_nms_top_k": self.pre_nms_top_k, "max_per_class": self.max_per_class,
                "max_detections": self.max_detections}
