"""Figures for reports: PR curves and images with boxes. Matplotlib and PIL, no tracking."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

TRUE_COLOUR = (40, 220, 40)
PRED_COLOUR = (250, 40, 40)


def pr_curve_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (recall, precision) in curves.items():
        ax.plot(recall, precision, label=f"{name} (AP {precision.mean():.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def draw_boxes(image: np.ndarray, true_xyxy: list, pred_xyxy: list, labels: list[str]) -> Image.Image:
    """The image with true boxes (green) and predicted boxes (red, labelled), pixels xyxy."""
    canvas = Image.fromarray(image).convert("RGB")
    scale = max(1, 256 // max(canvas.size))
    canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for box in true_xyxy:
        draw.rectangle([v * scale for v in box], outline=TRUE_COLOUR, width=2)
    for box, label in zip(pred_xyxy, labels):
        draw.rectangle([v * scale for v in box], outline=PRED_COLOUR, width=2)
        draw.text((box[0] * scale + 2, box[1] * scale + 1), label, fill=PRED_COLOUR)
    return canvas


def image_grid(images: list[Image.Image], columns: int = 4) -> Image.Image:
    w, h = images[0].size
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (w * columns, h * rows), (255, 255, 255))
    for i, im in enumerate(images):
        grid.paste(im, ((i % columns) * w, (i // columns) * h))
    return grid


def robustness_figure(report: dict, title: str):
    """The headline metric's share of its clean score against severity, a line per corruption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, levels in report["corruptions"].items():
        order = sorted(levels, key=int)
        ax.plot([int(k) for k in order], [levels[k]["relative"] for k in order], marker="o", label=name)
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set(xlabel="severity", ylabel=f"{report['metric']} / clean ({report['clean']:.3f})", ylim=(0, 1.1),
           title=f"{title}: mean {report['mean_relative']:.3f} of clean")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def history_figure(history: list[dict], title: str, finetune_from: int | None = None):
    """Each metric's training and validation curves on one chart (``loss`` with ``val_loss``), by epoch.

    ``finetune_from``: the first fine-tuning epoch, marked by a vertical line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = {k for row in history for k in row} - {"epoch", "learning_rate"}
    names = sorted(k for k in keys if not k.startswith("val_"))
    columns = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, name in zip(axes.flat, names):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            values = [row.get(key) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], marker=".", label=label)
        if finetune_from is not None:
            ax.axvline(finetune_from - 0.5, color="gray", lw=0.8, ls="--")
        ax.set(title=name, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title + ("" if finetune_from is None else " (dashed: frozen | fine-tuned)"))
    fig.tight_layout()
    return fig
