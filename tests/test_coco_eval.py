import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.coco_cases import pycocotools_eval, random_case
from visionflow.metrics.coco import STAT_KEYS, CocoFormatError, coco_iou_xywh, evaluate_coco

FIXTURE = Path(__file__).parent / "data" / "coco"
GT_FILE = FIXTURE / "instances_val2014_100.json"
DT_FILE = FIXTURE / "instances_val2014_fakebbox100_results.json"


def assert_same(ours, gt, dets):
    stats, per_cat = pycocotools_eval(gt, dets)
    np.testing.assert_allclose([ours.stats[k] for k in STAT_KEYS], stats, rtol=0, atol=1e-9)
    assert ours.per_category.keys() == per_cat.keys()
    np.testing.assert_allclose(list(ours.per_category.values()), list(per_cat.values()), rtol=0, atol=1e-9)


def test_conformance_fixture_matches_recorded_pycocotools_stats():
    expected = json.loads((FIXTURE / "expected_bbox_stats.json").read_text())
    ours = evaluate_coco(GT_FILE, DT_FILE)
    assert list(STAT_KEYS) == expected["keys"]
    np.testing.assert_allclose([ours.stats[k] for k in STAT_KEYS], expected["stats"], rtol=0, atol=1e-9)


def test_conformance_fixture_per_category_matches_pycocotools():
    gt, dets = json.loads(GT_FILE.read_text()), json.loads(DT_FILE.read_text())
    assert_same(evaluate_coco(gt, dets), gt, dets)


@pytest.mark.parametrize("seed", range(12))
def test_random_cases_match_pycocotools(seed):
    gt, dets = random_case(seed)
    assert_same(evaluate_coco(gt, dets), gt, dets)


@pytest.mark.parametrize("seed", range(3))
def test_crowd_heavy_and_crowded_cases_match_pycocotools(seed):
    gt, dets = random_case(100 + seed, n_images=12, n_cats=3, max_gt=25, max_dt=150, crowd_p=0.4)
    assert_same(evaluate_coco(gt, dets), gt, dets)


def test_no_detections_matches_pycocotools():
    gt, _ = random_case(5)
    ours = evaluate_coco(gt, [])
    assert_same(ours, gt, [])
    assert ours.stats["AP"] == 0.0


def test_category_without_ground_truth_is_minus_one():
    gt, dets = random_case(6)
    ours = evaluate_coco(gt, dets)
    last = gt["categories"][-1]["name"]  # random_case never gives it ground truth
    assert ours.per_category[last] == -1.0


def test_no_ground_truth_at_all_gives_minus_one_everywhere():
    gt, dets = random_case(7)
    gt["annotations"] = []
    ours = evaluate_coco(gt, dets)
    assert set(ours.stats.values()) == {-1.0}
    assert_same(ours, gt, dets)


def test_perfect_detections_score_one():
    gt, _ = random_case(8, crowd_p=0.0)
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
            for a in gt["annotations"] if a["bbox"][2] > 0 and a["bbox"][3] > 0]
    gt["annotations"] = [a for a in gt["annotations"] if a["bbox"][2] > 0 and a["bbox"][3] > 0]
    assert evaluate_coco(gt, dets).stats["AP50"] == pytest.approx(1.0)


def test_inputs_are_not_modified():
    gt, dets = random_case(9)
    before = copy.deepcopy((gt, dets))
    evaluate_coco(gt, dets)
    assert (gt, dets) == before


def test_crowd_iou_uses_detection_area():
    dt = np.array([[0.0, 0.0, 10.0, 10.0]])
    gt = np.array([[0.0, 0.0, 100.0, 100.0]])
    assert coco_iou_xywh(dt, gt, np.array([True]))[0] == 1.0
    assert coco_iou_xywh(dt, gt, np.array([False]))[0] == pytest.approx(0.01)


GOOD_GT = {"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                                                   "area": 25, "iscrowd": 0}], "categories": [{"id": 1, "name": "a"}]}


@pytest.mark.parametrize(
    "det, message",
    [
        ({"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, r"detection \[0\]: image_id 2"),
        ({"image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1], "score": 0.5}, r"detection \[0\]: category_id 9"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}, r"detection \[0\]: bbox must be"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5}, "negative width"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": float("nan")}, "score is NaN"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}, "needs image_id, category_id, bbox and score"),
    ],
)
def test_bad_detections_name_the_record(det, message):
    with pytest.raises(CocoFormatError, match=message):
        evaluate_coco(GOOD_GT, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}, det][1:])


def test_bad_ground_truth_files(tmp_path):
    not_coco = tmp_path / "gt.json"
    not_coco.write_text(json.dumps({"images": []}))
    with pytest.raises(CocoFormatError, match=r"gt.json: not COCO ground truth"):
        evaluate_coco(not_coco, [])
    not_json = tmp_path / "broken.json"
    not_json.write_text("{")
    with pytest.raises(CocoFormatError, match="broken.json: not valid JSON"):
        evaluate_coco(not_json, [])
    bad_ann = copy.deepcopy(GOOD_GT)
    bad_ann["annotations"][0]["category_id"] = 5
    with pytest.raises(CocoFormatError, match=r"annotations\[0\] \(id 1\): unknown category_id 5"):
        evaluate_coco(bad_ann, [])


def test_cli_prints_one_json_object(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "visionflow.cli", "evaluate-coco", "--gt", str(GT_FILE),
                           "--dt", str(DT_FILE)], capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout)
    assert set(out) == set(STAT_KEYS) | {"per_category"}
    assert out["AP"] == pytest.approx(0.5045806987249628, abs=1e-12)
    assert len(out["per_category"]) == 80


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    dets = [{"image_id": 999999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}]
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    proc = subprocess.run([sys.executable, "-m", "visionflow.cli", "evaluate-coco", "--gt", str(GT_FILE),
                           "--dt", str(tmp_path / "dt.json")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "image_id 999999" in proc.stderr


def four_images_two_with_detections() -> tuple[dict, list]:
    """One 10x10 box on each of 4 images; a perfect detection on images 1 and 2 only."""
    gt = {"images": [{"id": i} for i in (1, 2, 3, 4)], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}
                          for i in (1, 2, 3, 4)]}
    dets = [{"image_id": i, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9} for i in (1, 2)]
    return gt, dets


def test_images_without_detections_count_as_misses_and_are_warned_about():
    gt, dets = four_images_two_with_detections()
    ours = evaluate_coco(gt, dets)
    assert_same(ours, gt, dets)
    assert ours.stats["AP"] == pytest.approx(51 / 101)  # precision 1 up to recall 0.5: 51 of the 101 points
    (warning,) = ours.warnings
    assert "only 2 of the 4 images with ground truth have detections" in warning
    assert "count as misses" in warning and "ground truth of that split only" in warning


def test_ground_truth_of_the_detected_split_only_gives_no_warning():
    gt, dets = four_images_two_with_detections()
    gt["images"] = gt["images"][:2]
    gt["annotations"] = gt["annotations"][:2]
    ours = evaluate_coco(gt, dets)
    assert ours.stats["AP"] == pytest.approx(1.0)
    assert ours.warnings == ()


def test_images_with_nothing_to_miss_need_no_detections():
    gt, dets = four_images_two_with_detections()
    gt["annotations"][2]["iscrowd"] = 1  # image 3: crowd only, which no detection has to find
    del gt["annotations"][3]  # image 4: no ground truth
    assert evaluate_coco(gt, dets).warnings == ()


def test_cli_warns_in_one_stderr_line_and_keeps_stdout_json(tmp_path, capsys):
    from visionflow.cli import main

    gt, dets = four_images_two_with_detections()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    assert main(["evaluate-coco", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["AP"] == pytest.approx(51 / 101)
    assert err.count("\n") == 1 and err.startswith("warning: only 2 of the 4 images with ground truth")
