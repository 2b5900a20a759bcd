"""A saved model as an MLflow pyfunc model: raw images in, ``visionflow predict``'s detections out.

``mlflow.pyfunc.load_model("models:/visionflow-detector@champion").predict(...)`` and
``mlflow models serve`` run :func:`visionflow.predict.predict_pixels`, the code of
``visionflow predict``: each image is fitted to the model's input (stretched or letterboxed, as
its model card says), the saved model runs (its decoder and NMS inside it, for the detector), the
family decodes its outputs, and the boxes move back to the image's own pixels. The ``.keras``
file and its card (``model.json``) are the logged model's artifacts; the card is also its
metadata, so ``visionflow predict --model models:/...`` reads either form.

**Input**: one row per image, its column ``image`` holding either

- the bytes of an encoded image file (PNG, JPEG, ... any size), which is what the REST API
  takes: the signature declares ``image`` as ``binary``, so the scoring server base64-decodes
  it (``{"dataframe_records": [{"image": "<base64 of the file>"}]}``); or
- in-process only, RGB pixels, a ``uint8`` array of shape (height, width, 3), any size:
  ``pd.DataFrame({"image": [pixels, ...]})`` or ``{"image": [pixels, ...]}``.

Why this form: MLflow 3's signature enforcement has no type for "an image of any size". A
tensor signature fixes every dimension but the first, so images of different sizes would
have to be resized or padded by the caller (and, through JSON, sent as nested lists,
about 4 bytes of text per byte of pixels). A ``binary`` column takes any size, costs
base64's 4/3 of the file, and is the form MLflow's REST scoring decodes by itself; MLflow
passes an in-memory ``binary`` column of object dtype through unchecked, so arrays of
pixels work in-process beside bytes. A bare array or a list of arrays does not pass
MLflow's enforcement (it makes a DataFrame of it), so the column is needed. Anything
else in the column (floats, a string, a file that is not an image) raises a one-line
``MlflowException`` naming the image; over REST it is a 400 whose message ends with that line.

**Output**: a DataFrame, a row per detection, in the COCO results format of ``visionflow
predict``: ``image_id`` (the image's position in the input, from 1), ``category_id``,
``category_name``, ``bbox`` (pixel ``[x, y, w, h]`` in that image) and ``score``; the
REST API returns them as ``{"predictions": [records]}``. The parameter ``min_score``
(default 0) leaves out detections scoring below it, as ``--min-score``.

The served model imports ``visionflow``: the package folder is logged with it (``code_paths``),
so a server whose environment has the pinned requirements but not visionflow finds it. A
family or backbone from another package (an entry point) is not logged with it.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo

from visionflow.errors import DataError

IMAGE_COLUMN = "image"
OUTPUT_COLUMNS = ("image_id", "category_id", "category_name", "bbox", "score")
KERAS_ARTIFACT = "keras_model"
CARD_ARTIFACT = "model_card"
# What predict_pixels imports besides Keras and TensorFlow (visionflow itself travels as code).
SERVING_PACKAGES = ("numpy", "pandas", "pillow", "pydantic", "pyyaml")


class VisionflowModel(mlflow.pyfunc.PythonModel):
    """A visionflow ``.keras`` model and its card as a pyfunc model; see the module docstring."""

    def load_context(self, context) -> None:
        from visionflow.models.card import ModelCard
        from visionflow.models.saved import load_saved_model
        from visionflow.predict import LoadedModel

        self.loaded = LoadedModel(load_saved_model(context.artifacts[KERAS_ARTIFACT]),
                                  ModelCard.read(Path(context.artifacts[CARD_ARTIFACT])))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from visionflow.predict import predict_pixels

        min_score = float((params or {}).get("min_score", 0.0))
        pixels = [image_pixels(value, number) for number, value in enumerate(model_input[IMAGE_COLUMN], start=1)]
        results = [d for d in predict_pixels(self.loaded, pixels) if d["score"] >= min_score]
        return pd.DataFrame(results, columns=list(OUTPUT_COLUMNS))


def image_pixels(value, number: int) -> np.ndarray:
    """One cell of the ``image`` column -> RGB pixels (uint8, height x width x 3); else a one-line error."""
    from visionflow.predict import read_rgb

    where = f"image {number}"
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return read_rgb(where, BytesIO(value))
        except DataError as e:
            raise MlflowException.invalid_parameter_value(str(e)) from None
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3 and value.shape[2] == 3:
        return value
    got = f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
    raise MlflowException.invalid_parameter_value(
        f"{where}: expected the bytes of an image file or uint8 RGB pixels (height, width, 3), got {got}")


def pyfunc_signature():
    """An ``image`` column of bytes (or, in-process, pixel arrays) in; COCO results out; ``min_score``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    outputs = Schema([ColSpec(DataType.long, "image_id"), ColSpec(DataType.long, "category_id"),
                      ColSpec(DataType.string, "category_name"), ColSpec(Array(DataType.double), "bbox"),
                      ColSpec(DataType.double, "score")])
    return ModelSignature(inputs=Schema([ColSpec(DataType.binary, IMAGE_COLUMN)]), outputs=outputs,
                          params=ParamSchema([ParamSpec("min_score", DataType.double, 0.0)]))


def input_example(image_size: int) -> pd.DataFrame:
    """One gray PNG, wider than the model input and of no multiple of 32, so it exercises the fitting."""
    from PIL import Image

    image = Image.new("RGB", (image_size + image_size // 2 + 1, image_size - 1), (128, 128, 128))
    encoded = BytesIO()
    image.save(encoded, format="PNG")
    return pd.DataFrame({IMAGE_COLUMN: [encoded.getvalue()]})


def pyfunc_requirements() -> list[str]:
    """The pinned Keras and TensorFlow of :func:`serving_requirements`, and what ``visionflow.predict`` imports."""
    from importlib.metadata import version

    from visionflow.tracking.models import serving_requirements

    return serving_requirements() + [f"{name}=={version(name)}" for name in SERVING_PACKAGES]


def log_pyfunc_model(model_file: Path, name: str = "model", registered_model_name: str | None = None,
                     metadata: dict | None = None) -> ModelInfo:
    """Log the saved model ``model_file`` and its card (``model.json`` beside it) as a pyfunc model in the active run.

    The card is also the logged model's metadata (``metadata`` adds other keys). Returns MLflow's
    ``ModelInfo``; MLflow checks the input example through its REST parsing while logging it.
    """
    import visionflow
    from visionflow.models.card import ModelCard, card_path

    model_file = Path(model_file)
    card = ModelCard.read(card_path(model_file))
    return mlflow.pyfunc.log_model(
        name=name, python_model=VisionflowModel(),
        artifacts={KERAS_ARTIFACT: str(model_file), CARD_ARTIFACT: str(card_path(model_file))},
        code_paths=[str(Path(visionflow.__file__).parent)], signature=pyfunc_signature(),
        input_example=input_example(card.image_size), pip_requirements=pyfunc_requirements(),
        metadata={**(metadata or {}), **card.as_dict()}, registered_model_name=registered_model_name)
