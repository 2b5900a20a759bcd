"""Two pipeline runs started at once on one workspace: two ``python -m flows.pipeline`` processes on
one stub project (tests/stub_project.py), both on Prefect's test server.

The first stage pauses, so whichever run takes the workspace first still holds it when the
other arrives. With ``orchestration.on_busy: fail`` the other stops at once, before any MLflow
run; with ``wait`` it runs after the first (and finds nothing left to do). Either way
``dvc.lock`` ends whole and up to date.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import mlflow
import pytest
import yaml
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from tests.project import tool_env
from tests.stub_project import GRAPH, make_stub_project, set_param, set_pause
from visionflow.dvc_stages import outdated_stages

pytestmark = pytest.mark.e2e

PAUSE = 10  # seconds the first stage holds the run, so that the other arrives meanwhile


@pytest.fixture(scope="module")
def api_url():
    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@dataclass(frozen=True)
class Process:
    code: int
    seconds: float
    stderr: str


def run_both(root, api_url) -> list[Process]:
    """Start two runs at once; each one's exit code, seconds from the start to its end, and stderr."""
    cmd = [sys.executable, "-m", "flows.pipeline", "--root", str(root)]
    env = {**tool_env(), "PREFECT_API_URL": api_url}
    start = time.perf_counter()

    def run(_) -> Process:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        return Process(proc.returncode, time.perf_counter() - start, proc.stderr)

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(run, range(2)))


def pipeline_runs(root) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`visionflow.stage` = 'pipeline'", order_by=["attributes.start_time ASC"])


def assert_lock_whole(root) -> None:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(GRAPH)
    assert outdated_stages(root, list(GRAPH)) == []


@pytest.fixture
def project(tmp_path):
    root = make_stub_project(tmp_path / "project")
    set_pause(root, "ingest", PAUSE)
    return root


def test_with_fail_the_second_run_stops_at_once_before_any_mlflow_run(project, api_url):
    set_param(project, "orchestration.on_busy", "fail")
    winner, loser = sorted(run_both(project, api_url), key=lambda p: p.code)
    print(f"on_busy fail: the second run stopped after {loser.seconds:.1f} s, the first ended after {winner.seconds:.1f} s")
    assert (winner.code, loser.code) == (0, 2), loser.stderr[-2000:]
    assert "holds the workspace" in loser.stderr and "stopping, as orchestration.on_busy is fail" in loser.stderr
    assert loser.seconds < winner.seconds - PAUSE / 2
    runs = pipeline_runs(project)
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert_lock_whole(project)


def test_with_wait_the_second_run_follows_the_first(project, api_url):
    set_param(project, "orchestration.on_busy", "wait")
    processes = run_both(project, api_url)
    print(f"on_busy wait: the runs ended after {', '.join(f'{p.seconds:.1f}' for p in processes)} s")
    assert [p.code for p in processes] == [0, 0], [p.stderr[-2000:] for p in processes]
    assert any("waiting for it to finish" in p.stderr for p in processes)
    first, second = pipeline_runs(project)
    assert first.info.status == second.info.status == "FINISHED"
    assert first.info.end_time <= second.info.start_time  # one after the other
    assert first.data.tags["visionflow.noop"] == "false" and second.data.tags["visionflow.noop"] == "true"
    assert_lock_whole(project)
