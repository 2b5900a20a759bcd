"""Deterministic synthetic shapes: the embedded, offline default dataset.

Each image holds 1..N filled shapes of five classes (:mod:`visionflow.data.shapes`) of
14-64 px, and varies everything the task does not depend on (domain randomisation): a
background that is flat, a gradient, a texture or a crop of a real photograph
(:mod:`visionflow.data.backgrounds`); distractor shapes of no class and clutter strokes
behind the shapes, more strokes in front; shapes of any contrast to what they cover,
some outlined; then blur, sensor noise and JPEG compression (:mod:`visionflow.data.camera`).
An image depends only on ``(seed, index)``, so any one image can be re-rendered alone,
and boxes are the exact extent of each shape's visible pixels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field, model_validator

from visionflow.boxes import pairwise_iou_xyxy
from visionflow.data.backgrounds import KINDS, render_background
from visionflow.data.camera import Camera
from visionflow.data.photos import load_photos
from visionflow.data.shapes import CLASSES, boundary, distractor_mask, mask_box_xyxy, random_shape, shape_mask
from visionflow.data.sources import SOURCES, Sample, SourceObject

__all__ = ["CLASSES", "SyntheticOptions", "SyntheticShapes", "render"]

_MIN_VISIBLE_FRACTION = 0.5
_PLACEMENT_TRIES = 50
_CONTRAST_OVER_NOISE = 2.0  # a shape's contrast is at least this many times the image's noise sigma


class BackgroundMix(BaseModel):
    """The chance of each background kind (weights, normalised to sum to 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    flat: float = Field(0.0, ge=0)
    gradient: float = Field(1.0, ge=0)
    texture: float = Field(0.0, ge=0)
    photo: float = Field(0.0, ge=0)

    def probabilities(self) -> np.ndarray:
        weights = np.array([getattr(self, kind) for kind in KINDS], dtype=np.float64)
        return weights / weights.sum()


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
    outline: float = Field(0.0, ge=0, le=1)  # chance a shape has an outline of another colour
    backgrounds: BackgroundMix = BackgroundMix()
    photo_dir: str | None = "data/photos/train"  # the photographs for photo backgrounds
    distractors: tuple[int, int] = (0, 0)  # range of the number of shapes of no class, behind the shapes
    clutter_strokes: tuple[int, int] = (0, 2)  # range of the number of random lines, behind or in front
    blur: float = Field(0.0, ge=0, le=1)  # chance of a Gaussian blur...
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # ...of this sigma, pixels
    noise_std: tuple[float, float] = (1.0, 3.0)  # range of the Gaussian noise over the whole image...
    noise_skew: float = Field(1.0, ge=1, le=4)  # ...drawn as low + (high - low) * u ** skew (1: uniform)
    jpeg_quality: tuple[int, int] = (95, 95)  # range of the JPEG quality each image is compressed at
    seed: int = 42

    @model_validator(mode="after")
    def _ranges(self) -> "SyntheticOptions":
        if self.min_objects > self.max_objects:
            raise ValueError("min_objects must be <= max_objects")
        if self.min_object_size > self.max_object_size:
            raise ValueError("max_object_size must be >= min_object_size")
        if self.max_object_size > self.image_size:
            raise ValueError("max_object_size must be <= image_size")
        pairs = {"contrast": (self.min_contrast, self.max_contrast), "noise_std": self.noise_std,
                 "clutter_strokes": self.clutter_strokes, "distractors": self.distractors,
                 "blur_sigma": self.blur_sigma, "jpeg_quality": self.jpeg_quality}
        for name, (low, high) in pairs.items():
            if not 0 <= low <= high:
                raise ValueError(f"{name}: the range must run from a low to a high value >= 0, got {low}..{high}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality: must lie in 1..100, got {self.jpeg_quality[0]}..{self.jpeg_quality[1]}")
        if sum(getattr(self.backgrounds, kind) for kind in KINDS) <= 0:
            raise ValueError("backgrounds: at least one kind needs a weight above 0")
        if self.backgrounds.photo > 0 and self.photo_dir is None:
            raise ValueError("backgrounds.photo: photo backgrounds need photo_dir")
        return self


@dataclass(frozen=True)
class RenderedImage:
    image: np.ndarray  # (H, W, 3) uint8, as written
    background: np.ndarray  # before any shape was drawn (distractors and strokes behind included)
    scene: np.ndarray  # the shapes drawn, before strokes in front, blur, noise and JPEG
    labels: list[int]  # index into CLASSES
    boxes_xyxy: np.ndarray  # (N, 4) pixel boxes, x_max/y_max exclusive
    visible_masks: list[np.ndarray]
    kind: str  # the background's kind
    camera: Camera  # the blur, noise and JPEG quality the image got


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _strokes(rng: np.random.Generator, canvas: Image.Image, count: int) -> None:
    draw = ImageDraw.Draw(canvas)
    for _ in range(count):
        points = [tuple(p) for p in rng.uniform(0, canvas.width, size=(2, 2))]
        draw.line(points, fill=_random_colour(rng), width=int(rng.integers(1, 4)))


def _clutter_split(rng: np.random.Generator, opts: SyntheticOptions) -> tuple[int, int]:
    """How many strokes go behind the shapes and how many in front."""
    total = int(rng.integers(opts.clutter_strokes[0], opts.clutter_strokes[1] + 1))
    front = int(rng.binomial(total, 0.5))
    return total - front, front


def render_backdrop(rng: np.random.Generator, opts: SyntheticOptions, photos: list[np.ndarray] | None,
                    kind: str, strokes: int) -> np.ndarray:
    """A background of ``kind``, then distractor shapes and ``strokes`` clutter strokes: uint8."""
    size = opts.image_size
    image = np.clip(np.round(render_background(rng, kind, size, photos)), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(opts.distractors[0], opts.distractors[1] + 1))):
        side = rng.uniform(opts.min_object_size, opts.max_object_size)
        mask = distractor_mask(rng, side, *rng.uniform(0, size, size=2), size)
        image[mask] = _random_colour(rng)
    canvas = Image.fromarray(image)
    _strokes(rng, canvas, strokes)
    return np.asarray(canvas).copy()


def _fill_colour(rng: np.random.Generator, under: np.ndarray, contrast_range: tuple[float, float]) -> np.ndarray:
    """A colour at a random contrast in ``contrast_range`` to the pixels it covers, equal to none of them.

    Where the RGB cube clips every try below the range, the try farthest from them wins.
    """
    pixels = under.reshape(-1, 3)
    mean = pixels.mean(0)
    best, best_contrast = None, -1.0
    for _ in range(20):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-9
        contrast = rng.uniform(*contrast_range)
        fill = mean + direction * contrast
        if np.any(fill < 0) or np.any(fill > 255):
            fill = mean - direction * contrast
        fill = np.clip(np.round(fill), 0, 255).astype(np.uint8)
        if np.any(np.all(pixels == fill, axis=1)):
            continue
        reached = float(np.linalg.norm(fill - mean))
        if reached >= contrast_range[0] - 1:
            return fill
        if reached > best_contrast:
            best, best_contrast = fill, reached
    if best is None:
        raise RuntimeError("could not pick a fill colour distinct from the background")
    return best


def contrast_range(opts: SyntheticOptions, camera: Camera) -> tuple[float, float]:
    """The shapes' contrast range in an image: at least twice its noise, so that every shape stays visible."""
    low = min(max(opts.min_contrast, _CONTRAST_OVER_NOISE * camera.noise_sigma), opts.max_contrast)
    return low, opts.max_contrast


def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, contrast: tuple[float, float],
           outline: float) -> None:
    """Fill the shape's pixels, and with chance ``outline`` its edge in a colour of its own."""
    image[mask] = _fill_colour(rng, image[mask], contrast)
    if rng.random() < outline:
        edge = boundary(mask, int(rng.integers(1, 3)))
        if edge.any() and edge.sum() < mask.sum():
            image[edge] = _fill_colour(rng, image[edge], contrast)


@functools.lru_cache(maxsize=4)
def _photos_in(folder: str) -> list[np.ndarray]:
    return load_photos(Path(folder), "ingest.synthetic.photo_dir")


def source_photos(opts: SyntheticOptions) -> list[np.ndarray] | None:
    """The photographs for photo backgrounds, read once per folder and process; None when none are drawn."""
    return _photos_in(opts.photo_dir) if opts.backgrounds.photo > 0 else None


def render(index: int, opts: SyntheticOptions) -> RenderedImage:
    """Render image ``index``: a pure function of ``(opts, index)`` (and the photographs in ``opts.photo_dir``)."""
    photos = source_photos(opts)
    rng = _rng(opts.seed, index, 3)
    kind = KINDS[int(rng.choice(len(KINDS), p=opts.backgrounds.probabilities()))]
    behind, in_front = _clutter_split(rng, opts)
    background = render_backdrop(_rng(opts.seed, index, 0), opts, photos, kind, behind)
    camera = Camera.draw(_rng(opts.seed, index, 4), opts.blur, opts.blur_sigma, opts.noise_std, opts.jpeg_quality,
                         opts.noise_skew)
    contrast = contrast_range(opts, camera)
    rng = _rng(opts.seed, index, 1)
    scene = background.copy()
    labels: list[int] = []
    masks: list[np.ndarray] = []
    for _ in range(int(rng.integers(opts.min_objects, opts.max_objects + 1))):
        placed = _place_one(rng, opts, masks)
        if placed is None:
            continue
        label, mask = placed
        _paint(rng, scene, mask, contrast, opts.outline)
        labels.append(label)
        masks.append(mask)
    visible = _visible_masks(masks)
    boxes = np.array([mask_box_xyxy(m) for m in visible]).reshape(-1, 4)
    image = _finish(_rng(opts.seed, index, 2), scene, camera, in_front)
    return RenderedImage(image, background, scene, labels, boxes, visible, kind, camera)


def _finish(rng: np.random.Generator, scene: np.ndarray, camera: Camera, strokes: int) -> np.ndarray:
    """``strokes`` clutter strokes in front of the shapes, then blur, noise and JPEG."""
    canvas = Image.fromarray(scene)
    _strokes(rng, canvas, strokes)
    return camera.apply(rng, np.asarray(canvas, dtype=np.float64))


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
        half = side / 2
        cx, cy = rng.uniform(half, size - half, size=2)
        mask = shape_mask(random_shape(rng, label, side, cx, cy), size)
        if mask.sum() < 4:
            continue
        if masks and not _overlap_ok(mask, masks, opts.max_overlap_iou):
            continue
        return label, mask
    return None


def _overlap_ok(mask: np.ndarray, masks: list[np.ndarray], max_iou: float) -> bool:
    box = mask_box_xyxy(mask)[None]
    others = np.array([mask_box_xyxy(m) for m in masks])
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
        source_photos(options)  # a missing photo folder stops the ingest here, before any image

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
