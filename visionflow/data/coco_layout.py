"""The raw dataset layout every source writes: ``annotations.json`` (COCO) plus images.

Writes go to a temporary sibling folder that replaces the target only once complete,
so a failed ingest never leaves a half-written dataset and never touches the source:
every destination is checked to lie inside that folder and not to be its source file.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from visionflow.data.sources import Sample, Source, SourceObject
from visionflow.data.validation import Problem, ValidationReport, check_sample
from visionflow.errors import DataError
from visionflow.io import atomic_dir

ANNOTATIONS_FILE = "annotations.json"


def _destination(out_dir: Path, sample: Sample) -> Path:
    """Where ``sample`` is written; the last line of defence if validation missed a bad name."""
    root = Path(out_dir).resolve()
    dest = (root / sample.file_name).resolve()
    if dest == root or not dest.is_relative_to(root):
        raise DataError(f"{sample.file_name}: refusing to write {dest}: it is outside the output folder {root}")
    if isinstance(sample.image, Path) and dest == sample.image.resolve():
        raise DataError(f"{sample.file_name}: refusing to write over its own source file {sample.image}")
    return dest


def _save_image(original: Sample, checked: Sample, converted: bool, out_dir: Path) -> tuple[int, int]:
    """Copy the source file when it needed no change, else encode the checked pixels.

    The destination is opened with ``"xb"``: an existing file (say, a name differing only
    in case on a case-insensitive disk) or a planted link is never written through.
    """
    dest = _destination(out_dir, original)
    dest.parent.mkdir(parents=True, exist_ok=True)
    height, width = checked.image.shape[:2]
    copy = isinstance(original.image, Path) and not converted and original.image.suffix.lower() == dest.suffix.lower()
    try:
        with open(dest, "xb") as out:
            if copy:  # copy, never move: the source stays as it was
                with open(original.image, "rb") as src:
                    shutil.copyfileobj(src, out)
            else:
                fmt = "PNG" if dest.suffix.lower() == ".png" else "JPEG"
                Image.fromarray(checked.image).save(out, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    except FileExistsError:
        raise DataError(f"{original.file_name}: refusing to write {dest}: another record already wrote it "
                        "(names differing only in case?)") from None
    return width, height


def _refuse_source_inside(sample: Sample, out_dir: Path) -> None:
    """The ingest replaces ``out_dir`` whole, so a source file inside it would be deleted."""
    if isinstance(sample.image, Path) and sample.image.resolve().is_relative_to(Path(out_dir).resolve()):
        raise DataError(f"{sample.image}: this source file lies inside the output folder {out_dir}, which the ingest "
                        "replaces; read the source from, or write the dataset to, another folder")


def _progress(source: Source, desc: str, progress: bool):
    return tqdm(source.samples(), total=len(source) or None, desc=desc, unit="img", disable=not progress,
                mininterval=2.0)


def _check_unique(sample: Sample, seen: set[str]) -> list[Problem]:
    if sample.file_name in seen:
        return [Problem("duplicate_file_name", sample.file_name, "a second record has this name")]
    seen.add(sample.file_name)
    return []


def _check_record(sample: Sample, categories: set[str], seen: set[str], out_dir: Path | None,
                  report: ValidationReport) -> tuple[Sample | None, list[Problem]]:
    """Check one record into ``report``; returns the checked sample (None if the record is bad) and its problems.

    A duplicate name is checked like any other record, so its other problems (say, a
    duplicate image id) are reported too. With ``out_dir``, a source file inside it stops
    the ingest at once, whatever ``on_error``.
    """
    report.num_records += 1
    if out_dir is not None:
        _refuse_source_inside(sample, out_dir)
    duplicate = _check_unique(sample, seen)
    checked, problems = check_sample(sample, categories)
    report.problems += duplicate + problems
    return (None if duplicate else checked), problems


def _add_notes(source: Source, report: ValidationReport) -> None:
    report.problems += [Problem(kind, record, detail) for kind, record, detail in getattr(source, "notes", lambda: [])()]


def _refuse_unless_writable(source: Source, report: ValidationReport, num_bad: int, on_error: str) -> None:
    if report.num_records == 0:
        raise DataError(f"{type(source).__name__}: the dataset is empty")
    if report.bad() and on_error == "fail":
        first = report.bad()[0]
        raise DataError(f"{len(report.bad())} problems in {report.num_records} records (first: {first.line()}); "
                        "fix them, or set ingest.on_error: skip to leave them out")
    if num_bad == report.num_records:
        raise DataError(f"{type(source).__name__}: every one of {report.num_records} records is bad")


def _annotations(objects: list[SourceObject], image_id: int, cat_ids: dict[str, int], first_id: int) -> list[dict]:
    """COCO annotations of one image; boxes are pixel (x, y, w, h)."""
    anns = []
    for i, obj in enumerate(objects):
        ann = {"id": first_id + i, "image_id": image_id, "category_id": cat_ids[obj.category], "iscrowd": obj.iscrowd}
        if obj.bbox_xywh is not None:
            bbox = [float(v) for v in obj.bbox_xywh]
            ann.update(bbox=bbox, area=bbox[2] * bbox[3])
        if obj.difficult:
            ann["difficult"] = 1
        anns.append(ann)
    return anns


def _write_records(source: Source, tmp: Path, out_dir: Path, cat_ids: dict[str, int], on_error: str,
                   progress: bool) -> tuple[ValidationReport, int, list[dict], list[dict]]:
    """Check every record and write the good ones, in one pass over the source.

    Once a bad record is seen and ``on_error`` is ``"fail"``, the rest are only checked
    (the ingest will fail, and the report counts every problem).
    """
    report, seen, num_bad = ValidationReport(), set(), 0
    images, annotations = [], []
    for sample in _progress(source, "ingest", progress):
        checked, problems = _check_record(sample, set(cat_ids), seen, out_dir, report)
        if checked is None:
            num_bad += 1
        if checked is None or (num_bad and on_error == "fail"):
            continue
        converted = any(p.kind == "image_converted_to_rgb" for p in problems)
        image_id = len(images) + 1
        width, height = _save_image(sample, checked, converted, tmp)
        images.append({**sample.attributes, "id": image_id, "file_name": sample.file_name, "width": width,
                       "height": height})
        annotations += _annotations(checked.objects, image_id, cat_ids, len(annotations) + 1)
    _add_notes(source, report)
    return report, num_bad, images, annotations


def write_raw_dataset(source: Source, out_dir: Path, on_error: str = "fail", progress: bool = True) -> ValidationReport:
    """Check ``source`` and write it to ``out_dir`` in the raw COCO layout, in one pass.

    Records go to a scratch folder that replaces ``out_dir`` only at the end, so nothing
    is written when the dataset is empty, or when a record is bad and ``on_error`` is
    ``"fail"``; with ``"skip"`` bad records are left out and listed in ``validation.json``
    beside ``annotations.json``. Nothing is ever written outside ``out_dir``, and no
    source file is opened for writing.
    """
    cat_ids = {name: i + 1 for i, name in enumerate(source.categories())}
    with atomic_dir(Path(out_dir)) as tmp:
        report, num_bad, images, annotations = _write_records(source, tmp, Path(out_dir), cat_ids, on_error, progress)
        _refuse_unless_writable(source, report, num_bad, on_error)
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

    def as_coco(self) -> dict:
        """The COCO ground truth it was loaded from (annotations grouped by image)."""
        return {"images": self.images, "categories": self.categories,
                "annotations": [a for anns in self.annotations_by_image.values() for a in anns]}

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
