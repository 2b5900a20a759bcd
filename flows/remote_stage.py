"""``remote_stage``: one stage of ``dvc.yaml`` on a worker (a GPU machine), in the worker's own clone.

``training_pipeline`` sends the stages of ``orchestration.gpu_stages`` here, through the
deployment ``remote_stage/<orchestration.gpu_work_pool>`` (named after its pool), when that
pool is set. On the worker, from its clone of the project (the deployment's working folder):
check out the pipeline's commit, take its ``params.yaml`` and ``dvc.lock``, ``dvc pull`` the
stage's inputs, ``dvc repro`` it, ``dvc push`` its outputs, and return its ``dvc.lock``
entry (see :mod:`visionflow.remote_stage`). The return value is a persisted result: both
sides read the same result storage (one machine's by default; an object store otherwise,
``PREFECT_DEFAULT_RESULT_STORAGE_BLOCK``).

Deploy it from the worker's clone, then start the worker there::

    prefect --no-prompt deploy flows/remote_stage.py:remote_stage --name visionflow-gpu --pool visionflow-gpu
    prefect worker start --pool visionflow-gpu
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from prefect import flow, get_run_logger

from visionflow import remote_stage as remote
from visionflow.dvc_stages import repro_stage
from visionflow.workspace import workspace_lock


@flow(name="remote_stage", persist_result=True, flow_run_name="dvc repro {stage} @ {commit:.7}")
def remote_stage(stage: str, commit: str, source: str, params: str, lock: str, env: dict[str, str]) -> dict:
    """Run ``stage`` at ``commit`` (fetched from ``source``) with this ``params.yaml`` and ``dvc.lock`` text.

    ``env`` is added to the stage's environment: the MLflow parent run and tracking URI, the flow run. The
    worker's own ``MLFLOW_TRACKING_URI``, if it has one, wins: the pipeline's may be a path or a loopback address.
    """
    logger, root = get_run_logger(), Path.cwd().resolve()
    if os.environ.get("MLFLOW_TRACKING_URI"):
        env = {**env, "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    with workspace_lock(root, "wait", on_wait=logger.warning):  # one job at a time in this clone
        remote.checkout(root, source, commit, params, lock)
        remote.pull(root, remote.inputs(root, stage))
        result = repro_stage(stage, root, on_line=lambda line: line.strip() and logger.info(line), env=env)
        remote.push(root, [stage])
        return {"stage": stage, "ran": result.ran, "lock": remote.lock_entry(root, stage),
                "files": remote.uncached_outputs(root, stage), "worker": {"host": socket.gethostname(), "root": str(root)}}
