"""What using a saved model takes besides its weights: ``model.json`` beside ``model.keras``.

The family that decodes its outputs, the class names and their dataset category ids,
the backbone whose ``preprocess_input`` the model expects, and how images are fitted to
its input. The train stage writes it, MLflow keeps it as the logged model's metadata,
and ``visionflow predict`` reads it from either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from visionflow.errors import DataError
from visionflow.io import atomic_write_text


@dataclass(frozen=True)
class ModelCard:
    family: str
    classes: list[str]
    category_ids: list[int]  # the dataset's id of each class, for COCO results
    backbone: str
    image_size: int
    resize: str  # stretch | letterbox

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str) -> ModelCard:
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise DataError(f"{where}: not a visionflow model card, it lacks {', '.join(missing)}")
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.as_dict(), indent=1) + "\n")

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()), str(path))
        except FileNotFoundError:
            raise DataError(f"{path}: no model card beside the model (the train stage writes it)") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not JSON ({e})") from None


def card_path(model_path: Path) -> Path:
    """``models/<family>/model.keras`` -> ``models/<family>/model.json``."""
    return Path(model_path).with_name("model.json")
