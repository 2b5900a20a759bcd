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
from visionflow.data.validation import Problem, ValidationReport, check_sample
from visionflow.errors import DataError

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


def _save_image(original: Sample, checked: Sample, converted: bool, dest: Path) -> tuple[int, int]:
    """Copy the source file when it needed no change, else encode the checked pixels."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    height, width = checked.image.shape[:2]
    if isinstance(original.image, Path) and not converted and original.image.suffix.lower() == dest.suffix.lower():
        shutil.copyfile(original.image, dest)  # copy, never move: the source stays as it was
    else:
        fmt = "PNG" if dest.suffix.lower() == ".png" else "JPEG"
        Image.fromarray(checked.image).save(dest, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return width, height


def validate_source(source: Source, progress: bool = True) -> tuple[ValidationReport, set[int]]:
    """Check every record; returns the report and the positions of the bad records."""
    categories = set(source.categories())
    report, bad, seen = ValidationReport(), set(), set()
    samples = tqdm(source.samples(), total=len(source) or None, desc="validate", unit="img", disable=not progress,
                   mininterval=2.0)
    for position, sample in enumerate(samples):
        report.num_records += 1
        if sample.file_name in seen:
            report.problems.append(Problem("duplicate_file_name", sample.file_name, "a second record has this name"))
            bad.add(position)
            continue
        seen.add(sample.file_name)
        checked, problems = check_sample(sample, categories)
        report.problems += problems
        if checked is None:
            bad.add(position)
    report.problems += [Problem(kind, record, detail) for kind, record, detail in getattr(source, "notes", lambda: [])()]
    return report, bad


def write_raw_dataset(source: Source, out_dir: Path, on_error: str = "fail", progress: bool = True) -> ValidationReport:
    """Validate ``source``, then write it to ``out_dir`` in the raw COCO layout.

    Nothing is written when the dataset is empty, or when a record is bad and
    ``on_error`` is ``"fail"``; with ``"skip"`` bad records are left out and listed in
    ``validation.json`` beside ``annotations.json``.
    """
    report, bad = validate_source(source, progress)
    if report.num_records == 0:
        raise DataError(f"{type(source).__name__}: the dataset is empty")
    if report.bad() and on_error == "fail":
        first = report.bad()[0]
        raise DataError(f"{len(report.bad())} problems in {report.num_records} records (first: {first.kind}: {first.record}: "
                        f"{first.detail}); fix them, or set ingest.on_error: skip to leave them out")
    if len(bad) == report.num_records:
        raise DataError(f"{type(source).__name__}: every one of {report.num_records} records is bad")
    names = source.categories()
    cat_ids = {name: i + 1 for i, name in enumerate(names)}
    images, annotations = [], []
    with atomic_dir(Path(out_dir)) as tmp:
        samples = tqdm(source.samples(), total=len(source) or None, desc="ingest", unit="img", disable=not progress,
                       mininterval=2.0)
        for position, sample in enumerate(samples):
            if position in bad:
                continue
            checked, problems = check_sample(sample, set(names))
            converted = any(p.kind == "image_converted_to_rgb" for p in problems)
            image_id = len(images) + 1
            width, height = _save_image(sample, checked, converted, tmp / sample.file_name)
            images.append({**sample.attributes, "id": image_id, "file_name": sample.file_name, "width": width,
                           "height": height})
            for obj in checked.objects:
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
        report.num_written = len(images)
        report.write(tmp)
    return report


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

    def label_set(self, image_id: int) -> set[int]:
        """The 0-based classes present in an image."""
        index = self.label_index()
        return {index[a["category_id"]] for a in self.annotations_by_image.get(image_id, [])}

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
