"""``ingest.source: image_folder``: one sub-folder per class, no boxes (tf_flowers on disk)."""

from __future__ import annotations

from typing import Iterator

from pydantic import BaseModel, ConfigDict

from visionflow.data.sources import SOURCES, ExistingFolder, Sample, SourceObject

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


class ImageFolderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: ExistingFolder


@SOURCES.register("image_folder")
class ImageFolder:
    Options = ImageFolderOptions

    def __init__(self, options: ImageFolderOptions):
        self.options = options
        self._classes = sorted(p.name for p in options.path.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.items = [(cls, f) for cls in self._classes for f in sorted((options.path / cls).iterdir())
                      if f.suffix.lower() in IMAGE_SUFFIXES]

    def categories(self) -> list[str]:
        return list(self._classes)

    def __len__(self) -> int:
        return len(self.items)

    def samples(self) -> Iterator[Sample]:
        for cls, path in self.items:
            yield Sample(f"images/{cls}/{path.name}", path, [SourceObject(cls, None)])
