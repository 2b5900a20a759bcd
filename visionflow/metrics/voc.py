"""Pascal VOC average precision: the 11-point (VOC2007) and all-point (VOC2010+) variants.

As the VOC devkit's ``voc_eval``: per class, detections in descending score order
(stable) take the unmatched ground-truth box of highest IoU when that IoU is above the
threshold; a match to a ``difficult`` box counts as neither true nor false positive,
and difficult boxes are not in the recall denominator. Inputs are COCO ground truth
(``difficult`` or ``iscrowd`` marks a box as difficult) and COCO results, so boxes are
continuous xywh pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionflow.boxes import convert_boxes, pairwise_iou_xyxy
from visionflow.metrics.coco import image_coverage_warning, load_detections, load_ground_truth


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """AP from a PR curve (detections in descending score order).

    ``use_07_metric``: mean of the maximum precision at recall >= 0, 0.1, ..., 1
    (11 points). Otherwise the area under the precision envelope at every recall step.
    """
    recall, precision = np.asarray(recall, float), np.asarray(precision, float)
    if use_07_metric:
        points = [precision[recall >= t].max() if np.any(recall >= t) else 0.0 for t in np.linspace(0, 1, 11)]
        return float(np.mean(points))
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def check_iou_threshold(iou_threshold: float) -> float:
    """``iou_threshold`` itself if it is in (0, 1), else ValueError: at 1 or above nothing could match."""
    if not 0 < iou_threshold < 1:  # also rejects NaN
        raise ValueError(f"IoU threshold must be between 0 and 1 (exclusive), got {iou_threshold}")
    return iou_threshold


@dataclass(frozen=True)
class VocEvaluation:
    per_category: dict[str, float]  # -1 for a class without non-difficult ground truth
    mAP: float
    warnings: tuple[str, ...] = ()  # about the inputs (see image_coverage_warning); the numbers stand

    def as_dict(self) -> dict:
        return {"mAP": self.mAP, "per_category": self.per_category}


def evaluate_voc(ground_truth, detections, iou_threshold: float = 0.5, use_07_metric: bool = False) -> VocEvaluation:
    check_iou_threshold(iou_threshold)
    gt = load_ground_truth(ground_truth)
    difficult = gt.difficult | gt.iscrowd
    dt = load_detections(detections, gt)
    gt_xyxy = convert_boxes(gt.bbox, "xywh", "xyxy")
    dt_xyxy = convert_boxes(dt.bbox, "xywh", "xyxy")
    per_category = {}
    for cat in gt.category_ids:
        name = gt.category_names[int(cat)]
        is_cat = gt.cat == cat
        npos = int(np.sum(is_cat & ~difficult))
        if npos == 0:
            per_category[name] = -1.0
            continue
        dets = np.flatnonzero(dt.cat == cat)
        dets = dets[np.argsort(-dt.score[dets], kind="stable")]
        tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
        used = np.zeros(len(gt.img), bool)
        for i, d in enumerate(dets):
            cands = np.flatnonzero(is_cat & (gt.img == dt.img[d]))
            if len(cands):
                ious = pairwise_iou_xyxy(dt_xyxy[d][None], gt_xyxy[cands])[0]
                j = int(np.argmax(ious))
                if ious[j] > iou_threshold:
                    g = cands[j]
                    if difficult[g]:
                        continue
                    if not used[g]:
                        tp[i], used[g] = 1, True
                    else:
                        fp[i] = 1
                    continue
            fp[i] = 1
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        per_category[name] = voc_ap(tp / npos, precision, use_07_metric)
    defined = [v for v in per_category.values() if v >= 0]
    warning = image_coverage_warning(gt, dt, counted=~difficult)
    return VocEvaluation(per_category, float(np.mean(defined)) if defined else -1.0, (warning,) if warning else ())
