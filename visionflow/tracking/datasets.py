"""The splits a run read, as MLflow datasets: named ``<dataset>/<split>``, their digest the DVC hash.

The digest is what ``dvc.lock`` records for the preprocessed data folder the splits are
read from, so two runs show the same dataset exactly when DVC would say so.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from visionflow.layout import processed_dir

CONTEXTS = {"train": "training", "valid": "validation", "test": "testing"}


def log_splits(dataset: str, dvc_deps: dict[str, str], splits: tuple[str, ...], root: Path = Path(".")) -> None:
    """Log each split as an input of the active run; ``dvc_deps``: the stage's ``dvc.dep.<path>`` tags."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    folder = processed_dir(dataset)
    digest = dvc_deps.get(f"dvc.dep.{folder.as_posix()}", "unknown")
    source = LocalArtifactDatasetSource(str((Path(root) / folder).resolve()))
    for split in splits:
        mlflow.log_input(MetaDataset(source, name=f"{dataset}/{split}", digest=digest[:36]), context=CONTEXTS[split])
