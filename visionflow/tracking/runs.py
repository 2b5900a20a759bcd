"""Runs: where they go, the pipeline's parent run, and one child run per stage.

The tracking URI comes from ``MLFLOW_TRACKING_URI``; without it, runs go to
``mlflow.db`` (SQLite) with artifacts in ``mlartifacts/``, both in the project root.
A pipeline run exports its run id in ``VISIONFLOW_PARENT_RUN_ID`` so the stages DVC
starts attach as its children; a stage started alone by ``dvc repro`` gets a run of
its own.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow

PARENT_RUN_ENV = "VISIONFLOW_PARENT_RUN_ID"
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(root) / DB_FILE).resolve()}"


def _experiment_id(name: str, root: Path) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if "MLFLOW_TRACKING_URI" not in os.environ:
        location = (Path(root) / ARTIFACTS_DIR).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def git_commit(root: Path) -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def flatten_params(section: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"a.b": value}, the way MLflow shows params."""
    flat: dict[str, Any] = {}
    for key, value in section.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, name + "."))
        else:
            flat[name] = value
    return flat


@contextmanager
def stage_run(stage: str, experiment: str, params: dict[str, Any], tags: dict[str, str] | None = None,
              root: Path = Path(".")) -> Iterator[mlflow.ActiveRun]:
    """A run for one stage: a child of the pipeline run when there is one."""
    mlflow.set_tracking_uri(tracking_uri(root))
    run_tags = {"visionflow.stage": stage, "git.commit": git_commit(root), **(tags or {})}
    with mlflow.start_run(experiment_id=_experiment_id(experiment, root), run_name=stage,
                          parent_run_id=os.environ.get(PARENT_RUN_ENV) or None, tags=run_tags) as run:
        mlflow.log_params(flatten_params(params))
        yield run


@contextmanager
def pipeline_run(experiment: str, root: Path = Path("."), run_name: str = "pipeline") -> Iterator[mlflow.ActiveRun]:
    """The parent run; stages started inside the block (as subprocesses) become its children."""
    mlflow.set_tracking_uri(tracking_uri(root))
    tags = {"visionflow.stage": "pipeline", "git.commit": git_commit(root)}
    previous = os.environ.get(PARENT_RUN_ENV)
    with mlflow.start_run(experiment_id=_experiment_id(experiment, root), run_name=run_name, tags=tags) as run:
        os.environ[PARENT_RUN_ENV] = run.info.run_id
        try:
            yield run
        finally:
            if previous is None:
                os.environ.pop(PARENT_RUN_ENV, None)
            else:
                os.environ[PARENT_RUN_ENV] = previous
