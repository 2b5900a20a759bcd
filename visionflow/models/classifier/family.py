"""The classifier on the model-family interface: one label per image, boxes or not."""

from __future__ import annotations

import numpy as np

from visionflow.models.classifier.config import ClassifierConfig
from visionflow.models.family import Detections, ModelFamily, Reports

WHOLE_IMAGE = np.array([[0.0, 0.0, 1.0, 1.0]])


class Classifier(ModelFamily):
    """The class of each image: its first annotation's, boxed or not (label-only data has no boxes)."""

    name = "classifier"
    Config = ClassifierConfig
    headline_metric = "accuracy"
    localizes = False

    def build(self, backbone_spec, image_size: int, width: float, backbone_weights: str | None):
        from visionflow.models.classifier.network import build_classifier

        return build_classifier(backbone_spec, image_size, len(self.classes), width, backbone_weights,
                                self.config.pooling)

    def targets(self, boxes_xyxy_norm, labels, valid, image_labels):
        return {"class": image_labels[:, 0]}

    def compile(self, model, optimizer) -> None:
        from visionflow.models.classifier.network import compile_classifier

        compile_classifier(model, optimizer, min(self.config.top_k, len(self.classes)))

    def inference_model(self, model):
        return model

    def decode(self, outputs: dict[str, np.ndarray]) -> list[Detections]:
        """The ``top_k`` most likely classes of each image, best first, each a whole-image box scored by its probability."""
        probs = np.asarray(outputs["class"])
        k = min(self.config.top_k, probs.shape[1])
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [Detections(np.repeat(WHOLE_IMAGE, k, axis=0), classes, p[classes]) for classes, p in zip(top, probs)]

    def metrics(self, outputs, targets, iou_thresholds=(0.5, 0.75)) -> dict[str, float]:
        """Accuracy, top-k accuracy, per-class precision, recall and F1, and the calibration error (ECE)."""
        from visionflow.metrics.classification import classification_metrics

        return classification_metrics(np.asarray(targets["class"]), np.asarray(outputs["class"]), self.classes,
                                      top_k=(1, self.config.top_k))

    def reports(self, outputs, targets) -> Reports:
        """Per-class precision-recall (one class against the rest), the confusion matrix and the reliability diagram."""
        from visionflow.figures_classification import confusion_matrix_figure, reliability_diagram
        from visionflow.metrics.classification import (confusion_matrix, confusion_rows, expected_calibration_error,
                                                       one_vs_rest_pr_curves)

        labels, probs = np.asarray(targets["class"]), np.asarray(outputs["class"])
        predicted = probs.argmax(axis=1)
        ece, reliability = expected_calibration_error(labels, probs)
        matrix = confusion_matrix(labels, predicted, len(self.classes))
        return Reports(
            curves=one_vs_rest_pr_curves(labels, probs, self.classes),
            tables={"confusion": confusion_rows(labels, predicted, self.classes), "reliability": reliability},
            figures={"confusion_matrix": confusion_matrix_figure(matrix, self.classes, "classifier, test split"),
                     "reliability": reliability_diagram(reliability, ece, "classifier, test split")})

    def evidence(self, truth: dict, detections: list[dict]):
        """Per test image, whether its best class is right: the headline is their mean."""
        from visionflow.metrics.evidence import top_class_correct

        return top_class_correct(truth, detections)
