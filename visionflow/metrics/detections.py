"""Model outputs -> COCO results, and the ground truth they are scored against."""

from __future__ import annotations

import numpy as np

from visionflow.boxes import convert_boxes, denormalize_boxes
from visionflow.data.resize import boxes_from_window
from visionflow.nms import batched_non_max_suppression


def coco_results(image_ids: np.ndarray, detections: list, windows: np.ndarray, sizes: dict[int, tuple[int, int]],
                 category_ids: list[int]) -> list[dict]:
    """A family's per-image :class:`~visionflow.models.family.Detections` -> COCO results.

    Detections are normalised xyxy in the model-input frame; ``windows`` (N, 4) say where
    each image sits in it (undoing a letterbox), and ``sizes`` maps image id -> (width,
    height) of the original image, so boxes come out in its pixels, as ``[x, y, w, h]``.
    """
    out = []
    for image_id, found, window in zip(np.asarray(image_ids).tolist(), detections, windows):
        width, height = sizes[image_id]
        xywh = convert_boxes(denormalize_boxes(boxes_from_window(found.boxes_xyxy_norm, window), width, height),
                             "xyxy", "xywh")
        out += [{"image_id": int(image_id), "category_id": int(category_ids[label]),
                 "bbox": [round(float(v), 3) for v in box], "score": float(score)}
                for box, label, score in zip(xywh, found.classes, found.scores)]
    return out


def suppress(detections: list[dict], iou_threshold: float, score_threshold: float) -> list[dict]:
    """Per-image, per-class non-max suppression over COCO results (boxes xywh pixels)."""
    if not detections:
        return []
    images = np.array([d["image_id"] for d in detections])
    boxes = convert_boxes(np.array([d["bbox"] for d in detections]), "xywh", "xyxy")
    scores = np.array([d["score"] for d in detections])
    classes = np.array([d["category_id"] for d in detections])
    kept = []
    for image in np.unique(images):
        idx = np.flatnonzero(images == image)
        kept.extend(idx[batched_non_max_suppression(boxes[idx], scores[idx], classes[idx], iou_threshold,
                                                    score_threshold)].tolist())
    return [detections[i] for i in sorted(kept)]


def ground_truth_subset(coco: dict, image_ids: list[int]) -> dict:
    """The COCO ground truth restricted to ``image_ids`` (all categories kept)."""
    keep = set(image_ids)
    return {"images": [img for img in coco["images"] if img["id"] in keep],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in keep and "bbox" in a],
            "categories": coco["categories"]}
