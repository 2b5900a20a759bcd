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

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs_run.append(epoch)
            if epoch == 3 and len(epochs_run) == 4:
                raise KeyboardInterrupt("power cut")

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


def test_learning_rate_warms_up_then_decays():
    from visionflow.config import PhaseConfig
    from visionflow.training import learning_rate_schedule

    phase = PhaseConfig(epochs=6, learning_rate=0.3, schedule="cosine", warmup_epochs=2)
    schedule = learning_rate_schedule(phase, first_epoch=10)
    rates = [schedule.schedule(epoch, 0.0) for epoch in range(10, 16)]
    np.testing.assert_allclose(rates, [0.1, 0.2, 0.3, 0.3 * 0.5 * (1 + np.cos(np.pi / 4)), 0.15,
                                       0.3 * 0.5 * (1 + np.cos(np.pi * 3 / 4))], rtol=1e-9)


def test_a_changed_fingerprint_starts_over(tmp_path):
    fam, ran = family(1, 0), []
    probe = lambda phase: [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ran.append(epoch))]  # noqa: E731
    train_two_phase(fam, *build(fam), batches_from(), STEPS, None, tmp_path / "ckpt", "old", probe)
    train_two_phase(fam, *build(fam), batches_from(), STEPS, None, tmp_path / "ckpt", "old", probe)
    assert ran == [0]  # the same inputs: the phase was done, nothing trains again
    history = train_two_phase(fam, *build(fam), batches_from(), STEPS, None, tmp_path / "ckpt", "new", probe)
    assert ran == [0, 0] and [row["epoch"] for row in history] == [0]  # new inputs: trained anew
