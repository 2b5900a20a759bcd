"""The source registry and what a source yields.

A source is a class registered by name, with a pydantic ``Options`` model (its
section under ``ingest.<name>`` in ``params.yaml``), ``categories()``, ``__len__``
and ``samples()``. The ingest stage writes whatever a source yields into the one raw
COCO layout. Third-party sources register through the ``visionflow.sources``
entry-point group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Iterator, Protocol

import numpy as np
from pydantic import AfterValidator

from visionflow.registry import Registry


def _existing_folder(path: Path) -> Path:
    if not path.is_dir():
        raise ValueError(f"{path} is not an existing folder")
    return path


ExistingFolder = Annotated[Path, AfterValidator(_existing_folder)]
"""A source option that must name a folder that exists (checked when params are loaded)."""


@dataclass(frozen=True)
class SourceObject:
    category: str
    bbox_xywh: tuple[float, float, float, float] | None  # pixels; None for label-only data
    iscrowd: int = 0
    difficult: bool = False


@dataclass(frozen=True)
class Sample:
    """One image: ``image`` is an (H, W, 3) uint8 array or a path to an encoded file."""

    file_name: str  # relative path inside the raw layout, checked by validation.file_name_problems
    image: np.ndarray | Path
    objects: list[SourceObject] = field(default_factory=list)
    problems: tuple[tuple[str, str], ...] = ()  # (kind, detail) the source found: the record is bad
    attributes: dict = field(default_factory=dict)  # extra image fields kept in the raw layout (e.g. video_id)
    declared_size: tuple[int, int] | None = None  # (width, height) the source states; None: not declared


class Source(Protocol):
    def categories(self) -> list[str]: ...

    def __len__(self) -> int: ...

    def samples(self) -> Iterator[Sample]:
        """Deterministic: the same params give the same records, so an ingest is reproducible."""
        ...


SOURCES: Registry[type] = Registry("sources", builtin_modules=(
    "visionflow.data.synthetic", "visionflow.data.coco_source", "visionflow.data.voc_source",
    "visionflow.data.image_folder", "visionflow.data.tfds_source"))


def build_source(name: str, options: dict) -> Source:
    cls = SOURCES.get(name)
    return cls(cls.Options(**options))
