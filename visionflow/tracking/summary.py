"""What a retraining publishes: this pipeline run's test metrics against the previous one's, the
promotion gate's decision per family, and where the MLflow runs are; as Markdown.

The previous run is the newest pipeline parent run before this one that trained or evaluated
something (a no-op run logs no metrics). For a tracking server the runs are links into its
UI; for a local store, their ids and the command that opens it.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from visionflow.layout import model_metrics

MODEL_TRAINING = "workflowType=machine_learning"  # MLflow 3's UI opens runs in its model-training view


def gate_decisions(root: Path, models: list[str]) -> dict[str, dict | None]:
    """What each family's ``promote@<family>`` stage last wrote (``metrics/<family>/promotion.json``), or None."""
    found = {}
    for model in models:
        path = Path(root) / model_metrics(model, "promotion")
        found[model] = json.loads(path.read_text()) if path.exists() else None
    return found


def previous_run(client: mlflow.MlflowClient, run) -> mlflow.entities.Run | None:
    """The newest finished pipeline parent run, not a no-op, started before ``run``."""
    found = client.search_runs(
        [run.info.experiment_id],
        "tags.`visionflow.stage` = 'pipeline' AND tags.`visionflow.noop` = 'false' AND attributes.status = 'FINISHED'"
        f" AND attributes.start_time < {run.info.start_time}",
        order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def child_runs(client: mlflow.MlflowClient, run) -> list:
    found = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'",
                               order_by=["attributes.start_time ASC"])
    return list(found)


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """A link into the UI of a tracking server; the bare id for a local store."""
    if uri.startswith(("http://", "https://")):
        return f"[{run_id}]({uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING})"
    return f"`{run_id}`"


def metrics_table(now: dict[str, float], before: dict[str, float] | None) -> list[str]:
    if not now:
        return ["No test metrics were logged."]
    rows = ["| metric | this run | previous run | change |", "| --- | ---: | ---: | ---: |"]
    for key in sorted(now):
        old = (before or {}).get(key)
        change = "" if old is None else f"{now[key] - old:+.4g}"
        rows.append(f"| {key} | {now[key]:.4g} | {'' if old is None else f'{old:.4g}'} | {change} |")
    return rows


def decisions_table(before: dict[str, dict | None], after: dict[str, dict | None]) -> list[str]:
    """One row per family: the gate's new decision, or why there is none."""
    rows = ["| model | decision | version | reason |", "| --- | --- | --- | --- |"]
    for model, decision in after.items():
        if decision is None:
            rows.append(f"| {model} | no decision: no {model_metrics(model, 'promotion')} | | |")
        elif decision == before.get(model):
            rows.append(f"| {model} | no new decision: its tested model did not change | | |")
        else:
            verdict = "promoted to champion" if decision["promote"] else "not promoted"
            version = f"{decision.get('registered_model', model)} {decision.get('version', '')}".strip()
            rows.append(f"| {model} | {verdict} | {version} | {decision['reason']} |")
    return rows


def _link(uri: str, run) -> str:
    return run_link(uri, run.info.experiment_id, run.info.run_id)


def runs_section(uri: str, run, previous, children: list) -> list[str]:
    lines = [f"Tracking URI `{uri}`, experiment id `{run.info.experiment_id}`.", "",
             f"- this pipeline run: {_link(uri, run)}",
             f"- the previous one: {_link(uri, previous) if previous else 'none'}"]
    lines += [f"- {child.data.tags.get('visionflow.stage', child.info.run_name)}: {_link(uri, child)}"
              for child in children]
    if not uri.startswith(("http://", "https://")):
        lines += ["", f"Open them with `mlflow ui --backend-store-uri {uri}`."]
    return lines


def retraining_summary(uri: str, run_id: str, changed: list[str], before: dict, after: dict) -> str:
    """The Markdown summary of the retraining whose pipeline parent run is ``run_id``."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    previous = previous_run(client, run)
    lines = [f"# Retraining: {run.data.tags.get('mlflow.runName', run_id)}", "",
             f"Out of date after re-ingesting: {', '.join(f'`{s}`' for s in changed)}.", "",
             "## Test metrics against the previous run", "",
             *metrics_table(run.data.metrics, previous.data.metrics if previous else None), "",
             "## The promotion gate", "", *decisions_table(before, after), "",
             "## MLflow runs", "", *runs_section(uri, run, previous, child_runs(client, run))]
    return "\n".join(lines) + "\n"


def noop_summary(uri: str, run_id: str, ingested: list[str]) -> str:
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
    return "\n".join([
        "# Retraining: no change", "",
        f"Re-ingested {', '.join(f'`{s}`' for s in ingested)}; DVC sees no change in data, params or code, "
        "so nothing was trained.", "",
        f"MLflow: the no-op pipeline run {run_link(uri, run.info.experiment_id, run_id)} (tracking URI `{uri}`).",
    ]) + "\n"
