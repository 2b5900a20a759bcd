"""The geometry of the synthetic shapes: the five classes, and distractors that belong to none.

Each class varies in what does not change its name: triangles and stars turn freely, a
square a little (more and it reads as a diamond), a diamond is any rhombus from tall
(width 0.5 of its height) to a square on its corner, a star's inner radius varies. A
shape is drawn as a boolean mask without anti-aliasing, so its box is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "diamond", "star")
_ROTATION_DEG = {"circle": 0.0, "square": 20.0, "triangle": 180.0, "diamond": 10.0, "star": 180.0}
_DIAMOND_ASPECT = (0.5, 1.0)  # width over height
_STAR_INNER = (0.38, 0.55)  # inner radius over outer


@dataclass(frozen=True)
class Shape:
    label: int
    side: float  # the extent of the shape's frame, pixels (a square fills 0.8 of it)
    cx: float
    cy: float
    angle: float  # radians
    aspect: float = 1.0  # a diamond's width over height
    inner: float = 0.45  # a star's inner radius over its outer


def random_shape(rng: np.random.Generator, label: int, side: float, cx: float, cy: float) -> Shape:
    name = CLASSES[label]
    angle = np.deg2rad(rng.uniform(-_ROTATION_DEG[name], _ROTATION_DEG[name]))
    return Shape(label, side, cx, cy, float(angle), aspect=float(rng.uniform(*_DIAMOND_ASPECT)),
                 inner=float(rng.uniform(*_STAR_INNER)))


def _outline(shape: Shape) -> np.ndarray | None:
    """The polygon's corners about the origin, before rotation; None for a circle."""
    r = shape.side / 2
    name = CLASSES[shape.label]
    if name == "square":
        return np.array([[-r, -r], [r, -r], [r, r], [-r, r]]) * 0.8
    if name == "triangle":  # equilateral, pointing up before rotation
        a = np.deg2rad([-90, 30, 150])
        return np.stack([np.cos(a), np.sin(a)], 1) * r
    if name == "diamond":
        return np.array([[0, -r], [shape.aspect * r, 0], [0, r], [-shape.aspect * r, 0]])
    if name == "star":
        a = np.deg2rad(-90 + 36 * np.arange(10))
        radius = np.where(np.arange(10) % 2 == 0, r, shape.inner * r)
        return np.stack([np.cos(a) * radius, np.sin(a) * radius], 1)
    return None


def _place(points: np.ndarray, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return [tuple(p) for p in points @ rot.T + [cx, cy]]


def shape_mask(shape: Shape, size: int) -> np.ndarray:
    """Boolean (size, size) mask of one shape."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    points = _outline(shape)
    if points is None:
        r = shape.side / 2
        draw.ellipse([shape.cx - r, shape.cy - r, shape.cx + r, shape.cy + r], fill=255)
    else:
        draw.polygon(_place(points, shape.angle, shape.cx, shape.cy), fill=255)
    return np.asarray(canvas) > 0


def distractor_mask(rng: np.random.Generator, side: float, cx: float, cy: float, size: int) -> np.ndarray:
    """A shape of no class (a ring, a cross, a bar, a crescent or an L), as a mask."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    r, angle = side / 2, rng.uniform(0, np.pi)
    kind = int(rng.integers(5))
    if kind == 0:  # ring
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=255, width=max(1, int(r * rng.uniform(0.15, 0.35))))
    elif kind == 1:  # cross
        t = r * rng.uniform(0.15, 0.3)
        for a in (angle, angle + np.pi / 2):
            draw.polygon(_place(np.array([[-r, -t], [r, -t], [r, t], [-r, t]]), a, cx, cy), fill=255)
    elif kind == 2:  # bar
        t = r * rng.uniform(0.1, 0.3)
        draw.polygon(_place(np.array([[-r, -t], [r, -t], [r, t], [-r, t]]), angle, cx, cy), fill=255)
    elif kind == 3:  # crescent
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        dx = r * rng.uniform(0.3, 0.7)
        draw.ellipse([cx - r + dx, cy - r, cx + r + dx, cy + r], fill=0)
    else:  # L
        t = r * rng.uniform(0.2, 0.4)
        points = np.array([[-r, -r], [-r + t, -r], [-r + t, r - t], [r, r - t], [r, r], [-r, r]])
        draw.polygon(_place(points, angle, cx, cy), fill=255)
    return np.asarray(canvas) > 0


def mask_box_xyxy(mask: np.ndarray) -> np.ndarray:
    """The exact pixel box of a mask, x_max/y_max exclusive."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """The mask's pixels within ``width`` of its edge (4-neighbour erosion)."""
    inner = mask.copy()
    for _ in range(width):
        padded = np.pad(inner, 1)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner
