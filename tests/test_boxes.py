import numpy as np
import pytest

from visionflow.boxes import (convert_boxes, denormalize_boxes, elementwise_iou_xyxy, normalize_boxes,
                              pairwise_iou_xyxy)


def test_conversions_by_hand():
    xyxy = np.array([[10, 20, 50, 40]])
    np.testing.assert_allclose(convert_boxes(xyxy, "xyxy", "xywh"), [[10, 20, 40, 20]])
    np.testing.assert_allclose(convert_boxes(xyxy, "xyxy", "cxcywh"), [[30, 30, 40, 20]])
    np.testing.assert_allclose(convert_boxes([[30, 30, 40, 20]], "cxcywh", "xywh"), [[10, 20, 40, 20]])


@pytest.mark.parametrize("src", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("dst", ["xyxy", "xywh", "cxcywh"])
def test_round_trip(src, dst):
    boxes = np.random.default_rng(0).uniform(1, 100, size=(7, 3, 4))
    back = convert_boxes(convert_boxes(boxes, src, dst), dst, src)
    np.testing.assert_allclose(back, boxes, atol=1e-9)


def test_normalisation():
    boxes = np.array([[32, 16, 64, 48]])
    norm = normalize_boxes(boxes, width=128, height=64)
    np.testing.assert_allclose(norm, [[0.25, 0.25, 0.5, 0.75]])
    np.testing.assert_allclose(denormalize_boxes(norm, 128, 64), boxes)


def test_bad_format_and_shape():
    with pytest.raises(ValueError, match="unknown box format 'yxyx'"):
        convert_boxes([[0, 0, 1, 1]], "yxyx", "xyxy")
    with pytest.raises(ValueError, match="last axis of 4"):
        convert_boxes([[0, 0, 1]], "xyxy", "xywh")


def test_pairwise_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 2, 2]])
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30], [3, 3, 3, 3]])
    iou = pairwise_iou_xyxy(a, b)
    assert iou.shape == (2, 4)
    np.testing.assert_allclose(iou[0], [25 / 175, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 4 / 100, 0.0, 0.0])
    # zero-area against zero-area: defined as 0, not NaN
    assert pairwise_iou_xyxy([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0


def test_elementwise_matches_pairwise_diagonal():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, size=(20, 2))
    a = np.concatenate([xy, xy + rng.uniform(1, 30, size=(20, 2))], 1)
    b = a + rng.normal(0, 5, size=a.shape)
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.5)
    np.testing.assert_allclose(elementwise_iou_xyxy(a, b), np.diag(pairwise_iou_xyxy(a, b)))
