"""Deterministic synthetic shapes: the embedded, offline default dataset.

Each image is a random gradient with noise and clutter strokes, with 1..N filled
shapes (circle, square, triangle, diamond, star) of 14-64 px at random, sometimes
low, contrast. An image depends only on ``(seed, index)``, so any one image can be
re-rendered alone, and boxes are the exact extent of the shape's visible pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field, model_validator

from visionflow.boxes import pairwise_iou_xyxy
from visionflow.data.sources import SOURCES, Sample, SourceObject

CLASSES = ("circle", "square", "triangle", "diamond", "star")
_MAX_ROTATION_DEG = 20.0  # keeps a square from turning into a diamond
_MIN_VISIBLE_FRACTION = 0.5
_PLACEMENT_TRIES = 50


class SyntheticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    num_images: int = Field(4000, ge=1)
    image_size: int = Field(128, ge=32, le=2048)
    min_objects: int = Field(1, ge=1)
    max_objects: int = Field(1, ge=1)
    min_object_size: int = Field(14, ge=4)
    max_object_size: int = Field(64, ge=4)
    max_overlap_iou: float = Field(0.3, ge=0, le=1)
    # Contrast is the distance in RGB between a shape's fill and the mean of what it covers.
    min_contrast: float = Field(40.0, ge=1, le=255)
    max_contrast: float = Field(160.0, ge=1, le=255)
    noise_std: tuple[float, float] = (1.0, 3.0)  # range of the background's Gaussian noise
    clutter_strokes: tuple[int, int] = (0, 2)  # range of the number of random lines
    seed: int = 42

    @model_validator(mode="after")
    def _ranges(self) -> "SyntheticOptions":
        if self.min_objects > self.max_objects:
            raise ValueError("min_objects must be <= max_objects")
        if self.min_object_size > self.max_object_size:
            raise ValueError("min_object_size must be <= max_object_size")
        if self.max_object_size > self.image_size:
            raise ValueError("max_object_size must be <= image_size")
        for name in ("contrast", "noise_std", "clutter_strokes"):
            low, high = (self.min_contrast, self.max_contrast) if name == "contrast" else getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name}: the range must run from a low to a high value >= 0, got {low}..{high}")
        return self


@dataclass(frozen=True)
class RenderedImage:
    image: np.ndarray  # (H, W, 3) uint8
    background: np.ndarray  # the same image before any shape was drawn
    labels: list[int]  # index into CLASSES
    boxes_xyxy: np.ndarray  # (N, 4) pixel boxes, x_max/y_max exclusive
    visible_masks: list[np.ndarray]


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


def render_background(rng: np.random.Generator, opts: SyntheticOptions) -> np.ndarray:
    """A linear gradient between two random colours, Gaussian noise, and clutter strokes."""
    size = opts.image_size
    c0, c1 = rng.uniform(0, 255, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    img = c0 + t[..., None] * (c1 - c0)
    img += rng.normal(0, rng.uniform(*opts.noise_std), size=img.shape)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(opts.clutter_strokes[0], opts.clutter_strokes[1] + 1)):
        pts = [tuple(p) for p in rng.uniform(0, size, size=(2, 2))]
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        draw.line(pts, fill=colour, width=int(rng.integers(1, 3)))
    return np.asarray(canvas).copy()


def _polygon(label: int, side: float, cx: float, cy: float, angle: float) -> list[tuple[float, float]] | None:
    r = side / 2
    if label == 1:  # square
        pts = np.array([[-r, -r], [r, -r], [r, r], [-r, r]]) * 0.8
    elif label == 2:  # triangle, pointing up
        a = np.deg2rad([-90, 30, 150])
        pts = np.stack([np.cos(a), np.sin(a)], 1) * r
    elif label == 3:  # diamond: a tall rhombus, not a rotated square
        pts = np.array([[0, -r], [0.6 * r, 0], [0, r], [-0.6 * r, 0]])
    elif label == 4:  # five-pointed star
        a = np.deg2rad(-90 + 36 * np.arange(10))
        radius = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        pts = np.stack([np.cos(a) * radius, np.sin(a) * radius], 1)
    else:
        return None
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = pts @ rot.T + [cx, cy]
    return [tuple(p) for p in pts]


def shape_mask(label: int, side: float, cx: float, cy: float, angle: float, size: int) -> np.ndarray:
    """Boolean (size, size) mask of one shape, drawn without anti-aliasing."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    poly = _polygon(label, side, cx, cy, angle)
    if poly is None:  # circle
        r = side / 2
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    else:
        draw.polygon(poly, fill=255)
    return np.asarray(canvas) > 0


def _mask_box_xyxy(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def _fill_colour(rng: np.random.Generator, under: np.ndarray, opts: SyntheticOptions) -> np.ndarray:
    """A colour at a random contrast to the pixels it covers, equal to none of them."""
    mean = under.reshape(-1, 3).mean(0)
    for _ in range(20):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-9
        contrast = rng.uniform(opts.min_contrast, opts.max_contrast)
        fill = mean + direction * contrast
        if np.any(fill < 0) or np.any(fill > 255):
            fill = mean - direction * contrast
        fill = np.clip(np.round(fill), 0, 255).astype(np.uint8)
        if not np.any(np.all(under.reshape(-1, 3) == fill, axis=1)):
            return fill
    raise RuntimeError("could not pick a fill colour distinct from the background")


def render(index: int, opts: SyntheticOptions) -> RenderedImage:
    """Render image ``index``: a pure function of ``(opts, index)``."""
    background = render_background(_rng(opts.seed, index, 0), opts)
    rng = _rng(opts.seed, index, 1)
    image = background.copy()
    n = int(rng.integers(opts.min_objects, opts.max_objects + 1))
    labels: list[int] = []
    masks: list[np.ndarray] = []
    for _ in range(n):
        placed = _place_one(rng, opts, masks)
        if placed is None:
            continue
        label, mask = placed
        image[mask] = _fill_colour(rng, image[mask], opts)
        labels.append(label)
        masks.append(mask)
    visible = _visible_masks(masks)
    boxes = np.array([_mask_box_xyxy(m) for m in visible]).reshape(-1, 4)
    return RenderedImage(image, background, labels, boxes, visible)


def _visible_masks(masks: list[np.ndarray]) -> list[np.ndarray]:
    visible = []
    for i, m in enumerate(masks):
        covered = np.zeros_like(m)
        for later in masks[i + 1:]:
            covered |= later
        visible.append(m & ~covered)
    return visible


def _place_one(rng: np.random.Generator, opts: SyntheticOptions, masks: list[np.ndarray]):
    size = opts.image_size
    for _ in range(_PLACEMENT_TRIES):
        label = int(rng.integers(len(CLASSES)))
        side = float(rng.uniform(opts.min_object_size, opts.max_object_size))
        angle = np.deg2rad(rng.uniform(-_MAX_ROTATION_DEG, _MAX_ROTATION_DEG))
        half = side / 2
        cx, cy = rng.uniform(half, size - half, size=2)
        mask = shape_mask(label, side, cx, cy, angle, size)
        if mask.sum() < 4:
            continue
        if masks and not _overlap_ok(mask, masks, opts.max_overlap_iou):
            continue
        return label, mask
    return None


def _overlap_ok(mask: np.ndarray, masks: list[np.ndarray], max_iou: float) -> bool:
    box = _mask_box_xyxy(mask)[None]
    others = np.array([_mask_box_xyxy(m) for m in masks])
    if pairwise_iou_xyxy(box, others).max() > max_iou:
        return False
    # An earlier shape must stay mostly visible once this one is drawn over it.
    return all((m & ~mask).sum() >= _MIN_VISIBLE_FRACTION * m.sum() for m in masks)


@SOURCES.register("synthetic")
class SyntheticShapes:
    """The synthetic shapes source (``ingest.source: synthetic``)."""

    Options = SyntheticOptions

    def __init__(self, options: SyntheticOptions):
        self.options = options

    def categories(self) -> list[str]:
        return list(CLASSES)

    def __len__(self) -> int:
        return self.options.num_images

    def samples(self) -> Iterator[Sample]:
        for index in range(self.options.num_images):
            r = render(index, self.options)
            objects = [
                SourceObject(category=CLASSES[label], bbox_xywh=(x1, y1, x2 - x1, y2 - y1))
                for label, (x1, y1, x2, y2) in zip(r.labels, r.boxes_xyxy.tolist())
            ]
            yield Sample(file_name=f"images/{index:06d}.jpg", image=r.image, objects=objects)
