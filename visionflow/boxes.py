"""Box formats, conversions and pairwise IoU, in plain numpy.

Formats (the last axis holds 4 numbers):

- ``xyxy``:   x_min, y_min, x_max, y_max
- ``xywh``:   x_min, y_min, width, height (COCO)
- ``cxcywh``: centre x, centre y, width, height

Boxes are in pixels unless a name says ``normalized`` (divided by the image width
and height, so 0..1). Conversions keep the input's leading shape.
"""

from __future__ import annotations

import numpy as np

FORMATS = ("xyxy", "xywh", "cxcywh")


def _as_boxes(boxes: np.ndarray | list) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.shape[-1:] != (4,):
        raise ValueError(f"boxes must have a last axis of 4, got shape {arr.shape}")
    return arr


def convert_boxes(boxes: np.ndarray, source: str, target: str) -> np.ndarray:
    """Convert boxes between ``xyxy``, ``xywh`` and ``cxcywh`` (same units in and out)."""
    for fmt in (source, target):
        if fmt not in FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; valid: {', '.join(FORMATS)}")
    b = _as_boxes(boxes)
    a0, a1, a2, a3 = np.moveaxis(b, -1, 0)
    if source == "xyxy":
        x1, y1, x2, y2 = a0, a1, a2, a3
    elif source == "xywh":
        x1, y1, x2, y2 = a0, a1, a0 + a2, a1 + a3
    else:
        x1, y1, x2, y2 = a0 - a2 / 2, a1 - a3 / 2, a0 + a2 / 2, a1 + a3 / 2
    if target == "xyxy":
        out = (x1, y1, x2, y2)
    elif target == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return np.stack(out, axis=-1)


def normalize_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel boxes (any of the formats) -> normalised 0..1 boxes of the same format."""
    return _as_boxes(boxes) / np.array([width, height, width, height], dtype=np.float64)


def denormalize_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Normalised boxes (any of the formats) -> pixel boxes of the same format."""
    return _as_boxes(boxes) * np.array([width, height, width, height], dtype=np.float64)


def box_area_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = _as_boxes(boxes)
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def pairwise_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), xyxy -> (N, M).

    A pair whose union is empty (two zero-area boxes) has IoU 0.
    """
    a, b = _as_boxes(a).reshape(-1, 4), _as_boxes(b).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = box_area_xyxy(a)[:, None] + box_area_xyxy(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def elementwise_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` with ``b[i]`` for boxes of the same shape (..., 4), xyxy -> (...)."""
    a, b = _as_boxes(a), _as_boxes(b)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = box_area_xyxy(a) + box_area_xyxy(b) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
