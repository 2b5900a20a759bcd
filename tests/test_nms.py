import numpy as np
import pytest

from visionflow.nms import batched_non_max_suppression, non_max_suppression


def random_boxes(rng, n):
    xy = rng.uniform(0, 100, size=(n, 2))
    wh = rng.uniform(2, 40, size=(n, 2))
    return np.concatenate([xy, xy + wh], 1)


@pytest.mark.parametrize("seed", range(20))
def test_same_as_tensorflow_on_random_inputs(seed):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    boxes = random_boxes(rng, n).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    if seed % 2:
        scores = np.round(scores, 1)  # ties
    iou_t, score_t, max_out = [(0.5, 0.0, 1000), (0.6, 0.3, 1000), (0.3, 0.5, 7)][seed % 3]
    expected = tf.image.non_max_suppression(boxes[:, [1, 0, 3, 2]], scores, max_out, iou_t, score_t).numpy()
    ours = non_max_suppression(boxes, scores, iou_t, score_t, max_out)
    np.testing.assert_array_equal(ours, expected)


def test_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.5]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # box 3 is best and overlaps 0 and 1 (IoU > 0.6); box 2 stands alone
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.6), [3, 2])
    np.testing.assert_array_equal(non_max_suppression(boxes, scores, 0.6, score_threshold=0.75), [3])


def test_per_class_boxes_do_not_suppress_other_classes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    scores = np.array([0.9, 0.8, 0.7])
    classes = np.array([0, 1, 0])
    np.testing.assert_array_equal(batched_non_max_suppression(boxes, scores, classes, 0.6), [0, 1])


def test_empty_input():
    assert len(non_max_suppression(np.zeros((0, 4)), np.zeros(0), 0.5)) == 0
