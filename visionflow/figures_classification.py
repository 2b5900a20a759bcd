"""Figures for classification reports: confusion matrix and reliability diagram. Matplotlib (Agg), no tracking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ANNOTATE_UP_TO = 30  # classes; beyond that the cell counts are unreadable


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str], title: str):
    """(C, C) counts (rows true, columns predicted) as a heat map coloured by each row's fraction.

    Colour is the row-normalised count (recall along the diagonal), so rare classes read as
    clearly as common ones; each cell is annotated with its raw count (up to 30 classes).
    """
    matrix = np.asarray(matrix)
    names = list(class_names)
    if matrix.ndim != 2 or matrix.shape != (len(names), len(names)):
        raise ValueError(f"matrix must be (C, C) for {len(names)} class names, got {matrix.shape}")
    row_totals = matrix.sum(axis=1, keepdims=True)
    fraction = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)
    side = min(4 + 0.5 * len(names), 20)
    fig, ax = pyplot().subplots(figsize=(side + 1, side))
    image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right")
    ax.set_yticks(ticks, names)
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    if len(names) <= ANNOTATE_UP_TO:
        for (i, j), count in np.ndenumerate(matrix):
            colour = "white" if fraction[i, j] > 0.5 else "black"
            ax.text(j, i, str(int(count)), ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    return fig


def reliability_diagram(reliability: list[dict], ece: float, title: str):
    """Accuracy per confidence bin (one bar per bin, empty bins at 0) against the diagonal.

    ``reliability`` is the table from ``expected_calibration_error``; bars below the
    diagonal are over-confident bins. The ECE is in the legend.
    """
    lower = np.array([b["lower"] for b in reliability])
    upper = np.array([b["upper"] for b in reliability])
    accuracy = np.array([b["accuracy"] for b in reliability])
    fig, ax = pyplot().subplots(figsize=(5, 5))
    ax.bar(lower, accuracy, width=upper - lower, align="edge", edgecolor="black", label=f"accuracy (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
