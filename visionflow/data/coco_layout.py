"""The raw dataset layout every source writes: ``annotations.json`` (COCO) plus images.

Writes go to a temporary sibling folder that replaces the target only once complete,
so a failed ingest never leaves a half-written dataset and never touches the source.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from visionflow.data.sources import Sample, Source

ANNOTATIONS_FILE = "annotations.json"


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a scratch folder that replaces ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _save_image(sample: Sample, dest: Path) -> tuple[int, int]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(sample.image, np.ndarray):
        Image.fromarray(sample.image).save(dest, format="JPEG", quality=95)
        h, w = sample.image.shape[:2]
        return w, h
    shutil.copyfile(sample.image, dest)  # copy, never move: the source stays as it was
    with Image.open(dest) as im:
        return im.size


def write_raw_dataset(source: Source, out_dir: Path, progress: bool = True) -> dict:
    """Write ``source`` to ``out_dir`` in the raw COCO layout; returns summary counts."""
    names = source.categories()
    cat_ids = {name: i + 1 for i, name in enumerate(names)}
    images, annotations = [], []
    with atomic_dir(Path(out_dir)) as tmp:
        samples = tqdm(source.samples(), total=len(source) or None, desc="ingest", unit="img", disable=not progress)
        for image_id, sample in enumerate(samples, start=1):
            width, height = _save_image(sample, tmp / sample.file_name)
            images.append({"id": image_id, "file_name": sample.file_name, "width": width, "height": height})
            for obj in sample.objects:
                ann = {"id": len(annotations) + 1, "image_id": image_id, "category_id": cat_ids[obj.category],
                       "iscrowd": obj.iscrowd}
                if obj.bbox_xywh is not None:
                    bbox = [float(v) for v in obj.bbox_xywh]
                    ann.update(bbox=bbox, area=bbox[2] * bbox[3])
                if obj.difficult:
                    ann["difficult"] = 1
                annotations.append(ann)
        coco = {"images": images, "annotations": annotations,
                "categories": [{"id": i, "name": n} for n, i in cat_ids.items()]}
        (tmp / ANNOTATIONS_FILE).write_text(json.dumps(coco))
    return {"num_images": len(images), "num_annotations": len(annotations), "num_categories": len(names)}


@dataclass(frozen=True)
class RawDataset:
    """A loaded raw COCO layout, indexed by image id."""

    root: Path
    images: list[dict]
    categories: list[dict]
    annotations_by_image: dict[int, list[dict]]

    @property
    def category_names(self) -> list[str]:
        return [c["name"] for c in self.categories]

    def label_index(self) -> dict[int, int]:
        """COCO category id -> 0-based class index, in category order."""
        return {c["id"]: i for i, c in enumerate(self.categories)}

    def primary_label(self, image_id: int) -> int:
        """The 0-based class of an image's most frequent category (ties: lowest class)."""
        index = self.label_index()
        labels = [index[a["category_id"]] for a in self.annotations_by_image.get(image_id, [])]
        if not labels:
            return -1
        return int(np.bincount(labels).argmax())


def load_raw_dataset(root: Path) -> RawDataset:
    root = Path(root)
    path = root / ANNOTATIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (run the ingest stage first)")
    coco = json.loads(path.read_text())
    by_image: dict[int, list[dict]] = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    return RawDataset(root, coco["images"], categories, by_image)
