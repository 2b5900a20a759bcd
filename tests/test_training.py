"""The generic two-phase trainer on a tiny backbone, through the localizer family: real Keras, no mocks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.tiny import SIZE, SPEC, data
from visionflow.models.localizer.config import LocalizerConfig
from visionflow.models.localizer.family import Localizer
from visionflow.training import train_two_phase

STEPS = 4  # 64 examples, batches of 16


def family(frozen=2, finetune=3, schedule="constant"):
    config = LocalizerConfig(frozen={"epochs": frozen, "learning_rate": 0.05},
                             finetune={"epochs": finetune, "learning_rate": 0.01, "schedule": schedule},
                             batch_size=16, class_head="avg", box_head="pooled", class_gradient=1.0)
    return Localizer(config, ["a", "b", "c"])


def batches_from(asked: list | None = None):
    """``train_from(epoch)``: the same 4 batches every epoch, without end; records the epochs asked for."""
    x, y = data()

    def train_from(epoch):
        if asked is not None:
            asked.append(epoch)
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()

    return train_from


def build(fam):
    keras.utils.set_random_seed(0)
    return fam.build(SPEC, SIZE, 1.0, None)


def crash_once_after(crash_epoch: int, epochs_run: list):
    """A callback class that records each finished epoch and stops training, once, after ``crash_epoch``."""

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs_run.append(epoch)
            if epoch == crash_epoch and epochs_run.count(crash_epoch) == 1:
                raise KeyboardInterrupt("power cut")

    return Crash


def test_phases_freeze_then_unfreeze_and_keep_batchnorm_in_inference_mode(tmp_path):
    fam = family()
    model, backbone = build(fam)
    bn = [l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)][0]
    conv = backbone.layers[1]
    stats, kernel = [w.numpy().copy() for w in bn.weights], conv.kernel.numpy().copy()
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, backbone.trainable, np.array_equal(conv.kernel.numpy(), kernel)))

    history = train_two_phase(fam, model, backbone, batches_from(), STEPS, None, tmp_path / "ckpt", "f1",
                              callbacks_for_phase=lambda phase: [Probe()])
    assert [e for e, _, _ in seen] == [0, 1, 2, 3, 4]  # the epoch count runs on across phases
    assert [t for _, t, _ in seen] == [False, False, True, True, True]
    assert all(same for _, t, same in seen if not t)  # frozen: backbone weights untouched
    assert not seen[-1][2]  # fine-tuned: they moved
    for before, after in zip(stats, bn.weights):  # gamma, beta, moving mean and variance
        np.testing.assert_array_equal(before, after.numpy())  # BatchNorm stayed in inference mode
    assert [row["epoch"] for row in history] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([row["learning_rate"] for row in history], [0.05, 0.05, 0.01, 0.01, 0.01], rtol=1e-6)


def test_interrupted_training_resumes_where_it_stopped_with_its_whole_history(tmp_path):
    epochs_run, asked = [], []
    Crash = crash_once_after(3, epochs_run)

    fam = family(schedule="cosine")
    model, backbone = build(fam)
    with pytest.raises(KeyboardInterrupt):
        train_two_phase(fam, model, backbone, batches_from(asked), STEPS, None, tmp_path / "ckpt", "f1",
                        callbacks_for_phase=lambda phase: [Crash()])
    assert epochs_run == [0, 1, 2, 3] and asked == [0, 2]

    model, backbone = build(fam)  # a fresh process would start like this
    history = train_two_phase(fam, model, backbone, batches_from(asked), STEPS, None, tmp_path / "ckpt", "f1",
                              callbacks_for_phase=lambda phase: [Crash()])
    assert epochs_run == [0, 1, 2, 3, 4]  # the frozen phase was done; the fine-tune resumed after epoch 3
    assert asked == [0, 2, 4]  # and its data was asked for from epoch 4
    assert [row["epoch"] for row in history] == [0, 1, 2, 3, 4]  # the history of the killed run is kept
    # the cosine decay picked up at the fine-tune's third epoch of three, not from its start
    assert history[-1]["learning_rate"] == pytest.approx(0.01 * 0.5 * (1 + np.cos(np.pi * 2 / 3)), rel=1e-6)


def test_training_interrupted_in_its_first_phase_resumes_there_and_runs_the_second_whole(tmp_path):
    epochs_run, asked = [], []
    Crash = crash_once_after(0, epochs_run)

    fam = family()
    model, backbone = build(fam)
    with pytest.raises(KeyboardInterrupt):
        train_two_phase(fam, model, backbone, batches_from(asked), STEPS, None, tmp_path / "ckpt", "f1",
                        callbacks_for_phase=lambda phase: [Crash()])
    model, backbone = build(fam)
    history = train_two_phase(fam, model, backbone, batches_from(asked), STEPS, None, tmp_path / "ckpt", "f1",
                              callbacks_for_phase=lambda phase: [Crash()])
    assert epochs_run == [0, 1, 2, 3, 4]  # epoch 0's checkpoint kept; the fine-tune not started where the restore was
    assert asked == [0, 1, 2]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([row["learning_rate"] for row in history], [0.05, 0.05, 0.01, 0.01, 0.01], rtol=1e-6)


def test_learning_rate_warms_up_then_decays():
    from visionflow.config import PhaseConfig
    from visionflow.training import learning_rate_schedule

    phase = PhaseConfig(epochs=6, learning_rate=0.3, schedule="cosine", warmup_epochs=2)
    schedule = learning_rate_schedule(phase, first_epoch=10)
    rates = [schedule.schedule(epoch, 0.0) for epoch in range(10, 16)]
    np.testing.assert_allclose(rates, [0.1, 0.2, 0.3, 0.3 * 0.5 * (1 + np.cos(np.pi / 4)), 0.15,
                                       0.3 * 0.5 * (1 + np.cos(np.pi * 3 / 4))], rtol=1e-9)


def test_inverse_time_decay_is_legacy_keras_decay_per_optimizer_step():
    """Géron's ``SGD(lr=0.2, decay=0.01)``: lr / (1 + decay * iterations), the iterations counted from 0."""
    from visionflow.config import PhaseConfig
    from visionflow.training import phase_learning_rate

    phase = PhaseConfig(epochs=3, optimizer="sgd", learning_rate=0.2, schedule="inverse_time", decay=0.01)
    rates = [phase_learning_rate(phase, epoch, step, steps_per_epoch=4) for epoch in range(3) for step in range(4)]
    np.testing.assert_allclose(rates[:3], [0.2, 0.2 / 1.01, 0.2 / 1.02], rtol=1e-12)
    assert rates[11] == pytest.approx(0.2 / 1.11, rel=1e-12)  # epoch 2, its batch 3: step 11
    keras_own = keras.optimizers.schedules.InverseTimeDecay(0.2, decay_steps=1, decay_rate=0.01)
    np.testing.assert_allclose(rates, [float(keras_own(t)) for t in range(12)], rtol=1e-6)
    warm = PhaseConfig(epochs=3, learning_rate=0.2, schedule="inverse_time", decay=0.5, warmup_epochs=1)
    assert [phase_learning_rate(warm, e, s, 4) for e, s in ((0, 3), (1, 0), (1, 1), (2, 3))] == pytest.approx(
        [0.1, 0.2, 0.2 / 1.5, 0.2 / 4.5], rel=1e-12)  # the decay counts steps from the warm-up's end


def test_a_decay_without_inverse_time_is_a_one_line_error():
    from visionflow.config import ConfigError, PhaseConfig, _validate

    with pytest.raises(ConfigError, match=r"^params.yaml: train.x.frozen: decay: only schedule inverse_time reads it"):
        _validate(PhaseConfig, {"epochs": 1, "learning_rate": 0.1, "decay": 0.01}, "params.yaml", "train.x.frozen.")
    with pytest.raises(ConfigError, match="train.x.frozen.decay: Input should be greater than or equal to 0"):
        _validate(PhaseConfig, {"epochs": 1, "learning_rate": 0.1, "schedule": "inverse_time", "decay": -1},
                  "params.yaml", "train.x.frozen.")


def test_inverse_time_sets_every_batch_rate_and_resumes_at_its_step(tmp_path):
    config = LocalizerConfig(frozen={"epochs": 1, "optimizer": "sgd", "learning_rate": 0.05},
                             finetune={"epochs": 3, "optimizer": "sgd", "learning_rate": 0.05,
                                       "schedule": "inverse_time", "decay": 0.5},
                             batch_size=16, class_head="avg", box_head="pooled", class_gradient=1.0)
    fam, used = Localizer(config, ["a", "b", "c"]), []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):  # after the schedule's: the rate this batch runs at
            used.append(float(self.model.optimizer.learning_rate.numpy()))

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2 and len(used) == 12:
                raise KeyboardInterrupt("power cut")

    with pytest.raises(KeyboardInterrupt):
        train_two_phase(fam, *build(fam), batches_from(), STEPS, None, tmp_path / "ckpt", "f1", lambda p: [Probe()])
    history = train_two_phase(fam, *build(fam), batches_from(), STEPS, None, tmp_path / "ckpt", "f1",
                              lambda p: [Probe()])
    decayed = [0.05 / (1 + 0.5 * t) for t in range(12)]  # the fine-tune's steps 0-7, then resumed at step 8
    np.testing.assert_allclose(used, [0.05] * 4 + decayed, rtol=1e-6)
    np.testing.assert_allclose([row["learning_rate"] for row in history], [0.05, decayed[3], decayed[7], decayed[11]],
                               rtol=1e-6)  # each epoch logs its last batch's rate


def test_a_changed_fingerprint_starts_over(tmp_path):
    fam, ran = family(1, 0), []
    probe = lambda phase: [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ran.append(epoch))]  # noqa: E731
    train_two_phase(fam, *build(fam), batches_from(), STEPS, None, tmp_path / "ckpt", "old", probe)
    train_two_phase(fam, *build(fam), batches_from(), STEPS, None, tmp_path / "ckpt", "old", probe)
    assert ran == [0]  # the same inputs: the phase was done, nothing trains again
    history = train_two_phase(fam, *build(fam), batches_from(), STEPS, None, tmp_path / "ckpt", "new", probe)
    assert ran == [0, 0] and [row["epoch"] for row in history] == [0]  # new inputs: trained anew


def test_the_history_figure_puts_each_metric_and_its_validation_on_one_chart():
    from visionflow.figures import history_figure

    history = [{"epoch": e, "loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "box_iou": 0.1 * e,
                "val_box_iou": 0.09 * e, "learning_rate": 0.01} for e in range(5)]
    fig = history_figure(history, "localizer", finetune_from=2)
    charts = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(charts) == {"loss", "box_iou"}  # the rate is not a curve of its own; val_ joins its metric
    for name, ax in charts.items():
        train, valid = ax.get_lines()[:2]
        assert (train.get_label(), valid.get_label()) == ("train", "validation")
        np.testing.assert_allclose(valid.get_ydata(), [row[f"val_{name}"] for row in history])
        assert ax.get_lines()[2].get_xdata()[0] == 1.5  # the phase boundary


def test_a_checkpoint_damaged_by_the_kill_resumes_from_the_one_before(tmp_path):
    import h5py

    from visionflow.training import BACKUP_METADATA, BACKUP_WEIGHTS, ResumeState

    state = ResumeState(tmp_path, "f1")
    backup = tmp_path / "frozen"
    backup.mkdir()
    (backup / BACKUP_WEIGHTS).write_bytes(b"\x89HDF\r\n")  # cut short mid-write
    (backup / BACKUP_METADATA).write_text('{"epoch": 4, "batch": 0}')
    h5py.File(backup / f"{BACKUP_WEIGHTS}.bkp", "w").close()
    (backup / f"{BACKUP_METADATA}.bkp").write_text('{"epoch": 3, "batch": 0}')
    assert state.resume_epoch("frozen", 0) == 3
    h5py.File(backup / BACKUP_WEIGHTS, "w").close()
    assert state.resume_epoch("frozen", 0) == 4
    assert state.resume_epoch("finetune", 5) == 5  # no checkpoint: the phase's first epoch
