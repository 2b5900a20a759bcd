"""Where each stage reads and writes, relative to the project root (mirrors ``dvc.yaml``).

Everything a model family writes sits under a folder of its name, so families sit side by side.
"""

from pathlib import Path

PHOTOS_DIR = Path("data/photos")
RAW_DIR = Path("data/raw")
SPLIT_DIR = Path("data/split")
PROCESSED_DIR = Path("data/processed")
ANCHORS_FILE = Path("data/anchors/anchors.json")
BACKBONE_WEIGHTS = Path("models/backbone.weights.h5")
CHECKPOINT_DIR = Path("models/.checkpoints")
METRICS_DIR = Path("metrics")
DATA_METRICS_DIR = METRICS_DIR / "data"
PLOTS_DIR = Path("plots")
REPORTS_DIR = Path("reports")


def model_file(model: str) -> Path:
    return Path("models") / model / "model.keras"


def model_metrics(model: str, split: str) -> Path:
    """``metrics/<model>/train.json`` (the last epoch) or ``metrics/<model>/test.json``."""
    return METRICS_DIR / model / f"{split}.json"


def model_plots(model: str) -> Path:
    return PLOTS_DIR / model


def model_reports(model: str) -> Path:
    return REPORTS_DIR / model
