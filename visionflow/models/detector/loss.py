"""The detector's loss on one scale: CIoU box, objectness with an ignore mask, softmax class.

One :class:`ScaleLoss` per head output; each gets the same padded ground truth ``gt``
(B, M, 5) = ``[x1, y1, x2, y2, label]`` normalised, label -1 for padding, and assigns its
own targets inside the loss (so the input pipeline never needs the grid size, and one
model trains at several input sizes). It returns one value per image, scaled so that
Keras' default reduction (the batch mean) gives:

- box: the mean of 1 - CIoU over the batch's positives (each image's sum times
  B / max(positives in the batch, 1));
- objectness: the mean binary cross-entropy over every cell and anchor, times ``balance``
  (ignored predictions count in the mean with 0);
- class: the mean softmax cross-entropy over the batch's positives, scaled like the box.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from visionflow.models.detector.assign import assign_targets
from visionflow.models.detector.boxes import ciou, decode_boxes, iou, pairwise_iou, per_anchor


@keras.saving.register_keras_serializable(package="visionflow")
class ScaleLoss(keras.losses.Loss):
    """The loss of the scale that owns anchors ``[first, first + num_anchors)`` of ``all_anchors``."""

    def __init__(self, all_anchors, first: int, num_anchors: int, num_classes: int, match_threshold: float = 0.25,
                 ignore_threshold: float = 0.5, box_weight: float = 1.0, objectness_weight: float = 1.0,
                 class_weight: float = 0.5, balance: float = 1.0, objectness_target: str = "one",
                 name: str = "scale_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.all_anchors = [[float(w), float(h)] for w, h in all_anchors]
        if first < 0 or first + num_anchors > len(self.all_anchors):
            raise ValueError(f"anchors [{first}, {first + num_anchors}) are not among the {len(self.all_anchors)}")
        self.first, self.num_anchors, self.num_classes = int(first), int(num_anchors), int(num_classes)
        self.match_threshold, self.ignore_threshold = float(match_threshold), float(ignore_threshold)
        self.box_weight, self.class_weight = float(box_weight), float(class_weight)
        self.objectness_weight, self.balance = float(objectness_weight), float(balance)
        if objectness_target not in ("one", "iou"):
            raise ValueError(f"objectness_target must be one or iou, got {objectness_target!r}")
        self.objectness_target = objectness_target

    def call(self, y_true, y_pred):
        gt = tf.cast(y_true, tf.float32)
        raw = per_anchor(y_pred, self.num_anchors, self.num_classes)
        shape = tf.shape(raw)
        all_anchors = tf.constant(self.all_anchors, tf.float32)
        targets = assign_targets(gt, all_anchors, self.first, self.num_anchors, (shape[1], shape[2]),
                                 self.match_threshold)
        boxes = decode_boxes(raw, all_anchors[self.first:self.first + self.num_anchors])
        positive = targets["positive"]
        per_positive = tf.cast(shape[0], tf.float32) / tf.maximum(tf.reduce_sum(positive), 1.0)
        box = tf.reduce_sum((1 - ciou(boxes, targets["box"])) * positive, axis=[1, 2, 3]) * per_positive
        classes = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets["label"], logits=raw[..., 5:])
        cls = tf.reduce_sum(classes * positive, axis=[1, 2, 3]) * per_positive
        target = positive
        if self.objectness_target == "iou":  # YOLOv5's: a positive's objectness learns how well its box fits
            target = positive * tf.stop_gradient(tf.maximum(iou(boxes, targets["box"]), 0.0))
        obj = objectness_loss(raw[..., 4], positive, boxes, gt, self.ignore_threshold, target) * self.balance
        return self.box_weight * box + self.objectness_weight * obj + self.class_weight * cls

    def get_config(self):
        return {**super().get_config(), "all_anchors": self.all_anchors, "first": self.first,
                "num_anchors": self.num_anchors, "num_classes": self.num_classes,
                "match_threshold": self.match_threshold, "ignore_threshold": self.ignore_threshold,
                "box_weight": self.box_weight, "objectness_weight": self.objectness_weight,
                "class_weight": self.class_weight, "balance": self.balance,
                "objectness_target": self.objectness_target}


def objectness_loss(logits, positive, boxes, gt, ignore_threshold: float, target=None):
    """(B,) mean binary cross-entropy over cells and anchors (B, H, W, A).

    Targets are ``target`` at positives (default 1) and 0 elsewhere, except that a non-positive prediction whose
    normalised xyxy box already overlaps a ground-truth box of its image with IoU above
    ``ignore_threshold`` is not pushed down: it adds 0 (YOLOv3).
    """
    ignored = overlaps_truth(boxes, gt, ignore_threshold) & (positive == 0)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive if target is None else target, logits=logits)
    return tf.reduce_mean(tf.where(ignored, 0.0, bce), axis=[1, 2, 3])


def overlaps_truth(boxes, gt, threshold: float):
    """(B, H, W, A) bool: whether each predicted box overlaps a (non-padding) box of ``gt`` with IoU > threshold."""
    shape = tf.shape(boxes)
    flat = tf.reshape(tf.stop_gradient(boxes), [shape[0], -1, 4])
    overlaps = tf.where(gt[:, None, :, 4] >= 0, pairwise_iou(flat, gt[..., :4]), 0.0)  # (B, H * W * A, M)
    return tf.reshape(tf.reduce_any(overlaps > threshold, axis=-1), shape[:-1])
