"""COCO AP of detections against the padded ground truth the detector trains on, in the model-input frame.

What the robustness stage needs: a score from the saved model's outputs and the targets
alone. Normalised boxes are scaled to a nominal side: AP over all areas does not depend
on it (the ``evaluate`` stage scores in each image's own pixels, where area ranges mean
what COCO says).
"""

from __future__ import annotations

import numpy as np

from visionflow.metrics.coco import evaluate_coco

SIDE = 1000.0


def input_frame_ap(truth: np.ndarray, detections: list, num_classes: int) -> dict[str, float]:
    """``truth`` (N, M, 5) ``[x1, y1, x2, y2, label]`` normalised, label -1 for padding; one ``Detections`` per image."""
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    images = [{"id": i + 1, "width": SIDE, "height": SIDE} for i in range(len(truth))]
    annotations = [{"id": k + 1, "image_id": i + 1, "category_id": int(label) + 1, "bbox": _xywh(box),
                    "area": float(np.prod(_xywh(box)[2:])), "iscrowd": 0}
                   for k, (i, box, label) in enumerate((i, row[:4], row[4]) for i, rows in enumerate(truth)
                                                        for row in rows if row[4] >= 0)]
    results = [{"image_id": i + 1, "category_id": int(c) + 1, "bbox": _xywh(box), "score": float(s)}
               for i, d in enumerate(detections) for box, c, s in zip(d.boxes_xyxy_norm, d.classes, d.scores)]
    gt = {"images": images, "annotations": annotations, "categories": categories}
    return evaluate_coco(gt, results).stats


def _xywh(box_norm) -> list[float]:
    x1, y1, x2, y2 = (float(v) * SIDE for v in box_norm)
    return [x1, y1, x2 - x1, y2 - y1]
