"""``training_pipeline`` on Prefect's test server, over stub DVC stages that run in a second.

The stages are stubs (tests/stub_project.py), so these tests check what the flow adds
to DVC: the order, the skips, the retries, the config check and the MLflow parent run
with its children. The real stages run end to end in test_dvc_pipeline.py.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass

import mlflow
import pytest
import yaml

from flows import pipeline
from flows.pipeline import training_pipeline
from tests.e2e.conftest import PRODUCTION_TASK
from tests.stub_project import GRAPH, downstream, fail_next_run, make_stub_project, set_param, stage_starts
from visionflow.config import ConfigError, load_config
from visionflow.dvc_stages import StageFailed
from visionflow.tracking import flatten_params

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("prefect_server", "flow_env")]

@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return make_stub_project(tmp_path_factory.mktemp("stub_template") / "project")


def copy_project(template, dest):
    return shutil.copytree(template, dest / "project")


@dataclass(frozen=True)
class FlowRun:
    """One call of the flow, and what it left behind."""

    config: dict  # params.yaml as the flow saw it, flattened
    result: dict | None  # what the flow returned; None when it failed
    error: Exception | None
    starts: list[str]  # the stub stages started, retries included
    parent: mlflow.entities.Run  # the newest pipeline run
    parents_so_far: int
    children: list[mlflow.entities.Run]
    lock: dict  # dvc.lock after the run
    lock_hash: str


def run_flow(root) -> FlowRun:
    config = flatten_params(load_config(root / "params.yaml").model_dump(by_alias=True))
    before = len(stage_starts(root))
    try:
        result, error = training_pipeline(root=str(root)), None
    except StageFailed as e:
        result, error = None, e
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(config["tracking.experiment"])
    parents = client.search_runs([experiment.experiment_id], "tags.`visionflow.stage` = 'pipeline'",
                                 order_by=["attributes.start_time DESC"])
    parent = parents[0]
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    lock_bytes = (root / "dvc.lock").read_bytes()
    return FlowRun(config, result, error, stage_starts(root)[before:], parent, len(parents), children,
                   yaml.safe_load(lock_bytes), hashlib.md5(lock_bytes).hexdigest())


def ran(flow_run: FlowRun) -> dict[str, bool]:
    return {s["stage"]: s["ran"] for s in flow_run.result["stages"]}


def child_stages(flow_run: FlowRun) -> list[str]:
    return sorted(r.data.tags["visionflow.stage"] for r in flow_run.children)


# Each fixture below runs the flow once more on the same project, after the one before it.

@pytest.fixture(scope="module")
def project(template, tmp_path_factory):
    return copy_project(template, tmp_path_factory.mktemp("flow_project"))


@pytest.fixture(scope="module")
def first(project):
    return run_flow(project)


@pytest.fixture(scope="module")
def second(project, first):
    return run_flow(project)


@pytest.fixture(scope="module")
def reseeded(project, second):
    """A new split seed, and split fails once for a transient reason (exit 1)."""
    set_param(project, "split.seed", 43)
    fail_next_run(project, "split", exit_code=1)
    return run_flow(project)


@pytest.fixture(scope="module")
def rejected(project, reseeded):
    """New IoU thresholds, and evaluate rejects its input (exit 2)."""
    set_param(project, "evaluate.iou_thresholds", [0.5, 0.6])
    fail_next_run(project, "evaluate", exit_code=2)
    return run_flow(project)


def test_production_retries_a_stage_twice_after_5_then_30_seconds():
    assert PRODUCTION_TASK.retries == 2
    assert PRODUCTION_TASK.retry_delay_seconds == [5, 30]
    assert PRODUCTION_TASK.retry_condition_fn is pipeline._transient


def test_stages_run_once_each_in_dependency_order(first):
    order = [s["stage"] for s in first.result["stages"]]
    assert sorted(order) == sorted(GRAPH)
    for stage, (upstream, _) in GRAPH.items():
        assert all(order.index(u) < order.index(stage) for u in upstream), (stage, order)
    assert all(ran(first).values())
    assert first.starts == order
    assert set(first.lock["stages"]) == set(GRAPH)


def test_one_parent_run_with_a_child_per_stage(first):
    parent = first.parent
    assert first.parents_so_far == 1
    assert parent.info.run_id == first.result["mlflow_run_id"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["visionflow.stage"] == "pipeline"
    assert parent.data.tags["dvc.lock_hash"] == first.lock_hash
    assert len(parent.data.tags["git.commit"]) == 40
    assert parent.data.metrics["localizer/test_accuracy"] == 0.75  # from the metrics file evaluate wrote
    assert parent.data.params == {key: str(value) for key, value in first.config.items()}  # to compare runs
    assert parent.data.tags["mlflow.runName"] == f"4 stages @ {parent.data.tags['git.commit'][:7]}"
    assert parent.data.tags["visionflow.noop"] == "false"
    flow_run_id = parent.data.tags["prefect.flow_run_id"]
    assert str(first.result["flow_run_id"]) == flow_run_id
    assert child_stages(first) == sorted(GRAPH)
    for child in first.children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["git.commit"] == parent.data.tags["git.commit"]
        assert child.data.tags["prefect.flow_run_id"] == flow_run_id  # passed to the stage's own process
        assert set(child.data.params) == set(GRAPH[child.data.tags["visionflow.stage"]][1])


def test_a_second_run_skips_every_stage_and_logs_no_child(first, second):
    assert ran(second) == {stage: False for stage in GRAPH}
    assert second.starts == []
    assert second.parent.info.run_id == second.result["mlflow_run_id"]
    assert second.parents_so_far == first.parents_so_far + 1
    assert second.children == []
    tags = second.parent.data.tags
    assert tags["visionflow.noop"] == "true" and tags["mlflow.runName"].startswith("no-op @ ")
    assert second.parent.data.metrics == {}  # no stale test metrics logged as new


def test_a_changed_param_reruns_only_the_stages_downstream(reseeded):
    assert ran(reseeded) == {stage: stage in downstream("split") for stage in GRAPH}
    assert child_stages(reseeded) == sorted(downstream("split"))  # none for the failed attempt


def test_a_transient_failure_is_retried_and_the_flow_succeeds(reseeded):
    assert reseeded.error is None
    assert reseeded.starts[:2] == ["split", "split"]
    assert sorted(reseeded.starts[1:]) == sorted(downstream("split"))
    assert reseeded.lock["stages"]["split"]["params"]["params.yaml"]["split.seed"] == 43


def test_bad_input_fails_the_flow_once_without_a_retry(reseeded, rejected):
    assert isinstance(rejected.error, StageFailed) and rejected.error.user_error
    assert rejected.error.stage == "evaluate"
    assert rejected.starts == ["evaluate"]
    assert rejected.parent.info.status == "FAILED"
    assert rejected.children == []
    assert rejected.lock == reseeded.lock  # DVC records nothing of a failed stage


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["ingest"]["synthetic"].update(num_imags=5), "ingest.synthetic.num_imags: unknown key"),
        (lambda p: p["split"]["fractions"].update(test=0.3), "split.fractions: train + valid + test must sum to 1"),
        (lambda p: p["ingest"].update(source="coco", coco={"path": "no/such/folder"}), "ingest.coco.path"),
    ],
)
def test_bad_config_stops_the_flow_before_any_work(template, tmp_path, edit, message):
    root = copy_project(template, tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    edit(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("+", r"\+")):
        training_pipeline(root=str(root))
    assert stage_starts(root) == []
    assert not (root / "out").exists() and not (root / "dvc.lock").exists()
    assert not (root / "mlflow.db").exists()
