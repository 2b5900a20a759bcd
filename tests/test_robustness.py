"""The robustness report: each corruption at each severity, scored as evaluate scores the saved model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.tiny import SPEC
from visionflow.config import Config
from visionflow.data.coco_layout import load_raw_dataset, write_raw_dataset
from visionflow.data.photos import export_photos
from visionflow.data.pipeline import model_dataset
from visionflow.data.synthetic import SyntheticOptions, SyntheticShapes
from visionflow.data.tfrecords import write_split_shards
from visionflow.models.localizer.config import LocalizerConfig
from visionflow.models.localizer.family import Localizer
from visionflow.models.pixels import with_pixel_input
from visionflow.robustness import outside_boxes, photo_background, report_rows, robustness_report

SIZE = 64
CLASSES = ["circle", "square", "triangle", "diamond", "star"]


def test_outside_boxes_marks_pixels_whose_centre_lies_in_no_valid_box():
    boxes = tf.constant([[[0.0, 0.0, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]]])
    mask = outside_boxes((1, 4, 4, 3), boxes, tf.constant([[True, False]]))[0, ..., 0].numpy()
    np.testing.assert_array_equal(mask, [[0, 0, 1, 1]] * 4)  # the invalid second box keeps nothing


def test_photo_background_replaces_its_share_outside_the_boxes_only():
    images = tf.fill([1, 4, 4, 3], 100.0)
    backdrops = tf.fill([1, 4, 4, 3], 200.0)
    boxes, valid = tf.constant([[[0.0, 0.0, 0.5, 0.5]]]), tf.constant([[True]])
    half = photo_background(images, boxes, valid, backdrops, 0.5)[0, ..., 0].numpy()
    np.testing.assert_array_equal(half[:2, :2], 100.0)
    np.testing.assert_array_equal(half[2:, :], 150.0)
    assert photo_background(images, boxes, valid, backdrops, 0.0).numpy().tolist() == images.numpy().tolist()


@pytest.fixture(scope="module")
def project(tmp_path_factory, photo_dir):
    root = tmp_path_factory.mktemp("robust")
    opts = SyntheticOptions(num_images=24, image_size=SIZE, min_object_size=16, max_object_size=40, photo_dir=photo_dir)
    write_raw_dataset(SyntheticShapes(opts), root / "raw", progress=False)
    raw = load_raw_dataset(root / "raw")
    (root / "processed").mkdir()
    write_split_shards(raw, [img["id"] for img in raw.images], "test", root / "processed", SIZE, 1)
    export_photos(["coffee"], root / "held_out")
    keras.utils.set_random_seed(0)
    family = Localizer(LocalizerConfig(flip_average=False, class_gradient=1.0), CLASSES)
    model, _ = family.build(SPEC, SIZE, 1.0, None)
    family.compile(model, keras.optimizers.Adam(0.01))
    # Fitted to these very images, so that the clean score is high and a corruption can only lower it.
    data = model_dataset(root / "processed", "test", 24, keras.applications.mobilenet_v2.preprocess_input,
                         family.targets)
    model.fit(data.repeat(), steps_per_epoch=1, epochs=150, verbose=0)
    return root, family, with_pixel_input(family.inference_model(model), keras.applications.mobilenet_v2.preprocess_input)


def report_for(project, **severities):
    root, family, model = project
    cfg = Config.model_validate({"evaluate": {"batch_size": 10},
                                 "robustness": {"photo_dir": str(root / "held_out"), **severities}})
    return robustness_report(cfg, model, family, root / "processed")


def test_corruptions_at_no_strength_score_exactly_the_clean_score(project):
    report = report_for(project, gaussian_noise=[0], gaussian_blur=[0], jpeg=[100], brightness=[0], contrast=[1],
                        photo_background=[0])
    assert report["metric"] == "mean_iou" and 0.1 < report["clean"] <= 1  # measured 0.20
    for name in ("gaussian_noise", "gaussian_blur", "brightness", "contrast", "photo_background"):
        assert report["corruptions"][name]["1"]["value"] == pytest.approx(report["clean"], abs=1e-6), name
    assert report["corruptions"]["jpeg"]["1"]["relative"] == pytest.approx(1.0, abs=0.05)  # quality 100 still rounds


def test_every_corruption_and_severity_is_reported_with_its_ratio_to_clean(project):
    report = report_for(project)
    levels = report["corruptions"]
    assert list(levels) == ["gaussian_noise", "gaussian_blur", "jpeg", "brightness", "contrast", "photo_background"]
    relative = []
    for name, by_level in levels.items():
        assert list(by_level) == ["1", "2", "3", "4", "5"]
        for s in by_level.values():
            assert s["relative"] == pytest.approx(s["value"] / report["clean"])
            relative.append(s["relative"])
    assert report["mean_relative"] == pytest.approx(np.mean(relative))
    for name in levels:  # the strongest of each changes the score; those that destroy the image lower it
        assert levels[name]["5"]["value"] != pytest.approx(report["clean"], abs=1e-6), name
    for name in ("gaussian_noise", "jpeg", "contrast", "photo_background"):
        assert levels[name]["5"]["relative"] < 0.99, name
    header, rows = report_rows(report)
    assert header[0] == "severity" and [r[0] for r in rows] == [1, 2, 3, 4, 5] and len(rows[0]) == 7


def test_the_report_is_reproducible(project):
    assert report_for(project, gaussian_noise=[60]) == report_for(project, gaussian_noise=[60])
