"""A training run taking over from a killed one, on a real local MLflow store."""

import mlflow
from mlflow.entities import RunStatus

from visionflow.tracking.resume import RESUMED_AT_EPOCH, RESUMED_FROM, take_over
from visionflow.training import ResumeState


def test_the_killed_run_is_ended_and_the_new_one_carries_its_epochs(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        killed = mlflow.start_run().info.run_id  # what a SIGKILL leaves: a run never ended
        mlflow.log_metric("loss", 1.0, step=0)
        mlflow.end_run(status=RunStatus.to_string(RunStatus.RUNNING))
        state = ResumeState(tmp_path / "ckpt", "f1")
        state.attach_run(killed)
        state.record_epoch(0, {"loss": 1.0})
        state = ResumeState(tmp_path / "ckpt", "f1")  # the next attempt
        with mlflow.start_run() as new:
            state.attach_run(new.info.run_id)
            take_over(state.previous_run_id, state.history())
        client = mlflow.MlflowClient()
        assert client.get_run(killed).info.status == "KILLED"
        resumed = client.get_run(new.info.run_id)
        assert resumed.data.tags[RESUMED_FROM] == killed and resumed.data.tags[RESUMED_AT_EPOCH] == "1"
        assert [(m.step, m.value) for m in client.get_metric_history(new.info.run_id, "loss")] == [(0, 1.0)]
    finally:
        mlflow.set_tracking_uri(None)


def test_changed_inputs_start_over_but_still_end_the_killed_run_and_a_deleted_one_is_let_be(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        runs = []
        for _ in range(2):
            runs.append(mlflow.start_run().info.run_id)
            mlflow.end_run(status=RunStatus.to_string(RunStatus.RUNNING))
        mlflow.MlflowClient().delete_run(runs[1])
        for killed, fingerprint in zip(runs, ("f2", "f3")):
            state = ResumeState(tmp_path / "ckpt", fingerprint)  # new inputs each time: history wiped
            assert state.previous_run_id in (None, runs[0]) and state.history() == []
            state.attach_run(killed)
            state = ResumeState(tmp_path / "ckpt", fingerprint + "-changed")
            assert state.previous_run_id == killed and state.history() == []
            with mlflow.start_run() as new:
                take_over(state.previous_run_id, state.history())  # no error for the deleted one
            assert RESUMED_FROM not in mlflow.get_run(new.info.run_id).data.tags  # nothing resumed
        assert mlflow.get_run(runs[0]).info.status == "KILLED"
    finally:
        mlflow.set_tracking_uri(None)
