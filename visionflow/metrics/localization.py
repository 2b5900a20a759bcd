"""Classification + localization metrics for one object per image, in numpy."""

from __future__ import annotations

import numpy as np

from visionflow.boxes import convert_boxes, decode_sqrt_cxcywh, elementwise_iou_xyxy


def localization_metrics(labels: np.ndarray, class_probs: np.ndarray, true_boxes_sqrt: np.ndarray,
                         pred_boxes_sqrt: np.ndarray, iou_thresholds=(0.5, 0.75)) -> dict[str, float]:
    """Accuracy, mean box IoU and the share of images whose IoU reaches each threshold.

    Boxes are the localizer's encoding: (cx, cy, sqrt w, sqrt h), normalised, shape (N, 4).
    ``class_probs`` is (N, C); ``labels`` is (N,) class indices.
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("no examples to evaluate")
    to_xyxy = lambda enc: convert_boxes(decode_sqrt_cxcywh(enc), "cxcywh", "xyxy")  # noqa: E731
    ious = elementwise_iou_xyxy(to_xyxy(true_boxes_sqrt), to_xyxy(pred_boxes_sqrt))
    out = {
        "num_examples": int(len(labels)),
        "accuracy": float(np.mean(np.argmax(class_probs, axis=-1) == labels)),
        "mean_iou": float(np.mean(ious)),
    }
    for t in iou_thresholds:
        out[f"share_iou_ge_{t:g}"] = float(np.mean(ious >= t))
    return out
