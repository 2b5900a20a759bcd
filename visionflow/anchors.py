"""Anchor boxes by k-means over training box sizes with a 1 - IoU distance (YOLOv2/v3).

Boxes are compared by width and height only, as if they shared a centre, so a big and
a small box are far apart however close their corners are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def wh_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of centre-aligned boxes: (N, 2) widths/heights with (K, 2) anchors -> (N, K)."""
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = (wh[:, 0] * wh[:, 1])[:, None] + (anchors[:, 0] * anchors[:, 1])[None, :] - inter
    return inter / union


@dataclass(frozen=True)
class Anchors:
    sizes: np.ndarray  # (K, 2) width, height, smallest area first, same units as the input
    mean_best_iou: float  # mean over boxes of the IoU with their best anchor
    iterations: int


def kmeans_anchors(wh: np.ndarray, k: int, seed: int = 0, max_iter: int = 300) -> Anchors:
    """Cluster box sizes ``wh`` (N, 2), all > 0, into ``k`` anchors; centres are cluster medians."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    if len(wh) < k:
        raise ValueError(f"k-means needs at least k={k} boxes, got {len(wh)}")
    if np.any(wh <= 0):
        raise ValueError("box widths and heights must be > 0")
    rng = np.random.default_rng(seed)
    anchors = wh[rng.choice(len(wh), size=k, replace=False)]
    assign = None
    for iteration in range(1, max_iter + 1):
        new_assign = np.argmax(wh_iou(wh, anchors), axis=1)
        if assign is not None and np.array_equal(new_assign, assign):
            break
        assign = new_assign
        for j in range(k):
            if np.any(assign == j):  # an empty cluster keeps its anchor
                anchors[j] = np.median(wh[assign == j], axis=0)
    anchors = anchors[np.argsort(anchors[:, 0] * anchors[:, 1], kind="stable")]
    return Anchors(anchors, float(wh_iou(wh, anchors).max(axis=1).mean()), iteration)


def training_box_sizes(raw, train_ids: list[int], resize: str = "stretch") -> np.ndarray:
    """(N, 2) widths and heights of the training split's boxes (crowd boxes left out), as fractions of the model
    input: of their image's own sides when it is stretched to the input, of its longer side when letterboxed."""
    sizes = {img["id"]: (img["width"], img["height"]) for img in raw.images}
    if resize == "letterbox":
        sizes = {i: (max(w, h), max(w, h)) for i, (w, h) in sizes.items()}
    wh = [(a["bbox"][2] / sizes[i][0], a["bbox"][3] / sizes[i][1])
          for i in train_ids for a in raw.annotations_by_image[i] if "bbox" in a and not a.get("iscrowd")]
    return np.array(wh, np.float64).reshape(-1, 2)


def anchors_for_split(raw, train_ids: list[int], k: int, seed: int, resize: str = "stretch") -> tuple[dict, dict]:
    """The anchors file's content and its metrics; no anchors when there are fewer than ``k`` boxes."""
    wh = training_box_sizes(raw, train_ids, resize)
    if len(wh) < k:
        return {"format": "width height, normalized", "anchors": []}, {"num_anchors": 0, "num_boxes": len(wh)}
    anchors = kmeans_anchors(wh, k, seed=seed)
    return ({"format": "width height, normalized", "anchors": anchors.sizes.round(6).tolist()},
            {"mean_best_iou": anchors.mean_best_iou, "num_anchors": len(anchors.sizes), "num_boxes": len(wh)})
