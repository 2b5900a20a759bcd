"""Image classification metrics: accuracy, top-k, per-class precision/recall/F1, confusion, calibration.

Pure numpy. Inputs are ``labels`` (N,) integer class indices in [0, C) and ``probs``
(N, C) softmax probabilities (rows in [0, 1] summing to 1). The predicted class is
``argmax(probs)``: ties go to the lower class index.

Conventions (every result is NaN-free and made of python ints, floats and strings, so
it JSON-serialises as it is):

- precision of a class never predicted is 0 (sklearn's ``zero_division=0``);
- recall of a class without examples (support 0) is 0, and so is its F1. Such a class
  is still listed in ``per_class`` (with support 0) but left out of the macro averages,
  which are over the classes with support > 0;
- F1 is 0 when precision + recall is 0;
- top-k counts an example correct when its class is among the k highest probabilities,
  ties broken toward the lower class index like argmax, so ``top_1_accuracy ==
  accuracy``. (Keras' ``in_top_k`` instead counts every class tied at the boundary.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visionflow.metrics.coco import Params, interpolated_precision

PROB_SUM_TOLERANCE = 1e-2  # loose enough for float16 softmax rows; logits miss it by far


def check_labels(labels, num_classes: int, name: str = "labels") -> np.ndarray:
    """``labels`` as an (N,) int array, or ValueError if not 1-D integers in [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"{name} must be a non-empty (N,) array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be integer class indices, got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"{name} must be in [0, {num_classes}), got values from {labels.min()} to {labels.max()}")
    return labels.astype(np.int64)


def check_predictions(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (N,), probs (N, C))`` as arrays, or ValueError naming the shapes that disagree."""
    probs = np.asarray(probs, dtype=np.float64)
    labels_shape = np.shape(labels)
    if probs.ndim != 2 or len(labels_shape) != 1 or probs.shape[0] != labels_shape[0]:
        raise ValueError(f"probs must be (N, C) for labels (N,), got probs {probs.shape} and labels {labels_shape}")
    if probs.size == 0:
        raise ValueError(f"probs must have at least one example and one class, got {probs.shape}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise ValueError(f"probs {probs.shape} must be probabilities in [0, 1]")
    worst = float(np.max(np.abs(probs.sum(axis=1) - 1)))
    if worst > PROB_SUM_TOLERANCE:
        raise ValueError(f"rows of probs {probs.shape} must sum to 1 (softmax), one is off by {worst:.3g}")
    return check_labels(labels, probs.shape[1]), probs


def check_class_names(class_names: Sequence[str], num_classes: int) -> list[str]:
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return names


def top_k_accuracy(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Fraction of examples whose class is among the ``k`` most probable; (N,), (N, C) -> float.

    The rank of the true class counts the classes more probable than it, plus the
    equally probable ones of lower index (argmax's tie-break).
    """
    labels, probs = check_predictions(labels, probs)
    true_prob = probs[np.arange(len(labels)), labels][:, None]
    lower_index = np.arange(probs.shape[1])[None, :] < labels[:, None]
    rank = np.sum(probs > true_prob, axis=1) + np.sum((probs == true_prob) & lower_index, axis=1)
    return float(np.mean(rank < k))


def confusion_matrix(labels, predicted, num_classes: int) -> np.ndarray:
    """(C, C) int counts, rows the true class and columns the predicted one; (N,), (N,) -> (C, C)."""
    labels = check_labels(labels, num_classes)
    predicted = check_labels(predicted, num_classes, name="predicted")
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predicted {predicted.shape} must have the same shape")
    counts = np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def confusion_rows(labels, predicted, class_names: Sequence[str]) -> list[dict]:
    """One ``{"actual": name, "predicted": name}`` per example, for DVC's ``confusion`` template.

    That template counts rows per (actual, predicted) pair itself, so a row per example
    (not a row per cell with a count) is what it needs: ``template: confusion, x: actual,
    y: predicted``.
    """
    names = check_class_names(class_names, len(class_names))
    labels = check_labels(labels, len(names))
    predicted = check_labels(predicted, len(names), name="predicted")
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predicted {predicted.shape} must have the same shape")
    return [{"actual": names[a], "predicted": names[p]} for a, p in zip(labels.tolist(), predicted.tolist())]


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise ``numerator / denominator``, 0 where the denominator is 0."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 (C,) floats and support (C,) ints from a (C, C) confusion matrix."""
    true_positives = np.diag(matrix)
    support = matrix.sum(axis=1)
    precision = safe_divide(true_positives, matrix.sum(axis=0))
    recall = safe_divide(true_positives, support)
    f1 = safe_divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def expected_calibration_error(labels, probs, bins: int = 15) -> tuple[float, list[dict]]:
    """ECE of the top-class confidence (Guo et al. 2017) and the reliability table behind it.

    Confidence is the max probability; bins are ``bins`` equal-width intervals
    (lower, upper] over (0, 1] (so 0.5 falls in (0.25, 0.5] with 4 bins). ECE is the sum over
    bins of ``count / N * |accuracy - confidence|``. ``reliability`` has one dict per bin:
    ``lower``, ``upper``, ``count``, mean ``confidence`` and ``accuracy``; an empty bin has
    count 0 and confidence and accuracy 0.0 (not NaN). (N,), (N, C) -> float, list of bins.
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    labels, probs = check_predictions(labels, probs)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    mean_confidence = safe_divide(np.bincount(index, confidence, minlength=bins), count)
    accuracy = safe_divide(np.bincount(index, correct, minlength=bins), count)
    ece = float(np.sum(count / len(labels) * np.abs(accuracy - mean_confidence)))
    reliability = [
        {"lower": float(lo), "upper": float(hi), "count": int(n), "confidence": float(c), "accuracy": float(a)}
        for lo, hi, n, c, a in zip(edges[:-1], edges[1:], count, mean_confidence, accuracy)
    ]
    return ece, reliability


def classification_metrics(
    labels, probs, class_names: Sequence[str], top_k: Sequence[int] = (1, 5), ece_bins: int = 15
) -> dict:
    """Test-set summary for ``metrics/<model>/test.json``; (N,), (N, C) -> dict of python numbers.

    Keys: ``num_examples``, ``accuracy``, ``top_{k}_accuracy`` for each k in ``top_k`` below
    C (at k >= C it is trivially 1, so left out), ``macro_precision``, ``macro_recall``,
    ``macro_f1`` (over classes with support > 0), ``ece`` (``ece_bins`` bins) and
    ``per_class``: ``{name: {"precision", "recall", "f1", "support"}}``.
    """
    labels, probs = check_predictions(labels, probs)
    num_classes = probs.shape[1]
    names = check_class_names(class_names, num_classes)
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in top_k):
        raise ValueError(f"top_k must be positive integers, got {tuple(top_k)}")
    matrix = confusion_matrix(labels, probs.argmax(axis=1), num_classes)
    scores = per_class_scores(matrix)
    present = scores["support"] > 0
    result = {"num_examples": int(len(labels)), "accuracy": float(np.trace(matrix) / len(labels))}
    for k in sorted(set(int(k) for k in top_k if k < num_classes)):
        result[f"top_{k}_accuracy"] = top_k_accuracy(labels, probs, k)
    for key in ("precision", "recall", "f1"):
        result[f"macro_{key}"] = float(np.mean(scores[key][present]))
    result["ece"] = expected_calibration_error(labels, probs, ece_bins)[0]
    result["per_class"] = {
        name: {
            "precision": float(scores["precision"][i]),
            "recall": float(scores["recall"][i]),
            "f1": float(scores["f1"][i]),
            "support": int(scores["support"][i]),
        }
        for i, name in enumerate(names)
    }
    return result



def one_vs_rest_pr_curves(labels, probs, class_names: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per class, images ranked by its probability: ``{name: (recall (101,), precision (101,))}``.

    Precision is interpolated as COCO does (the highest precision at any recall at least
    as high), at its 101 recall thresholds; 0 where the recall is never reached.
    """
    labels, probs = check_predictions(labels, probs)
    names = check_class_names(class_names, probs.shape[1])
    thresholds = Params().recall_thresholds
    curves = {}
    for c, name in enumerate(names):
        hits = (labels[np.argsort(-probs[:, c], kind="stable")] == c).astype(float)
        tp = np.cumsum(hits)
        recall = safe_divide(tp, np.full_like(tp, hits.sum()))
        curves[name] = (thresholds, interpolated_precision(recall, tp / np.arange(1, len(tp) + 1), thresholds))
    return curves
