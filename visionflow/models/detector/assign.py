"""Which cell and anchor of one scale learns each ground-truth box (YOLOv3, with YOLOv4's ``iou_thresh``).

A box is assigned to the cell holding its centre, on every anchor of the scale whose
centre-aligned shape IoU with the box reaches ``match_threshold``, and always on its best
anchor over all scales if this scale owns that anchor. When several boxes of an image
land on the same cell and anchor, the one whose shape fits that anchor best (largest shape
IoU) wins; on a tie, the later box. Written for XLA: static shapes, dense masks, gathers
and ``tensor_scatter_nd`` ops only. Boxes are normalised xyxy.
"""

from __future__ import annotations

import tensorflow as tf

EPS = 1e-9


def shape_iou(wh, anchors_wh):
    """IoU of centre-aligned boxes: widths/heights (..., 2) with anchors (N, 2) -> (..., N).

    The TensorFlow twin of :func:`visionflow.anchors.wh_iou`.
    """
    inter = tf.minimum(wh[..., None, 0], anchors_wh[:, 0]) * tf.minimum(wh[..., None, 1], anchors_wh[:, 1])
    union = (wh[..., 0] * wh[..., 1])[..., None] + anchors_wh[:, 0] * anchors_wh[:, 1] - inter
    return inter / (union + EPS)


def assign_targets(gt, all_anchors, first: int, num_anchors: int, grid_hw, match_threshold: float = 0.25) -> dict:
    """Dense targets of one scale from padded ground truth.

    ``gt`` (B, M, 5) is ``[x1, y1, x2, y2, label]`` normalised, label -1 for padding;
    ``all_anchors`` (N_all, 2) normalised sizes of every scale, of which this one owns
    ``[first, first + num_anchors)``; ``grid_hw`` the scale's (H, W), ints or scalar tensors.
    Returns ``positive`` (B, H, W, A) float 0/1, ``box`` (B, H, W, A, 4) the assigned normalised
    xyxy box and ``label`` (B, H, W, A) int32, all 0 where not positive.
    """
    gt = tf.cast(gt, tf.float32)
    all_anchors = tf.cast(all_anchors, tf.float32)
    height, width = grid_hw
    boxes, labels = gt[..., :4], tf.cast(gt[..., 4], tf.int32)
    fit = shape_iou(boxes[..., 2:] - boxes[..., :2], all_anchors)  # (B, M, N_all)
    owned = fit[..., first:first + num_anchors]  # (B, M, A)
    best_here = tf.one_hot(tf.argmax(fit, axis=-1, output_type=tf.int32) - first, num_anchors) > 0
    matched = (labels >= 0)[..., None] & ((owned >= match_threshold) | best_here)
    index = _scatter_index(boxes, height, width, num_anchors)  # (B, M, A, 2): image, flat cell-and-anchor
    size = height * width * num_anchors
    won = _winners(index, matched, owned, size)
    flat = {"positive": _scatter_add(index, tf.cast(won, tf.float32), size),
            "box": _scatter_add(index, boxes[:, :, None, :] * tf.cast(won, tf.float32)[..., None], size),
            "label": _scatter_add(index, labels[..., None] * tf.cast(won, tf.int32), size)}
    batch = tf.shape(gt)[0]
    grid = [batch, height, width, num_anchors]
    return {"positive": tf.reshape(flat["positive"], grid), "box": tf.reshape(flat["box"], grid + [4]),
            "label": tf.reshape(flat["label"], grid)}


def _scatter_index(boxes, height, width, num_anchors: int):
    """(B, M, A, 2) [image, (row * W + col) * A + anchor] of the cell holding each box's centre."""
    row = _cell((boxes[..., 1] + boxes[..., 3]) / 2, height)
    col = _cell((boxes[..., 0] + boxes[..., 2]) / 2, width)
    slot = ((row * width + col) * num_anchors)[..., None] + tf.range(num_anchors)  # (B, M, A)
    image = tf.broadcast_to(tf.range(tf.shape(boxes)[0])[:, None, None], tf.shape(slot))
    return tf.stack([image, slot], axis=-1)


def _cell(centre, cells):
    """Index of the cell holding a normalised coordinate, clipped to the grid."""
    return tf.clip_by_value(tf.cast(tf.floor(centre * tf.cast(cells, tf.float32)), tf.int32), 0, cells - 1)


def _winners(index, matched, fit, size):
    """(B, M, A) bool: the matched entries that own their slot (largest ``fit``, then the later box)."""
    batch = tf.shape(index)[0]
    fit = tf.where(matched, fit, -1.0)
    best = tf.tensor_scatter_nd_max(tf.fill([batch, size], -1.0), index, fit)
    top = matched & (fit >= tf.gather_nd(best, index))
    order = tf.where(top, tf.range(tf.shape(fit)[1])[None, :, None], -1)
    last = tf.tensor_scatter_nd_max(tf.fill([batch, size], -1), index, order)
    return top & (order == tf.gather_nd(last, index))


def _scatter_add(index, updates, size):
    """Scatter (B, M, A, ...) updates into (B, size, ...) zeros; only winners carry non-zero values."""
    shape = tf.concat([[tf.shape(index)[0], size], tf.shape(updates)[3:]], axis=0)
    return tf.tensor_scatter_nd_add(tf.zeros(shape, updates.dtype), index, updates)
