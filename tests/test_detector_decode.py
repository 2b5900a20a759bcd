"""The detector's decoder: class-aware NMS on hand-made raw outputs, top-k per class, the saved model (real TF)."""

import keras
import numpy as np
import pytest

from visionflow.models.detector.decode import DetectionDecoder

ANCHORS = [[[0.25, 0.25], [0.3, 0.3]]]  # one 4 x 4 scale, two anchors
GRID, K = 4, 2


def raw_scale(candidates):
    """A (1, 4, 4, 2 * (5 + K)) raw output: scores ~0 but at the candidates (row, col, anchor, obj, class, tw, th)."""
    raw = np.zeros((1, GRID, GRID, 2, 5 + K), "float32")
    raw[..., 4] = -12.0
    for row, col, anchor, obj, label, tw, th in candidates:
        raw[0, row, col, anchor, 2:4] = tw, th
        raw[0, row, col, anchor, 4] = obj
        raw[0, row, col, anchor, 5 + label] = 8.0
    return raw.reshape(1, GRID, GRID, -1)


def detect(candidates, **kwargs):
    out = DetectionDecoder(ANCHORS, K, **{"score_threshold": 0.1, **kwargs})([raw_scale(candidates)])
    return {key: np.asarray(value)[0] for key, value in out.items()}


BIG_A = (1, 1, 0, 3.0, 0, 0.0, 0.0)  # (0.25, 0.25, 0.5, 0.5), score sigmoid(3) ~ 0.95
SMALLER_SCORE_B = (1, 1, 1, 1.0, 0, 0.0, 0.0)  # (0.225, 0.225, 0.525, 0.525): IoU 0.0625 / 0.09 = 0.69 with A


def test_overlapping_boxes_of_one_class_keep_the_best_and_of_two_classes_both():
    same = detect([BIG_A, SMALLER_SCORE_B])
    assert same["num_detections"] == 1
    np.testing.assert_allclose(same["boxes"][0], [0.25, 0.25, 0.5, 0.5], atol=1e-6)
    assert same["scores"][0] == pytest.approx(1 / (1 + np.exp(-3)), abs=1e-3) and same["classes"][0] == 0
    two = detect([BIG_A, SMALLER_SCORE_B[:4] + (1,) + SMALLER_SCORE_B[5:]])
    assert two["num_detections"] == 2 and two["classes"][:2].tolist() == [0, 1]
    np.testing.assert_allclose(two["boxes"][1], [0.225, 0.225, 0.525, 0.525], atol=1e-6)


def test_low_scores_are_dropped_boxes_stay_xyxy_and_clipped_and_the_padding_is_zero():
    faint = (3, 3, 0, -3.0, 1, 0.0, 0.0)  # score sigmoid(-3) ~ 0.047 < 0.1
    corner = (3, 0, 0, 2.0, 1, np.log(1.6), 0.0)  # 0.4 wide, 0.25 high at (0.125, 0.875): past the left and bottom
    out = detect([BIG_A, faint, corner], max_detections=5)
    assert out["num_detections"] == 2 and out["boxes"].shape == (5, 4)
    np.testing.assert_allclose(out["boxes"][:2], [[0.25, 0.25, 0.5, 0.5], [0.0, 0.75, 0.325, 1.0]], atol=1e-6)
    assert out["classes"][:2].tolist() == [0, 1]
    assert np.all(out["scores"][2:] == 0) and np.all(out["boxes"][2:] == 0)


def test_a_candidate_below_its_class_top_k_is_never_output():
    far = (3, 3, 0, 2.0, 0, 0.0, 0.0)  # same class as A, no overlap, lower score
    assert detect([BIG_A, far], pre_nms_top_k=2)["num_detections"] == 2
    kept = detect([BIG_A, far], pre_nms_top_k=1)
    assert kept["num_detections"] == 1
    np.testing.assert_allclose(kept["boxes"][0], [0.25, 0.25, 0.5, 0.5], atol=1e-6)
    assert detect([BIG_A, far[:4] + (1,) + far[5:]], pre_nms_top_k=1)["num_detections"] == 2  # top-k is per class


def test_the_saved_model_loads_and_detects_the_same_at_several_sizes(tmp_path):
    anchors = [[[0.1, 0.1], [0.2, 0.15]], [[0.4, 0.3], [0.6, 0.7]]]
    inputs = keras.Input((None, None, 3))
    fine = keras.layers.Conv2D(8, 3, strides=8, padding="same", activation="relu")(inputs)
    coarse = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(fine)
    heads = [keras.layers.Conv2D(2 * (5 + 3), 1)(fine), keras.layers.Conv2D(2 * (5 + 3), 1)(coarse)]
    model = keras.Model(inputs, DetectionDecoder(anchors, 3, score_threshold=0.05, max_detections=20)(heads))
    model.save(tmp_path / "detector.keras")
    loaded = keras.saving.load_model(tmp_path / "detector.keras")
    rng = np.random.default_rng(0)
    for size in (96, 128):
        x = rng.uniform(size=(2, size, size, 3)).astype("float32")
        expected, got = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
        assert expected["boxes"].shape == (2, 20, 4) and expected["num_detections"].dtype == np.int32
        assert expected["num_detections"].min() > 0
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])
