"""The localizer family: its encoding, heads, gradients, saved model, decode and metrics (real Keras)."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tests.tiny import SIZE, SPEC, data
from visionflow.models.localizer.config import LocalizerConfig
from visionflow.models.localizer.encoding import decode_sqrt_cxcywh, encode_sqrt_cxcywh, encoded_iou
from visionflow.models.localizer.family import Localizer
from visionflow.models.localizer.network import BoxIoU, build_localizer, compile_localizer, inference_model
from visionflow.models.transfer import make_optimizer


def test_box_iou_metric_by_hand():
    # Same centre, true 0.4 x 0.4, predicted 0.2 x 0.2 (sqrt encoding): IoU 0.04 / 0.16.
    true = np.array([[0.5, 0.5, np.sqrt(0.4), np.sqrt(0.4)]], "float32")
    pred = np.array([[0.5, 0.5, np.sqrt(0.2), np.sqrt(0.2)]], "float32")
    assert float(encoded_iou(true, pred)[0]) == pytest.approx(0.25, abs=1e-6)
    assert float(encoded_iou(true, true)[0]) == pytest.approx(1.0, abs=1e-6)
    metric = BoxIoU()
    metric.update_state(np.concatenate([true, true]), np.concatenate([pred, true]))
    assert float(metric.result()) == pytest.approx(0.625, abs=1e-6)


def test_the_encoding_round_trips_and_is_the_one_the_targets_use():
    boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], "float32")
    encoded = ops.convert_to_numpy(encode_sqrt_cxcywh(boxes))
    np.testing.assert_allclose(encoded, [[0.3, 0.4, np.sqrt(0.4), np.sqrt(0.4)], [0.5, 0.5, 1, 1]], rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(decode_sqrt_cxcywh(encoded)), boxes, atol=1e-6)
    family = Localizer(LocalizerConfig(), ["a", "b"])
    targets = family.targets(tf.constant(boxes[:, None, :]), tf.constant([[1], [0]], tf.int64), tf.constant([[True], [True]]))
    np.testing.assert_allclose(targets["box"].numpy(), encoded, rtol=1e-6)
    np.testing.assert_array_equal(targets["class"].numpy(), [1, 0])


def test_decode_gives_one_detection_per_image_in_normalised_xyxy():
    family = Localizer(LocalizerConfig(), ["a", "b"])
    outputs = {"class": np.array([[0.2, 0.8], [0.9, 0.1]]), "box": np.array([[0.5, 0.5, 0.2, 0.4], [0.3, 0.4, 0.6, 0.6]])}
    found = family.decode(outputs)
    np.testing.assert_allclose(found[0].boxes_xyxy_norm, [[0.48, 0.42, 0.52, 0.58]], atol=1e-6)
    assert found[0].classes.tolist() == [1] and found[1].classes.tolist() == [0]
    np.testing.assert_allclose([found[0].scores[0], found[1].scores[0]], [0.8, 0.9])
    metrics = family.metrics(outputs, {"class": np.array([1, 1]), "box": outputs["box"]}, (0.5,))
    assert metrics == {"num_examples": 2, "accuracy": 0.5, "mean_iou": pytest.approx(1.0), "share_iou_ge_0.5": 1.0}


HEADS = [("avg", "pooled", 1.0, False), ("max", "flatten", 1.0, False), ("attention", "attention", 1.0, False),
         ("attention", "attention", 0.01, True)]


def test_localizer_outputs_are_named_and_the_saved_models_load_in_plain_keras(tmp_path):
    """Every head pair: named outputs; the saved model loads in a fresh interpreter that never imports
    visionflow and predicts the same; the compiled training model (with its BoxIoU metric) would not."""
    x = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = {}
    for i, (class_head, box_head, class_gradient, flip) in enumerate(HEADS):
        model, _ = build_localizer(SPEC, SIZE, 3, class_head=class_head, box_head=box_head,
                                   class_gradient=class_gradient)
        out = model.predict(np.zeros((2, SIZE, SIZE, 3), "float32"), verbose=0)
        assert set(out) == {"class", "box"} and out["class"].shape == (2, 3) and out["box"].shape == (2, 4)
        compile_localizer(model, make_optimizer("sgd", 0.01), 0.8, 0.2)
        served = inference_model(model, flip_average=flip)
        served.save(tmp_path / f"served{i}.keras")
        expected[i] = served.predict(x, verbose=0)["box"]
    model.save(tmp_path / "compiled.keras")
    code = ("import json, sys, keras, numpy as np; x = np.load('x.npy'); boxes = {i: keras.saving.load_model("
            f"f'served{{i}}.keras').predict(x, verbose=0)['box'].tolist() for i in range({len(HEADS)})}}; "
            "boxes['visionflow'] = any(m.startswith('visionflow') for m in sys.modules); "
            "print(json.dumps(boxes)); keras.saving.load_model('compiled.keras')")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    loaded = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert loaded["visionflow"] is False  # loading never imported it
    for i, boxes in expected.items():
        np.testing.assert_allclose(loaded[str(i)], boxes, rtol=1e-5, atol=1e-6)
    assert fresh.returncode != 0 and "BoxIoU" in fresh.stderr  # the training model would not load


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
    from visionflow.models.localizer.heads import FeatureMaps, attention_box_head

    inputs = keras.Input(fine_map.shape[1:])
    return keras.Model(inputs, attention_box_head(FeatureMaps(fine=inputs, coarse=None), 3, channels, depth=1).box)


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
    keras.utils.set_random_seed(0)  # random weights can leave every unit of a tiny layer dead, and its gradient 0
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
    from visionflow.models.localizer.config import BOX_HEADS, CLASS_HEADS

    assert {"avg", "max"} <= set(CLASS_HEADS.names()) and {"pooled", "flatten", "attention"} <= set(BOX_HEADS.names())
    with pytest.raises(ConfigError, match="train.localizer.box_head: 'yolo' is not in the box_heads registry"):
        parse_config({"train": {"localizer": {"box_head": "yolo"}}})
    with pytest.raises(ConfigError, match="train.localizer: class_head attention needs a box head that says where"):
        parse_config({"train": {"localizer": {"class_head": "attention", "box_head": "pooled"}}})


def test_the_attention_class_head_needs_where_explicitly():
    from visionflow.models.localizer.heads import FeatureMaps, attention_class_head

    fine = keras.Input((4, 4, 8))
    with pytest.raises(ValueError, match="needs a box head that locates the object"):
        attention_class_head(FeatureMaps(fine=fine, coarse=fine), 3)
