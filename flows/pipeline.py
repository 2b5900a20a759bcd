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
from prefect.runtime import flow_run

from visionflow.config import load_config
from visionflow.dvc_stages import StageFailed, lock_file_hash, pipeline_stages, repro_stage
from visionflow.layout import model_metrics
from visionflow.tracking.lineage import PREFECT_RUN_ENV, PREFECT_URL_ENV, git_commit
from visionflow.tracking.runs import PARENT_RUN_ENV, flatten_params, pipeline_run


def _transient(task, task_run, state) -> bool:
    """Retry unless the stage reported bad input."""
    error = state.result(raise_on_failure=False)
    return not (isinstance(error, StageFailed) and error.user_error)


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_transient, task_run_name="dvc repro {stage}")
def dvc_stage(stage: str, root: str, env: dict[str, str]) -> dict:
    """``env``: what the stage's run needs to know of this one (the parent run, the flow run), passed explicitly."""
    logger = get_run_logger()
    result = repro_stage(stage, Path(root), on_line=lambda line: line.strip() and logger.info(line), env=env)
    logger.info("%s: %s", stage, "ran" if result.ran else "unchanged, skipped")
    return {"stage": stage, "ran": result.ran}


def flow_tags() -> dict[str, str]:
    """This flow run's id and UI address, as lineage tags."""
    found = {"prefect.flow_run_id": flow_run.id, "prefect.flow_run_url": flow_run.ui_url}
    return {k: v for k, v in found.items() if v}


def stage_env(parent_run_id: str) -> dict[str, str]:
    """What each stage's run is told: its parent run, and this flow run (as :mod:`visionflow.tracking.lineage` reads it)."""
    names = {"prefect.flow_run_id": PREFECT_RUN_ENV, "prefect.flow_run_url": PREFECT_URL_ENV}
    return {PARENT_RUN_ENV: parent_run_id, **{names[k]: v for k, v in flow_tags().items()}}


def run_name(results: list[dict], commit: str) -> str:
    """What ran: the models trained (or evaluated), else ``no-op``; and the short commit."""
    trained = [r["stage"].split("@", 1)[1] for r in results if r["ran"] and r["stage"].startswith("train@")]
    other = [r["stage"] for r in results if r["ran"]]
    what = f"train {'+'.join(trained)}" if trained else (f"{len(other)} stages" if other else "no-op")
    return f"{what} @ {commit[:7]}"


def log_test_metrics(cfg, root: Path) -> None:
    """Each family's test metrics, to compare pipeline runs in the UI."""
    for model in cfg.models:
        metrics = root / model_metrics(model, "test")
        if metrics.exists():
            values = json.loads(metrics.read_text())
            mlflow.log_metrics({f"{model}/test_{k}": v for k, v in values.items() if isinstance(v, (int, float))})
        robustness = root / model_metrics(model, "robustness")
        if robustness.exists():
            mlflow.log_metric(f"{model}/robustness_mean_relative", json.loads(robustness.read_text())["mean_relative"])


@flow(name="training_pipeline")
def training_pipeline(root: str = ".", stages: list[str] | None = None) -> dict:
    """Reproduce ``stages`` (default: all, in dependency order) under one MLflow parent run."""
    root_path = Path(root).resolve()
    cfg = load_config(root_path / "params.yaml")  # a bad params.yaml stops here, before any work
    order = stages or pipeline_stages(root_path)
    with pipeline_run(cfg.tracking.experiment, root_path, tags=flow_tags()) as run:
        mlflow.log_params(flatten_params(cfg.model_dump(by_alias=True)))  # compare whole configs in the UI
        mlflow.log_artifact(str(root_path / "params.yaml"))
        env = stage_env(run.info.run_id)
        results = [dvc_stage(stage, str(root_path), env) for stage in order]
        noop = not any(r["ran"] for r in results)
        mlflow.set_tags({"mlflow.runName": run_name(results, git_commit(root_path)), "visionflow.noop": str(noop).lower(),
                         "dvc.lock_hash": lock_file_hash(root_path)})
        mlflow.log_dict({"stages": results}, "stages.json")
        if not noop:  # a no-op run says so, and repeats no old metrics as new
            log_test_metrics(cfg, root_path)
    return {"mlflow_run_id": run.info.run_id, "flow_run_id": flow_run.id, "stages": results, "noop": noop}


if __name__ == "__main__":
    summary = training_pipeline()
    print(json.dumps(summary, indent=2))
