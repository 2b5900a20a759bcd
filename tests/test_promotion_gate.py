"""The promotion gate's evidence, its paired bootstrap and its decisions, on real and hand-made results."""

import json
from pathlib import Path

import numpy as np
import pytest

from visionflow.config import PromoteConfig
from visionflow.metrics.bootstrap import paired_bootstrap, resample_weights
from visionflow.metrics.evidence import ImageMeans, detection_ap, top_box_iou, top_class_correct
from visionflow.tracking.gate import class_regressions, decide

COCO = Path(__file__).parent / "data" / "coco"
NAMES = {1: "circle", 2: "square"}


def coco_fixture():
    truth = json.loads((COCO / "instances_val2014_100.json").read_text())
    return truth, json.loads((COCO / "instances_val2014_fakebbox100_results.json").read_text())


def test_detection_ap_at_unit_weights_is_pycocotools_ap50():
    truth, detections = coco_fixture()
    evidence = detection_ap(truth, detections)
    expected = json.loads((COCO / "expected_bbox_stats.json").read_text())["stats"][1]
    assert evidence.score(np.ones((1, evidence.num_images)))[0] == pytest.approx(expected, abs=1e-12)


def test_detection_ap_weights_count_images_twice():
    """Drawing every image twice changes nothing; dropping the images of a class removes it from the mean."""
    truth, detections = coco_fixture()
    evidence = detection_ap(truth, detections)
    ones = np.ones((1, evidence.num_images))
    assert evidence.score(2 * ones)[0] == pytest.approx(evidence.score(ones)[0])
    per_class = evidence.per_class()
    defined = [v for v in per_class.values() if v >= 0]
    assert np.mean(defined) == pytest.approx(evidence.score(ones)[0])


def scene(boxes_and_classes):
    images = [{"id": i + 1, "width": 100, "height": 100, "file_name": f"{i}.png"} for i in range(len(boxes_and_classes))]
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                   for i, (b, c) in enumerate(boxes_and_classes)]
    return {"images": images, "annotations": annotations,
            "categories": [{"id": k, "name": v} for k, v in NAMES.items()]}


def test_top_box_iou_and_class_by_hand():
    truth = scene([([10, 10, 20, 20], 1), ([50, 50, 10, 10], 2)])
    detections = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 10], "score": 0.9},  # IoU 0.5, right
                  {"image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.1},  # not the best
                  {"image_id": 2, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.8}]  # IoU 1, wrong class
    assert top_box_iou(truth, detections).values == pytest.approx([0.5, 1.0])
    assert top_class_correct(truth, detections).values.tolist() == [1.0, 0.0]
    assert top_box_iou(truth, detections[:2]).values == pytest.approx([0.5, 0.0])  # no detection: 0


def means(values, classes=None):
    values = np.asarray(values, float)
    classes = np.asarray(classes if classes is not None else [1, 2] * (len(values) // 2))
    return ImageMeans(values, classes, NAMES)


def test_resamples_draw_every_image_count_times():
    weights = resample_weights(50, 200, seed=3)
    assert weights.shape == (200, 50) and (weights.sum(1) == 50).all()
    assert (resample_weights(50, 200, seed=3) == weights).all()


def test_paired_bootstrap_of_a_model_against_itself_is_not_better():
    rng = np.random.default_rng(0)
    same = means(rng.uniform(size=200))
    test = paired_bootstrap(same.score, same.score, 200, samples=500)
    assert test.difference == 0 and test.lower == 0 and test.p_not_better == 1


def test_paired_bootstrap_sees_a_small_consistent_gain_that_unpaired_scores_hide():
    """+0.02 on every image, on scores spread far wider: paired, the gain is certain."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, size=200)
    test = paired_bootstrap(means(base + 0.02).score, means(base).score, 200, samples=500)
    assert test.difference == pytest.approx(0.02) and test.lower == pytest.approx(0.02)


CFG = PromoteConfig(bootstrap={"samples": 500, "confidence": 0.95, "seed": 0})


def test_gate_refuses_below_the_minimum():
    decision = decide("mean_iou", 0.41, 0.5, means([0.4, 0.42]), None, CFG)
    assert not decision.promote and "below the minimum 0.5" in decision.reason


def test_gate_promotes_the_first_good_version():
    decision = decide("mean_iou", 0.7, 0.5, means([0.7, 0.7]), None, CFG)
    assert decision.promote and "no champion" in decision.reason


def test_gate_refuses_a_class_regression_even_when_better_overall():
    champion = means([0.6, 0.9] * 100)  # circle 0.6, square 0.9
    challenger = means([0.9, 0.8] * 100)  # circle much better, square 0.1 worse
    decision = decide("mean_iou", 0.85, 0.5, challenger, champion, CFG)
    assert not decision.promote and decision.reason.startswith("class square fell by 0.1000")
    assert decision.numbers["class_regressions"] == {"square": pytest.approx(0.1)}


def test_gate_refuses_a_gain_within_the_noise_and_promotes_a_real_one():
    rng = np.random.default_rng(1)
    champion = rng.uniform(0.3, 0.9, size=200)
    noisy = np.clip(champion + rng.normal(0.0, 0.2, size=200) + 0.005, 0, 1)
    refused = decide("mean_iou", float(noisy.mean()), 0.5, means(noisy), means(champion), CFG)
    assert not refused.promote and "not better than the champion with 95% confidence" in refused.reason
    promoted = decide("mean_iou", float(champion.mean() + 0.03), 0.5, means(champion + 0.03), means(champion), CFG)
    assert promoted.promote and promoted.numbers["bootstrap"]["lower"] > 0


def test_class_regressions_within_tolerance_are_allowed():
    assert class_regressions({"a": 0.80, "b": 0.5}, {"a": 0.84, "b": 0.6}, 0.05) == {"b": pytest.approx(0.1)}
