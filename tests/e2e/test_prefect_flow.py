"""``training_pipeline`` on Prefect's test server: DVC stages under one MLflow parent run."""

import hashlib
import json
import os

import mlflow
import pytest
import yaml
from prefect.testing.utilities import prefect_test_harness

from flows.pipeline import training_pipeline
from tests.project import make_project, tool_env
from visionflow.config import ConfigError

pytestmark = pytest.mark.e2e

STAGES = ["ingest", "split", "preprocess", "backbone", "train_localizer", "evaluate"]


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def env():
    saved, wanted = dict(os.environ), tool_env()
    os.environ.clear()
    os.environ.update(wanted)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def flow_project(tmp_path_factory, env):
    root = make_project(tmp_path_factory.mktemp("flow_project"))
    first = training_pipeline(root=str(root))
    second = training_pipeline(root=str(root))
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return root, first, second


def children(parent_id: str):
    exp = mlflow.get_experiment_by_name("visionflow")
    return mlflow.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
                              output_format="list")


def test_flow_runs_every_stage_in_order_through_dvc(flow_project):
    root, first, _ = flow_project
    assert [s["stage"] for s in first["stages"]] == STAGES
    assert all(s["ran"] for s in first["stages"])
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert json.loads((root / "metrics/localizer.json").read_text())["num_examples"] > 0


def test_one_parent_run_with_a_child_per_stage(flow_project):
    root, first, _ = flow_project
    parent = mlflow.get_run(first["mlflow_run_id"])
    assert parent.data.tags["visionflow.stage"] == "pipeline"
    assert parent.data.tags["dvc.lock_hash"] == hashlib.md5((root / "dvc.lock").read_bytes()).hexdigest()
    assert len(parent.data.tags["git.commit"]) == 40
    assert "test_accuracy" in parent.data.metrics
    assert parent.data.params["train_localizer.loss_weights.class"] == "0.8"  # the whole config, to compare runs
    kids = children(first["mlflow_run_id"])
    assert sorted(r.data.tags["visionflow.stage"] for r in kids) == sorted(STAGES)


def test_unchanged_stages_are_skipped_and_log_no_child(flow_project):
    _, _, second = flow_project
    assert [s["ran"] for s in second["stages"]] == [False] * len(STAGES)
    assert children(second["mlflow_run_id"]) == []


def test_a_changed_param_reruns_only_downstream_stages(flow_project):
    root, _, _ = flow_project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"]["iou_thresholds"] = [0.5, 0.6]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    result = training_pipeline(root=str(root))
    assert {s["stage"]: s["ran"] for s in result["stages"]} == {s: s == "evaluate" for s in STAGES}
    assert "share_iou_ge_0.6" in json.loads((root / "metrics/localizer.json").read_text())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["ingest"]["synthetic"].update(num_imags=5), "ingest.synthetic.num_imags: unknown key"),
        (lambda p: p["split"]["fractions"].update(test=0.3), "split.fractions: train + valid + test must sum to 1"),
        (lambda p: p["ingest"].update(source="coco", coco={"path": "no/such/folder"}), "ingest.coco.path"),
    ],
)
def test_bad_config_stops_the_flow_before_any_work(tmp_path, env, edit, message):
    root = make_project(tmp_path)
    params = yaml.safe_load((root / "params.yaml").read_text())
    edit(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("+", r"\+")):
        training_pipeline(root=str(root))
    assert not (root / "data").exists() and not (root / "dvc.lock").exists()
    assert not (root / "mlflow.db").exists()
