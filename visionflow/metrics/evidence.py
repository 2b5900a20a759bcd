"""What a model did on each test image: enough to score it on any resample of the images.

The promotion gate compares two models on the same test split by resampling its images
(a paired bootstrap, :mod:`visionflow.metrics.bootstrap`). A resample is a row of weights,
how many times each image is drawn, and an evidence object scores many rows at once:

- :class:`ImageMeans`: a headline that is a mean over images (the localizer's IoU, the
  classifier's accuracy);
- :class:`DetectionAP`: COCO's AP at IoU 0.5 (the detector's ``map50``), whose matches are
  made once per image, so a resample only reweights them. At unit weights it equals
  :func:`visionflow.metrics.coco.evaluate_coco`'s AP50.

Both are built from the COCO results and ground truth that ``evaluate`` writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from visionflow.boxes import convert_boxes, elementwise_iou_xyxy
from visionflow.metrics.coco import Params, interpolated_precision, load_detections, load_ground_truth, match

AP50 = Params(iou_thresholds=np.array([0.5]), area_ranges=((0.0, 1e10),), area_labels=("all",))


@dataclass(frozen=True)
class ImageMeans:
    """A per-image value (IoU, correct or not) and each image's class."""

    values: np.ndarray  # (N,)
    classes: np.ndarray  # (N,) category id
    names: dict[int, str]

    @property
    def num_images(self) -> int:
        return len(self.values)

    def score(self, weights: np.ndarray) -> np.ndarray:
        """(B, N) image weights -> (B,) weighted means."""
        return weights @ self.values / np.maximum(weights.sum(axis=1), 1e-12)

    def per_class(self) -> dict[str, float]:
        return {self.names[c]: float(self.values[self.classes == c].mean()) for c in np.unique(self.classes)}


@dataclass(frozen=True)
class DetectionAP:
    """Detections matched at IoU 0.5 once; per class, their order, image and outcome."""

    ranked: list[tuple[np.ndarray, np.ndarray]]  # per class: (image position, true positive) by score
    positives: np.ndarray  # (N, K) non-crowd ground truth per image and class
    names: list[str]

    @property
    def num_images(self) -> int:
        return len(self.positives)

    def score(self, weights: np.ndarray) -> np.ndarray:
        """(B, N) image weights -> (B,) mean over classes of COCO-interpolated AP50."""
        per_class = np.stack([self._class_ap(weights, k) for k in range(len(self.names))], axis=1)
        defined = per_class >= 0
        return np.where(defined, per_class, 0).sum(1) / np.maximum(defined.sum(1), 1)

    def per_class(self) -> dict[str, float]:
        ones = np.ones((1, len(self.positives)))
        return {name: float(self._class_ap(ones, k)[0]) for k, name in enumerate(self.names)}

    def _class_ap(self, weights: np.ndarray, k: int) -> np.ndarray:
        """(B,) AP of class ``k`` under each row of weights; -1 where the row has none of it."""
        images, hit = self.ranked[k]
        npos = weights @ self.positives[:, k]
        if not len(images):
            return np.where(npos > 0, 0.0, -1.0)
        w = weights[:, images]
        tp, fp = np.cumsum(w * hit, axis=1), np.cumsum(w * ~hit, axis=1)
        recall, precision = tp / np.maximum(npos, 1e-12)[:, None], tp / (tp + fp + np.spacing(1))
        ap = np.array([interpolated_precision(r, p, AP50.recall_thresholds).mean()
                       for r, p in zip(recall, precision)])
        return np.where(npos > 0, ap, -1.0)


def detection_ap(truth: dict, detections: list[dict]) -> DetectionAP:
    gt = load_ground_truth(truth)
    result = match(gt, load_detections(detections, gt), AP50)
    keep = ~result.ignored[0, 0] & (result.det_rank < AP50.max_dets[-1])
    hit = result.matched_gt_id[0, 0] != 0
    order = np.lexsort((result.det_rank, result.det_img_pos, -result.det_score, result.det_cat_pos))
    order = order[keep[order]]
    ranked = [(result.det_img_pos[order][sel], hit[order][sel])
              for sel in (result.det_cat_pos[order] == k for k in range(len(gt.category_ids)))]
    return DetectionAP(ranked, _positives(gt), [gt.category_names[c] for c in gt.category_ids])


def _positives(gt) -> np.ndarray:
    counts = np.zeros((len(gt.image_ids), len(gt.category_ids)))
    keep = ~gt.iscrowd
    np.add.at(counts, (np.searchsorted(gt.image_ids, gt.img[keep]), np.searchsorted(gt.category_ids, gt.cat[keep])), 1)
    return counts


def _best_per_image(detections: list[dict]) -> dict[int, dict]:
    best: dict[int, dict] = {}
    for d in detections:
        if d["image_id"] not in best or d["score"] > best[d["image_id"]]["score"]:
            best[d["image_id"]] = d
    return best


def _by_image(truth: dict) -> list[tuple[int, dict]]:
    """Each image with an annotation, and its first one: the object the localizer and the classifier learn."""
    first: dict[int, dict] = {}
    for a in truth["annotations"]:
        first.setdefault(a["image_id"], a)
    return [(img["id"], first[img["id"]]) for img in truth["images"] if img["id"] in first]


def _names(truth: dict) -> dict[int, str]:
    return {c["id"]: c["name"] for c in truth["categories"]}


def top_box_iou(truth: dict, detections: list[dict]) -> ImageMeans:
    """Per image: IoU of its best detection with its object (0 without a detection)."""
    best, rows = _best_per_image(detections), _by_image(truth)
    xyxy = lambda b: convert_boxes(np.asarray([b], float), "xywh", "xyxy")  # noqa: E731
    ious = [float(elementwise_iou_xyxy(xyxy(best[i]["bbox"]), xyxy(a["bbox"]))[0]) if i in best else 0.0
            for i, a in rows]
    return ImageMeans(np.array(ious), np.array([a["category_id"] for _, a in rows]), _names(truth))


def top_class_correct(truth: dict, detections: list[dict]) -> ImageMeans:
    """Per image: 1 when its best detection names its class."""
    best, rows = _best_per_image(detections), _by_image(truth)
    correct = [float(i in best and best[i]["category_id"] == a["category_id"]) for i, a in rows]
    return ImageMeans(np.array(correct), np.array([a["category_id"] for _, a in rows]), _names(truth))
