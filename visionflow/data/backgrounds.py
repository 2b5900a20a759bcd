"""Backgrounds for the synthetic shapes, of kinds that a model must learn to ignore.

Domain randomisation: the task (which shape, where) does not depend on the background,
so it varies as widely as the generator can make it. Each renderer takes a NumPy
generator and returns an (H, W, 3) float array in 0..255:

- ``flat``: one colour;
- ``gradient``: linear or radial, between two colours;
- ``texture``: a smooth noise field, stripes or checkers, at a random scale and angle;
- ``photo``: a random crop, at a random scale, of a real photograph (:mod:`visionflow.data.photos`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

KINDS = ("flat", "gradient", "texture", "photo")


def _colours(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0, 255, size=(n, 3))


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    return xx, yy


def _blend(t: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> np.ndarray:
    return c0 + t[..., None] * (c1 - c0)


def flat(rng: np.random.Generator, size: int) -> np.ndarray:
    return np.broadcast_to(_colours(rng, 1)[0], (size, size, 3)).astype(np.float64)


def gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear gradient at a random angle, or a radial one about a random centre."""
    c0, c1 = _colours(rng, 2)
    xx, yy = _grid(size)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx + np.sin(angle) * yy
    else:
        cx, cy = rng.uniform(0, 1, size=2)
        t = np.hypot(xx - cx, yy - cy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    return _blend(t, c0, c1)


def _noise_field(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth value noise in 0..1: a random coarse grid, upsampled bicubically."""
    cells = int(rng.integers(2, 17))
    coarse = rng.uniform(0, 255, size=(cells, cells)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float64) / 255


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    xx, yy = _grid(size)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, size / 2) / size
    wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period)
    return (wave > 0).astype(np.float64) if rng.random() < 0.5 else (wave + 1) / 2


def _checkers(rng: np.random.Generator, size: int) -> np.ndarray:
    xx, yy = _grid(size)
    angle = rng.uniform(0, np.pi / 2)
    cell = rng.uniform(4, size / 3) / size
    u = np.cos(angle) * xx + np.sin(angle) * yy
    v = -np.sin(angle) * xx + np.cos(angle) * yy
    return ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float64)


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A noise field, stripes or checkers between two colours (a noise field's per channel half the time)."""
    pattern = (_noise_field, _stripes, _checkers)[int(rng.integers(3))]
    c0, c1 = _colours(rng, 2)
    if pattern is _noise_field and rng.random() < 0.5:
        return np.stack([_noise_field(rng, size) for _ in range(3)], axis=-1) * 255
    return _blend(pattern(rng, size), c0, c1)


def photo(rng: np.random.Generator, size: int, photos: list[np.ndarray]) -> np.ndarray:
    """A square crop of a random photograph, a quarter to all of its shorter side, resized and maybe mirrored."""
    image = photos[int(rng.integers(len(photos)))]
    h, w = image.shape[:2]
    side = int(min(h, w) * rng.uniform(0.25, 1.0))
    side = max(side, min(h, w, 8))
    y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    crop = Image.fromarray(image[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
    out = np.asarray(crop, dtype=np.float64)
    return out[:, ::-1] if rng.random() < 0.5 else out


def render_background(rng: np.random.Generator, kind: str, size: int, photos: list[np.ndarray] | None) -> np.ndarray:
    if kind == "photo":
        return photo(rng, size, photos or [])
    return {"flat": flat, "gradient": gradient, "texture": texture}[kind](rng, size)
