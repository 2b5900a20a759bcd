"""Transfer learning in two phases, for any model family: the head on a frozen backbone, then everything.

Both phases recompile (a change of ``trainable`` only takes effect on compile), and
the epoch count runs on across them so the logged curves continue. Training resumes
where it stopped: each phase keeps a ``BackupAndRestore`` checkpoint of its last finished
epoch, finished phases keep their weights, every finished epoch's metrics are kept, and
all of it is dropped when the inputs (the fingerprint) change. The training data is
asked for from the epoch it resumes at, so a resumed epoch sees the batches it would
have seen.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras

from visionflow.config import PhaseConfig, TrainConfig
from visionflow.io import atomic_write_text
from visionflow.models.transfer import make_optimizer, set_backbone_trainable

STATE_FILE = "state.json"
HISTORY_FILE = "history.jsonl"
BACKUP_METADATA = "training_metadata.json"  # written by keras.callbacks.BackupAndRestore...
BACKUP_WEIGHTS = "latest.weights.h5"  # ...beside its weights (and, with double_checkpoint, both again as .bkp)


def _readable_h5(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r"):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Phase:
    name: str
    config: PhaseConfig
    backbone_trainable: bool


def phases(cfg: TrainConfig) -> list[Phase]:
    return [Phase("frozen", cfg.frozen, False), Phase("finetune", cfg.finetune, True)]


class ResumeState:
    """Which phases are done, and every finished epoch's metrics, for one fingerprint of the inputs."""

    def __init__(self, checkpoint_dir: Path, fingerprint: str):
        self.dir = Path(checkpoint_dir)
        path = self.dir / STATE_FILE
        self.state = json.loads(path.read_text()) if path.exists() else {}
        self.previous_run_id = self.state.get("run_id")  # the tracking run of an interrupted attempt, if any
        if self.state.get("fingerprint") != fingerprint:  # new inputs: start over (that run was still killed)
            shutil.rmtree(self.dir, ignore_errors=True)
            self.state = {"fingerprint": fingerprint, "done": []}
            self.dir.mkdir(parents=True)
            self._save()  # at once: a run killed in its first phase is then resumed, not wiped

    def _save(self) -> None:
        atomic_write_text(self.dir / STATE_FILE, json.dumps(self.state))

    def done(self, phase: str) -> bool:
        return phase in self.state["done"]

    def weights_path(self, phase: str) -> Path:
        return self.dir / f"{phase}.weights.h5"

    def resume_epoch(self, phase: str, first_epoch: int) -> int:
        """The epoch a phase's ``BackupAndRestore`` checkpoint will resume at: its last, or, where a kill
        damaged the last one's weights, the one before (as Keras falls back)."""
        backup = self.dir / phase
        for suffix in ("", ".bkp"):
            weights, metadata = backup / f"{BACKUP_WEIGHTS}{suffix}", backup / f"{BACKUP_METADATA}{suffix}"
            if metadata.exists() and _readable_h5(weights):
                return json.loads(metadata.read_text())["epoch"]
        return first_epoch

    def mark_done(self, phase: str, model) -> None:
        model.save_weights(self.weights_path(phase))
        self.state["done"].append(phase)
        self._save()

    def attach_run(self, run_id: str) -> None:
        """Record ``run_id`` as the tracking run training now (``previous_run_id`` keeps the one before)."""
        self.state["run_id"] = run_id
        self._save()

    def record_epoch(self, epoch: int, logs: dict) -> None:
        with (self.dir / HISTORY_FILE).open("a") as f:
            f.write(json.dumps({"epoch": epoch, **{k: float(v) for k, v in logs.items()}}) + "\n")

    def history(self) -> list[dict]:
        """One row per finished epoch, in order (a re-run epoch keeps its last record)."""
        path = self.dir / HISTORY_FILE
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return sorted({row["epoch"]: row for row in rows}.values(), key=lambda row: row["epoch"])


def phase_learning_rate(phase: PhaseConfig, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The rate ``step`` batches into the phase's ``epoch`` (both from 0 within the phase).

    A linear warm-up, then constant, a cosine decay towards 0 over the rest of the phase
    (per epoch), or inverse-time decay per optimizer step, counted from the warm-up's end.
    """
    warmup = min(phase.warmup_epochs, phase.epochs - 1)
    if epoch < warmup:
        return phase.learning_rate * (epoch + 1) / (warmup + 1)
    if phase.schedule == "constant":
        return phase.learning_rate
    if phase.schedule == "inverse_time":
        return inverse_time_rate(phase.learning_rate, phase.decay, (epoch - warmup) * steps_per_epoch + step)
    return phase.learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / (phase.epochs - warmup)))


def inverse_time_rate(learning_rate: float, decay: float, step: int) -> float:
    """Legacy Keras's ``decay`` (as ``SGD(lr, decay=...)`` had it): the rate at optimizer step ``step`` (from 0)."""
    return learning_rate / (1 + decay * step)


class StepSchedule(keras.callbacks.Callback):
    """Sets the rate before every batch (for schedules that change within an epoch) and logs the last one."""

    def __init__(self, phase: PhaseConfig, first_epoch: int, steps_per_epoch: int):
        super().__init__()
        self.phase, self.first_epoch, self.steps_per_epoch = phase, first_epoch, steps_per_epoch
        self.epoch = first_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = phase_learning_rate(self.phase, self.epoch - self.first_epoch, batch,
                                                                 self.steps_per_epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def learning_rate_schedule(phase: PhaseConfig, first_epoch: int, steps_per_epoch: int = 1):
    """The phase's learning-rate callback (see :func:`phase_learning_rate`).

    The warm-up spares a freshly unfrozen backbone the full rate while the new heads'
    gradients are still large. Keyed on the epoch (and batch) number, not the
    optimizer's step count, so a resumed phase picks the schedule up where it stopped;
    the rate is logged with the epoch's metrics.
    """
    if phase.schedule == "inverse_time":
        return StepSchedule(phase, first_epoch, steps_per_epoch)
    return keras.callbacks.LearningRateScheduler(lambda epoch, _lr: phase_learning_rate(phase, epoch - first_epoch))


def train_two_phase(family, model, backbone, train_from: Callable[[int], object], steps_per_epoch: int, valid_ds,
                    checkpoint_dir: Path, fingerprint: str,
                    callbacks_for_phase: Callable[[str], list] = lambda phase: [],
                    jit_compile: bool | None = None) -> list[dict]:
    """Fit ``model`` phase by phase; returns one row of metrics per epoch, those of earlier runs included.

    ``train_from(epoch)`` gives the training batches from that epoch on, without end.
    ``jit_compile`` True or False overrides the family's compile (XLA or not); None keeps it.
    Under a ``tf.distribute`` strategy, call it inside ``strategy.scope()``: the optimizer is made here.
    """
    state = ResumeState(checkpoint_dir, fingerprint)
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: state.record_epoch(epoch, logs or {}))
    epoch = 0
    for phase in phases(family.config):
        set_backbone_trainable(backbone, phase.backbone_trainable)
        family.compile(model, make_optimizer(phase.config.optimizer, phase.config.learning_rate,
                                             phase.config.momentum))
        if jit_compile is not None:
            model.jit_compile = jit_compile
        end = epoch + phase.config.epochs
        if state.done(phase.name):
            model.load_weights(state.weights_path(phase.name))
        elif phase.config.epochs > 0:
            # written twice over (a kill mid-write leaves the one before), and after the epoch's record: a kill
            # between the two re-runs the epoch rather than losing its record (the resumed run logs the records)
            backup = keras.callbacks.BackupAndRestore(str(state.dir / phase.name), double_checkpoint=True)
            schedule = learning_rate_schedule(phase.config, epoch, steps_per_epoch)
            model._initial_epoch = None  # set by an earlier phase's restore, Keras would start this one there
            model.fit(train_from(state.resume_epoch(phase.name, epoch)), steps_per_epoch=steps_per_epoch,
                      validation_data=valid_ds, initial_epoch=epoch, epochs=end, verbose=2,
                      callbacks=[schedule, recorder, backup, *callbacks_for_phase(phase.name)])
            state.mark_done(phase.name, model)
        epoch = end
    return state.history()
