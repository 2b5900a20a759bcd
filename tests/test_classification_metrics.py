import json

import numpy as np
import pytest

from visionflow.figures_classification import confusion_matrix_figure, pyplot, reliability_diagram
from visionflow.metrics.classification import (
    classification_metrics,
    confusion_matrix,
    confusion_rows,
    expected_calibration_error,
    top_k_accuracy,
)

NAMES = ["cat", "dog", "bird"]
# Six examples over three classes; comments give the prediction and the true class's rank.
LABELS = np.array([0, 0, 0, 1, 1, 2])
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # cat,  rank 1
        [0.9, 0.05, 0.05],  # cat,  rank 1
        [0.3, 0.6, 0.1],  # dog,  rank 2
        [0.2, 0.5, 0.3],  # dog,  rank 1
        [0.35, 0.05, 0.6],  # bird, rank 3
        [0.3, 0.2, 0.5],  # bird, rank 1
    ]
)
PREDICTED = np.array([0, 0, 1, 1, 2, 2])
MATRIX = np.array([[2, 1, 0], [0, 1, 1], [0, 0, 1]])
# precision = diag / column sums, recall = diag / row sums, F1 = 2PR / (P + R)
PRECISION = {"cat": 2 / 2, "dog": 1 / 2, "bird": 1 / 2}
RECALL = {"cat": 2 / 3, "dog": 1 / 2, "bird": 1 / 1}
F1 = {"cat": 0.8, "dog": 0.5, "bird": 2 / 3}


def test_confusion_matrix_by_hand():
    np.testing.assert_array_equal(confusion_matrix(LABELS, PREDICTED, 3), MATRIX)
    assert confusion_matrix(LABELS, PREDICTED, 3).dtype.kind == "i"


def test_metrics_of_three_classes_by_hand():
    result = classification_metrics(LABELS, PROBS, NAMES, top_k=(1, 2, 5))
    assert result["num_examples"] == 6
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["top_1_accuracy"] == pytest.approx(4 / 6)
    assert result["top_2_accuracy"] == pytest.approx(5 / 6)
    assert "top_5_accuracy" not in result  # 5 >= 3 classes: trivially 1
    assert result["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert result["macro_recall"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert result["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    for name, support in zip(NAMES, (3, 2, 1)):
        row = result["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((PRECISION[name], RECALL[name], F1[name]))
        assert row["support"] == support
    assert result["ece"] == pytest.approx(expected_calibration_error(LABELS, PROBS, bins=15)[0])


@pytest.mark.parametrize("k, expected", [(1, 4 / 6), (2, 5 / 6), (3, 1.0)])
def test_top_k_by_hand(k, expected):
    assert top_k_accuracy(LABELS, PROBS, k) == pytest.approx(expected)


def test_top_k_ties_break_toward_lower_index_like_argmax():
    probs = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2]])
    # Class 0 wins the tie (as argmax), so class 1 ranks second.
    assert top_k_accuracy([0, 1], probs, 1) == 0.5
    assert top_k_accuracy([0, 1], probs, 2) == 1.0


# Four examples, four bins (0, .25], (.25, .5], (.5, .75], (.75, 1]:
#   conf .4 right -> bin 1; conf .6 right -> bin 2; conf .9 right and .8 wrong -> bin 3.
# ECE = 1/4 |1 - .4| + 1/4 |1 - .6| + 2/4 |.5 - .85| = .15 + .1 + .175 = .425
ECE_LABELS = np.array([0, 2, 0, 0])
ECE_PROBS = np.array([[0.4, 0.35, 0.25], [0.2, 0.2, 0.6], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])


def test_ece_by_hand():
    ece, reliability = expected_calibration_error(ECE_LABELS, ECE_PROBS, bins=4)
    assert ece == pytest.approx(0.425)
    expected = [(0, 0.25, 0, 0, 0), (0.25, 0.5, 1, 0.4, 1), (0.5, 0.75, 1, 0.6, 1), (0.75, 1, 2, 0.85, 0.5)]
    for row, (lower, upper, count, confidence, accuracy) in zip(reliability, expected):
        assert row["count"] == count
        assert (row["lower"], row["upper"], row["confidence"], row["accuracy"]) == pytest.approx(
            (lower, upper, confidence, accuracy)
        )


@pytest.mark.parametrize(
    "confidence, bins, expected_bin",
    [(0.5, 4, 1), (0.3, 10, 2), (1.0, 15, 14), (0.34, 3, 1)],  # bins are (lower, upper]
)
def test_ece_bin_edges_are_closed_on_the_right(confidence, bins, expected_bin):
    probs = np.array([[confidence] + [(1 - confidence) / 10] * 10])  # the rest spread thin: max is confidence
    _, reliability = expected_calibration_error([0], probs, bins=bins)
    assert [row["count"] for row in reliability].index(1) == expected_bin


def test_perfect_predictions_give_accuracy_one_and_ece_zero():
    labels = np.array([0, 1, 2, 1])
    result = classification_metrics(labels, np.eye(3)[labels], NAMES)
    assert result["accuracy"] == result["macro_f1"] == result["top_1_accuracy"] == 1.0
    assert result["ece"] == 0.0


def test_class_without_support_is_listed_but_left_out_of_macro():
    # cat: P 1/1, R 1/2, F1 2/3; dog: P 2/2, R 2/2, F1 1; bird: predicted once wrongly, no support.
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])
    result = classification_metrics([0, 0, 1, 1], probs, NAMES)
    assert result["per_class"]["bird"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["macro_precision"] == pytest.approx(1.0)
    assert result["macro_recall"] == pytest.approx(3 / 4)
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)


def test_class_never_predicted_has_precision_zero():
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])  # both predicted as class 0
    result = classification_metrics([0, 1], probs, ["cat", "dog"])
    assert result["per_class"]["dog"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert result["per_class"]["cat"]["precision"] == pytest.approx(0.5)
    assert result["macro_precision"] == pytest.approx(0.25)


def leaves(value):
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]


def test_results_are_plain_python_and_serialise():
    result = classification_metrics(LABELS, PROBS.astype(np.float32), NAMES)
    _, reliability = expected_calibration_error(LABELS, PROBS)
    rows = confusion_rows(LABELS, PREDICTED, NAMES)
    for value in (result, reliability, rows):
        json.dumps(value, allow_nan=False)
        assert {type(leaf) for leaf in leaves(value)} <= {int, float, str}


def test_confusion_rows_are_one_per_example():
    rows = confusion_rows([0, 2], [1, 2], NAMES)
    assert rows == [{"actual": "cat", "predicted": "dog"}, {"actual": "bird", "predicted": "bird"}]
    counted = {}
    for row in confusion_rows(LABELS, PREDICTED, NAMES):  # what DVC's confusion template does
        counted[row["actual"], row["predicted"]] = counted.get((row["actual"], row["predicted"]), 0) + 1
    assert counted == {(NAMES[i], NAMES[j]): n for (i, j), n in np.ndenumerate(MATRIX) if n}


@pytest.mark.parametrize(
    "labels, probs, match",
    [
        ([0, 1], PROBS, r"probs \(6, 3\).*labels \(2,\)"),
        ([0], [0.5, 0.5], r"probs \(2,\).*labels \(1,\)"),
        ([0], [[[1.0]]], r"probs \(1, 1, 1\)"),
        ([[0, 1]], [[0.5, 0.5]], r"labels \(1, 2\)"),
        ([], np.zeros((0, 3)), r"\(0, 3\)"),
        ([0.0, 1.0], [[1, 0], [0, 1]], "integer"),
        ([0, 3], [[1, 0, 0], [0, 1, 0]], r"\[0, 3\)"),
        ([0], [[2.0, -1.0]], r"\[0, 1\]"),
        ([0], [[0.5, 0.2]], "sum to 1"),
    ],
)
def test_bad_inputs_raise(labels, probs, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(labels, probs, ["a", "b", "c"][: np.shape(probs)[-1]])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: classification_metrics(LABELS, PROBS, ["cat", "dog"]), "2 class names for 3 classes"),
        (lambda: classification_metrics(LABELS, PROBS, ["cat", "cat", "dog"]), "unique"),
        (lambda: classification_metrics(LABELS, PROBS, NAMES, top_k=(0,)), "top_k"),
        (lambda: confusion_matrix([0, 1], [0], 2), r"labels \(2,\) and predicted \(1,\)"),
        (lambda: confusion_rows([0, 1], [0, 1, 1], NAMES), r"labels \(2,\) and predicted \(3,\)"),
        (lambda: expected_calibration_error(LABELS, PROBS, bins=0), "bins"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_confusion_matrix_figure(tmp_path):
    fig = confusion_matrix_figure(MATRIX, NAMES, "test")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(n) for n in MATRIX.ravel())
    fig.savefig(tmp_path / "confusion.png")
    assert (tmp_path / "confusion.png").stat().st_size > 0
    pyplot().close(fig)


def test_reliability_diagram(tmp_path):
    ece, reliability = expected_calibration_error(ECE_LABELS, ECE_PROBS, bins=4)
    fig = reliability_diagram(reliability, ece, "test")
    ax = fig.axes[0]
    assert [bar.get_height() for bar in ax.containers[0]] == pytest.approx([0, 1, 1, 0.5])
    assert "ECE 0.425" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    fig.savefig(tmp_path / "reliability.png")
    assert (tmp_path / "reliability.png").stat().st_size > 0
    pyplot().close(fig)
