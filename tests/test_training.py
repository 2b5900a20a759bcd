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


def config(frozen=2, finetune=3, schedule="constant"):
    return TrainLocalizerConfig(frozen={"epochs": frozen, "learning_rate": 0.05},
                                finetune={"epochs": finetune, "learning_rate": 0.01, "schedule": schedule},
                                batch_size=16)


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
    np.testing.assert_allclose(history["learning_rate"], [0.05, 0.05, 0.01, 0.01, 0.01], rtol=1e-6)


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
        train_two_phase(model, backbone, ds, None, config(schedule="cosine"), tmp_path / "ckpt", "f1",
                        callbacks_for_phase=lambda phase: [Crash()])
    assert epochs_run == [0, 1, 2, 3]

    keras.utils.set_random_seed(0)
    model, backbone = build_localizer(SPEC, SIZE, 3)  # a fresh process would start like this
    history = train_two_phase(model, backbone, ds, None, config(schedule="cosine"), tmp_path / "ckpt", "f1",
                              callbacks_for_phase=lambda phase: [Crash()])
    assert epochs_run == [0, 1, 2, 3, 4]  # the frozen phase was done; the fine-tune resumed after epoch 3
    assert len(history["loss"]) == 1
    # the cosine decay picked up at the fine-tune's third epoch of three, not from its start
    np.testing.assert_allclose(history["learning_rate"], [0.01 * 0.5 * (1 + np.cos(np.pi * 2 / 3))], rtol=1e-6)


def test_learning_rate_warms_up_then_decays():
    from visionflow.config import PhaseConfig
    from visionflow.training import learning_rate_schedule

    phase = PhaseConfig(epochs=6, learning_rate=0.3, schedule="cosine", warmup_epochs=2)
    schedule = learning_rate_schedule(phase, first_epoch=10)
    rates = [schedule.schedule(epoch, 0.0) for epoch in range(10, 16)]
    np.testing.assert_allclose(rates, [0.1, 0.2, 0.3, 0.3 * 0.5 * (1 + np.cos(np.pi / 4)), 0.15,
                                       0.3 * 0.5 * (1 + np.cos(np.pi * 3 / 4))], rtol=1e-9)


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


@pytest.mark.parametrize("class_head,box_head,class_gradient,flip", [
    ("avg", "pooled", 1.0, False), ("max", "flatten", 1.0, False), ("attention", "attention", 1.0, False),
    ("attention", "attention", 0.01, True)])
def test_localizer_outputs_are_named_and_model_round_trips(tmp_path, class_head, box_head, class_gradient, flip):
    model, _ = build_localizer(SPEC, SIZE, 3, class_head=class_head, box_head=box_head, class_gradient=class_gradient)
    out = model.predict(np.zeros((2, SIZE, SIZE, 3), "float32"), verbose=0)
    assert set(out) == {"class", "box"} and out["class"].shape == (2, 3) and out["box"].shape == (2, 4)
    compile_localizer(model, make_optimizer("sgd", 0.01), 0.8, 0.2)
    path, compiled_path = tmp_path / "m.keras", tmp_path / "compiled.keras"
    served = inference_model(model, flip_average=flip)
    served.save(path)
    model.save(compiled_path)
    again = keras.saving.load_model(path)

    def load_in_plain_keras(p):  # a fresh interpreter that never imports visionflow
        return subprocess.run([sys.executable, "-c", f"import keras; keras.saving.load_model({str(p)!r})"],
                              capture_output=True, text=True, cwd=tmp_path)

    fresh = load_in_plain_keras(path)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "BoxIoU" in load_in_plain_keras(compiled_path).stderr  # the training model would not load
    x = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(again.predict(x, verbose=0)["box"], served.predict(x, verbose=0)["box"], rtol=1e-5)


def test_the_flip_averaged_model_is_the_mean_of_the_image_and_its_mirror():
    model, _ = build_localizer(SPEC, SIZE, 3, class_head="attention", box_head="attention")
    plain, averaged = inference_model(model), inference_model(model, flip_average=True)
    x = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    seen, mirrored, both = (plain.predict(x, verbose=0), plain.predict(x[:, :, ::-1], verbose=0),
                            averaged.predict(x, verbose=0))
    mirrored["box"][:, 0] = 1 - mirrored["box"][:, 0]
    for key in ("class", "box"):
        np.testing.assert_allclose(both[key], (seen[key] + mirrored[key]) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(seen["box"], mirrored["box"])  # the untrained model is not mirror-symmetric itself
    again = averaged.predict(x[:, :, ::-1], verbose=0)  # and the average is: mirror in, mirror out
    np.testing.assert_allclose(again["class"], both["class"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again["box"][:, 0], 1 - both["box"][:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again["box"][:, 1:], both["box"][:, 1:], rtol=1e-5, atol=1e-6)


def attention_head_on(fine_map, channels=64):
    """The attention box head alone (one 3x3 convolution), on a given 1/16 feature map."""
    from visionflow.models.heads import FeatureMaps, attention_box_head

    inputs = keras.Input(fine_map.shape[1:])
    return keras.Model(inputs, attention_box_head(FeatureMaps(fine=inputs, coarse=None), 3, channels, depth=1))


def test_attention_head_reads_the_box_off_the_cell_it_attends_to():
    """Peak the attention on cell (row 1, col 2) of a 4x4 map: centre = corner + offset / 4, size as predicted there."""
    fine = np.zeros((1, 4, 4, 2), "float32")
    fine[0, 1, 2, 0] = 1.0
    model = attention_head_on(fine)
    conv = model.get_layer("box_conv0")
    kernel = np.zeros(conv.get_weights()[0].shape, "float32")
    kernel[1, 1, 0, 0] = 1.0  # channel 0 of h copies channel 0 of the map at the same cell
    conv.set_weights([kernel, np.zeros_like(conv.get_weights()[1])])
    logits = np.zeros((1, 1, 64, 1), "float32")
    logits[0, 0, 0, 0] = 50.0  # attend where h[0] is on: that one cell
    model.get_layer("box_where_logits").set_weights([logits, np.zeros(1, "float32")])
    model.get_layer("box_offsets").set_weights([np.zeros((1, 1, 64, 2), "float32"), np.array([0.0, 1.0], "float32")])
    sizes = np.zeros((1, 1, 64, 2), "float32")
    sizes[0, 0, 0] = [0.3, 0.5]  # at the attended cell h[0] = 1: sqrt w 0.3, sqrt h 0.5; zero elsewhere
    model.get_layer("box_sizes").set_weights([sizes, np.zeros(2, "float32")])
    box = model.predict(fine, verbose=0)[0]
    offset = 1 / (1 + np.exp(-np.array([0.0, 1.0])))  # logistic offsets inside the cell
    np.testing.assert_allclose(box[:2], (np.array([2, 1]) + offset) / 4, atol=1e-4)
    np.testing.assert_allclose(box[2:], [0.3, 0.5], atol=1e-4)


def test_attention_head_is_translation_equivariant():
    """The same pattern one cell to the right moves the centre by one cell and keeps the size."""
    rng = np.random.default_rng(0)
    patch = rng.normal(size=(3, 3, 8)).astype("float32")
    a, b = np.zeros((1, 8, 8, 8), "float32"), np.zeros((1, 8, 8, 8), "float32")
    a[0, 2:5, 2:5], b[0, 2:5, 3:6] = patch, patch
    model = attention_head_on(a)
    logits = model.get_layer("box_where_logits")
    logits.set_weights([logits.get_weights()[0] * 0 + 20.0, np.zeros(1, "float32")])  # attend where h is largest
    box_a, box_b = model.predict(np.concatenate([a, b]), verbose=0)
    np.testing.assert_allclose(box_b[0] - box_a[0], 1 / 8, atol=1e-3)
    np.testing.assert_allclose(box_b[1:], box_a[1:], atol=1e-3)


def taped_losses(model):
    """A persistent tape over the class and box losses of ``model`` on 8 fixed examples."""
    x, y = data(8)
    with tf.GradientTape(persistent=True) as tape:
        out = model(x, training=False)
        class_loss = keras.losses.sparse_categorical_crossentropy(y["class"], out["class"])
        box_loss = keras.losses.mean_squared_error(y["box"], out["box"])
    return tape, class_loss, box_loss


def test_the_class_loss_reads_where_the_box_head_looks_but_does_not_train_it():
    """Only the box loss trains the box head; the class loss still trains the backbone and the class layer."""
    model, backbone = build_localizer(SPEC, SIZE, 3, class_head="attention", box_head="attention")
    tape, class_loss, box_loss = taped_losses(model)
    box_head = [w for layer in ("box_conv0", "box_conv1", "box_where_logits")
                for w in model.get_layer(layer).trainable_weights]
    for weight, grad in zip(box_head, tape.gradient(class_loss, box_head)):
        assert grad is None or not np.any(grad.numpy()), weight.path
    assert all(np.any(g.numpy()) for g in tape.gradient(box_loss, box_head))
    shared = [backbone.get_layer("stride4").kernel, model.get_layer("class").kernel]
    assert all(np.any(g.numpy()) for g in tape.gradient(class_loss, shared))


def class_gradients(class_gradient):
    """Gradients of the class loss on a trunk kernel and on the layer past 1/16, same weights every call."""
    model, backbone = build_localizer(SPEC, SIZE, 3, class_head="attention", box_head="attention",
                                      class_gradient=class_gradient)
    for layer in model.layers:  # the heads: the same weights whatever the class gradient
        if layer.weights and layer.name != "class" and not isinstance(layer, keras.Model):
            layer.set_weights([np.random.default_rng(len(w.path)).normal(0, 0.3, w.shape) for w in layer.weights])
    model.get_layer("class").set_weights([np.full((16, 3), 0.1) * np.arange(3), np.zeros(3)])
    backbone.set_weights([np.random.default_rng(i).normal(0, 0.3, w.shape) for i, w in enumerate(backbone.weights)])
    tape, class_loss, box_loss = taped_losses(model)
    watched = [backbone.get_layer("stride4").kernel, backbone.layers[-1].kernel]
    return [g.numpy() for g in tape.gradient(class_loss, watched)], [g.numpy() for g in tape.gradient(box_loss, watched[:1])]


def test_class_gradient_scales_what_the_class_loss_teaches_the_shared_layers_only():
    (trunk_full, top_full), (box_full,) = class_gradients(1.0)
    (trunk_scaled, top_scaled), (box_scaled,) = class_gradients(0.01)
    assert np.any(trunk_full) and np.any(top_full)
    np.testing.assert_allclose(trunk_scaled, 0.01 * trunk_full, rtol=1e-3, atol=1e-9)  # shared with the box head
    np.testing.assert_allclose(top_scaled, top_full, rtol=1e-4, atol=1e-9)  # past 1/16: only the class reads it
    np.testing.assert_allclose(box_scaled, box_full, rtol=1e-4, atol=1e-9)  # the box loss is untouched


def test_every_head_is_in_the_registries_and_unknown_names_are_config_errors():
    from visionflow.config import ConfigError, parse_config
    from visionflow.models.heads import BOX_HEADS, CLASS_HEADS

    assert {"avg", "max"} <= set(CLASS_HEADS.names()) and {"pooled", "flatten", "attention"} <= set(BOX_HEADS.names())
    with pytest.raises(ConfigError, match="train_localizer.box_head: 'yolo' is not in the box_heads registry"):
        parse_config({"train_localizer": {"box_head": "yolo"}})
    with pytest.raises(ConfigError, match="train_localizer.class_head: attention needs box_head: attention"):
        parse_config({"train_localizer": {"class_head": "attention", "box_head": "pooled"}})


@pytest.mark.parametrize("name", ["mobilenet_v2", "xception", "resnet50", "resnet50_v2", "efficientnet_b0"])
def test_every_backbone_names_a_real_stride16_layer(name):
    from visionflow.models.backbones import BACKBONES

    spec = BACKBONES.get(name)
    backbone = spec.build(128)
    assert spec.stride16_map(backbone).shape[1:3] == (8, 8)
    assert backbone.output.shape[1:3] == (4, 4)
    trunk, top = spec.split(backbone)  # the localizer reads the 1/16 map from the trunk
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(top(trunk(x)), backbone(x), rtol=1e-4, atol=1e-5)
