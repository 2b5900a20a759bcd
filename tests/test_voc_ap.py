import json

import numpy as np
import pytest

from visionflow.cli import main
from visionflow.metrics.voc import evaluate_voc, voc_ap

# Detections in score order: TP, FP, TP, FP, TP over 3 positives.
RECALL = np.array([1, 1, 2, 2, 3]) / 3
PRECISION = np.array([1 / 1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])


def test_all_point_ap_by_hand():
    # Envelope: 1 on (0, 1/3], 2/3 on (1/3, 2/3], 0.6 on (2/3, 1].
    assert voc_ap(RECALL, PRECISION) == pytest.approx((1 + 2 / 3 + 0.6) / 3)


def test_eleven_point_ap_by_hand():
    # t = 0, .1, .2, .3 -> 1; t = .4, .5, .6 -> 2/3; t = .7 ... 1.0 -> 0.6
    assert voc_ap(RECALL, PRECISION, use_07_metric=True) == pytest.approx((4 * 1 + 3 * 2 / 3 + 4 * 0.6) / 11)


def gt_and_dets():
    gt = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 20, 20]},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [100, 100, 10, 10], "difficult": 1},
        ],
    }
    d = lambda img, box, s: {"image_id": img, "category_id": 1, "bbox": box, "score": s}  # noqa: E731
    dets = [
        d(1, [0, 0, 10, 10], 0.9),  # TP
        d(1, [1, 1, 10, 10], 0.8),  # FP: duplicate of a matched box
        d(2, [0, 0, 20, 19], 0.7),  # TP
        d(2, [100, 100, 10, 10], 0.65),  # matches a difficult box: ignored
        d(2, [300, 300, 5, 5], 0.6),  # FP: nothing there
        d(1, [50, 50, 10, 10], 0.5),  # TP
    ]
    return gt, dets


def test_evaluate_voc_matches_the_hand_computed_curve():
    gt, dets = gt_and_dets()
    res = evaluate_voc(gt, dets)
    assert res.per_category["cat"] == pytest.approx(voc_ap(RECALL, PRECISION))
    assert res.per_category["dog"] == -1.0  # no ground truth: left out of the mean
    assert res.mAP == pytest.approx(res.per_category["cat"])
    assert evaluate_voc(gt, dets, use_07_metric=True).mAP == pytest.approx(voc_ap(RECALL, PRECISION, True))


def test_difficult_box_is_neither_positive_nor_counted():
    gt, dets = gt_and_dets()
    gt["annotations"][3]["difficult"] = 0  # now a real positive the 0.65 detection finds
    res = evaluate_voc(gt, dets)
    # TP FP TP TP FP TP over 4 positives
    tp = np.array([1, 1, 2, 3, 3, 4])
    fp = np.array([0, 1, 1, 1, 2, 2])
    assert res.per_category["cat"] == pytest.approx(voc_ap(tp / 4, tp / (tp + fp)))


def test_iou_threshold_is_strict():
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}]}
    half = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 5], "score": 1.0}]  # IoU exactly 0.5
    assert evaluate_voc(gt, half, iou_threshold=0.5).mAP == 0.0
    assert evaluate_voc(gt, half, iou_threshold=0.49).mAP == 1.0


def test_cli_evaluate_voc(tmp_path):
    import json
    import subprocess
    import sys

    gt, dets = gt_and_dets()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    base = [sys.executable, "-m", "visionflow.cli", "evaluate-voc", "--gt", str(tmp_path / "gt.json"),
            "--dt", str(tmp_path / "dt.json")]
    out = json.loads(subprocess.run(base, capture_output=True, text=True, check=True).stdout)
    assert out["per_category"]["cat"] == pytest.approx(voc_ap(RECALL, PRECISION))
    out07 = json.loads(subprocess.run(base + ["--metric", "11point"], capture_output=True, text=True, check=True).stdout)
    assert out07["mAP"] == pytest.approx(voc_ap(RECALL, PRECISION, use_07_metric=True))


@pytest.mark.parametrize("iou", [0.0, 1.0, 1.7, -0.5, float("nan")])
def test_iou_threshold_outside_zero_one_is_refused(iou):
    gt, dets = gt_and_dets()
    with pytest.raises(ValueError, match="between 0 and 1"):
        evaluate_voc(gt, dets, iou_threshold=iou)


@pytest.mark.parametrize("iou, message", [("1.7", "got 1.7"), ("0", "got 0.0"), ("x", "not a number: 'x'")])
def test_cli_refuses_a_bad_iou_in_one_line_with_exit_2(iou, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate-voc", "--gt", "gt.json", "--dt", "dt.json", "--iou", iou])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --iou" in err and message in err


def test_images_without_detections_are_warned_about():
    gt, dets = gt_and_dets()
    gt["images"].append({"id": 3})
    gt["annotations"].append({"id": 5, "image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10]})
    res = evaluate_voc(gt, dets)
    tp, fp = np.array([1, 1, 2, 2, 3]), np.array([0, 1, 1, 2, 2])  # as before, over 4 positives
    assert res.per_category["cat"] == pytest.approx(voc_ap(tp / 4, tp / (tp + fp)))
    (warning,) = res.warnings
    assert "only 2 of the 3 images with ground truth have detections" in warning


def test_images_with_only_difficult_boxes_need_no_detections():
    gt, dets = gt_and_dets()
    assert evaluate_voc(gt, dets).warnings == ()
    gt["images"].append({"id": 3})
    gt["annotations"].append({"id": 5, "image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10], "difficult": 1})
    assert evaluate_voc(gt, dets).warnings == ()


def test_cli_evaluate_voc_warns_on_stderr(tmp_path, capsys):
    gt, dets = gt_and_dets()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps([d for d in dets if d["image_id"] == 1]))
    assert main(["evaluate-voc", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json")]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["per_category"]["cat"] == pytest.approx(voc_ap(np.array([1, 1, 2]) / 3, [1, 1 / 2, 2 / 3]))
    assert err.count("\n") == 1 and err.startswith("warning: only 1 of the 2 images with ground truth")
