"""Checks on every record before anything is written, and the report of what was found.

A problem is *fixed* (and counted) when the fix is safe: a box reaching outside the
image is clipped, a grayscale, CMYK, palette or alpha image is converted to RGB. Any
other problem makes the record *bad*: with ``on_error: fail`` the ingest stops before
writing anything; with ``on_error: skip`` the record is left out and listed.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from visionflow.data.sources import Sample, SourceObject

FIXED_KINDS = ("box_clipped", "image_converted_to_rgb")
NOTE_KINDS = ("image_not_referenced",)  # reported, harmless: nothing is written for them


@dataclass(frozen=True)
class Problem:
    kind: str
    record: str  # the file or record it is about
    detail: str

    @property
    def fixed(self) -> bool:
        return self.kind in FIXED_KINDS

    @property
    def bad(self) -> bool:
        return self.kind not in FIXED_KINDS + NOTE_KINDS


@dataclass
class ValidationReport:
    num_records: int = 0
    num_written: int = 0
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(p.kind for p in self.problems).items()))

    def bad(self) -> list[Problem]:
        return [p for p in self.problems if p.bad]

    def as_dict(self) -> dict:
        return {"num_records": self.num_records, "num_written": self.num_written, "counts": self.counts(),
                "problems": [asdict(p) | {"fixed": p.fixed} for p in self.problems]}

    def summary(self) -> str:
        lines = [f"{self.num_records} records read, {self.num_written} written"]
        lines += [f"  {kind}: {n}" for kind, n in self.counts().items()] or ["  no problems found"]
        for p in self.bad()[:20]:
            lines.append(f"  - {p.kind}: {p.record}: {p.detail}")
        if len(self.bad()) > 20:
            lines.append(f"  ... and {len(self.bad()) - 20} more in validation.json")
        return "\n".join(lines)

    def write(self, out_dir: Path) -> None:
        (out_dir / "validation.json").write_text(json.dumps(self.as_dict(), indent=1))
        (out_dir / "validation.txt").write_text(self.summary() + "\n")


def load_rgb(sample: Sample) -> tuple[np.ndarray | None, list[Problem]]:
    """The sample's pixels as RGB uint8, or None with the problem that stopped it."""
    name = str(sample.image) if isinstance(sample.image, Path) else sample.file_name
    if isinstance(sample.image, np.ndarray):
        image = sample.image
        if image.ndim == 2:
            return np.repeat(image[..., None], 3, -1), [Problem("image_converted_to_rgb", name, "grayscale")]
        if image.ndim != 3 or image.shape[-1] not in (3, 4) or image.dtype != np.uint8:
            return None, [Problem("corrupt_image", name, f"array of shape {image.shape} and {image.dtype}")]
        if image.shape[-1] == 4:
            return image[..., :3], [Problem("image_converted_to_rgb", name, "alpha channel dropped")]
        return image, []
    if not Path(sample.image).is_file():
        return None, [Problem("missing_image", name, "referenced but not found")]
    try:
        with Image.open(sample.image) as im:
            im.load()  # decodes every byte: catches truncated files
            if im.mode == "RGB":
                return np.asarray(im), []
            return np.asarray(im.convert("RGB")), [Problem("image_converted_to_rgb", name, f"mode {im.mode}")]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return None, [Problem("corrupt_image", name, f"{type(e).__name__}: {e}")]


def check_object(obj: SourceObject, width: int, height: int, categories: set[str],
                 record: str) -> tuple[SourceObject | None, list[Problem]]:
    if obj.category not in categories:
        return None, [Problem("unknown_category", record, f"category {obj.category!r}")]
    if obj.bbox_xywh is None:
        return obj, []
    x, y, w, h = obj.bbox_xywh
    if any(math.isnan(v) or math.isinf(v) for v in (x, y, w, h)):
        return None, [Problem("box_not_finite", record, f"bbox {list(obj.bbox_xywh)}")]
    if w <= 0 or h <= 0:
        return None, [Problem("box_empty", record, f"bbox {list(obj.bbox_xywh)} has no area")]
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    if x2 <= x1 or y2 <= y1:
        return None, [Problem("box_outside_image", record, f"bbox {list(obj.bbox_xywh)} in a {width}x{height} image")]
    if (x1, y1, x2, y2) != (x, y, x + w, y + h):
        clipped = replace(obj, bbox_xywh=(x1, y1, x2 - x1, y2 - y1))
        return clipped, [Problem("box_clipped", record, f"bbox {list(obj.bbox_xywh)} clipped to {width}x{height}")]
    return obj, []


def check_sample(sample: Sample, categories: set[str]) -> tuple[Sample | None, list[Problem]]:
    """The sample as it may be written (pixels decoded, fixes applied), or None if it is bad."""
    if sample.problems:  # what the source itself found wrong with the record
        return None, [Problem(kind, sample.file_name, detail) for kind, detail in sample.problems]
    image, problems = load_rgb(sample)
    if image is None:
        return None, problems
    height, width = image.shape[:2]
    objects = []
    for i, obj in enumerate(sample.objects):
        checked, found = check_object(obj, width, height, categories, f"{sample.file_name} object {i}")
        problems += found
        if checked is None:
            return None, problems
        objects.append(checked)
    return Sample(sample.file_name, image, objects, attributes=sample.attributes), problems
