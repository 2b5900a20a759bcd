"""The pipeline logging to an MLflow server on PostgreSQL, as ``infra/docker-compose.yml`` runs one, without Docker.

A throwaway PostgreSQL cluster (Debian's binaries, ``initdb`` into a temporary folder, on a
free loopback port) backs ``mlflow server``, which stores artifacts in a temporary folder and
serves them (``--serve-artifacts``): clients upload and download them through the server, as
they do through the compose file's server to MinIO. A tiny real project then runs its first
data stages under ``dvc repro`` with ``MLFLOW_TRACKING_URI`` pointing at it (up to
``train@classifier`` took over 2 minutes here, beside other work; the training stage's
logging is what ``tests/e2e/test_dvc_pipeline.py`` checks on the local store).

PostgreSQL refuses to run as root: as root, the cluster runs as the ``postgres`` system
user (``runuser``), in a folder under the system's temporary folder that it owns (pytest's
own temporary folders sit under a root-only folder it could not enter).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pytest
import requests

from tests.project import make_project, tool_env
from tests.servers import free_port

pytestmark = pytest.mark.e2e

STAGES = ["photos", "ingest@shapes", "split@shapes"]
DATABASE = "mlflow"


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Cluster:
    """A PostgreSQL cluster in ``root``; as root, every command runs as the ``postgres`` user."""

    def __init__(self, bindir: Path, root: Path, port: int, as_postgres: bool):
        self.bindir, self.root, self.port = bindir, root, port
        self.data, self.sockets, self.log = root / "data", root / "sockets", root / "postgres.log"
        self.prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.prefix, str(self.bindir / tool), *args], cwd=self.root, capture_output=True,
                              text=True, timeout=120)
        if check and proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise AssertionError(f"{tool} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}")
        return proc

    def start(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", DATABASE)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sqlalchemy_url(self, database: str = DATABASE) -> str:
        """The driver named: SQLAlchemy 2.0 defaults to psycopg2 for ``postgresql://``, 2.1 to psycopg (3)."""
        return self.url(database).replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql "
                    "(.ci/run does)")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres system user to run PostgreSQL as")
        root = Path(tempfile.mkdtemp(prefix="visionflow-pg-"))
        for path in (root, root / "sockets"):
            path.mkdir(exist_ok=True)
            os.chown(path, user.pw_uid, user.pw_gid)
    else:
        root = tmp_path_factory.mktemp("postgres")
        (root / "sockets").mkdir()
    cluster = Cluster(bindir, root, free_port(), as_postgres=as_root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if as_root:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    """``mlflow server`` on the cluster, its artifacts in a temporary folder it serves; yields (URI, that folder)."""
    artifacts = tmp_path_factory.mktemp("mlflow_artifacts")
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow_server") / "server.log"
    env = {k: v for k, v in tool_env().items() if not k.startswith("MLFLOW_TRACKING_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # its 7 job consumers (GenAI scorers) are not needed here
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres.sqlalchemy_url(),
           "--artifacts-destination", str(artifacts), "--serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # the first start creates MLflow's tables in PostgreSQL
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not answer in 180 s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield uri, artifacts
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM to the server's process group (uvicorn and its workers), then SIGKILL to whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture(scope="module")
def pipeline(server, tmp_path_factory):
    """A tiny project's first stages, logged to the server; its root."""
    uri, _ = server
    root = make_project(tmp_path_factory.mktemp("postgres_project"))
    proc = subprocess.run(["dvc", "repro", STAGES[-1]], cwd=root, env={**tool_env(), "MLFLOW_TRACKING_URI": uri},
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"dvc repro failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return root


@pytest.fixture(scope="module")
def runs(server, pipeline):
    """Each stage's run, read from the server (the process's tracking URI points at it meanwhile)."""
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server[0])
    try:
        experiment = mlflow.get_experiment_by_name("visionflow")
        found = mlflow.MlflowClient().search_runs([experiment.experiment_id])
        yield {r.data.tags["visionflow.stage"]: r for r in found}
    finally:
        mlflow.set_tracking_uri(before)


def test_each_stage_logged_a_finished_run_to_the_server(pipeline, runs):
    assert set(runs) == set(STAGES)
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    sizes = json.loads((pipeline / "metrics/data/shapes/split.json").read_text())
    assert runs["split@shapes"].data.metrics == sizes


def test_artifacts_go_through_the_server_to_its_destination(server, pipeline, runs, tmp_path):
    _, destination = server
    ingest = runs["ingest@shapes"]
    assert ingest.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the client never sees the folder
    local = mlflow.artifacts.download_artifacts(run_id=ingest.info.run_id, artifact_path="validation.json",
                                                dst_path=str(tmp_path))
    sent = (pipeline / "data/shapes/raw/validation.json").read_bytes()
    assert Path(local).read_bytes() == sent
    assert [p.read_bytes() for p in destination.rglob("validation.json")] == [sent]


def test_postgresql_holds_the_runs_and_their_metrics(postgres, pipeline, runs):
    import psycopg

    with psycopg.connect(postgres.url()) as connection:
        found = connection.execute("SELECT run_uuid, name, status FROM runs WHERE lifecycle_stage = 'active'")
        rows = {run_id: (name, status) for run_id, name, status in found}
        metrics = dict(connection.execute("SELECT key, value FROM metrics WHERE run_uuid = %s",
                                          (runs["split@shapes"].info.run_id,)).fetchall())
    assert rows == {r.info.run_id: (stage, "FINISHED") for stage, r in runs.items()}
    assert metrics == json.loads((pipeline / "metrics/data/shapes/split.json").read_text())
