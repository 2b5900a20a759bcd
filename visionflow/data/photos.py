"""Real photographs for backgrounds, from the images that ship inside scikit-image.

The ``photos`` stage exports the ones ``params.yaml`` lists (``photos.train`` for the
synthetic source's backgrounds, ``photos.held_out`` for the robustness stage's
background swap, never seen in training) as PNG files under ``data/photos``, so DVC
hashes them like any other input and a changed scikit-image shows up as changed data.
Readers take the folder, not the package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# skimage.data loaders whose image ships inside the package (no download), and are photographs or scans.
SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass", "gravel",
                  "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text")


def skimage_photo(name: str) -> np.ndarray:
    """The photograph ``skimage.data.<name>()`` as (H, W, 3) uint8 RGB (gray ones stacked)."""
    if name not in SKIMAGE_PHOTOS:
        raise ValueError(f"{name!r} is not one of the photographs that ship with scikit-image: {', '.join(SKIMAGE_PHOTOS)}")
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def export_photos(names: list[str], out_dir: Path) -> list[Path]:
    """Write each named photograph to ``out_dir/<name>.png``; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name in names:
        path = out_dir / f"{name}.png"
        Image.fromarray(skimage_photo(name)).save(path, optimize=False)
        files.append(path)
    return files


def load_photos(folder: Path, key: str = "photos") -> list[np.ndarray]:
    """Every image in ``folder`` (sorted by name) as (H, W, 3) uint8 RGB; ``key`` names the setting in errors."""
    from visionflow.errors import DataError  # errors imports the config, which checks names against this module

    files = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if not files:
        raise DataError(f"{key}: no photographs in {folder} (they come from the photos stage: dvc repro photos)")
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]
