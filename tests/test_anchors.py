import numpy as np
import pytest

from visionflow.anchors import kmeans_anchors, wh_iou


def test_wh_iou_by_hand():
    iou = wh_iou(np.array([[2.0, 2.0], [4.0, 1.0]]), np.array([[2.0, 2.0], [1.0, 4.0]]))
    np.testing.assert_allclose(iou, [[1.0, 2 / 6], [2 / 6, 1 / 7]])


def test_recovers_three_clear_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.05, 0.05], [0.2, 0.1], [0.5, 0.6]])
    wh = np.concatenate([c * rng.uniform(0.95, 1.05, (200, 2)) for c in centres])
    anchors = kmeans_anchors(wh, 3, seed=1)
    np.testing.assert_allclose(anchors.sizes, centres, rtol=0.03)
    assert anchors.mean_best_iou > 0.9


def test_mean_best_iou_by_hand():
    wh = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [2.0, 1.0]])
    anchors = kmeans_anchors(wh, 2, seed=0)
    best = wh_iou(wh, anchors.sizes).max(1)
    assert anchors.mean_best_iou == pytest.approx(best.mean())


def test_seeded_and_validated():
    wh = np.random.default_rng(3).uniform(0.01, 0.5, (300, 2))
    np.testing.assert_array_equal(kmeans_anchors(wh, 9, seed=4).sizes, kmeans_anchors(wh, 9, seed=4).sizes)
    with pytest.raises(ValueError, match="at least k=9"):
        kmeans_anchors(wh[:5], 9)
    with pytest.raises(ValueError, match="> 0"):
        kmeans_anchors(np.array([[0.0, 1.0], [1, 1]]), 1)
