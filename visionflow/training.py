"""Transfer learning in two phases, for any model family: the head on a frozen backbone, then everything.

Both phases recompile (a change of ``trainable`` only takes effect on compile), and
the epoch count runs on across them so the logged curves continue. Training resumes
where it stopped: each phase keeps a ``BackupAndRestore`` checkpoint at every epoch's
end, finished phases keep their weights, every finished epoch's metrics are kept, and
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
BACKUP_METADATA = "training_metadata.json"  # written by keras.callbacks.BackupAndRestore


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
        state = json.loads(path.read_text()) if path.exists() else {}
        if state.get("fingerprint") != fingerprint:
            shutil.rmtree(self.dir, ignore_errors=True)
            state = {"fingerprint": fingerprint, "done": []}
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state = state

    def done(self, phase: str) -> bool:
        return phase in self.state["done"]

    def weights_path(self, phase: str) -> Path:
        return self.dir / f"{phase}.weights.h5"

    def resume_epoch(self, phase: str, first_epoch: int) -> int:
        """The epoch a phase's ``BackupAndRestore`` checkpoint will resume at."""
        path = self.dir / phase / BACKUP_METADATA
        return json.loads(path.read_text())["epoch"] if path.exists() else first_epoch

    def mark_done(self, phase: str, model) -> None:
        model.save_weights(self.weights_path(phase))
        self.state["done"].append(phase)
        atomic_write_text(self.dir / STATE_FILE, json.dumps(self.state))

    def record_epoch(self, epoch: int, logs: dict) -> None:
        with (self.dir / HISTORY_FILE).open("a") as f:
            f.write(json.dumps({"epoch": epoch, **{k: float(v) for k, v in logs.items()}}) + "\n")

    def history(self) -> list[dict]:
        """One row per finished epoch, in order (a re-run epoch keeps its last record)."""
        path = self.dir / HISTORY_FILE
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return sorted({row["epoch"]: row for row in rows}.values(), key=lambda row: row["epoch"])


def learning_rate_schedule(phase: PhaseConfig, first_epoch: int):
    """The phase's learning rate per epoch: a linear warm-up, then constant or a cosine decay towards 0.

    The warm-up spares a freshly unfrozen backbone the full rate while the new heads'
    gradients are still large. Keyed on the epoch number, not the optimizer's step
    count, so a resumed phase picks the schedule up where it stopped; the rate is
    logged with the epoch's metrics.
    """
    warmup = min(phase.warmup_epochs, phase.epochs - 1)

    def rate(epoch: int, _current: float) -> float:
        k = epoch - first_epoch
        if k < warmup:
            return phase.learning_rate * (k + 1) / (warmup + 1)
        if phase.schedule == "constant":
            return phase.learning_rate
        return phase.learning_rate * 0.5 * (1 + math.cos(math.pi * (k - warmup) / (phase.epochs - warmup)))

    return keras.callbacks.LearningRateScheduler(rate)


def train_two_phase(family, model, backbone, train_from: Callable[[int], object], steps_per_epoch: int, valid_ds,
                    checkpoint_dir: Path, fingerprint: str,
                    callbacks_for_phase: Callable[[str], list] = lambda phase: []) -> list[dict]:
    """Fit ``model`` phase by phase; returns one row of metrics per epoch, those of earlier runs included.

    ``train_from(epoch)`` gives the training batches from that epoch on, without end.
    """
    state = ResumeState(checkpoint_dir, fingerprint)
    recorder = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: state.record_epoch(epoch, logs or {}))
    epoch = 0
    for phase in phases(family.config):
        set_backbone_trainable(backbone, phase.backbone_trainable)
        family.compile(model, make_optimizer(phase.config.optimizer, phase.config.learning_rate,
                                             phase.config.momentum))
        end = epoch + phase.config.epochs
        if state.done(phase.name):
            model.load_weights(state.weights_path(phase.name))
        elif phase.config.epochs > 0:
            backup = keras.callbacks.BackupAndRestore(str(state.dir / phase.name))
            schedule = learning_rate_schedule(phase.config, epoch)
            model.fit(train_from(state.resume_epoch(phase.name, epoch)), steps_per_epoch=steps_per_epoch,
                      validation_data=valid_ds, initial_epoch=epoch, epochs=end, verbose=2,
                      callbacks=[backup, schedule, recorder, *callbacks_for_phase(phase.name)])
            state.mark_done(phase.name, model)
        epoch = end
    return state.history()
