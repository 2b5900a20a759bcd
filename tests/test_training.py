"""Two-phase transfer learning on a tiny backbone: real Keras, no mocks."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from visionflow.config import TrainLocalizerConfig
from visionflow.models.backbones import BackboneSpec
from visionflow.models.localizer import (build_localizer, compile_localizer, inference_model, make_optimizer,
                                         sqrt_cxcywh_iou)
from visionflow.training import train_two_phase

SIZE = 32


def tiny_backbone(input_shape, include_top=False, weights=None):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stride4")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    return keras.Model(inputs, x, name="tiny")


SPEC = BackboneSpec("tests.test_training:tiny_backbone", "keras.applications.mobilenet_v2", "stride4")


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, SIZE, SIZE, 3)).astype("float32")
    y = {"class": rng.integers(0, 3, n), "box": rng.uniform(0.2, 0.8, (n, 4)).astype("float32")}
    return x, y


def config(frozen=2, finetune=3):
    return TrainLocalizerConfig(frozen={"epochs": frozen, "learning_rate": 0.05},
                                finetune={"epochs": finetune, "learning_rate": 0.01}, batch_size=16)


def test_phases_freeze_then_unfreeze_and_keep_batchnorm_in_inference_mode(tmp_path):
    keras.utils.set_random_seed(0)
    model, backbone = build_localizer(SPEC, SIZE, 3)
    x, y = data()
    bn = [l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)][0]
    conv = backbone.layers[1]
    stats, kernel = [w.numpy().copy() for w in bn.weights], conv.kernel.numpy().copy()
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, backbone.trainable, np.array_equal(conv.kernel.numpy(), kernel)))

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    history = train_two_phase(model, backbone, ds, None, config(), tmp_path / "ckpt", "f1",
                              callbacks_for_phase=lambda phase: [Probe()])
    assert [e for e, _, _ in seen] == [0, 1, 2, 3, 4]  # the epoch count runs on across phases
    assert [t for _, t, _ in seen] == [False, False, True, True, True]
    assert all(same for _, t, same in seen if not t)  # frozen: backbone weights untouched
    assert not seen[-1][2]  # fine-tuned: they moved
    for before, after in zip(stats, bn.weights):  # gamma, beta, moving mean and variance
        np.testing.assert_array_equal(before, after.numpy())  # BatchNorm stayed in inference mode
    assert len(history["loss"]) == 5


def test_interrupted_training_resumes_where_it_stopped(tmp_path):
    x, y = data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    epochs_run = []

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs_run.append(epoch)
            if epoch == 3 and len(epochs_run) == 4:
                raise KeyboardInterrupt("power cut")

    keras.utils.set_random_seed(0)
    model, backbone = build_localizer(SPEC, SIZE, 3)
    with pytest.raises(KeyboardInterrupt):
        train_two_phase(model, backbone, ds, None, config(), tmp_path / "ckpt", "f1",
                        callbacks_for_phase=lambda phase: [Crash()])
    assert epochs_run == [0, 1, 2, 3]

    keras.utils.set_random_seed(0)
    model, backbone = build_localizer(SPEC, SIZE, 3)  # a fresh process would start like this
    history = train_two_phase(model, backbone, ds, None, config(), tmp_path / "ckpt", "f1",
                              callbacks_for_phase=lambda phase: [Crash()])
    assert epochs_run == [0, 1, 2, 3, 4]  # the frozen phase was done; the fine-tune resumed after epoch 3
    assert len(history["loss"]) == 1


def test_a_changed_fingerprint_starts_over(tmp_path):
    x, y = data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    model, backbone = build_localizer(SPEC, SIZE, 3)
    train_two_phase(model, backbone, ds, None, config(1, 0), tmp_path / "ckpt", "old")
    model, backbone = build_localizer(SPEC, SIZE, 3)
    history = train_two_phase(model, backbone, ds, None, config(1, 0), tmp_path / "ckpt", "new")
    assert len(history["loss"]) == 1


def test_box_iou_metric_by_hand():
    # Same centre, true 0.4 x 0.4, predicted 0.2 x 0.2 (sqrt encoding): IoU 0.04 / 0.16.
    true = np.array([[0.5, 0.5, np.sqrt(0.4), np.sqrt(0.4)]], "float32")
    pred = np.array([[0.5, 0.5, np.sqrt(0.2), np.sqrt(0.2)]], "float32")
    assert float(sqrt_cxcywh_iou(true, pred)[0]) == pytest.approx(0.25, abs=1e-6)
    assert float(sqrt_cxcywh_iou(true, true)[0]) == pytest.approx(1.0, abs=1e-6)


def test_localizer_outputs_are_named_and_model_round_trips(tmp_path):
    model, _ = build_localizer(SPEC, SIZE, 3)
    out = model.predict(np.zeros((2, SIZE, SIZE, 3), "float32"), verbose=0)
    assert set(out) == {"class", "box"} and out["class"].shape == (2, 3) and out["box"].shape == (2, 4)
    compile_localizer(model, make_optimizer("sgd", 0.01), 0.8, 0.2)
    path, compiled_path = tmp_path / "m.keras", tmp_path / "compiled.keras"
    inference_model(model).save(path)
    model.save(compiled_path)
    again = keras.saving.load_model(path)

    def load_in_plain_keras(p):  # a fresh interpreter that never imports visionflow
        return subprocess.run([sys.executable, "-c", f"import keras; keras.saving.load_model({str(p)!r})"],
                              capture_output=True, text=True, cwd=tmp_path)

    fresh = load_in_plain_keras(path)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "BoxIoU" in load_in_plain_keras(compiled_path).stderr  # the training model would not load
    np.testing.assert_allclose(again.predict(np.ones((1, SIZE, SIZE, 3), "float32"), verbose=0)["box"],
                               model.predict(np.ones((1, SIZE, SIZE, 3), "float32"), verbose=0)["box"], rtol=1e-5)


def test_box_head_reads_the_finer_feature_map_when_asked():
    coarse, _ = build_localizer(SPEC, SIZE, 3)
    fine, _ = build_localizer(SPEC, SIZE, 3, box_feature_stride=16)
    assert coarse.get_layer("box_conv").input.shape[1:3] == (4, 4)
    assert fine.get_layer("box_conv").input.shape[1:3] == (8, 8)  # the tiny backbone's "stride16_layer"


@pytest.mark.parametrize("name", ["mobilenet_v2", "xception", "resnet50", "resnet50_v2", "efficientnet_b0"])
def test_every_backbone_names_a_real_stride16_layer(name):
    from visionflow.models.backbones import BACKBONES

    spec = BACKBONES.get(name)
    backbone = spec.build(128)
    assert backbone.get_layer(spec.stride16_layer).output.shape[1:3] == (8, 8)
    assert backbone.output.shape[1:3] == (4, 4)
