"""The localizer's box encoding, written once in ``keras.ops``: for the targets inside the
``tf.data`` pipeline, the training metric, and decoding the saved model's numpy outputs.

Encoded boxes are (cx, cy, sqrt w, sqrt h), normalised to 0..1: regressing square roots
makes an error on a small box cost more than the same error on a large one (Géron ch. 14,
after YOLO). Plain boxes are normalised xyxy. Shapes are (..., 4).
"""

from __future__ import annotations

from keras import ops


def encode_sqrt_cxcywh(boxes_xyxy_norm):
    """Normalised xyxy -> (cx, cy, sqrt w, sqrt h)."""
    x1, y1, x2, y2 = ops.unstack(ops.cast(boxes_xyxy_norm, "float32"), 4, axis=-1)
    return ops.stack([(x1 + x2) / 2, (y1 + y2) / 2, ops.sqrt(ops.maximum(x2 - x1, 0.0)),
                      ops.sqrt(ops.maximum(y2 - y1, 0.0))], axis=-1)


def decode_sqrt_cxcywh(encoded):
    """(cx, cy, sqrt w, sqrt h) -> normalised xyxy."""
    cx, cy, sw, sh = ops.unstack(ops.cast(encoded, "float32"), 4, axis=-1)
    w, h = ops.square(sw), ops.square(sh)
    return ops.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def encoded_iou(a, b):
    """Elementwise IoU of two sets of encoded boxes, (..., 4) -> (...); 0 where the union is empty."""
    ax1, ay1, ax2, ay2 = ops.unstack(decode_sqrt_cxcywh(a), 4, axis=-1)
    bx1, by1, bx2, by2 = ops.unstack(decode_sqrt_cxcywh(b), 4, axis=-1)
    inter = (ops.relu(ops.minimum(ax2, bx2) - ops.maximum(ax1, bx1))
             * ops.relu(ops.minimum(ay2, by2) - ops.maximum(ay1, by1)))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return ops.divide_no_nan(inter, union)
