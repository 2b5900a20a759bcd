"""Shapes drawn by a generator that shares nothing with :mod:`visionflow.data.synthetic`.

A second opinion on what the project's models learn: if a model scores well on the
project's own shapes but not on these, it learned the generator, not the shapes. Only
the class names and their order are shared (circle, square, triangle, diamond, star).

What differs from the project's generator, on purpose:

- randomness: Python's ``random.Random`` seeded by the string ``"{seed}/{index}"``;
- colours: drawn in HSV, resampled until the fill stands out from the median colour it
  covers; a third of the shapes get an outline of another colour, 1-3 px wide;
- geometry: every polygon is built on a unit scale, turned, then scaled so the longer
  side of its bounding box is the drawn size; squares are axis-aligned half the time
  and turned by up to 15 degrees otherwise; diamonds are upright rhombi whose
  width / height runs from 0.6 to 1.0; triangles have a height of 0.8-0.95 of their
  base; stars have an inner radius of 0.36-0.52 of the outer one;
- placement: the centre uniform over the image, a margin of 2 px kept at every edge;
- backgrounds: PIL's own linear or radial gradient masks compositing two colours
  ("gradient"), or random crops, at a random scale, of photographs that ship with
  scikit-learn and matplotlib ("photo");
- clutter: 0-8 strokes of random colour and width, some under the shapes, some over;
- noise: Gaussian, its sigma drawn per image, over the whole image after drawing.

A shape's box is the tight pixel box of its own mask (the same drawing calls on a blank
canvas), xyxy with the max exclusive; strokes drawn over a shape occlude it without
changing its box.
"""

from __future__ import annotations

import colorsys
import functools
import importlib.util
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "diamond", "star")
BACKGROUNDS = ("gradient", "photo")
MARGIN = 2  # px between a shape's box and the image's edge
MIN_CONTRAST = 60.0  # RGB distance between a fill and the median colour it covers
PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class Options:
    image_size: int = 128
    shapes_per_image: tuple[int, int] = (1, 1)  # a range, inclusive
    shape_size: tuple[float, float] = (14.0, 64.0)  # the longer side of a shape's bounding box, px
    background: str = "gradient"  # gradient | photo
    noise_sigma: tuple[float, float] = (0.0, 20.0)  # Gaussian, over the whole image, drawn per image
    clutter: tuple[int, int] = (0, 8)  # strokes per image, a range, inclusive
    seed: int = 0

    def __post_init__(self):
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, not {self.background!r}")
        if self.shape_size[1] + 2 * MARGIN > self.image_size:
            raise ValueError(f"shapes of {self.shape_size[1]} px do not fit a {self.image_size} px image")


@dataclass
class Drawn:
    """One image: (H, W, 3) uint8, a class index and a pixel xyxy box (max exclusive) per shape."""

    image: np.ndarray
    labels: list[int]
    boxes_xyxy: np.ndarray  # (K, 4)
    noise_sigma: float
    masks: list[np.ndarray] = field(repr=False, default_factory=list)


@dataclass
class ShapeSet:
    """``images`` (N, H, W, 3) uint8; one shape per image: ``labels`` (N,) and pixel xyxy ``boxes`` (N, 4);
    several: a list of (K,) and a list of (K, 4), one entry per image."""

    images: np.ndarray
    labels: np.ndarray | list[np.ndarray]
    boxes_xyxy: np.ndarray | list[np.ndarray]
    noise_sigmas: np.ndarray  # (N,)


def generate(num_images: int, options: Options = Options(), start: int = 0) -> ShapeSet:
    """Images ``start .. start + num_images - 1``; each depends only on ``(options, index)``."""
    drawn = [draw_image(i, options) for i in range(start, start + num_images)]
    images = np.stack([d.image for d in drawn])
    sigmas = np.array([d.noise_sigma for d in drawn])
    if options.shapes_per_image == (1, 1):
        return ShapeSet(images, np.array([d.labels[0] for d in drawn]), np.stack([d.boxes_xyxy[0] for d in drawn]),
                        sigmas)
    return ShapeSet(images, [np.array(d.labels, int) for d in drawn], [d.boxes_xyxy for d in drawn], sigmas)


def rng(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}/{index}")


def draw_image(index: int, options: Options = Options()) -> Drawn:
    rnd = rng(options.seed, index)
    size = options.image_size
    canvas = background(rnd, options.background, size)
    strokes = rnd.randint(*options.clutter)
    under = rnd.randint(0, strokes)
    draw_strokes(rnd, canvas, under)
    labels, masks = [], []
    for _ in range(rnd.randint(*options.shapes_per_image)):
        placed = place_shape(rnd, options, masks)
        if placed is not None:
            labels.append(placed[0].label)
            masks.append(paint(rnd, canvas, *placed))
    draw_strokes(rnd, canvas, strokes - under, over=True)
    sigma = rnd.uniform(*options.noise_sigma)
    noise = np.random.default_rng(rnd.getrandbits(63)).normal(0.0, sigma, (size, size, 3))
    image = np.clip(np.asarray(canvas, np.float64) + noise, 0, 255).round().astype(np.uint8)
    return Drawn(image, labels, np.array([tight_box(m) for m in masks], np.float64).reshape(-1, 4), sigma, masks)


# --- shapes -----------------------------------------------------------------------------------------------------


def unit_outline(rnd: random.Random, label: int) -> list[tuple[float, float]] | None:
    """A polygon around the origin (any scale), or None for a circle."""
    name = CLASSES[label]
    if name == "square":
        return [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    if name == "triangle":
        height = 2 * rnd.uniform(0.8, 0.95)  # of a base 2 wide; the centroid at the origin
        return [(0, -2 * height / 3), (1, height / 3), (-1, height / 3)]
    if name == "diamond":
        ratio = rnd.uniform(0.6, 1.0)
        return [(0, -1), (ratio, 0), (0, 1), (-ratio, 0)]
    if name == "star":
        inner = rnd.uniform(0.36, 0.52)
        return [(r * math.sin(k * math.pi / 5), -r * math.cos(k * math.pi / 5))
                for k, r in zip(range(10), [1.0, inner] * 5)]
    return None


def turn_degrees(rnd: random.Random, label: int) -> float:
    name = CLASSES[label]
    if name == "square":
        return 0.0 if rnd.random() < 0.5 else rnd.uniform(-15, 15)
    if name == "diamond":
        return 0.0
    return rnd.uniform(-15, 15)


def fit_polygon(points, degrees: float, side: float, cx: float, cy: float) -> list[tuple[float, float]]:
    """``points`` turned by ``degrees``, scaled so the longer side of their box is ``side``, centred on (cx, cy)."""
    a = math.radians(degrees)
    turned = np.array([(x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)) for x, y in points])
    low, high = turned.min(0), turned.max(0)
    scaled = (turned - (low + high) / 2) * (side / (high - low).max())
    return [(cx + x, cy + y) for x, y in scaled]


@dataclass(frozen=True)
class Geometry:
    label: int
    polygon: list[tuple[float, float]] | None  # None: a circle of diameter ``side``
    side: float
    cx: float
    cy: float

    def draw(self, draw: ImageDraw.ImageDraw, fill, outline=None, width: int = 0) -> None:
        if self.polygon is None:
            r = self.side / 2
            draw.ellipse([self.cx - r, self.cy - r, self.cx + r, self.cy + r], fill=fill, outline=outline, width=width)
        else:
            draw.polygon(self.polygon, fill=fill, outline=outline, width=width)


def place_shape(rnd: random.Random, options: Options, masks: list[np.ndarray]):
    """``(geometry, outline width)`` of a shape clear of the earlier ones' boxes, or None after many tries."""
    size = options.image_size
    for _ in range(PLACEMENT_TRIES):
        label = rnd.randrange(len(CLASSES))
        side = rnd.uniform(*options.shape_size)
        half = side / 2 + MARGIN
        cx, cy = rnd.uniform(half, size - half), rnd.uniform(half, size - half)
        outline = unit_outline(rnd, label)
        polygon = None if outline is None else fit_polygon(outline, turn_degrees(rnd, label), side, cx, cy)
        geometry = Geometry(label, polygon, side, cx, cy)
        width = rnd.randint(1, 3) if rnd.random() < 1 / 3 else 0
        if not any(boxes_touch(tight_box(mask_of(geometry, size, width)), tight_box(m)) for m in masks):
            return geometry, width
    return None


def mask_of(geometry: Geometry, size: int, outline_width: int) -> np.ndarray:
    mask = Image.new("L", (size, size), 0)
    geometry.draw(ImageDraw.Draw(mask), 255, 255 if outline_width else None, outline_width)
    return np.asarray(mask) > 0


def paint(rnd: random.Random, canvas: Image.Image, geometry: Geometry, outline_width: int) -> np.ndarray:
    """Draw the shape on ``canvas``; returns its mask."""
    mask = mask_of(geometry, canvas.size[0], outline_width)
    fill = contrasting_colour(rnd, np.median(np.asarray(canvas)[mask], axis=0))
    outline = contrasting_colour(rnd, np.array(fill, float)) if outline_width else None
    geometry.draw(ImageDraw.Draw(canvas), fill, outline, outline_width)
    return mask


def tight_box(mask: np.ndarray) -> np.ndarray:
    """Pixel xyxy of a mask's pixels, max exclusive."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return np.array([x0, y0, x1 + 1, y1 + 1], np.float64)


def boxes_touch(a: np.ndarray, b: np.ndarray) -> bool:
    return a[0] < b[2] + MARGIN and b[0] < a[2] + MARGIN and a[1] < b[3] + MARGIN and b[1] < a[3] + MARGIN


# --- colours, backgrounds, clutter --------------------------------------------------------------------------------


def hsv_colour(rnd: random.Random) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(rnd.random(), rnd.uniform(0.25, 1.0), rnd.uniform(0.2, 1.0))
    return round(r * 255), round(g * 255), round(b * 255)


def contrasting_colour(rnd: random.Random, against: np.ndarray) -> tuple[int, int, int]:
    """An HSV colour at least ``MIN_CONTRAST`` from ``against`` (RGB), or the farthest of many tries."""
    best, best_distance = None, -1.0
    for _ in range(40):
        colour = hsv_colour(rnd)
        distance = float(np.linalg.norm(np.array(colour, float) - against))
        if distance >= MIN_CONTRAST:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def background(rnd: random.Random, kind: str, size: int) -> Image.Image:
    return gradient(rnd, size) if kind == "gradient" else photo_crop(rnd, size)


def gradient(rnd: random.Random, size: int) -> Image.Image:
    """Two HSV colours blended through PIL's 256 px linear (turned) or radial (moved, scaled) gradient mask."""
    if rnd.random() < 0.5:
        turned = gradient_masks()[0].rotate(rnd.uniform(0, 360), resample=Image.Resampling.BILINEAR)
        window = (38, 38, 218, 218)  # inside the turned square whatever the angle (256 / sqrt 2 > 180)
    else:
        turned, side = gradient_masks()[1], 256 / rnd.uniform(1.0, 2.5)
        x, y = rnd.uniform(0, 256 - side), rnd.uniform(0, 256 - side)
        window = (x, y, x + side, y + side)
    mask = turned.resize((size, size), Image.Resampling.BILINEAR, box=window)
    a, b = (Image.new("RGB", (size, size), hsv_colour(rnd)) for _ in range(2))
    return Image.composite(a, b, mask)


@functools.cache
def gradient_masks() -> tuple[Image.Image, Image.Image]:
    return Image.linear_gradient("L"), Image.radial_gradient("L")


PHOTOS = (("sklearn", "datasets/images/china.jpg"), ("sklearn", "datasets/images/flower.jpg"),
          ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"))


@functools.cache
def photographs() -> tuple[Image.Image, ...]:
    """Real photographs shipped inside installed packages (not scikit-image's): scikit-learn's two sample
    images (``load_sample_images``) and matplotlib's sample photograph, read from their files without
    importing either package."""
    photos = []
    for package, relative in PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{package} is not installed; the photo backgrounds need its {relative}")
        with Image.open(Path(spec.submodule_search_locations[0]) / relative) as im:
            photos.append(im.convert("RGB"))
    return tuple(photos)


def photo_crop(rnd: random.Random, size: int) -> Image.Image:
    """A random square crop of a random photograph, 20-100 % of its shorter side, resized to ``size``."""
    photo = rnd.choice(photographs())
    w, h = photo.size
    side = round(min(w, h) * rnd.uniform(0.2, 1.0))
    x, y = rnd.randint(0, w - side), rnd.randint(0, h - side)
    crop = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BILINEAR)
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rnd.random() < 0.5 else crop


def draw_strokes(rnd: random.Random, canvas: Image.Image, count: int, over: bool = False) -> None:
    """``count`` straight or bent lines of random colour, anywhere, ends possibly off the image; up to 4 px
    wide at 128 px (3 px over the shapes), in proportion at other sizes."""
    draw, size = ImageDraw.Draw(canvas), canvas.size[0]
    max_width = max(1, round(size * (3 if over else 4) / 128))
    for _ in range(count):
        points = [(rnd.uniform(-0.1, 1.1) * size, rnd.uniform(-0.1, 1.1) * size) for _ in range(rnd.choice((2, 3)))]
        draw.line(points, fill=hsv_colour(rnd), width=rnd.randint(1, max_width), joint="curve")
