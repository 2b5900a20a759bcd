"""Transfer learning in two phases: the head on a frozen backbone, then everything.

Both phases recompile (a change of ``trainable`` only takes effect on compile), and
the epoch count runs on across them so the logged curves continue. Training resumes
where it stopped: each phase keeps a ``BackupAndRestore`` checkpoint, finished phases
keep their weights, and all of it is dropped when the inputs (the fingerprint) change.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import keras

from visionflow.config import PhaseConfig, TrainLocalizerConfig
from visionflow.models.localizer import compile_localizer, make_optimizer, set_backbone_trainable

STATE_FILE = "state.json"


@dataclass(frozen=True)
class Phase:
    name: str
    config: PhaseConfig
    backbone_trainable: bool


def phases(cfg: TrainLocalizerConfig) -> list[Phase]:
    return [Phase("frozen", cfg.frozen, False), Phase("finetune", cfg.finetune, True)]


class ResumeState:
    """Which phases are done, for one fingerprint of the inputs; stored in ``checkpoint_dir``."""

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

    def mark_done(self, phase: str, model) -> None:
        model.save_weights(self.weights_path(phase))
        self.state["done"].append(phase)
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state))
        tmp.replace(self.dir / STATE_FILE)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


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


def train_two_phase(model, backbone, train_ds, valid_ds, cfg: TrainLocalizerConfig, checkpoint_dir: Path,
                    fingerprint: str, callbacks_for_phase=lambda phase: []) -> dict[str, list[float]]:
    """Fit ``model`` phase by phase; returns the per-epoch history of the phases that ran."""
    state = ResumeState(checkpoint_dir, fingerprint)
    history: dict[str, list[float]] = {}
    epoch = 0
    for phase in phases(cfg):
        set_backbone_trainable(backbone, phase.backbone_trainable)
        optimizer = make_optimizer(phase.config.optimizer, phase.config.learning_rate, phase.config.momentum)
        compile_localizer(model, optimizer, cfg.loss_weights.class_, cfg.loss_weights.box)
        end = epoch + phase.config.epochs
        if state.done(phase.name):
            model.load_weights(state.weights_path(phase.name))
        elif phase.config.epochs > 0:
            backup = keras.callbacks.BackupAndRestore(str(state.dir / phase.name))
            schedule = learning_rate_schedule(phase.config, epoch)
            fit = model.fit(train_ds, validation_data=valid_ds, initial_epoch=epoch, epochs=end, verbose=2,
                            callbacks=[backup, schedule, *callbacks_for_phase(phase.name)])
            for key, values in fit.history.items():
                history.setdefault(key, []).extend(float(v) for v in values)
            state.mark_done(phase.name, model)
        epoch = end
    return history
