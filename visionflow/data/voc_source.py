"""``ingest.source: voc``: Pascal VOC XML annotations and JPEGs, keeping ``difficult``.

VOC boxes are 1-based inclusive pixel corners; COCO boxes are continuous, so
``x = xmin - 1`` and ``w = xmax - xmin + 1``. A ``<size>``, when present, is passed on as
the image's declared size for validation to compare.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, ConfigDict, field_validator

from visionflow.data.sources import SOURCES, Sample, SourceObject
from visionflow.errors import DataError


class VocOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: Path  # the VOC root: Annotations/, JPEGImages/, ImageSets/
    image_set: str | None = None  # e.g. "trainval": only the ids in ImageSets/Main/<image_set>.txt
    classes: list[str] | None = None  # default: every class name found, sorted

    @field_validator("path")
    @classmethod
    def _folder_exists(cls, path: Path) -> Path:
        if not (path / "Annotations").is_dir():
            raise ValueError(f"{path} has no Annotations/ folder (is it a VOC root?)")
        return path


def _size(root: ET.Element) -> tuple[int, int] | None:
    size = root.find("size")
    return None if size is None else (int(size.findtext("width")), int(size.findtext("height")))


def _parse(xml_path: Path) -> tuple[str, list[SourceObject], tuple[int, int] | None]:
    try:
        root = ET.parse(xml_path).getroot()
        file_name = root.findtext("filename")
        size = _size(root)
        objects = []
        for i, obj in enumerate(root.iter("object")):
            box = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            objects.append(SourceObject(obj.findtext("name").strip(), (xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1),
                                        difficult=obj.findtext("difficult", "0").strip() == "1"))
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        raise DataError(f"{xml_path}: not a valid VOC annotation ({type(e).__name__}: {e})") from None
    if not file_name:
        raise DataError(f"{xml_path}: no <filename>")
    return file_name, objects, size


@SOURCES.register("voc")
class VocFolder:
    Options = VocOptions

    def __init__(self, options: VocOptions):
        self.options = options
        ann_dir = options.path / "Annotations"
        if options.image_set:
            listing = options.path / "ImageSets" / "Main" / f"{options.image_set}.txt"
            if not listing.is_file():
                raise DataError(f"{listing}: no such image set")
            self.files = [ann_dir / f"{line.split()[0]}.xml" for line in listing.read_text().splitlines() if line.strip()]
        else:
            self.files = sorted(ann_dir.glob("*.xml"))
        self.parsed = [_parse(f) for f in self.files]
        found = sorted({o.category for _, objs, _ in self.parsed for o in objs})
        self._classes = options.classes or found
        unknown = set(found) - set(self._classes)
        if unknown:
            raise DataError(f"{options.path}: classes {sorted(unknown)} are not in ingest.voc.classes")

    def categories(self) -> list[str]:
        return list(self._classes)

    def __len__(self) -> int:
        return len(self.parsed)

    def samples(self) -> Iterator[Sample]:
        for file_name, objects, size in self.parsed:
            yield Sample(f"images/{file_name}", self.options.path / "JPEGImages" / file_name, objects,
                         declared_size=size)
