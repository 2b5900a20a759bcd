"""Where each stage reads and writes, relative to the project root (mirrors ``dvc.yaml``)."""

from pathlib import Path

RAW_DIR = Path("data/raw")
SPLIT_DIR = Path("data/split")
PROCESSED_DIR = Path("data/processed")
BACKBONE_WEIGHTS = Path("models/backbone.weights.h5")
LOCALIZER_MODEL = Path("models/localizer.keras")
CHECKPOINT_DIR = Path("models/.checkpoints")
METRICS_DIR = Path("metrics")
PLOTS_DIR = Path("plots")
REPORTS_DIR = Path("reports")
