"""``retraining``: the scheduled flow (the ``retraining`` deployment of ``prefect.yaml``, ``visionflow serve``).

In order: re-ingest (the ``ingest@<dataset>`` stages, forced: a source outside the project
may have new data DVC cannot see; an unchanged one writes the same bytes); ask DVC which
stages are out of date; if none, tag the parent run no-op, as ``training_pipeline`` tags one
where nothing ran, and stop. Else run ``training_pipeline`` as a subflow, continuing the same
MLflow parent run; its ``promote@<family>`` stages are the promotion gate. Either way publish
a Markdown artifact (key ``retraining-summary``): the test metrics against the previous
pipeline run, the gate's decision per family, and the MLflow runs.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows import pipeline
from visionflow.config import PARAMS_FILE, load_config
from visionflow.dvc_stages import outdated_stages, stage_graph, upstream
from visionflow.tracking.runs import tracking_uri
from visionflow.tracking.summary import gate_decisions, noop_summary, retraining_summary
from visionflow.workspace import workspace_lock

INGEST_GROUP = "ingest"
SUMMARY_KEY = "retraining-summary"


def reingest(root: Path, order: list[str], env: dict[str, str]) -> list[dict]:
    """The ingest stages among ``order``, forced, after whatever they read (which runs only if out of date)."""
    ingest = [stage for stage in order if stage.split("@")[0] == INGEST_GROUP]
    before = [stage for stage in upstream(stage_graph(root), ingest) if stage not in ingest]
    return ([pipeline.dvc_stage(stage, str(root), env) for stage in before]
            + [pipeline.dvc_stage(stage, str(root), env, force=True) for stage in ingest])


def reingest_and_check(cfg, root: Path, order: list[str], experiment: str | None) -> tuple[str, list[dict], list[str]]:
    """Open the parent run and re-ingest under it; the run's id, the re-ingest's results, the stages out of date.

    With none out of date, the run is tagged as ``training_pipeline`` tags a run where no stage ran.
    """
    with pipeline.parent_run(cfg, root, experiment, tags={"visionflow.flow": "retraining"}) as run:
        ingested = reingest(root, order, pipeline.stage_env(run.info.run_id))
        changed = outdated_stages(root, order)
        if not changed:
            mlflow.set_tags(pipeline.outcome_tags([], root))
            mlflow.log_dict({"stages": ingested}, "stages.json")
    return run.info.run_id, ingested, changed


def publish(markdown: str, description: str) -> str:
    return str(create_markdown_artifact(markdown, key=SUMMARY_KEY, description=description))


@flow(name="retraining")
def retraining(root: str = ".", models: list[str] | None = None, experiment: str | None = None) -> dict:
    """Re-ingest; retrain, gate and summarise only if DVC sees a change in data, params or code.

    Args:
        root: the project folder.
        models: only these model families (and the stages upstream of them); default all.
        experiment: the MLflow experiment of the runs (default: params.yaml's tracking.experiment).
    """
    root_path = Path(root).resolve()
    cfg = load_config(root_path / PARAMS_FILE)
    uri, logger = tracking_uri(root_path), get_run_logger()
    with workspace_lock(root_path, cfg.orchestration.on_busy, on_wait=logger.warning):
        order = pipeline.chosen_stages(root_path, cfg, None, models)
        before = gate_decisions(root_path, models or cfg.models)
        run_id, ingested, changed = reingest_and_check(cfg, root_path, order, experiment)
        done = {"mlflow_run_id": run_id, "flow_run_id": flow_run.id, "noop": not changed}
        if not changed:
            logger.info("DVC sees no change in data, params or code: nothing to retrain")
            return {**done, "artifact_id": publish(noop_summary(uri, run_id, [r["stage"] for r in ingested]),
                                                   "retraining: nothing changed")}
        result = pipeline.training_pipeline(root=str(root_path), models=models, resume_run_id=run_id)
        after = gate_decisions(root_path, models or cfg.models)
        artifact = publish(retraining_summary(uri, run_id, changed, before, after), "retraining: what changed")
    return {**done, "changed": changed, "stages": result["stages"], "decisions": after, "artifact_id": artifact}
