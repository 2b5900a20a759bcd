"""The classifier family: learns from label-only data through the real pipeline, decodes its top k, reports."""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.tiny import SPEC
from visionflow.data.pipeline import model_dataset, steps_per_epoch
from visionflow.data.tfrecords import _example, write_meta
from visionflow.metrics.classification import one_vs_rest_pr_curves
from visionflow.models.classifier.config import ClassifierConfig
from visionflow.models.classifier.family import Classifier
from visionflow.training import train_two_phase

SIZE, CLASSES = 32, ["dark", "mid", "bright"]


def label_only_shards(root, n=48):
    """Images of three brightnesses with noise, no boxes at all: only ``image_labels`` say the class."""
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(root / "train-00000-of-00001.tfrecord")) as writer:
        for i in range(n):
            label = i % 3
            pixels = np.clip(rng.normal(40 + 80 * label, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            writer.write(_example(tf, buf.getvalue(), i + 1, np.zeros((0, 4), np.float32), [],
                                  image_labels=[label]).SerializeToString())
    write_meta(root, {"image_size": SIZE, "classes": CLASSES, "num_examples": {"train": n}})
    return n


@pytest.mark.parametrize("pooling", ["avg", "max16"])
def test_the_classifier_learns_from_images_that_have_labels_and_no_boxes(tmp_path, pooling):
    n = label_only_shards(tmp_path)
    config = ClassifierConfig(batch_size=16, frozen={"epochs": 1, "learning_rate": 0.01},
                              finetune={"epochs": 6, "learning_rate": 0.01}, pooling=pooling)
    family = Classifier(config, CLASSES)
    keras.utils.set_random_seed(0)
    model, backbone = family.build(SPEC, SIZE, 1.0, None)

    def train_from(epoch):
        return model_dataset(tmp_path, "train", 16, lambda x: x / 127.5 - 1, family.targets, training=True,
                             augment=config.augment, seed=0, start_epoch=epoch, num_examples=n)

    train_two_phase(family, model, backbone, train_from, steps_per_epoch(n, 16), None, tmp_path / "ckpt", "c")
    batches = model_dataset(tmp_path, "train", 16, lambda x: x / 127.5 - 1, family.targets)
    outputs = {"class": np.concatenate([model.predict_on_batch(x)["class"] for x, _ in batches])}
    labels = np.concatenate([y["class"].numpy() for _, y in batches])
    assert np.array_equal(np.sort(labels), np.sort(np.arange(n) % 3))  # the targets are the image labels
    metrics = family.metrics(outputs, {"class": labels})
    assert metrics["accuracy"] >= 0.9, metrics
    assert set(metrics["per_class"]) == set(CLASSES) and "ece" in metrics and "top_2_accuracy" not in metrics


def test_the_max16_head_pools_both_maps_freezes_with_the_backbone_and_reloads(tmp_path):
    from visionflow.models.transfer import set_backbone_trainable

    family = Classifier(ClassifierConfig(pooling="max16"), CLASSES)
    keras.utils.set_random_seed(0)
    model, backbone = family.build(SPEC, SIZE, 1.0, None)
    assert model.get_layer("class_pool").output.shape[-1] == 8 + 8  # the 1/4 map's channels (tiny) + the last map's
    set_backbone_trainable(backbone, False)
    assert [w.path for w in model.trainable_weights] == ["class/kernel", "class/bias"]
    x = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras").predict(x, verbose=0)["class"],
                               model.predict(x, verbose=0)["class"], rtol=1e-6)


def test_decode_gives_the_top_k_classes_as_whole_image_detections_best_first():
    family = Classifier(ClassifierConfig(top_k=2), CLASSES)
    found = family.decode({"class": np.array([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]])})
    assert [d.classes.tolist() for d in found] == [[1, 2], [0, 2]]
    np.testing.assert_allclose(found[0].scores, [0.5, 0.3])
    np.testing.assert_array_equal(found[1].boxes_xyxy_norm, [[0, 0, 1, 1]] * 2)


def test_reports_hold_one_vs_rest_curves_a_confusion_row_per_image_and_the_reliability_table():
    family = Classifier(ClassifierConfig(), CLASSES)
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    reports = family.reports({"class": probs}, {"class": np.array([0, 1, 1, 2])})
    assert reports.tables["confusion"][2] == {"actual": "mid", "predicted": "dark"}
    assert len(reports.tables["confusion"]) == 4 and sum(b["count"] for b in reports.tables["reliability"]) == 4
    assert set(reports.figures) == {"confusion_matrix", "reliability"}
    recall, precision = reports.curves["dark"]
    assert len(recall) == 101 and precision[0] == pytest.approx(1.0)


@pytest.mark.parametrize("labels, scores, expected_precision_at_full_recall", [
    ([1, 1, 0, 0], [0.9, 0.8, 0.3, 0.1], 1.0),  # the class ranked first: perfect
    ([0, 1, 0, 1], [0.9, 0.8, 0.3, 0.1], 0.5),  # its second image is ranked last: 2 of 4 at full recall
    ([0, 0, 0, 1], [0.9, 0.8, 0.3, 0.1], 0.25),
])
def test_one_vs_rest_precision_interpolates_as_coco_does(labels, scores, expected_precision_at_full_recall):
    scores = np.array(scores)
    probs = np.stack([1 - scores, scores], axis=1)
    recall, precision = one_vs_rest_pr_curves(np.array(labels), probs, ["other", "it"])["it"]
    assert recall[-1] == 1.0 and precision[-1] == pytest.approx(expected_precision_at_full_recall)
    assert np.all(np.diff(precision) <= 1e-12)  # interpolated: never rises with recall
