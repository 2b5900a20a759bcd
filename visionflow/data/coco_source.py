"""``ingest.source: coco``: a folder with a COCO ``annotations.json`` and its images.

Images are copied into the raw layout, never moved or modified. An image's ``width`` and
``height``, when given, are passed on as its declared size for validation to compare.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, model_validator

from visionflow.data.image_folder import IMAGE_SUFFIXES
from visionflow.data.sources import SOURCES, ExistingFolder, Sample, SourceObject
from visionflow.errors import DataError


class CocoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: ExistingFolder
    annotations: str = "annotations.json"
    images_dir: str = "."  # relative to ``path``

    @model_validator(mode="after")
    def _annotations_exist(self) -> "CocoOptions":
        if not (self.path / self.annotations).is_file():
            raise ValueError(f"annotations: {self.path / self.annotations} does not exist")
        return self


def _declared_size(img: dict) -> tuple[Any, Any] | None:
    if "width" not in img and "height" not in img:
        return None
    return img.get("width"), img.get("height")


@SOURCES.register("coco")
class CocoFolder:
    Options = CocoOptions

    def __init__(self, options: CocoOptions):
        self.options = options
        self.file = options.path / options.annotations
        try:
            self.coco = json.loads(self.file.read_text())
            self._categories = {c["id"]: c["name"] for c in self.coco["categories"]}
            self.coco["images"], self.coco["annotations"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{self.file}: not a COCO annotations file ({type(e).__name__}: {e})") from None

    def categories(self) -> list[str]:
        return [self._categories[i] for i in sorted(self._categories)]

    def __len__(self) -> int:
        return len(self.coco["images"])

    def samples(self) -> Iterator[Sample]:
        by_image: dict[int, list[dict]] = {}
        for ann in self.coco["annotations"]:
            by_image.setdefault(ann.get("image_id"), []).append(ann)
        images_dir = self.options.path / self.options.images_dir
        seen_ids: set = set()
        for img in self.coco["images"]:
            problems = []
            if img.get("id") in seen_ids:
                problems.append(("duplicate_image_id", f"image id {img.get('id')!r} appears twice in {self.file}"))
            seen_ids.add(img.get("id"))
            objects = self._objects(by_image.get(img.get("id"), []), problems)
            name = img.get("file_name")
            if not isinstance(name, str):  # an empty or unsafe string is left to the shared name check
                problems.append(("file_name_missing", f"image id {img.get('id')!r} in {self.file}: file_name {name!r}"))
                name = f"<image id {img.get('id')!r}>"
            extra = {k: v for k, v in img.items() if k not in ("id", "file_name", "width", "height")}
            yield Sample(f"images/{name}", images_dir / name, objects, tuple(problems), extra, _declared_size(img))

    def _objects(self, annotations: list[dict], problems: list) -> list[SourceObject]:
        """The image's objects; a malformed annotation is added to ``problems`` instead."""
        objects = []
        for a in annotations:
            if a.get("category_id") not in self._categories:
                problems.append(("unknown_category",
                                 f"annotation {a.get('id')!r}: category_id {a.get('category_id')!r}"))
                continue
            bbox = a.get("bbox")
            if bbox is not None and (not isinstance(bbox, list) or len(bbox) != 4):
                problems.append(("box_malformed", f"annotation {a.get('id')!r}: bbox {bbox!r}"))
                continue
            objects.append(SourceObject(self._categories[a["category_id"]],
                                        None if bbox is None else tuple(float(v) for v in bbox),
                                        int(a.get("iscrowd", 0))))
        return objects

    def notes(self) -> list[tuple[str, str, str]]:
        """Dataset-level findings: annotations of unknown images, image files no record references."""
        found = []
        ids = {img.get("id") for img in self.coco["images"]}
        for a in self.coco["annotations"]:
            if a.get("image_id") not in ids:
                found.append(("unknown_image_id", str(self.file), f"annotation {a.get('id')!r}: image_id {a.get('image_id')!r}"))
        images_dir = self.options.path / self.options.images_dir
        referenced = {(images_dir / img["file_name"]).resolve() for img in self.coco["images"]
                      if isinstance(img.get("file_name"), str)}
        for f in sorted(images_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and f.resolve() not in referenced:
                found.append(("image_not_referenced", str(f), "present but not in the annotations"))
        return found
