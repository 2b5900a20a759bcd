"""COCO AP of detections against the padded ground truth the detector trains on, in the model-input frame.

What the robustness stage needs: a score from the saved model's outputs and the targets
alone. Normalised boxes are scaled to a nominal side: AP over all areas does not depend
on it (the ``evaluate`` stage scores in each image's own pixels, where area ranges mean
what COCO says).
"""

from __future__ import annotations

import numpy as np

from visionflow.boxes import convert_boxes, denormalize_boxes
from visionflow.data.resize import FULL_WINDOW
from visionflow.metrics.coco import evaluate_coco
from visionflow.metrics.detections import coco_results

SIDE = 1000.0


def input_frame_ap(truth: np.ndarray, detections: list, num_classes: int) -> dict[str, float]:
    """``truth`` (N, M, 5) ``[x1, y1, x2, y2, label]`` normalised, label -1 for padding; one ``Detections`` per image."""
    ids = np.arange(1, len(truth) + 1)
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    images = [{"id": int(i), "width": SIDE, "height": SIDE} for i in ids]
    annotations = []
    for image_id, rows in zip(ids, truth):
        rows = rows[rows[:, 4] >= 0]
        for box, label in zip(convert_boxes(denormalize_boxes(rows[:, :4], SIDE, SIDE), "xyxy", "xywh"), rows[:, 4]):
            annotations.append({"id": len(annotations) + 1, "image_id": int(image_id), "category_id": int(label) + 1,
                                "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": 0})
    results = coco_results(ids, detections, np.tile(FULL_WINDOW, (len(truth), 1)),
                           {int(i): (SIDE, SIDE) for i in ids}, [c["id"] for c in categories])
    return evaluate_coco({"images": images, "annotations": annotations, "categories": categories}, results).stats
