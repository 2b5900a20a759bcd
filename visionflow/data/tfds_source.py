"""``ingest.source: tfds``: any TensorFlow Datasets dataset by name and split.

Classification sets (an ``image`` and a ``label``, like ``tf_flowers``) give labels only.
Detection sets (``objects`` with ``bbox`` and ``label``, like ``voc/2007`` and
``coco/2017``) give boxes: TFDS boxes are normalised (ymin, xmin, ymax, xmax) and become
COCO pixel (x, y, w, h). Downloading needs a connected machine; tests use
``tfds.testing.mock_data``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from visionflow.data.sources import SOURCES, Sample, SourceObject
from visionflow.errors import DataError


class TfdsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str  # e.g. tf_flowers, voc/2007, coco/2017
    split: str = "train"
    data_dir: str | None = None
    download: bool = True


def tfds_box_to_coco(bbox: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    """Normalised (ymin, xmin, ymax, xmax) -> pixel (x, y, w, h); corners are put in order."""
    y1, x1, y2, x2 = (float(v) for v in bbox)
    x1, x2 = sorted((x1 * width, x2 * width))
    y1, y2 = sorted((y1 * height, y2 * height))
    return x1, y1, x2 - x1, y2 - y1


@SOURCES.register("tfds")
class TfdsSource:
    Options = TfdsOptions

    def __init__(self, options: TfdsOptions):
        import tensorflow_datasets as tfds

        self.options = options
        try:
            self.builder = tfds.builder(options.name, data_dir=options.data_dir)
        except Exception as e:  # tfds raises its own DatasetNotFoundError and friends
            raise DataError(f"ingest.tfds.name: {options.name!r}: {e}") from None
        features = self.builder.info.features
        if "objects" in features and "bbox" in features["objects"]:
            self.kind, self._classes = "detection", list(features["objects"]["label"].names)
        elif "label" in features:
            self.kind, self._classes = "classification", list(features["label"].names)
        else:
            raise DataError(f"ingest.tfds.name: {options.name!r} has neither labels nor objects with boxes")

    def categories(self) -> list[str]:
        return self._classes

    def __len__(self) -> int:
        """The split's size if TFDS knows it yet (before a download it may not): else 0."""
        try:
            return int(self.builder.info.splits[self.options.split].num_examples)
        except KeyError:
            return 0

    def samples(self) -> Iterator[Sample]:
        import tensorflow_datasets as tfds

        if self.options.download:
            self.builder.download_and_prepare()
        ds = self.builder.as_dataset(split=self.options.split, shuffle_files=False)
        for i, ex in enumerate(tfds.as_numpy(ds)):
            image = ex["image"]
            if image.ndim == 3 and image.shape[-1] == 1:
                image = np.repeat(image, 3, axis=-1)
            height, width = image.shape[:2]
            if self.kind == "classification":
                objects = [SourceObject(self._classes[int(ex["label"])], None)]
            else:
                objs = ex["objects"]
                difficult = objs.get("is_difficult", np.zeros(len(objs["label"]), bool))
                crowd = objs.get("is_crowd", np.zeros(len(objs["label"]), bool))
                objects = [SourceObject(self._classes[int(label)], tfds_box_to_coco(box, width, height),
                                        iscrowd=int(c), difficult=bool(d))
                           for box, label, d, c in zip(objs["bbox"], objs["label"], difficult, crowd)]
            yield Sample(f"images/{i:07d}.jpg", image, objects)
