"""Training on the devices it sees: the strategy decided from GPUs and TF_CONFIG, float32 outputs under
mixed precision, and a real two-replica fit on two logical CPUs (in a fresh process: logical devices
must be configured before TensorFlow starts)."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.tiny import SPEC, SIZE
from visionflow.config import ComputeConfig, ConfigError, parse_config
from visionflow.data.tfrecords import _example, write_meta
from visionflow.models.devices import dtype_policy, plan_compute

ROOT = Path(__file__).resolve().parents[1]
TWO_WORKERS = json.dumps({"cluster": {"worker": ["node0:12345", "node1:12345"]}, "task": {"type": "worker", "index": 1}})
CLASSES = ["a", "b", "c"]


@pytest.mark.parametrize("gpus, tf_config, strategy", [
    (0, None, "default"),  # the CPU
    (1, None, "default"),  # one GPU: no tf.distribute
    (2, None, "mirrored"),
    (8, "", "mirrored"),  # an empty TF_CONFIG is unset
    (0, TWO_WORKERS, "multi_worker"),
    (2, TWO_WORKERS, "multi_worker"),  # each worker mirrors over its own GPUs
])
def test_the_strategy_follows_the_visible_gpus_and_tf_config(gpus, tf_config, strategy):
    assert plan_compute(ComputeConfig(), gpus, tf_config).strategy == strategy


@pytest.mark.parametrize("mixed, xla, gpus, policy, jit", [
    ("auto", "auto", 0, "float32", None),  # the CPU: nothing changes
    ("auto", "auto", 1, "mixed_float16", None),  # a GPU; XLA as each family compiles (Keras: on with one GPU)
    ("auto", "auto", 2, "mixed_float16", None),  # Keras compiles no XLA under tf.distribute
    ("on", "on", 0, "mixed_float16", True),
    ("off", "off", 1, "float32", False),
])
def test_mixed_precision_and_xla_are_on_with_a_gpu_unless_switched(mixed, xla, gpus, policy, jit):
    plan = plan_compute(ComputeConfig(mixed_precision=mixed, xla=xla), gpus, None)
    assert (plan.dtype_policy, plan.jit_compile) == (policy, jit)


@pytest.mark.parametrize("gpus, tf_config", [(2, None), (1, TWO_WORKERS)])
def test_xla_forced_under_tf_distribute_is_a_one_line_error(gpus, tf_config):
    with pytest.raises(ConfigError, match=r"^params.yaml: compute.xla: on needs a single replica"):
        plan_compute(ComputeConfig(xla="on"), gpus, tf_config)


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG: not JSON"),
    ('{"cluster": {"worker": ["a:1", "b:1"]}}', 'TF_CONFIG: needs "cluster"'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "TF_CONFIG: task .* is not in"),
])
def test_a_bad_tf_config_is_a_one_line_error(tf_config, message):
    with pytest.raises(ConfigError, match=message):
        plan_compute(ComputeConfig(), 1, tf_config)


def test_unquoted_on_and_off_in_params_read_as_meant_and_a_bad_value_names_the_key():
    # PyYAML reads an unquoted `on` as true
    assert parse_config({"compute": {"mixed_precision": True, "xla": False}}).compute == ComputeConfig(
        mixed_precision="on", xla="off")
    with pytest.raises(ConfigError, match=r"params.yaml: compute.xla: Input should be 'auto', 'on' or 'off'"):
        parse_config({"compute": {"xla": "sometimes"}})


def _families():
    from tests.test_detector import SPEC as DETECTOR_SPEC
    from visionflow.models.classifier.config import ClassifierConfig
    from visionflow.models.classifier.family import Classifier
    from visionflow.models.detector.config import DetectorConfig
    from visionflow.models.detector.family import Detector
    from visionflow.models.localizer.config import LocalizerConfig
    from visionflow.models.localizer.family import Localizer

    return {"localizer attention": (Localizer(LocalizerConfig(), CLASSES), SPEC, 64),
            "localizer pooled": (Localizer(LocalizerConfig(class_head="avg", box_head="pooled"), CLASSES), SPEC, 32),
            "classifier": (Classifier(ClassifierConfig(), CLASSES), SPEC, 32),
            "detector": (Detector(DetectorConfig(neck_channels=8), CLASSES), DETECTOR_SPEC, 64)}


@pytest.mark.parametrize("mixed, gpus", [("on", 0), ("auto", 1), ("auto", 0), ("off", 1)])
def test_every_family_outputs_float32_under_each_mixed_precision_setting(mixed, gpus):
    plan = plan_compute(ComputeConfig(mixed_precision=mixed), gpus, None)
    for name, (family, spec, size) in _families().items():
        with dtype_policy(plan.dtype_policy):
            model, backbone = family.build(spec, size, 1.0, None)
        outputs = model(np.zeros((2, size, size, 3), np.float32))
        assert {k: v.dtype for k, v in outputs.items()} == {k: "float32" for k in outputs}, name
        inner = next(layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D))
        assert inner.compute_dtype == ("float16" if plan.mixed_precision else "float32"), name
    assert keras.config.dtype_policy().name == "float32"  # restored


def test_what_is_saved_after_mixed_precision_is_a_float32_copy_with_the_same_weights():
    from visionflow.models.fit import float32_copy

    family, spec, size = _families()["localizer attention"]
    with dtype_policy("mixed_float16"):
        keras.utils.set_random_seed(0)
        net, backbone = family.build(spec, size, 1.0, None)
    backbone.trainable = False
    copy = float32_copy(family, net, spec, size, 1.0)
    assert all(layer.dtype_policy.name == "float32" for layer in copy._flatten_layers())
    for a, b in zip(net.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(a, b)
    trainable = [layer.trainable for layer in net._flatten_layers()]
    assert [layer.trainable for layer in copy._flatten_layers()] == trainable and not all(trainable)  # as trained
    x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    np.testing.assert_allclose(copy(x)["class"], net(x)["class"], atol=2e-2)  # float16 against float32


def shapes_dataset(root: Path, n: int = 64) -> Path:
    """``data/shapes/processed`` under ``root``: random images with one box each, a train and a valid split."""
    rng = np.random.default_rng(0)
    processed = root / "data/shapes/processed"
    processed.mkdir(parents=True)
    for split, count in (("train", n), ("valid", 16)):
        with tf.io.TFRecordWriter(str(processed / f"{split}-00000-of-00001.tfrecord")) as writer:
            for i in range(count):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8)).save(buf, format="PNG")
                xy = rng.uniform(0.1, 0.5, 2)
                box = np.array([[*xy, *(xy + 0.3)]], np.float32)
                writer.write(_example(tf, buf.getvalue(), i + 1, box, [int(i % 3)]).SerializeToString())
    write_meta(processed, {"image_size": SIZE, "classes": CLASSES, "num_examples": {"train": n, "valid": 16}})
    return root


CONFIG = {"backbone": {"name": "tiny", "width": 1.0},
          "train": {"localizer": {"dataset": "shapes", "batch_size": 8, "class_head": "avg", "box_head": "pooled",
                                  "class_gradient": 1.0,
                                  "augment": {"enabled": False}, "frozen": {"epochs": 1, "learning_rate": 0.01},
                                  "finetune": {"epochs": 2, "learning_rate": 0.01}}}}

# Trains the tiny localizer through fit_family, crashes it after epoch 1 and resumes it; prints what it saw.
FIT = r"""
import json, sys
from pathlib import Path
import tensorflow as tf

replicas = int(sys.argv[1])
if replicas > 1:  # before TensorFlow starts: the CPU as that many logical devices
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
import keras
import visionflow.models.fit as fit
from tests.tiny import SPEC
from visionflow.config import Config
from visionflow.data.tfrecords import read_meta

strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)]) if replicas > 1 else None
fit.BACKBONES = {"tiny": SPEC}
asked = []
dataset = fit.model_dataset
fit.model_dataset = lambda processed, split, batch_size, *a, **k: asked.append([split, batch_size]) or dataset(
    processed, split, batch_size, *a, **k)
seen = {"steps": [], "optimizer": set(), "outputs": set(), "jit_compile": set()}

class Probe(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        seen["steps"].append(0)
        seen["optimizer"].add(type(self.model.optimizer).__name__)
        seen["jit_compile"].add(self.model.jit_compile)
        seen["outputs"] |= {str(o.dtype) for o in self.model.outputs}

    def on_train_batch_end(self, batch, logs=None):
        seen["steps"][-1] += 1

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1 and len(seen["steps"]) == 2:
            raise KeyboardInterrupt("power cut")

cfg = Config.model_validate(json.loads(sys.argv[2]))
meta = read_meta(Path("data/shapes/processed"))
run = lambda: fit.fit_family(cfg, "localizer", meta, "f", lambda phase: [Probe()], backbone_weights=None,
                             checkpoint_dir=Path("ckpt"), strategy=strategy)
try:
    run()
except KeyboardInterrupt:
    pass
trained = run()
served = trained.served.predict_on_batch(trained.sample)
print(json.dumps({**{k: sorted(v) if isinstance(v, set) else v for k, v in seen.items()},
                  "asked": asked, "compute": trained.compute, "epochs": [row["epoch"] for row in trained.history],
                  "served_dtypes": sorted({l.dtype_policy.name for l in trained.served._flatten_layers()}),
                  "served_finite": all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in served.values())}))
"""


def fit_in_a_fresh_process(root: Path, replicas: int, compute: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", FIT, str(replicas), json.dumps({**CONFIG, "compute": compute})],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_replicas_fit_a_family_on_global_batches_and_resume(tmp_path):
    seen = fit_in_a_fresh_process(shapes_dataset(tmp_path), 2, {})
    assert seen["compute"]["strategy"] == "MirroredStrategy" and seen["compute"]["replicas"] == 2
    assert seen["compute"]["global_batch_size"] == 16  # 8 per replica, x 2
    assert ["train", 16] in seen["asked"] and ["valid", 16] in seen["asked"]  # the pipeline gives global batches
    assert seen["steps"] == [4, 4, 4]  # 64 examples, 16 a step; killed after epoch 1, resumed at epoch 2
    assert seen["epochs"] == [0, 1, 2]
    assert seen["jit_compile"] == [False]  # Keras's auto: no XLA under tf.distribute
    assert seen["served_dtypes"] == ["float32"] and seen["served_finite"]


def test_mixed_precision_and_xla_on_one_device_train_with_loss_scaling_and_save_float32(tmp_path):
    """What ``auto`` gives on one GPU, forced here on the CPU."""
    seen = fit_in_a_fresh_process(shapes_dataset(tmp_path), 1, {"mixed_precision": "on", "xla": "on"})
    assert seen["compute"]["replicas"] == 1 and seen["compute"]["global_batch_size"] == 8
    assert seen["compute"]["dtype_policy"] == "mixed_float16" and seen["jit_compile"] == [True]
    assert seen["optimizer"] == ["LossScaleOptimizer"] and seen["outputs"] == ["float32"]
    assert seen["steps"] == [8, 8, 8] and seen["epochs"] == [0, 1, 2]
    assert seen["served_dtypes"] == ["float32"] and seen["served_finite"]
