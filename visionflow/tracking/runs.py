"""Runs: where they go, the pipeline's parent run, and one child run per stage.

The tracking URI comes from ``MLFLOW_TRACKING_URI``; without it, runs go to
``mlflow.db`` (SQLite) with artifacts in ``mlartifacts/``, both in the project root.
The parent run's id reaches a stage explicitly: the flow passes it in the environment of
the ``dvc repro`` it starts (:data:`PARENT_RUN_ENV`), and a remote worker gets it as a
job parameter. A stage started alone by ``dvc repro`` gets a run of its own.

A tracking server that does not answer fails the run at once, with one line, as bad
configuration (not retried): MLflow's own HTTP retries would otherwise back off for
minutes before the first stage. Once a run has started, those retries ride out a drop.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow

from visionflow.config import ConfigError
from visionflow.tracking.lineage import git_commit, git_dirty, prefect_tags

PARENT_RUN_ENV = "VISIONFLOW_PARENT_RUN_ID"
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# The experiment's kind: model training, not GenAI. MLflow 3.17's UI still opens in the view last
# chosen in the browser (GenAI by default); ``?workflowType=machine_learning`` in the address
# selects model training, and the README's links carry it.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def _tracking_errors() -> tuple[type[Exception], ...]:
    import requests
    from mlflow.exceptions import MlflowException

    return MlflowException, requests.RequestException, OSError


TRACKING_ERRORS = _tracking_errors()  # what a tracking server that drops mid-run raises, after MLflow's retries


class TrackingUnreachable(ConfigError):
    """The tracking server does not answer: a configuration problem, not worth a retry."""


def default_uri(root: Path) -> str:
    return f"sqlite:///{(Path(root) / DB_FILE).resolve()}"


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri(root)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """An HTTP tracking server must answer ``/health`` within ``timeout`` seconds."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout).raise_for_status()
    except requests.RequestException as e:
        raise TrackingUnreachable(f"MLFLOW_TRACKING_URI={uri}: the tracking server does not answer "
                                  f"({type(e).__name__}); start it, or unset MLFLOW_TRACKING_URI for the local store") from None


def connect(root: Path) -> str:
    """Point MLflow at the project's store (checked when it is a server); the URI.

    The local SQLite store is opened under a file lock the first time in a process:
    MLflow creates its tables on first use, and two processes doing that at once on a
    new file collide (``duplicate column name``).
    """
    uri = tracking_uri(root)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    if uri == default_uri(root):
        from filelock import FileLock

        with FileLock(str(Path(root).resolve() / f".{DB_FILE}.lock")):
            mlflow.MlflowClient().search_experiments(max_results=1)
    return uri


def experiment_id(name: str, root: Path, uri: str) -> str:
    """The experiment's id, created with its kind tag if need be; safe when two workers race to create it."""
    from mlflow.exceptions import MlflowException

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = (Path(root) / ARTIFACTS_DIR).resolve().as_uri() if uri == default_uri(root) else None
        try:
            return mlflow.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
        except MlflowException:  # another worker created it first
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.tags.get("mlflow.experimentKind") is None:
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
    return experiment.experiment_id


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


def code_tags(root: Path) -> dict[str, str]:
    """What every run is tagged with: the code, and the Prefect flow run that started it, if one did."""
    return {"git.commit": git_commit(root), "git.dirty": git_dirty(root), **prefect_tags()}


@contextmanager
def stage_run(stage: str, experiment: str, params: dict[str, Any], tags: dict[str, str] | None = None,
              root: Path = Path("."), parent_run_id: str | None = None,
              system_metrics: bool = False) -> Iterator[mlflow.ActiveRun]:
    """A run for one stage: a child of ``parent_run_id`` (default: the one the flow passed), if any, in its
    parent's experiment (the flow may have chosen another than ``experiment``)."""
    uri = connect(root)
    run_tags = {"visionflow.stage": stage, **code_tags(root), **(tags or {})}
    parent = parent_run_id or os.environ.get(PARENT_RUN_ENV) or None
    where = mlflow.get_run(parent).info.experiment_id if parent else experiment_id(experiment, root, uri)
    with mlflow.start_run(experiment_id=where, run_name=stage, parent_run_id=parent, tags=run_tags,
                          log_system_metrics=system_metrics) as run:
        mlflow.log_params(flatten_params(params))
        yield run


@contextmanager
def pipeline_run(experiment: str, root: Path = Path("."), run_name: str = "pipeline",
                 tags: dict[str, str] | None = None, run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """The parent run of one pipeline run; its id is what the flow passes to each stage.

    ``run_id``: continue that parent run instead (the retraining flow's, once it has re-ingested).
    """
    uri = connect(root)
    run_tags = {"visionflow.stage": "pipeline", **code_tags(root), **(tags or {})}
    where = {"run_id": run_id} if run_id else {"experiment_id": experiment_id(experiment, root, uri),
                                                "run_name": run_name}
    with mlflow.start_run(**where, tags=run_tags) as run:
        yield run
