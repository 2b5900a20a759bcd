"""The detector family through the real pipeline: synthetic scenes in, multi-scale training, a saved model
that decodes inside itself at any size divisible by 32, and its own metrics."""

import json

import keras
import numpy as np
import pytest

from visionflow.config import PreprocessConfig
from visionflow.data.coco_layout import load_raw_dataset, write_raw_dataset
from visionflow.data.pipeline import model_dataset, steps_per_epoch
from visionflow.data.preprocess import write_processed
from visionflow.data.synthetic import SyntheticOptions, SyntheticShapes
from visionflow.errors import DataError
from visionflow.models.backbones import BackboneSpec
from visionflow.models.detector.config import DetectorConfig
from visionflow.models.detector.family import OUTPUTS, Detector
from visionflow.models.pixels import with_pixel_input
from visionflow.training import train_two_phase

SIZE = 64


def tiny_backbone(input_shape, include_top=False, weights=None):
    """Maps at strides 8 (``s8``), 16 (``s16``) and 32 (the output), any input size."""
    inputs = keras.Input(input_shape)
    x = inputs
    for i, filters in enumerate((8, 16, 16)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"down{i}")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="s16")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(inputs, x, name="tiny_strided")


SPEC = BackboneSpec("tests.test_detector:tiny_backbone", "keras.applications.mobilenet_v2", "s16",
                    stride8_layer="down2")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """24 synthetic scenes of 1-4 shapes at 64 px, processed, with 9 anchors from their boxes."""
    root = tmp_path_factory.mktemp("scenes")
    options = SyntheticOptions(num_images=24, image_size=SIZE, min_objects=1, max_objects=4, min_object_size=10,
                               max_object_size=28, max_overlap_iou=0.5, photo_dir=None)
    write_raw_dataset(SyntheticShapes(options), root / "raw", progress=False)
    raw = load_raw_dataset(root / "raw")
    ids = [img["id"] for img in raw.images]
    write_processed(raw, {"train": ids[:20], "test": ids[20:]}, root / "processed",
                    PreprocessConfig(image_size=SIZE, num_shards=1))
    return root, raw


def anchors_in(root, monkeypatch, count=9):
    path = root / "data/scenes/anchors/anchors.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = np.linspace(0.15, 0.45, count)
    path.write_text(json.dumps({"anchors": [[float(s), float(s)] for s in sizes]}))
    monkeypatch.chdir(root)


def test_the_detector_section_checks_its_sizes_and_defaults_to_the_scenes_dataset():
    config = DetectorConfig()
    assert config.dataset == "scenes" and config.input_sizes == (96, 128, 160) and not config.augment.keep_boxes_whole
    with pytest.raises(ValueError, match="multiple of 32"):
        DetectorConfig(input_sizes=(96, 100))


def test_missing_or_miscounted_anchors_are_one_line_errors_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"^data/scenes/anchors/anchors.json: no such file; run `dvc repro anchors@scenes`$"):
        Detector(DetectorConfig(), ["a"]).anchors
    anchors_in(tmp_path, monkeypatch, count=6)
    with pytest.raises(DataError, match=r"6 anchors, but the detector needs 9") as info:
        Detector(DetectorConfig(), ["a"]).anchors
    assert "\n" not in str(info.value)


def test_targets_are_the_padded_ground_truth_at_a_fixed_count_for_every_output():
    import tensorflow as tf

    family = Detector(DetectorConfig(max_boxes=3), ["a", "b"])
    boxes = tf.constant([[[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.8]], [[0.2, 0.2, 0.4, 0.4], [0, 0, 0, 0]]])
    labels = tf.constant([[1, 0], [0, -1]], tf.int64)
    targets = family.targets(boxes, labels, labels >= 0, labels)
    assert set(targets) == set(OUTPUTS)
    gt = targets["s8"].numpy()
    assert gt.shape == (2, 3, 5)
    np.testing.assert_allclose(gt[0, 1], [0.5, 0.5, 0.9, 0.8, 0])
    assert list(gt[1, :, 4]) == [0, -1, -1] and list(gt[0, :, 4]) == [1, 0, -1]
    many = tf.zeros([1, 5, 4]), tf.zeros([1, 5], tf.int64)
    assert family.targets(many[0], many[1], many[1] >= 0, many[1])["s16"].shape == (1, 3, 5)  # the rest dropped


def test_the_detector_trains_multi_scale_through_the_pipeline_and_serves_at_any_size(scenes, monkeypatch):
    root, raw = scenes
    anchors_in(root, monkeypatch)
    config = DetectorConfig(batch_size=4, input_sizes=(32, 64, 96), size_every=1, neck_channels=16,
                            frozen={"epochs": 1, "learning_rate": 0.003}, finetune={"epochs": 2, "learning_rate": 0.003})
    family = Detector(config, raw.category_names)
    keras.utils.set_random_seed(0)
    model, backbone = family.build(SPEC, SIZE, 1.0, None)
    preprocess = keras.applications.mobilenet_v2.preprocess_input
    sizes, every = family.input_sizes()

    def train_from(epoch):
        return model_dataset(root / "processed", "train", 4, preprocess, family.targets, training=True,
                             seed=0, start_epoch=epoch, num_examples=20,  # augmentation: tests/test_augment.py
                             input_sizes=sizes, size_every=every)

    seen = {int(x.shape[1]) for x, _ in train_from(0).take(12)}
    assert len(seen) >= 2 and seen <= {32, 64, 96}  # sizes are drawn batch by batch
    history = train_two_phase(family, model, backbone, train_from, steps_per_epoch(20, 4), None, root / "ckpt", "d")
    assert history[-1]["loss"] < history[0]["loss"] and {"s8_loss", "s16_loss", "s32_loss"} <= set(history[-1])

    served = with_pixel_input(family.inference_model(model), preprocess)
    served.save(root / "detector.keras")
    loaded = keras.saving.load_model(root / "detector.keras")
    for side in (64, 96, 128):
        out = loaded.predict_on_batch(np.zeros((2, side, side, 3), np.float32))
        assert out["boxes"].shape == (2, config.nms.max_detections, 4) and out["num_detections"].shape == (2,)

    batches = list(model_dataset(root / "processed", "test", 4, lambda x: x, family.targets))
    outputs = {k: np.concatenate([loaded.predict_on_batch(x)[k] for x, _ in batches]) for k in served.output}
    np.testing.assert_allclose(outputs["scores"], np.concatenate(
        [served.predict_on_batch(x)["scores"] for x, _ in batches]), atol=1e-5)  # the round trip changes nothing
    found = family.decode(outputs)
    assert len(found) == 4 and all(len(d.boxes_xyxy_norm) == n for d, n in zip(found, outputs["num_detections"]))
    assert all(np.all(np.diff(d.scores) <= 1e-6) and np.all((d.boxes_xyxy_norm >= 0) & (d.boxes_xyxy_norm <= 1))
               for d in found)
    targets = {k: np.concatenate([y[k].numpy() for _, y in batches]) for k in OUTPUTS}
    metrics = family.metrics(outputs, targets)
    assert metrics["num_examples"] == 4 and 0 <= metrics["map"] <= metrics["map50"] <= 1
