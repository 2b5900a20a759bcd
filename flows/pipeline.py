"""``training_pipeline``: the stages of ``dvc.yaml``, in order, each as a Prefect task.

Each task has DVC reproduce its one stage, so ``dvc.lock`` stays the record and a
stage whose inputs have not changed is skipped. Stages that fail for a transient
reason are retried; bad config or data (exit code 2), or a workspace another DVC process
holds, are not, since a retry cannot fix them. The flow holds the workspace
(:mod:`visionflow.workspace`) from before it writes anything, and opens the MLflow parent
run that the stages' runs attach to.

With ``orchestration.gpu_work_pool`` set, the stages of ``orchestration.gpu_stages`` (the
trainings) go to a worker of that pool instead (:mod:`flows.remote_stage`); their outputs
come back through the DVC remote and their ``dvc.lock`` entries are recorded here.

Run it with ``python -m flows.pipeline`` (what ``make run`` does; ``--help`` lists its
parameters): with no ``PREFECT_API_URL`` set, Prefect starts its embedded server for the run.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from prefect import flow, get_run_logger, task
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from visionflow.config import PARAMS_FILE, Config, ConfigError, load_config
from visionflow import remote_stage as remote
from visionflow.dvc_stages import (LOCK_FILE, StageFailed, family_groups, lock_file_hash, named, outdated_stages,
                                   repro_stage, select_stages, stage_graph)
from visionflow.layout import model_metrics
from visionflow.presets import apply_overrides
from visionflow.tracking.lineage import PREFECT_RUN_ENV, PREFECT_URL_ENV, git_commit
from visionflow.tracking.runs import PARENT_RUN_ENV, flatten_params, pipeline_run, tracking_uri
from visionflow.workspace import workspace_lock


def _transient(task, task_run, state) -> bool:
    """Retry unless the stage reported bad input or found the workspace busy."""
    error = state.result(raise_on_failure=False)
    return not (isinstance(error, StageFailed) and not error.transient)


RETRIES = {"retries": 2, "retry_delay_seconds": [5, 30], "retry_condition_fn": _transient}


@task(**RETRIES, task_run_name="dvc repro {stage}")
def dvc_stage(stage: str, root: str, env: dict[str, str], force: bool = False) -> dict:
    """``env``: what the stage's run needs to know of this one (the parent run, the flow run), passed explicitly."""
    logger = get_run_logger()
    result = repro_stage(stage, Path(root), force=force, on_line=lambda line: line.strip() and logger.info(line),
                         env=env)
    logger.info("%s: %s", stage, "ran" if result.ran else "unchanged, skipped")
    return {"stage": stage, "ran": result.ran}


@task(**RETRIES, task_run_name="dvc repro {stage} on pool {pool}")
def remote_dvc_stage(stage: str, root: str, env: dict[str, str], pool: str) -> dict:
    """The stage on a worker of ``pool``, if DVC finds it out of date; its outputs and lock entry brought back.

    Retried as a local stage is: a crashed or cancelled worker run, or an unreachable remote, is
    transient; bad input, or a result this machine cannot read, is not.
    """
    logger, here = get_run_logger(), Path(root)
    if not outdated_stages(here, [stage]):
        logger.info("%s: unchanged, skipped", stage)
        return {"stage": stage, "ran": False}
    commit, source = remote.committed_code(here)
    remote.push(here, remote.inputs(here, stage))
    params = {"stage": stage, "commit": commit, "source": source, "params": (here / PARAMS_FILE).read_text(),
              "lock": (here / LOCK_FILE).read_text() if (here / LOCK_FILE).exists() else "schema: '2.0'\nstages: {}\n",
              "env": {**env, "MLFLOW_TRACKING_URI": tracking_uri(here)}}
    run = run_deployment(f"remote_stage/{pool}", parameters=params, timeout=None)
    if not run.state.is_completed():
        raise _worker_failure(stage, pool, run)
    try:
        answer = run.state.result()
    except Exception as e:  # e.g. a result stored where this machine cannot read it
        raise StageFailed(stage, f"flow run {run.name} on pool {pool} finished, but its result cannot be read here "
                          f"({type(e).__name__}: {e}); across machines, both sides need one result storage "
                          "(PREFECT_DEFAULT_RESULT_STORAGE_BLOCK)", user_error=True) from e
    remote.record(here, stage, answer["lock"], answer["files"])
    logger.info("%s: %s on %s (%s)", stage, "ran" if answer["ran"] else "unchanged", answer["worker"]["host"],
                answer["worker"]["root"])
    return {"stage": stage, "ran": answer["ran"], "worker": answer["worker"]}


def _worker_failure(stage: str, pool: str, run) -> StageFailed:
    """The stage's own failure, as the worker raised it (bad input stays bad input); else a crash, transient."""
    try:
        error = run.state.result(raise_on_failure=False)
    except Exception:  # no persisted result: a crashed or cancelled run
        error = None
    if isinstance(error, StageFailed):
        return error
    return StageFailed(stage, f"flow run {run.name} on pool {pool} ended {run.state.name}: {run.state.message}",
                       user_error=False)


def run_stage(stage: str, root: Path, env: dict[str, str], cfg: Config) -> dict:
    """Here, or on the GPU pool when it is set and the stage is one of ``orchestration.gpu_stages``."""
    pool = cfg.orchestration.gpu_work_pool
    if pool and any(named(stage, name) for name in cfg.orchestration.gpu_stages):
        return remote_dvc_stage(stage, str(root), env, pool)
    return dvc_stage(stage, str(root), env)


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


def outcome_tags(results: list[dict], root: Path) -> dict[str, str]:
    """The parent run's name for what ran, whether anything did, and the ``dvc.lock`` it left."""
    noop = not any(r["ran"] for r in results)
    return {"mlflow.runName": run_name(results, git_commit(root)), "visionflow.noop": str(noop).lower(),
            "dvc.lock_hash": lock_file_hash(root)}


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


def chosen_stages(root: Path, cfg: Config, stages: list[str] | None, models: list[str] | None) -> list[str]:
    """The stages to run, in pipeline order (see :func:`visionflow.dvc_stages.select_stages`)."""
    unknown = [m for m in models or [] if m not in cfg.models]
    if unknown:
        raise ConfigError(f"models: {', '.join(unknown)}: not a model family under train in params.yaml "
                          f"(families: {', '.join(cfg.models)})")
    graph = stage_graph(root)
    orchestration = cfg.orchestration
    stray = [n for n in orchestration.gpu_stages if not any(named(stage, n) for stage in graph)]
    if orchestration.gpu_work_pool and stray:  # a typo would quietly send nothing to the pool
        raise ConfigError(f"orchestration.gpu_stages: {', '.join(stray)}: not a stage of dvc.yaml, nor a group "
                          f"of them (stages: {', '.join(graph)})")
    return select_stages(graph, stages, models, family_groups(root))


@contextmanager
def parent_run(cfg: Config, root: Path, experiment: str | None = None, resume_run_id: str | None = None,
               tags: dict[str, str] | None = None):
    """The MLflow parent run (a new one, or ``resume_run_id`` continued), with the whole config logged."""
    with pipeline_run(experiment or cfg.tracking.experiment, root, tags={**flow_tags(), **(tags or {})},
                      run_id=resume_run_id) as run:
        mlflow.log_params(flatten_params(cfg.model_dump(by_alias=True)))  # compare whole configs in the UI
        mlflow.log_artifact(str(root / PARAMS_FILE))
        yield run


@flow(name="training_pipeline")
def training_pipeline(root: str = ".", stages: list[str] | None = None, models: list[str] | None = None,
                      params: dict[str, Any] | None = None, experiment: str | None = None,
                      resume_run_id: str | None = None) -> dict:
    """Reproduce the pipeline's stages, in dependency order, under one MLflow parent run.

    Args:
        root: the project folder.
        stages: stages of dvc.yaml, or groups of them (`train`: every `train@<family>`); default all.
        models: only these model families' stages, and every stage upstream of them.
        params: dotted keys of params.yaml to set first, as `dvc exp run -S` does; checked before written.
        experiment: the MLflow experiment of the runs (default: params.yaml's tracking.experiment).
        resume_run_id: an MLflow parent run to continue instead of opening one (the retraining flow's).
    """
    root_path = Path(root).resolve()
    cfg = load_config(root_path / PARAMS_FILE)  # a bad params.yaml stops here, before any work
    with workspace_lock(root_path, cfg.orchestration.on_busy, on_wait=get_run_logger().warning):
        cfg = apply_overrides(params, root_path / PARAMS_FILE) if params else cfg
        order = chosen_stages(root_path, cfg, stages, models)
        with parent_run(cfg, root_path, experiment, resume_run_id) as run:
            env = stage_env(run.info.run_id)
            results = [run_stage(stage, root_path, env, cfg) for stage in order]
            tags = outcome_tags(results, root_path)
            mlflow.set_tags(tags)
            mlflow.log_dict({"stages": results}, "stages.json")
            if tags["visionflow.noop"] == "false":  # a no-op run says so, and repeats no old metrics as new
                log_test_metrics(cfg, root_path)
    return {"mlflow_run_id": run.info.run_id, "flow_run_id": flow_run.id, "stages": results,
            "noop": tags["visionflow.noop"] == "true"}


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(training_pipeline))
