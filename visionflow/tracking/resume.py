"""A training run that takes over from one that was killed.

The killed run stays ``RUNNING`` in the store, as no process is left to end it: it (and
its parent, if that died with it) is marked ``KILLED``. The new run says which run it
resumed and at which epoch, and carries the whole curve: the finished epochs' metrics
are logged to it again, at their own steps, before training goes on from there.
"""

from __future__ import annotations

import time

import mlflow
from mlflow.entities import Metric, RunStatus
from mlflow.exceptions import MlflowException

RESUMED_FROM = "visionflow.resumed_from"
RESUMED_AT_EPOCH = "visionflow.resumed_at_epoch"


def take_over(previous_run_id: str | None, history: list[dict]) -> None:
    """In the active run: end ``previous_run_id`` as killed, and log ``history`` (one row per finished epoch;
    empty when the inputs changed since, and training starts over)."""
    run = mlflow.active_run()
    if previous_run_id and previous_run_id != run.info.run_id:
        found = mark_killed(previous_run_id, spare=run.data.tags.get("mlflow.parentRunId"))
        if found and history:
            mlflow.set_tag(RESUMED_FROM, previous_run_id)
    if history:
        mlflow.set_tag(RESUMED_AT_EPOCH, history[-1]["epoch"] + 1)
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, row["epoch"]) for row in history
                   for key, value in row.items() if key != "epoch"]
        for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
            mlflow.MlflowClient().log_batch(run.info.run_id, metrics=metrics[start:start + 1000])


def mark_killed(run_id: str, spare: str | None = None) -> bool:
    """``run_id``, and its parent unless that is ``spare``, marked ``KILLED`` where still ``RUNNING``;
    whether the run is in this store (and not deleted)."""
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
        if run.info.lifecycle_stage == "deleted":
            return False
        if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
    except MlflowException:  # not in this store (another server, or a store started afresh)
        return False
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent and parent != spare:
        mark_killed(parent, spare)
    return True
