"""The training stage sent to a GPU work pool: a real ``prefect server start`` on loopback, a ``process``
work pool with a real ``prefect worker`` running from a second clone of the project, and a
local-folder DVC remote between the two clones. No Docker.

The project is the stub one (tests/stub_project.py: stages that run in a second), shaped like
the real graph: ``ingest`` -> ``train`` -> ``evaluate``. With ``orchestration.gpu_work_pool``
set, ``train`` must run in the second clone, and its outputs come back through the remote.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import mlflow
import pytest
import yaml

from tests.project import ROOT, run, tool_env
from tests.servers import free_port, stop, wait_until_up
from tests.stub_project import CONTROL_DIR, fail_next_run, make_stub_project, out_path, set_param, stage_starts

pytestmark = pytest.mark.e2e

GRAPH = {"ingest": ([], ["ingest.source"]), "train": (["ingest"], ["train.localizer.batch_size"]),
         "evaluate": (["ingest", "train"], [])}
METRICS = {"train": "metrics/train.json", "evaluate": "metrics/localizer/test.json"}
POOL = "gpu-test"


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory):
    """A Prefect server of the test's own, and the environment that talks to it (one PREFECT_HOME: one
    result storage, as a shared store would be across machines)."""
    home, port = tmp_path_factory.mktemp("prefect_home"), free_port()
    env = {**tool_env(), "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(server, f"{env['PREFECT_API_URL']}/health")
        yield env
    finally:
        stop(server)


def prefect(env, cwd, *args) -> str:
    proc = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def pipeline(main, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.pipeline"], cwd=main, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def clones(tmp_path_factory, prefect_env):
    """The project, a second clone of it serving the pool through a running worker, and the DVC remote between."""
    base = tmp_path_factory.mktemp("gpu_routing")
    main, worker_clone, store = base / "main", base / "worker", base / "dvc-remote"
    make_stub_project(main, GRAPH, METRICS)
    shutil.copytree(ROOT / "flows", main / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    with (main / ".gitignore").open("a") as ignore:
        ignore.write("__pycache__/\n")
    run(["git", "add", "flows", ".gitignore"], main)
    run(["git", "commit", "-qm", "flows"], main)
    run(["git", "clone", "-q", str(main), str(worker_clone)], base)
    (main / "NOTES").write_text("a commit the worker's clone does not have yet\n")
    run(["git", "add", "NOTES"], main)
    run(["git", "commit", "-qm", "after the clone"], main)
    for clone in (main, worker_clone):
        run(["dvc", "remote", "add", "--local", "-d", "store", str(store)], clone)
    for kind in ("fail", "source", "metrics", "sleep"):  # the stub's side channel is not in git
        (worker_clone / CONTROL_DIR / kind).mkdir(parents=True)
    prefect(prefect_env, worker_clone, "work-pool", "create", POOL, "--type", "process")
    prefect(prefect_env, worker_clone, "deploy", "flows/remote_stage.py:remote_stage", "--name", POOL, "--pool", POOL)
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL],
                              cwd=worker_clone, env=prefect_env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    set_param(main, "orchestration.gpu_work_pool", POOL)
    try:
        yield dict(main=main, worker=worker_clone, store=store)
    finally:
        stop(worker)


@pytest.fixture(scope="module")
def routed(clones, prefect_env):
    """Two pipeline runs; the worker's first try at ``train`` fails as a crash would (exit 1): a retry."""
    fail_next_run(clones["worker"], "train", 1)
    first = pipeline(clones["main"], prefect_env)
    starts = {"main": stage_starts(clones["main"]), "worker": stage_starts(clones["worker"])}
    second = pipeline(clones["main"], prefect_env)
    return dict(clones, first=first, first_starts=starts, second=second)


@pytest.fixture(scope="module")
def bad_input(routed, prefect_env):
    """After those, ``train`` out of date again, and the worker finds its input bad (exit 2): no retry."""
    before = stage_starts(routed["worker"])
    set_param(routed["main"], "train.localizer.batch_size", 16)
    fail_next_run(routed["worker"], "train", 2)
    return dict(result=pipeline(routed["main"], prefect_env), starts=stage_starts(routed["worker"])[len(before):])


def test_the_training_stage_ran_in_the_workers_clone_and_nothing_else_did(routed):
    assert routed["first"].returncode == 0, routed["first"].stderr[-3000:]
    assert routed["first_starts"]["worker"] == ["train", "train"]  # failed once on the worker, retried there
    assert routed["first_starts"]["main"] == ["ingest", "evaluate"]
    summary = json.loads(routed["first"].stdout)
    (train,) = [s for s in summary["stages"] if s["stage"] == "train"]
    assert train["ran"] and train["worker"]["root"] == str(routed["worker"].resolve())
    head = [run(["git", "rev-parse", "HEAD"], clone).stdout for clone in (routed["main"], routed["worker"])]
    assert head[0] == head[1]  # the worker checked out the pipeline's commit


def test_its_outputs_came_back_through_the_remote_and_the_lock_records_them(routed):
    main, worker = routed["main"], routed["worker"]
    assert (main / out_path("train")).read_bytes() == (worker / out_path("train")).read_bytes()
    assert (main / METRICS["train"]).read_bytes() == (worker / METRICS["train"]).read_bytes()
    # dvc.lock records train as the worker ran it: nothing out of date here
    assert json.loads(run(["dvc", "status", "--json"], main).stdout) == {}
    entry = [o for o in yaml.safe_load((main / "dvc.lock").read_text())["stages"]["train"]["outs"]
             if o["path"] == out_path("train")][0]
    pushed = routed["store"] / "files" / "md5" / entry["md5"][:2] / entry["md5"][2:]
    assert pushed.read_bytes() == (main / out_path("train")).read_bytes()  # it travelled through the remote
    evaluated = json.loads((main / out_path("evaluate")).read_text())
    assert out_path("train") in evaluated["deps"]  # and the next stage, here, read it


def test_the_workers_run_is_a_child_of_the_pipelines_run(routed):
    mlflow.set_tracking_uri(f"sqlite:///{routed['main'] / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("visionflow")
    runs = {r.data.tags["visionflow.stage"]: r for r in mlflow.search_runs([exp.experiment_id], output_format="list")
            if r.data.tags.get("mlflow.parentRunId")}
    assert set(runs) == {"ingest", "train", "evaluate"}
    assert len({r.data.tags["mlflow.parentRunId"] for r in runs.values()}) == 1


def test_a_second_run_sends_nothing_to_the_pool(routed):
    assert routed["second"].returncode == 0, routed["second"].stderr[-3000:]
    assert stage_starts(routed["worker"]) == ["train", "train"]
    assert not any(s["ran"] for s in json.loads(routed["second"].stdout)["stages"])


def test_bad_input_on_the_worker_fails_the_pipeline_without_a_retry(bad_input):
    assert bad_input["result"].returncode != 0
    assert bad_input["starts"] == ["train"]  # once, not three times
    assert "stage 'train' failed" in bad_input["result"].stderr
