"""Training killed with SIGKILL in the middle of an epoch, then ``dvc repro`` again, in a fresh git + DVC repo.

The kill takes the whole ``dvc repro`` process group down (DVC and the training under it),
as a lost machine would. Run again, training resumes from the last finished epoch, the
stages before it are not re-run, and the history file and the MLflow curve are whole.
The resumed model is the one an uninterrupted run trains: a forced re-run from scratch
gives the same per-epoch metrics (op determinism is on), which also gives the time the
resume saved against a restart (printed, not asserted).
"""

import csv
import os
import signal
import subprocess
import time

import mlflow
import pytest

from tests.project import make_project, run, tool_env
from visionflow.tracking.resume import RESUMED_AT_EPOCH, RESUMED_FROM

pytestmark = pytest.mark.e2e

# Epochs of a few seconds, so the kill lands inside one; the frozen phase is killed, the harder case.
PARAMS = {"ingest": {"synthetic": {"num_images": 480}},
          "train": {"localizer": {"frozen": {"epochs": 2}, "finetune": {"epochs": 2}}}}
UPSTREAM = ["photos", "ingest@shapes", "split@shapes", "preprocess@shapes", "anchors@shapes", "backbone"]


def start_training(root):
    return subprocess.Popen(["dvc", "repro", "train@localizer"], cwd=root, env=tool_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_in_second_epoch(proc, root, timeout=600):
    """SIGKILL the process group once the first epoch is recorded and checkpointed: inside the second."""
    recorded = root / "models/.checkpoints/localizer/history.jsonl"
    checkpointed = root / "models/.checkpoints/localizer/frozen/training_metadata.json"  # BackupAndRestore's
    deadline = time.monotonic() + timeout
    while not (recorded.exists() and recorded.read_text().count("\n") >= 1 and checkpointed.exists()):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "training never finished its first epoch"
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return recorded.read_text().count("\n")


def read_history(root):
    with (root / "plots/localizer/history.csv").open() as f:
        return list(csv.DictReader(f))


def timed(cmd, root):
    start = time.monotonic()
    proc = run(cmd, root)
    return proc.stdout + proc.stderr, time.monotonic() - start


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("resume_project"), PARAMS)
    run(["dvc", "repro", *UPSTREAM], root)
    lock_before = (root / "dvc.lock").read_bytes()
    outputs_before = {p: p.read_bytes() for p in (root / "data/shapes/processed").iterdir()}
    epochs_recorded = kill_in_second_epoch(start_training(root), root)
    after_kill = {"lock": (root / "dvc.lock").read_bytes(), "model": (root / "models/localizer").exists(),
                  "outputs": {p: p.read_bytes() for p in (root / "data/shapes/processed").iterdir()}}
    resumed_log, resumed_seconds = timed(["dvc", "repro", "train@localizer"], root)
    return dict(root=root, lock_before=lock_before, outputs_before=outputs_before, after_kill=after_kill,
                epochs_recorded=epochs_recorded, log=resumed_log, seconds=resumed_seconds)


def test_the_kill_landed_mid_epoch_and_lost_nothing(killed_and_resumed):
    k = killed_and_resumed
    assert k["epochs_recorded"] == 1  # killed inside the second epoch, before it was recorded
    assert k["after_kill"]["lock"] == k["lock_before"]  # dvc.lock intact
    assert k["after_kill"]["outputs"] == k["outputs_before"]  # the earlier outputs intact
    assert not k["after_kill"]["model"]  # and no half-written model


def test_the_rerun_skips_the_done_stages_and_resumes_at_the_killed_epoch(killed_and_resumed):
    log = killed_and_resumed["log"]
    for stage in UPSTREAM:
        assert f"Stage '{stage}' didn't change, skipping" in log
        assert f"Running stage '{stage}'" not in log
    assert "Running stage 'train@localizer'" in log
    assert "Epoch 1/2" not in log and "Epoch 2/2" in log  # the frozen phase from its second epoch, the one killed
    assert "Epoch 3/4" in log and "Epoch 4/4" in log  # then the whole fine-tune
    assert [int(row["epoch"]) for row in read_history(killed_and_resumed["root"])] == [0, 1, 2, 3]


def test_the_killed_run_is_marked_killed_and_the_resumed_one_carries_the_whole_curve(killed_and_resumed):
    root = killed_and_resumed["root"]
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("visionflow")
    runs = mlflow.search_runs([exp.experiment_id], "tags.`visionflow.stage` = 'train@localizer'",
                              order_by=["attributes.start_time ASC"], output_format="list")
    killed, resumed = runs
    assert killed.info.status == "KILLED" and resumed.info.status == "FINISHED"
    assert resumed.data.tags[RESUMED_FROM] == killed.info.run_id
    assert resumed.data.tags[RESUMED_AT_EPOCH] == "1"
    client = mlflow.MlflowClient()
    for key in ("loss", "val_loss", "learning_rate"):
        assert [m.step for m in client.get_metric_history(resumed.info.run_id, key)] == [0, 1, 2, 3]
    assert [m.step for m in client.get_metric_history(killed.info.run_id, "loss")] == [0]


def test_the_resumed_model_is_the_one_an_uninterrupted_run_trains(killed_and_resumed):
    root = killed_and_resumed["root"]
    resumed = read_history(root)
    _, restart_seconds = timed(["dvc", "repro", "--force", "--single-item", "train@localizer"], root)
    restarted = read_history(root)
    for a, b in zip(resumed, restarted, strict=True):
        assert a == b  # every metric of every epoch, to the last digit
    print(f"\nresumed at epoch 1 of 4: dvc repro train@localizer took {killed_and_resumed['seconds']:.1f} s, "
          f"from scratch {restart_seconds:.1f} s")
