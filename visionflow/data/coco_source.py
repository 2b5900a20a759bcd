"""``ingest.source: coco``: a folder with a COCO ``annotations.json`` and its images.

Images are copied into the raw layout, never moved or modified.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from visionflow.data.sources import SOURCES, Sample, SourceObject
from visionflow.errors import DataError


class CocoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: Path
    annotations: str = "annotations.json"
    images_dir: str = "."  # relative to ``path``

    @field_validator("path")
    @classmethod
    def _folder_exists(cls, path: Path) -> Path:
        if not path.is_dir():
            raise ValueError(f"{path} is not an existing folder")
        return path

    @model_validator(mode="after")
    def _annotations_exist(self) -> "CocoOptions":
        if not (self.path / self.annotations).is_file():
            raise ValueError(f"annotations: {self.path / self.annotations} does not exist")
        return self


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
            by_image.setdefault(ann["image_id"], []).append(ann)
        images_dir = self.options.path / self.options.images_dir
        for img in self.coco["images"]:
            objects = [SourceObject(self._categories[a["category_id"]], tuple(a["bbox"]), int(a.get("iscrowd", 0)))
                       for a in by_image.get(img["id"], [])]
            yield Sample(f"images/{img['file_name']}", images_dir / img["file_name"], objects)
