"""Model outputs -> COCO results, and the ground truth they are scored against."""

from __future__ import annotations

import numpy as np

from visionflow.boxes import convert_boxes, decode_sqrt_cxcywh, denormalize_boxes
from visionflow.nms import batched_non_max_suppression


def localizer_detections(image_ids: np.ndarray, class_probs: np.ndarray, boxes_sqrt: np.ndarray,
                         sizes: dict[int, tuple[int, int]], category_ids: list[int]) -> list[dict]:
    """One COCO result per image: the most likely class, its probability as score, and the box.

    ``boxes_sqrt`` is the localizer's (cx, cy, sqrt w, sqrt h), normalised; ``sizes`` maps
    image id -> (width, height) of the original image, so boxes come out in its pixels.
    """
    labels = np.argmax(class_probs, axis=1)
    scores = class_probs[np.arange(len(labels)), labels]
    xywh_norm = convert_boxes(decode_sqrt_cxcywh(boxes_sqrt), "cxcywh", "xywh")
    out = []
    for image_id, label, score, box in zip(image_ids.tolist(), labels, scores, xywh_norm):
        width, height = sizes[image_id]
        out.append({"image_id": int(image_id), "category_id": int(category_ids[label]),
                    "bbox": [round(float(v), 3) for v in denormalize_boxes(box, width, height)],
                    "score": float(score)})
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
