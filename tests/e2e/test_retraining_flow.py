"""The ``retraining`` flow on Prefect's test server, over stub DVC stages (tests/stub_project.py).

The stub's ingest reads data from outside the project (``set_source``), which only a forced
re-ingest picks up, and a ``promote`` stage writes the gate's decision as the real
``promote@<family>`` does. Three retrainings, one after the other: the first trains
everything, the second finds nothing changed, the third new data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from uuid import UUID

import mlflow
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId

from flows.retraining import retraining
from tests.stub_project import GRAPH, TEST_METRICS, make_stub_project, set_metrics, set_source, stage_starts

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_server", "flow_env")]

STAGES = {**GRAPH, "promote": (["evaluate"], [])}
METRICS = {**TEST_METRICS, "promote": "metrics/localizer/promotion.json"}
FIRST = {"registered_model": "visionflow-localizer", "version": "1", "promote": True,
         "reason": "no champion yet; accuracy 0.75 reaches 0.5"}
REFUSED = {"registered_model": "visionflow-localizer", "version": "2", "promote": False,
           "reason": "the bootstrap's lower bound -0.01 is not above 0"}


@dataclass(frozen=True)
class Retraining:
    result: dict
    seconds: float
    starts: list[str]  # the stub stages started
    markdown: str  # the artifact it published
    artifact_flow_run: str
    parent: mlflow.entities.Run
    children: list[str]  # the stages of the parent's child runs


def retrain(root) -> Retraining:
    before = len(stage_starts(root))
    start = time.perf_counter()
    result = retraining(root=str(root))
    seconds = time.perf_counter() - start
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            id=ArtifactFilterId(any_=[UUID(result["artifact_id"])])))
    store = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    parent = store.get_run(result["mlflow_run_id"])
    children = store.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return Retraining(result, seconds, stage_starts(root)[before:], artifact.data, str(artifact.flow_run_id), parent,
                      sorted(c.data.tags["visionflow.stage"] for c in children))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_stub_project(tmp_path_factory.mktemp("retraining") / "project", STAGES, METRICS)
    set_metrics(root, "promote", FIRST)
    return root


@pytest.fixture(scope="module")
def first(project):
    return retrain(project)


@pytest.fixture(scope="module")
def unchanged(project, first):
    return retrain(project)


@pytest.fixture(scope="module")
def new_data(project, unchanged):
    set_source(project, "ingest", "two new images")
    set_metrics(project, "evaluate", {"accuracy": 0.8, "num_examples": 3})
    set_metrics(project, "promote", REFUSED)
    return retrain(project)


def after_ingest(retrained: Retraining) -> list[str]:
    """Every stage after ``ingest``, in the order the pipeline ran them."""
    order = [s["stage"] for s in retrained.result["stages"]]
    assert order[0] == "ingest" and sorted(order) == sorted(STAGES)
    return order[1:]


def test_a_first_retraining_ingests_then_trains_everything(first):
    assert first.result["noop"] is False
    assert first.result["changed"] == after_ingest(first)
    assert first.starts == ["ingest", *after_ingest(first)]  # re-ingested; then the pipeline's ingest is skipped
    assert {s["stage"]: s["ran"] for s in first.result["stages"]} == {s: s != "ingest" for s in STAGES}
    tags = first.parent.data.tags
    assert first.parent.info.status == "FINISHED"
    assert tags["visionflow.flow"] == "retraining" and tags["visionflow.noop"] == "false"
    assert first.children == sorted(STAGES)  # the re-ingest and the pipeline's stages, under one parent run
    assert first.parent.data.metrics["localizer/test_accuracy"] == 0.75


def test_the_summary_links_the_runs_and_gives_the_gates_decision(first):
    md = first.markdown
    assert first.artifact_flow_run == str(first.result["flow_run_id"])
    assert md.startswith(f"# Retraining: {first.parent.data.tags['mlflow.runName']}\n")
    assert f"Out of date after re-ingesting: {', '.join(f'`{s}`' for s in after_ingest(first))}." in md
    assert "| localizer/test_accuracy | 0.75 |  |  |" in md
    assert "| localizer | promoted to champion | visionflow-localizer 1 | no champion yet; accuracy 0.75 reaches 0.5 |" in md
    assert "| detector | no decision: no metrics/detector/promotion.json | | |" in md
    assert f"- this pipeline run: `{first.parent.info.run_id}`" in md
    assert "- the previous one: none" in md
    assert "Open them with `mlflow ui --backend-store-uri sqlite:///" in md


def test_nothing_changed_is_a_no_op_that_trains_nothing(unchanged):
    print(f"no-op retraining: {unchanged.seconds:.1f} s")
    assert unchanged.result["noop"] is True
    assert unchanged.starts == ["ingest"]  # re-ingested, then stopped
    tags = unchanged.parent.data.tags
    assert unchanged.parent.info.status == "FINISHED"
    assert tags["visionflow.noop"] == "true" and tags["mlflow.runName"].startswith("no-op @ ")
    assert unchanged.parent.data.metrics == {}
    assert unchanged.children == ["ingest"]
    assert unchanged.markdown.startswith("# Retraining: no change\n")
    assert f"the no-op pipeline run `{unchanged.parent.info.run_id}`" in unchanged.markdown


def test_new_data_retrains_and_compares_with_the_last_run_that_trained(first, new_data):
    assert new_data.result["noop"] is False
    assert new_data.starts == ["ingest", *after_ingest(new_data)]
    md = new_data.markdown
    assert "| localizer/test_accuracy | 0.8 | 0.75 | +0.05 |" in md
    assert "| localizer/test_num_examples | 3 | 3 | +0 |" in md
    assert f"- the previous one: `{first.parent.info.run_id}`" in md  # not the no-op run between them
    assert ("| localizer | not promoted | visionflow-localizer 2 | "
            "the bootstrap's lower bound -0.01 is not above 0 |") in md
    assert new_data.result["decisions"]["localizer"] == REFUSED
