"""``visionflow predict``: a saved model on image files, as COCO results in each file's own pixels.

The model is a ``.keras`` file with its model card beside it (``model.json``, see
:mod:`visionflow.models.card`) or an MLflow model URI (``runs:/…``, ``models:/name@alias``),
whose card is the logged model's metadata (a Keras-flavour log, or the pyfunc model of
:mod:`visionflow.tracking.pyfunc`, whose artifacts hold the ``.keras`` file). Each image is
fitted to the model's input as in training (stretched or letterboxed), and the saved model
(which reads raw pixels) runs; the family decodes its outputs, and the boxes move back to
the original image. :func:`predict_pixels` does this for pixels already in memory; the
pyfunc model serves through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from visionflow.errors import DataError
from visionflow.models.card import ModelCard, card_path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


@dataclass
class LoadedModel:
    keras_model: object
    card: ModelCard


def is_mlflow_uri(ref: str) -> bool:
    return ref.startswith(("runs:/", "models:/")) or "://" in ref


def load_model(ref: str) -> LoadedModel:
    """A ``.keras`` path or an MLflow model URI -> the Keras model and its card."""
    from visionflow.models.saved import load_saved_model

    path, card = _from_mlflow(ref) if is_mlflow_uri(ref) else _from_file(Path(ref))
    return LoadedModel(load_saved_model(path), card)


def _from_file(path: Path) -> tuple[Path, ModelCard]:
    if not path.is_file():
        raise DataError(f"{path}: no such model file")
    return path, ModelCard.read(card_path(path))


def _from_mlflow(uri: str) -> tuple[Path, ModelCard]:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except (MlflowException, OSError) as e:
        raise DataError(f"{uri}: the model URI does not resolve ({str(e).splitlines()[0]})") from None
    keras_files = sorted(local.rglob("*.keras"))  # data/ of the Keras flavour, artifacts/ of the pyfunc model
    if not keras_files:
        raise DataError(f"{uri}: no Keras model in it")
    return keras_files[0], ModelCard.from_dict(Model.load(local).metadata or {}, uri)


def image_files(inputs: list[str]) -> list[str]:
    """Each input as given, a directory replaced by its image files (sorted); a missing one is an error."""
    found = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found += [str(p) for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            found.append(given)
        else:
            raise DataError(f"{given}: no such file or directory")
    return found


def read_rgb(given: str, source: BinaryIO | None = None) -> np.ndarray:
    """The RGB pixels (uint8, height x width x 3) of the image file ``given``, or of ``source`` (an encoded
    image in a file object), which errors call ``given``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(given if source is None else source) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{given}: not an image ({e.__class__.__name__})") from None


def model_input(pixels: np.ndarray, card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """``(image fitted to the model input, its window)``, as in preprocessing."""
    from PIL import Image

    from visionflow.data.resize import resize_image

    fitted, window = resize_image(Image.fromarray(pixels), card.image_size, card.resize)
    return np.asarray(fitted, np.float32), window


def predict_pixels(loaded: LoadedModel, pixels: list[np.ndarray], batch_size: int = 16,
                   first_id: int = 1) -> list[dict]:
    """COCO results, with ``category_name``, for RGB images (uint8, height x width x 3, any size).

    ``image_id`` numbers the images from ``first_id``; each box is pixel ``[x, y, w, h]`` in
    its own image.
    """
    from visionflow.metrics.detections import coco_results
    from visionflow.models.family import FAMILIES

    card = loaded.card
    family_class = FAMILIES.get(card.family)
    family = family_class(family_class.Config(), card.classes)
    results = []
    for start in range(0, len(pixels), batch_size):
        chunk = pixels[start:start + batch_size]
        inputs, windows = zip(*(model_input(p, card) for p in chunk))
        outputs = loaded.keras_model.predict_on_batch(np.stack(inputs))
        ids = np.arange(first_id + start, first_id + start + len(chunk))
        sizes = {int(i): (p.shape[1], p.shape[0]) for i, p in zip(ids, chunk)}
        results += coco_results(ids, family.decode(outputs), np.stack(windows), sizes, card.category_ids)
    for det in results:
        det["category_name"] = card.classes[card.category_ids.index(det["category_id"])]
    return results


def predict_files(loaded: LoadedModel, files: list[str], batch_size: int = 16) -> list[dict]:
    """COCO results for ``files`` (``image_id`` numbers them from 1), with ``category_name`` and ``file_name``."""
    results = []
    for start in range(0, len(files), batch_size):  # a batch of files in memory at a time
        chunk = files[start:start + batch_size]
        results += predict_pixels(loaded, [read_rgb(f) for f in chunk], batch_size, first_id=start + 1)
    for det in results:
        det["file_name"] = files[det["image_id"] - 1]
    return results


def draw_predictions(files: list[str], results: list[dict], out_dir: Path) -> list[Path]:
    """Each image with its predicted boxes and labels, as ``out_dir/<name>.png`` (numbered on a clash)."""
    from visionflow.boxes import convert_boxes
    from visionflow.figures import draw_boxes

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for number, given in enumerate(files, start=1):
        found = [d for d in results if d["image_id"] == number]
        boxes = [convert_boxes(d["bbox"], "xywh", "xyxy").tolist() for d in found]
        labels = [f"{d['category_name']} {d['score']:.2f}" for d in found]
        target = out_dir / f"{Path(given).stem}.png"
        if target in written:
            target = out_dir / f"{Path(given).stem}_{number}.png"
        draw_boxes(read_rgb(given), [], boxes, labels).save(target)
        written.append(target)
    return written
