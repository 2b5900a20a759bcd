"""``training_pipeline``: every stage of ``dvc.yaml``, in order, each as a Prefect task.

Each task has DVC reproduce its one stage, so ``dvc.lock`` stays the record and a
stage whose inputs have not changed is skipped. Stages that fail for a transient
reason are retried; bad config or data (exit code 2) is not, since a retry cannot fix
it. The flow opens the MLflow parent run that the stages' runs attach to.

Run it with ``python -m flows.pipeline`` (what ``make run`` does): with no
``PREFECT_API_URL`` set, Prefect starts its embedded server for the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from prefect import flow, get_run_logger, task

from visionflow.config import load_config
from visionflow.dvc_stages import StageFailed, lock_file_hash, pipeline_stages, repro_stage
from visionflow.layout import model_metrics
from visionflow.tracking import flatten_params, pipeline_run


def _transient(task, task_run, state) -> bool:
    """Retry unless the stage reported bad input."""
    error = state.result(raise_on_failure=False)
    return not (isinstance(error, StageFailed) and error.user_error)


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_transient, task_run_name="dvc repro {stage}")
def dvc_stage(stage: str, root: str) -> dict:
    logger = get_run_logger()
    result = repro_stage(stage, Path(root), on_line=lambda line: line.strip() and logger.info(line))
    logger.info("%s: %s", stage, "ran" if result.ran else "unchanged, skipped")
    return {"stage": stage, "ran": result.ran}


@flow(name="training_pipeline")
def training_pipeline(root: str = ".", stages: list[str] | None = None) -> dict:
    """Reproduce ``stages`` (default: all, in dependency order) under one MLflow parent run."""
    root_path = Path(root).resolve()
    cfg = load_config(root_path / "params.yaml")  # a bad params.yaml stops here, before any work
    order = stages or pipeline_stages(root_path)
    with pipeline_run(cfg.tracking.experiment, root_path) as run:
        mlflow.log_params(flatten_params(cfg.model_dump(by_alias=True)))  # compare whole configs in the UI
        results = [dvc_stage(stage, str(root_path)) for stage in order]
        mlflow.set_tag("dvc.lock_hash", lock_file_hash(root_path))
        mlflow.log_dict({"stages": results}, "stages.json")
        for model in cfg.models:  # each family's test metrics, to compare pipeline runs in the UI
            metrics = root_path / model_metrics(model, "test")
            if metrics.exists():
                values = json.loads(metrics.read_text())
                mlflow.log_metrics({f"{model}/test_{k}": v for k, v in values.items() if isinstance(v, (int, float))})
            robustness = root_path / model_metrics(model, "robustness")
            if robustness.exists():
                mlflow.log_metric(f"{model}/robustness_mean_relative", json.loads(robustness.read_text())["mean_relative"])
    return {"mlflow_run_id": run.info.run_id, "stages": results}


if __name__ == "__main__":
    summary = training_pipeline()
    print(json.dumps(summary, indent=2))
