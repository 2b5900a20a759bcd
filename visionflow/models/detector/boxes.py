"""The detector's box decoding and box overlaps, in TensorFlow and XLA-compilable.

A scale's raw head output is (B, H, W, A, 5 + K): per cell and anchor ``tx, ty, tw, th``,
the objectness logit and K class logits (YOLOv3). The grid size is read from the tensor's
dynamic shape, so one model trains and predicts at several input sizes. Boxes are
normalised xyxy (fractions of the image) throughout; shapes are (..., 4).
"""

from __future__ import annotations

import math

import tensorflow as tf

EPS = 1e-9
MAX_LOG_SCALE = 4.0  # tw, th are clipped here before exp: a box at most e^4 ~ 55 times its anchor, never inf


def per_anchor(raw, num_anchors: int, num_classes: int):
    """A head's output (B, H, W, A * (5 + K)) or (B, H, W, A, 5 + K) -> (B, H, W, A, 5 + K) float32."""
    raw = tf.cast(raw, tf.float32)
    shape = tf.shape(raw)
    return tf.reshape(raw, tf.concat([shape[:3], [num_anchors, 5 + num_classes]], axis=0))


def decode_boxes(raw, anchors_wh):
    """Raw output (B, H, W, A, 5 + K) and normalised anchor sizes (A, 2) -> normalised xyxy (B, H, W, A, 4).

    cx = (sigmoid(tx) + col) / W, cy = (sigmoid(ty) + row) / H, w = anchor w * exp(tw), h = anchor h * exp(th).
    """
    raw = tf.cast(raw, tf.float32)
    anchors_wh = tf.cast(anchors_wh, tf.float32)
    shape = tf.shape(raw)
    rows = tf.cast(tf.range(shape[1]), tf.float32)[None, :, None, None]
    cols = tf.cast(tf.range(shape[2]), tf.float32)[None, None, :, None]
    cx = (tf.sigmoid(raw[..., 0]) + cols) / tf.cast(shape[2], tf.float32)
    cy = (tf.sigmoid(raw[..., 1]) + rows) / tf.cast(shape[1], tf.float32)
    w = anchors_wh[:, 0] * tf.exp(tf.minimum(raw[..., 2], MAX_LOG_SCALE))
    h = anchors_wh[:, 1] * tf.exp(tf.minimum(raw[..., 3], MAX_LOG_SCALE))
    return tf.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _intersection_union(a, b):
    ax1, ay1, ax2, ay2 = tf.unstack(a, 4, axis=-1)
    bx1, by1, bx2, by2 = tf.unstack(b, 4, axis=-1)
    inter = (tf.nn.relu(tf.minimum(ax2, bx2) - tf.maximum(ax1, bx1))
             * tf.nn.relu(tf.minimum(ay2, by2) - tf.maximum(ay1, by1)))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter, union


def iou(a, b):
    """Elementwise IoU of normalised xyxy boxes, (..., 4) x (..., 4) -> (...); 0 where the union is empty."""
    inter, union = _intersection_union(tf.cast(a, tf.float32), tf.cast(b, tf.float32))
    return inter / (union + EPS)


def pairwise_iou(a, b):
    """IoU of every pair of normalised xyxy boxes: (..., N, 4) x (..., M, 4) -> (..., N, M)."""
    return iou(tf.expand_dims(a, -2), tf.expand_dims(b, -3))


def ciou(a, b):
    """Elementwise Complete-IoU of normalised xyxy boxes, (..., 4) x (..., 4) -> (...), in (-1.5, 1].

    IoU - rho^2 / c^2 - alpha v (Zheng et al. 2020): rho is the distance between the centres,
    c the diagonal of the smallest box enclosing both, v = 4 / pi^2 (atan(w_b / h_b) -
    atan(w_a / h_a))^2 the aspect-ratio mismatch and alpha = v / (1 - IoU + v). As in the
    paper's code, alpha is a weight and passes no gradient.
    """
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    overlap = iou(a, b)
    ax1, ay1, ax2, ay2 = tf.unstack(a, 4, axis=-1)
    bx1, by1, bx2, by2 = tf.unstack(b, 4, axis=-1)
    rho2 = ((ax1 + ax2 - bx1 - bx2) ** 2 + (ay1 + ay2 - by1 - by2) ** 2) / 4
    c2 = (tf.maximum(ax2, bx2) - tf.minimum(ax1, bx1)) ** 2 + (tf.maximum(ay2, by2) - tf.minimum(ay1, by1)) ** 2
    v = (4 / math.pi**2) * (tf.atan((bx2 - bx1) / (by2 - by1 + EPS)) - tf.atan((ax2 - ax1) / (ay2 - ay1 + EPS))) ** 2
    alpha = tf.stop_gradient(v / (1 - overlap + v + EPS))
    return overlap - rho2 / (c2 + EPS) - alpha * v
