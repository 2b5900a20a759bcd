"""Runs: the experiment (its kind, its artifacts, created once under a race) and a server that does not answer."""

import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import mlflow
import pytest

from tests.servers import free_port
from visionflow.tracking.runs import ARTIFACTS_DIR, TrackingUnreachable, check_reachable, default_uri, stage_run

@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VISIONFLOW_PARENT_RUN_ID", raising=False)
    yield tmp_path
    mlflow.set_tracking_uri(None)


def test_the_experiment_is_a_model_training_one_with_its_artifacts_in_mlartifacts(store):
    with stage_run("ingest@shapes", "exp", {"a": 1}, root=store) as run:
        mlflow.log_dict({"x": 1}, "x.json")
    experiment = mlflow.get_experiment_by_name("exp")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.artifact_location == (store / ARTIFACTS_DIR).resolve().as_uri()
    assert (store / ARTIFACTS_DIR / run.info.run_id / "artifacts" / "x.json").is_file()
    assert not (store / "mlruns").exists()
    with stage_run("split@shapes", "exp", {}, root=store):  # set_tracking_uri set the variable: still the same place
        pass
    assert mlflow.get_experiment_by_name("exp").experiment_id == experiment.experiment_id


def _start_in(root: str) -> str:
    import os

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    with stage_run("race", "raced", {}, root=Path(root)) as run:
        return run.info.experiment_id


def test_two_workers_racing_to_create_the_experiment_share_it(store):
    with ProcessPoolExecutor(2) as pool:
        ids = list(pool.map(_start_in, [str(store)] * 4))
    assert len(set(ids)) == 1
    mlflow.set_tracking_uri(default_uri(store))
    assert len(mlflow.search_experiments(filter_string="name = 'raced'")) == 1


def test_a_server_that_does_not_answer_fails_at_once_with_one_line():
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingUnreachable, match=rf"^MLFLOW_TRACKING_URI={uri}: the tracking server does not answer"):
        check_reachable(uri)
    assert time.monotonic() - start < 5


def test_a_stage_with_no_server_exits_2_with_one_error_line_before_any_work(tmp_path):
    """Exit 2 is bad input: the flow does not retry it."""
    from tests.project import make_project, tool_env

    root = make_project(tmp_path / "project")
    env = {**tool_env(), "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    proc = subprocess.run([sys.executable, "-m", "tasks.photos"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and not (root / "data").exists()
    uri = env["MLFLOW_TRACKING_URI"]
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        f"error: MLFLOW_TRACKING_URI={uri}: the tracking server does not answer (ConnectionError); start it, "
        "or unset MLFLOW_TRACKING_URI for the local store"]
