"""Checks on every record before anything is written, and the report of what was found.

A problem is *fixed* (and counted) when the fix is safe: a box reaching outside the
image is clipped, a grayscale, CMYK, palette or alpha image is converted to RGB. Any
other problem makes the record *bad*: with ``on_error: fail`` the ingest stops before
writing anything; with ``on_error: skip`` the record is left out and listed.

Every source's file names pass the same check here (``file_name_problems``): a name
that could lead a write out of the raw layout is a bad record, whatever the source.
"""

from __future__ import annotations

import json
import math
import re
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

    def line(self) -> str:
        """One line, whatever the record's name holds: unprintable characters are escaped."""
        return f"{self.kind}: {_one_line(self.record)}: {_one_line(self.detail)}"


def _one_line(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


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
            lines.append(f"  - {p.line()}")
        if len(self.bad()) > 20:
            lines.append(f"  ... and {len(self.bad()) - 20} more in validation.json")
        return "\n".join(lines)

    def write(self, out_dir: Path) -> None:
        (out_dir / "validation.json").write_text(json.dumps(self.as_dict(), indent=1))
        (out_dir / "validation.txt").write_text(self.summary() + "\n")


def _unsafe_reason(name: str) -> str | None:
    if not isinstance(name, str) or not name.strip("/"):
        return "is empty"
    if "\\" in name:
        return "holds a backslash (a folder separator on Windows)"
    if not name.isprintable():
        return "holds an unprintable character"
    if name.startswith("/"):
        return "is absolute"
    parts = name.split("/")
    if any(re.match(r"[A-Za-z]:", part) for part in parts):
        return "has a Windows drive part"
    if "" in parts:
        return "has an empty part ('//', a trailing '/', or an absolute or empty name inside the source)"
    if "." in parts or ".." in parts:
        return "has a '.' or '..' part"
    return None


def file_name_problems(name: str) -> list[Problem]:
    """A record's name must be a plain relative path that stays inside the raw layout."""
    reason = _unsafe_reason(name)
    if reason is None:
        return []
    return [Problem("unsafe_file_name", str(name), f"the name {reason}, so it could lead a write outside the raw "
                                                   "layout or over another file")]


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


def check_size(sample: Sample, width: int, height: int) -> list[Problem]:
    """A size the source declares must be the decoded one: else boxes may be in another frame."""
    if sample.declared_size is None or tuple(sample.declared_size) == (width, height):
        return []
    declared_w, declared_h = sample.declared_size
    return [Problem("size_mismatch", sample.file_name,
                    f"declared {declared_w!r}x{declared_h!r} (width x height) but the image is {width}x{height}")]


def check_objects(sample: Sample, width: int, height: int,
                  categories: set[str]) -> tuple[list[SourceObject] | None, list[Problem]]:
    """The objects as they may be written (boxes clipped), or None at the first bad one."""
    objects, problems = [], []
    for i, obj in enumerate(sample.objects):
        checked, found = check_object(obj, width, height, categories, f"{sample.file_name} object {i}")
        problems += found
        if checked is None:
            return None, problems
        objects.append(checked)
    return objects, problems


def check_sample(sample: Sample, categories: set[str]) -> tuple[Sample | None, list[Problem]]:
    """The sample as it may be written (pixels decoded, fixes applied), or None if it is bad.

    The name and what the source itself found wrong come first: a record with an unsafe
    name is never opened, since its path may point anywhere.
    """
    problems = [Problem(kind, sample.file_name, detail) for kind, detail in sample.problems]
    problems += file_name_problems(sample.file_name)
    if problems:
        return None, problems
    image, problems = load_rgb(sample)
    if image is None:
        return None, problems
    height, width = image.shape[:2]
    mismatch = check_size(sample, width, height)
    if mismatch:
        return None, problems + mismatch
    objects, found = check_objects(sample, width, height, categories)
    if objects is None:
        return None, problems + found
    return replace(sample, image=image, objects=objects, problems=()), problems + found
