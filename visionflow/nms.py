"""Greedy non-max suppression, plain and per class (numpy; same results as TensorFlow's)."""

from __future__ import annotations

import numpy as np

from visionflow.boxes import pairwise_iou_xyxy


def non_max_suppression(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float,
                        score_threshold: float = -np.inf, max_output_size: int | None = None) -> np.ndarray:
    """Indices of the boxes kept, best score first.

    Boxes (N, 4) xyxy in any one unit. A box scoring at or below ``score_threshold``
    is dropped; then, best first (ties: lower index first), each kept box suppresses
    every remaining box whose IoU with it exceeds ``iou_threshold`` (as
    ``tf.image.non_max_suppression``).
    """
    boxes_xyxy = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    scores = np.asarray(scores)
    # Compare in the scores' own precision: float32 0.3 is not above float32 0.3.
    threshold = np.asarray(score_threshold).astype(scores.dtype) if scores.dtype.kind == "f" else score_threshold
    candidates = np.flatnonzero(scores > threshold)
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    limit = len(candidates) if max_output_size is None else max_output_size
    iou = pairwise_iou_xyxy(boxes_xyxy[candidates], boxes_xyxy[candidates])
    suppressed = np.zeros(len(candidates), bool)
    keep = []
    for i in range(len(candidates)):
        if len(keep) >= limit:
            break
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return candidates[np.array(keep, dtype=np.int64)]


def batched_non_max_suppression(boxes_xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                                iou_threshold: float, score_threshold: float = -np.inf,
                                max_per_class: int | None = None) -> np.ndarray:
    """Per-class NMS: boxes only suppress boxes of their own class. Kept indices, best first."""
    classes = np.asarray(classes)
    kept = [np.flatnonzero(classes == c)[non_max_suppression(np.asarray(boxes_xyxy)[classes == c],
                                                             np.asarray(scores)[classes == c], iou_threshold,
                                                             score_threshold, max_per_class)]
            for c in np.unique(classes)]
    kept_all = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return kept_all[np.argsort(-np.asarray(scores)[kept_all], kind="stable")]
