"""The one interface of a model family (the localizer, a detector, a classifier).

The generic parts know a family only through it: the ``tf.data`` pipeline asks it for
the targets of a batch, the two-phase trainer builds and compiles through it, and the
evaluation decodes the saved model's outputs through it to COCO-style detections and
asks it for its own metrics. Adding a family touches nothing generic: register it
through the ``visionflow.families`` entry-point group (a built-in one in :data:`FAMILIES`
and :mod:`visionflow.models.family_configs`), give it a section ``train.<name>`` in
``params.yaml``, and its training-curve charts to ``dvc.yaml``'s top-level ``plots``.

A family's module must import without TensorFlow (its ``Config`` is read when
``params.yaml`` is checked); it imports its Keras code inside the methods that need it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from visionflow.config import TrainConfig
from visionflow.registry import Registry


@dataclass(frozen=True)
class Detections:
    """One image's detections in the model-input frame: boxes (K, 4) normalised xyxy, class indices, scores."""

    boxes_xyxy_norm: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


@dataclass
class Reports:
    """What a family's evaluation adds to its metrics.

    ``curves``: class -> (recall, precision), for ``dvc plots``; ``tables``: name -> rows
    (dicts), written as ``reports/<family>/<name>.json``; ``figures``: name -> matplotlib
    figure, logged to MLflow.
    """

    curves: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)


class ModelFamily(ABC):
    """One kind of model on a backbone, trained by the generic two-phase trainer."""

    name: ClassVar[str]
    Config: ClassVar[type[TrainConfig]]  # its section ``train.<name>`` of params.yaml
    headline_metric: ClassVar[str]  # the test metric that says how good a model is
    localizes: ClassVar[bool] = True  # its detections have boxes, scored with COCO AP against the ground truth

    def __init__(self, config: TrainConfig, classes: list[str]):
        self.config = config
        self.classes = list(classes)

    @abstractmethod
    def build(self, backbone_spec, image_size: int, width: float, backbone_weights: str | None):
        """``(model, backbone)``: the model to train and the backbone inside it (to freeze and unfreeze)."""

    @abstractmethod
    def targets(self, boxes_xyxy_norm, labels, valid, image_labels) -> dict[str, Any]:
        """The training targets of a batch (TensorFlow, inside the pipeline's compiled function).

        ``boxes_xyxy_norm`` (B, N, 4) and ``labels`` (B, N) are padded; ``valid`` (B, N) marks real
        objects. ``image_labels`` (B, M), padded with -1, is the class of every annotation of an
        image, boxed or not: all that label-only data (a folder per class) has.
        """

    @abstractmethod
    def compile(self, model, optimizer) -> None:
        """Compile ``model`` with the family's losses and training metrics."""

    @abstractmethod
    def inference_model(self, model):
        """The model to save and serve: plain Keras, loadable without visionflow."""

    @abstractmethod
    def decode(self, outputs: dict[str, np.ndarray]) -> list[Detections]:
        """The saved model's outputs for a batch -> one :class:`Detections` per image."""

    @abstractmethod
    def metrics(self, outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray],
                iou_thresholds: tuple[float, ...]) -> dict[str, float]:
        """The family's own test metrics from the saved model's outputs and the targets, whole split."""

    def input_sizes(self) -> tuple[tuple[int, ...], int]:
        """Multi-scale training: the input sizes to draw from, and every how many batches; ``()``: the data's own."""
        return (), 1

    def reports(self, outputs: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> Reports:
        """Curves, tables and figures of its own; a family that localizes gets COCO's PR curves without them."""
        return Reports()

    def evidence(self, truth: dict, detections: list[dict]):
        """Per test image, what the headline metric needs, for the promotion gate's paired bootstrap.

        The default is COCO AP at IoU 0.5 of the detections; a family whose headline is a
        mean over images returns :class:`visionflow.metrics.evidence.ImageMeans`.
        """
        from visionflow.metrics.evidence import detection_ap

        return detection_ap(truth, detections)


FAMILIES: Registry[type[ModelFamily]] = Registry(
    "families", lazy={"localizer": "visionflow.models.localizer.family:Localizer",
                      "classifier": "visionflow.models.classifier.family:Classifier",
                      "detector": "visionflow.models.detector.family:Detector"})
