"""COCO box evaluation (AP@[.50:.05:.95] and the 11 other stats), vectorised numpy.

Behaviour follows pycocotools ``COCOeval(iouType="bbox")`` exactly, including its
quirks: boxes are COCO xywh in pixels; ground-truth ``area`` (not the box's) selects
the area range; crowd ground truth is ignored and may absorb any number of detections
(IoU against a crowd box is intersection over the *detection's* area); detections
are sorted by score with a stable sort and cut to ``maxDets[-1]`` per image and
category; a category without ground truth has AP -1.

The three phases are those of ``cocoeval.py``: :func:`match` does ``evaluate``
(greedy matching, here for every image, category, area range and IoU threshold at
once, one detection rank at a time), :func:`accumulate` builds the precision/recall
tables, and :func:`summarize` gives the 12 stats.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


class CocoFormatError(ValueError):
    """Bad ground truth or detections: the message names the file and the record."""


@dataclass(frozen=True)
class Params:
    """The conventions of pycocotools' ``Params(iouType="bbox")``."""

    iou_thresholds: np.ndarray = field(
        default_factory=lambda: np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True))
    recall_thresholds: np.ndarray = field(
        default_factory=lambda: np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True))
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_ranges: tuple[tuple[float, float], ...] = ((0**2, 1e5**2), (0**2, 32**2), (32**2, 96**2), (96**2, 1e5**2))
    area_labels: tuple[str, ...] = ("all", "small", "medium", "large")


# --------------------------------------------------------------------------- loading

@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth annotations as flat arrays (file order), plus image and category ids."""

    image_ids: np.ndarray  # sorted, every image of the file
    category_ids: np.ndarray  # sorted
    category_names: dict[int, str]
    img: np.ndarray  # (N,) image id of each annotation
    cat: np.ndarray
    bbox: np.ndarray  # (N, 4) xywh pixels
    area: np.ndarray
    iscrowd: np.ndarray  # bool
    ann_id: np.ndarray
    difficult: np.ndarray  # bool: the VOC ``difficult`` flag (COCO ignores it)


@dataclass(frozen=True)
class Detections:
    img: np.ndarray
    cat: np.ndarray
    bbox: np.ndarray  # (M, 4) xywh pixels
    score: np.ndarray


def _load_json(source, what: str):
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            return json.loads(path.read_text()), str(path)
        except FileNotFoundError:
            raise CocoFormatError(f"{path}: no such {what} file") from None
        except json.JSONDecodeError as e:
            raise CocoFormatError(f"{path}: not valid JSON ({e})") from None
    return source, f"<{what}>"


def _check_bbox(bbox, where: str) -> list[float]:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise CocoFormatError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise CocoFormatError(f"{where}: bbox must hold 4 numbers, got {bbox!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise CocoFormatError(f"{where}: bbox has a non-finite value: {bbox!r}")
    if values[2] < 0 or values[3] < 0:
        raise CocoFormatError(f"{where}: bbox has a negative width or height: {bbox!r}")
    return values


def load_ground_truth(source) -> GroundTruth:
    """A COCO ground-truth dict or file (``images``, ``annotations``, ``categories``)."""
    data, name = _load_json(source, "ground-truth")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise CocoFormatError(f"{name}: not COCO ground truth (needs lists 'images', 'annotations', 'categories')")
    try:
        image_ids = np.array(sorted({int(img["id"]) for img in data["images"]}), dtype=np.int64)
        names = {int(c["id"]): str(c.get("name", c["id"])) for c in data["categories"]}
    except (KeyError, TypeError, ValueError) as e:
        raise CocoFormatError(f"{name}: an image or category has no valid id ({e!r})") from None
    known_images = set(image_ids.tolist())
    rows = []
    for i, ann in enumerate(data["annotations"]):
        where = f"{name}: annotations[{i}] (id {ann.get('id')!r})" if isinstance(ann, dict) else f"{name}: annotations[{i}]"
        if not isinstance(ann, dict) or not {"image_id", "category_id", "bbox"} <= set(ann):
            raise CocoFormatError(f"{where}: needs image_id, category_id and bbox")
        if ann["image_id"] not in known_images:
            raise CocoFormatError(f"{where}: unknown image_id {ann['image_id']!r}")
        if ann["category_id"] not in names:
            raise CocoFormatError(f"{where}: unknown category_id {ann['category_id']!r}")
        x, y, w, h = _check_bbox(ann["bbox"], where)
        area = float(ann.get("area", w * h))
        rows.append((ann["image_id"], ann["category_id"], x, y, w, h, area, bool(ann.get("iscrowd", 0)),
                     int(ann.get("id", i + 1)), bool(ann.get("difficult", 0))))
    cols = list(zip(*rows)) if rows else [[]] * 10
    return GroundTruth(
        image_ids=image_ids, category_ids=np.array(sorted(names), dtype=np.int64), category_names=names,
        img=np.array(cols[0], dtype=np.int64), cat=np.array(cols[1], dtype=np.int64),
        bbox=np.array(list(zip(*cols[2:6])), dtype=np.float64).reshape(-1, 4),
        area=np.array(cols[6], dtype=np.float64), iscrowd=np.array(cols[7], dtype=bool),
        ann_id=np.array(cols[8], dtype=np.int64), difficult=np.array(cols[9], dtype=bool))


def load_detections(source, gt: GroundTruth) -> Detections:
    """Detections in the COCO results format: ``image_id``, ``category_id``, ``bbox``, ``score``.

    Parsed column-wise in one pass; only when a column is malformed does a record-by-record
    pass run, to name the first bad record.
    """
    data, name = _load_json(source, "detections")
    if not isinstance(data, list):
        raise CocoFormatError(f"{name}: detections must be a list of results")
    try:
        img = np.array([d["image_id"] for d in data], dtype=np.int64)
        cat = np.array([d["category_id"] for d in data], dtype=np.int64)
        boxes = np.array([d["bbox"] for d in data], dtype=np.float64).reshape(len(data), 4)
        scores = np.array([d["score"] for d in data], dtype=np.float64)
    except (KeyError, TypeError, ValueError, IndexError):
        _raise_first_bad_detection(data, name, gt)
        raise  # unreachable: the record-by-record pass always finds the culprit
    bad = (~np.isin(img, gt.image_ids) | ~np.isin(cat, gt.category_ids) | ~np.isfinite(boxes).all(1)
           | (boxes[:, 2] < 0) | (boxes[:, 3] < 0) | np.isnan(scores))
    if bad.any():
        _raise_first_bad_detection(data, name, gt)
    return Detections(img, cat, boxes, scores)


def _raise_first_bad_detection(data: list, name: str, gt: GroundTruth) -> None:
    images, cats = set(gt.image_ids.tolist()), set(gt.category_names)
    for i, det in enumerate(data):
        where = f"{name}: detection [{i}]"
        if not isinstance(det, dict) or not {"image_id", "category_id", "bbox", "score"} <= set(det):
            raise CocoFormatError(f"{where}: needs image_id, category_id, bbox and score")
        if det["image_id"] not in images:
            raise CocoFormatError(f"{where}: image_id {det['image_id']!r} is not in the ground truth")
        if det["category_id"] not in cats:
            raise CocoFormatError(f"{where}: category_id {det['category_id']!r} is not in the ground truth")
        _check_bbox(det["bbox"], where)
        try:
            score = float(det["score"])
        except (TypeError, ValueError):
            raise CocoFormatError(f"{where}: score must be a number, got {det['score']!r}") from None
        if math.isnan(score):
            raise CocoFormatError(f"{where}: score is NaN")


# --------------------------------------------------------------------------- IoU

def coco_iou_xywh(dt: np.ndarray, gt: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU of detections (..., 4) with ground truth (..., 4), xywh pixels, broadcasting.

    As pycocotools' ``maskUtils.iou`` on boxes: against a crowd box the denominator is
    the detection's own area. Written in the same order of operations, so results are
    bit-identical and threshold comparisons agree.
    """
    iw = np.minimum(dt[..., 0] + dt[..., 2], gt[..., 0] + gt[..., 2]) - np.maximum(dt[..., 0], gt[..., 0])
    ih = np.minimum(dt[..., 1] + dt[..., 3], gt[..., 1] + gt[..., 3]) - np.maximum(dt[..., 1], gt[..., 1])
    inter = iw * ih
    da = dt[..., 2] * dt[..., 3]
    ga = gt[..., 2] * gt[..., 3]
    union = np.where(gt_crowd, da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((iw > 0) & (ih > 0), iou, 0.0)


# --------------------------------------------------------------------------- evaluate

@dataclass
class MatchResult:
    """Per detection (kept ones, in group order) and per area range and IoU threshold."""

    det_index: np.ndarray  # (D,) index into the Detections arrays
    det_rank: np.ndarray  # (D,) rank by score within its image and category
    det_cat_pos: np.ndarray  # (D,) position of its category in Params order
    det_img_pos: np.ndarray  # (D,) position of its image
    det_score: np.ndarray
    matched_gt_id: np.ndarray  # (A, T, D) id of the matched ground truth, 0 if none
    ignored: np.ndarray  # (A, T, D) bool
    num_positives: np.ndarray  # (A, K) non-ignored ground truth per area range and category


def _group_keys(cat_pos: np.ndarray, img_pos: np.ndarray, num_images: int) -> np.ndarray:
    return cat_pos * num_images + img_pos


def match(gt: GroundTruth, dt: Detections, params: Params = Params()) -> MatchResult:
    """Greedy matching of detections to ground truth, as ``COCOeval.evaluate``."""
    num_images = len(gt.image_ids)
    img_pos_gt = np.searchsorted(gt.image_ids, gt.img)
    cat_pos_gt = np.searchsorted(gt.category_ids, gt.cat)
    img_pos_dt = np.searchsorted(gt.image_ids, dt.img)
    cat_pos_dt = np.searchsorted(gt.category_ids, dt.cat)
    gt_key = _group_keys(cat_pos_gt, img_pos_gt, num_images)
    dt_key = _group_keys(cat_pos_dt, img_pos_dt, num_images)

    # Detections: by group, then score descending (stable: file order breaks ties), at most maxDets[-1].
    order = np.lexsort((np.arange(len(dt_key)), -dt.score, dt_key))
    keys_sorted = dt_key[order]
    starts = np.searchsorted(keys_sorted, keys_sorted, side="left")
    rank = np.arange(len(order)) - starts
    keep = rank < params.max_dets[-1]
    order, rank, keys_sorted = order[keep], rank[keep], keys_sorted[keep]

    # Ground truth: one padded row per group, in file order.
    gt_order = np.argsort(gt_key, kind="stable")
    gt_keys_sorted = gt_key[gt_order]
    groups, gt_start, gt_count = np.unique(gt_keys_sorted, return_index=True, return_counts=True)
    width = int(gt_count.max()) if len(gt_count) else 0
    slot = np.arange(len(gt_order)) - np.repeat(gt_start, gt_count)
    row_of_gt = np.repeat(np.arange(len(groups)), gt_count)
    table = np.full((len(groups) + 1, max(width, 1)), -1, dtype=np.int64)  # last row: groups with no GT
    table[row_of_gt, slot] = gt_order

    A, T = len(params.area_ranges), len(params.iou_thresholds)
    lo = np.array([r[0] for r in params.area_ranges])[:, None]
    hi = np.array([r[1] for r in params.area_ranges])[:, None]
    gt_ignored = gt.iscrowd[None, :] | (gt.area[None, :] < lo) | (gt.area[None, :] > hi)  # (A, N)

    det_row = np.searchsorted(groups, keys_sorted)
    has_gt = (det_row < len(groups)) & (groups[np.minimum(det_row, len(groups) - 1)] == keys_sorted) \
        if len(groups) else np.zeros(len(keys_sorted), bool)
    det_row = np.where(has_gt, det_row, len(groups))

    D = len(order)
    matched = np.zeros((A, T, D), dtype=np.int64)
    ignored = np.zeros((A, T, D), dtype=bool)
    taken = np.zeros((A, T, len(groups) + 1, max(width, 1)), dtype=bool)
    thresholds = np.minimum(params.iou_thresholds, 1 - 1e-10)[None, :, None, None]
    for r in range(int(rank.max()) + 1 if D else 0):
        at = np.flatnonzero((rank == r) & has_gt)
        if not len(at):
            continue
        rows = det_row[at]
        gidx = table[rows]  # (n, W) ground-truth indices, -1 = padding
        valid = gidx >= 0
        g = np.where(valid, gidx, 0)
        crowd = gt.iscrowd[g] & valid
        iou = coco_iou_xywh(dt.bbox[order[at]][:, None, :], gt.bbox[g], crowd)  # (n, W)
        ig = gt_ignored[:, g] & valid  # (A, n, W)
        free = ~(taken[:, :, rows] & ~crowd)  # (A, T, n, W)
        ok = free & valid & (iou >= thresholds)
        cand_main = ok & ~ig[:, None]
        use_main = cand_main.any(-1, keepdims=True)
        cand = np.where(use_main, cand_main, ok & ig[:, None])
        best = np.where(cand, iou, -np.inf)
        is_max = cand & (best == best.max(-1, keepdims=True))
        m = is_max.shape[-1] - 1 - np.argmax(is_max[..., ::-1], axis=-1)  # last of ties, as pycocotools
        found = cand.any(-1)  # (A, T, n)
        a_i, t_i, n_i = np.nonzero(found)
        m_i = m[a_i, t_i, n_i]
        taken[a_i, t_i, rows[n_i], m_i] = True
        matched[a_i, t_i, at[n_i]] = gt.ann_id[gidx[n_i, m_i]]
        ignored[a_i, t_i, at[n_i]] = ig[a_i, n_i, m_i]

    det_area = dt.bbox[order, 2] * dt.bbox[order, 3]
    out_of_range = (det_area[None, :] < lo) | (det_area[None, :] > hi)  # (A, D)
    ignored |= (matched == 0) & out_of_range[:, None, :]

    K = len(gt.category_ids)
    num_pos = np.zeros((A, K), dtype=np.int64)
    for a in range(A):
        num_pos[a] = np.bincount(cat_pos_gt[~gt_ignored[a]], minlength=K)
    return MatchResult(order, rank, cat_pos_dt[order], img_pos_dt[order], dt.score[order], matched, ignored,
                       num_pos)


# --------------------------------------------------------------------------- accumulate

@dataclass(frozen=True)
class Accumulated:
    precision: np.ndarray  # (T, R, K, A, M), -1 where undefined
    recall: np.ndarray  # (T, K, A, M)


def interpolated_precision(recall: np.ndarray, precision: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Precision at each recall threshold, as COCO interpolates it: the highest precision at any
    recall at least as high; 0 past the last recall reached. ``recall`` and ``precision`` (D,)
    follow the ranked detections; D must be at least 1."""
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, thresholds, side="left")
    return np.where(idx < len(recall), envelope[np.minimum(idx, len(recall) - 1)], 0)


def accumulate(result: MatchResult, params: Params = Params()) -> Accumulated:
    """Precision at each recall threshold and final recall, as ``COCOeval.accumulate``."""
    T, R = len(params.iou_thresholds), len(params.recall_thresholds)
    K, A, M = result.num_positives.shape[1], len(params.area_ranges), len(params.max_dets)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    # Within a category: score descending; ties by image, then rank (pycocotools' concatenation order).
    order = np.lexsort((result.det_rank, result.det_img_pos, -result.det_score, result.det_cat_pos))
    cats = result.det_cat_pos[order]
    bounds = np.searchsorted(cats, np.arange(K + 1))
    for k in range(K):
        sel = order[bounds[k]:bounds[k + 1]]
        for m, max_det in enumerate(params.max_dets):
            s = sel[result.det_rank[sel] < max_det]
            for a in range(A):
                npig = result.num_positives[a, k]
                if npig == 0:
                    continue
                dtm = result.matched_gt_id[a][:, s] != 0
                dtig = result.ignored[a][:, s]
                tp = np.cumsum(dtm & ~dtig, axis=1).astype(float)
                fp = np.cumsum(~dtm & ~dtig, axis=1).astype(float)
                nd = tp.shape[1]
                recall[:, k, a, m] = tp[:, -1] / npig if nd else 0
                if not nd:
                    precision[:, :, k, a, m] = 0
                    continue
                rc = tp / npig
                pr = tp / (fp + tp + np.spacing(1))
                for t in range(T):
                    precision[t, :, k, a, m] = interpolated_precision(rc[t], pr[t], params.recall_thresholds)
    return Accumulated(precision, recall)


# --------------------------------------------------------------------------- summarize

def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


def summarize(acc: Accumulated, params: Params = Params()) -> dict[str, float]:
    """The 12 stats of ``COCOeval.summarize``, by name."""

    def stat(ap: bool, iou: float | None = None, area: str = "all", max_dets: int = 100) -> float:
        a = params.area_labels.index(area)
        m = params.max_dets.index(max_dets)
        s = acc.precision if ap else acc.recall
        if iou is not None:
            s = s[np.where(iou == params.iou_thresholds)[0]]
        return _mean_defined(s[..., a, m])

    values = [
        stat(True), stat(True, iou=0.5), stat(True, iou=0.75),
        stat(True, area="small"), stat(True, area="medium"), stat(True, area="large"),
        stat(False, max_dets=params.max_dets[0]), stat(False, max_dets=params.max_dets[1]), stat(False),
        stat(False, area="small"), stat(False, area="medium"), stat(False, area="large"),
    ]
    return dict(zip(STAT_KEYS, values))


def per_category_ap(acc: Accumulated, gt: GroundTruth) -> dict[str, float]:
    """AP@[.50:.95] (area all, 100 detections) of each category, by name; -1 without ground truth."""
    return {gt.category_names[int(c)]: _mean_defined(acc.precision[:, :, k, 0, -1])
            for k, c in enumerate(gt.category_ids)}


def image_coverage_warning(gt: GroundTruth, dt: Detections, counted: np.ndarray | None = None) -> str | None:
    """A one-line warning when some images with ground truth have no detection at all, else None.

    Their boxes all count as misses, as in pycocotools. That is right for a model that
    found nothing there, but it silently lowers AP when the detections are of one split
    and the ground truth is of all of them. ``counted`` (N,) marks the annotations that
    can be missed; by default the non-crowd ones.
    """
    counted = ~gt.iscrowd if counted is None else counted
    with_gt = np.unique(gt.img[counted])
    missing = int(np.count_nonzero(~np.isin(with_gt, dt.img)))
    if not missing:
        return None
    return (f"only {len(with_gt) - missing} of the {len(with_gt)} images with ground truth have detections, and "
            "images without detections count as misses (if the detections are of one split, pass the ground "
            "truth of that split only)")


@dataclass(frozen=True)
class CocoEvaluation:
    stats: dict[str, float]
    per_category: dict[str, float]
    accumulated: Accumulated
    warnings: tuple[str, ...] = ()  # about the inputs (see image_coverage_warning); the numbers stand

    def as_dict(self) -> dict:
        return {**self.stats, "per_category": self.per_category}


def evaluate_coco(ground_truth, detections, params: Params = Params()) -> CocoEvaluation:
    """Evaluate COCO-format detections (list or file) against ground truth (dict or file)."""
    gt = load_ground_truth(ground_truth)
    dt = load_detections(detections, gt)
    acc = accumulate(match(gt, dt, params), params)
    warning = image_coverage_warning(gt, dt)
    return CocoEvaluation(summarize(acc, params), per_category_ap(acc, gt), acc, (warning,) if warning else ())


def pr_curves(evaluation: CocoEvaluation, gt_names: list[str], iou: float = 0.5,
              params: Params = Params()) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per category: (recall thresholds, interpolated precision) at one IoU threshold, area all, 100 dets.

    Categories without ground truth (precision -1) are left out.
    """
    t = int(np.flatnonzero(np.isclose(params.iou_thresholds, iou))[0])
    curves = {}
    for k, name in enumerate(gt_names):
        precision = evaluation.accumulated.precision[t, :, k, 0, -1]
        if np.all(precision > -1):
            curves[name] = (params.recall_thresholds.copy(), precision.copy())
    return curves
