"""Where each stage reads and writes, relative to the project root (mirrors ``dvc.yaml``).

Each dataset's data path sits under ``data/<dataset>/`` and everything a model family
writes under a folder of its name, so datasets and families sit side by side.
"""

from pathlib import Path

PHOTOS_DIR = Path("data/photos")
BACKBONE_WEIGHTS = Path("models/backbone.weights.h5")
CHECKPOINT_DIR = Path("models/.checkpoints")
METRICS_DIR = Path("metrics")
DATA_METRICS_DIR = METRICS_DIR / "data"
PLOTS_DIR = Path("plots")
REPORTS_DIR = Path("reports")


def dataset_dir(dataset: str) -> Path:
    return Path("data") / dataset


def raw_dir(dataset: str) -> Path:
    """The ingested images and their COCO annotations: never written after ingest."""
    return dataset_dir(dataset) / "raw"


def split_dir(dataset: str) -> Path:
    return dataset_dir(dataset) / "split"


def processed_dir(dataset: str) -> Path:
    """TFRecord shards of every split at the model's input size."""
    return dataset_dir(dataset) / "processed"


def anchors_file(dataset: str) -> Path:
    return dataset_dir(dataset) / "anchors" / "anchors.json"


def data_metrics(dataset: str, name: str) -> Path:
    """``metrics/data/<dataset>/<name>.json``: a data stage's figures."""
    return DATA_METRICS_DIR / dataset / f"{name}.json"


def model_file(model: str) -> Path:
    return Path("models") / model / "model.keras"


def model_metrics(model: str, split: str) -> Path:
    """``metrics/<model>/train.json`` (the last epoch) or ``metrics/<model>/test.json``."""
    return METRICS_DIR / model / f"{split}.json"


def model_plots(model: str) -> Path:
    return PLOTS_DIR / model


def model_reports(model: str) -> Path:
    return REPORTS_DIR / model
