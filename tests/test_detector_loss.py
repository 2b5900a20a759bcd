"""The detector's box decoding, target assignment and loss, down to a tiny model that learns two images (real TF)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from visionflow.anchors import wh_iou
from visionflow.models.detector.assign import assign_targets
from visionflow.models.detector.boxes import ciou, decode_boxes, iou, pairwise_iou
from visionflow.models.detector.decode import DetectionDecoder
from visionflow.models.detector.loss import ScaleLoss

# Nine square anchors, smallest first; three per scale on 8 x 8, 4 x 4 and 2 x 2 grids.
ANCHORS = np.array([[s, s] for s in (0.04, 0.08, 0.12, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)], "float32")
SCALES = [(0, 8), (3, 4), (6, 2)]  # (first anchor, grid size)


def test_decode_boxes_by_hand():
    raw = np.zeros((1, 2, 4, 2, 6), "float32")  # H 2, W 4, anchors 0.1 x 0.2 and 0.2 x 0.4
    raw[0, 1, 2, 1, 2] = np.log(2.0)  # twice the anchor's width
    raw[0, 0, 3, 0, 3] = 100.0  # clipped before exp
    boxes = decode_boxes(raw, [[0.1, 0.2], [0.2, 0.4]]).numpy()
    assert boxes.shape == (1, 2, 4, 2, 4)
    np.testing.assert_allclose(boxes[0, 0, 0, 0], [0.075, 0.15, 0.175, 0.35], atol=1e-6)  # centre (0.125, 0.25)
    np.testing.assert_allclose(boxes[0, 1, 2, 1], [0.425, 0.55, 0.825, 0.95], atol=1e-6)  # centre (0.625, 0.75)
    assert np.isfinite(boxes).all() and boxes[0, 0, 3, 0, 3] - boxes[0, 0, 3, 0, 1] == pytest.approx(0.2 * np.e**4)


def numpy_ciou(a, b):
    """CIoU written out from the paper, in float64."""
    iou_ = np.asarray(iou(a, b), np.float64)
    centre = lambda x: (x[..., :2] + x[..., 2:]) / 2  # noqa: E731
    rho2 = ((centre(a) - centre(b)) ** 2).sum(-1)
    c2 = ((np.maximum(a[..., 2:], b[..., 2:]) - np.minimum(a[..., :2], b[..., :2])) ** 2).sum(-1)
    ratio = lambda x: np.arctan((x[..., 2] - x[..., 0]) / (x[..., 3] - x[..., 1]))  # noqa: E731
    v = 4 / np.pi**2 * (ratio(b) - ratio(a)) ** 2
    return iou_ - rho2 / c2 - v / (1 - iou_ + v) * v


def test_ciou_is_one_on_identical_boxes_negative_on_disjoint_ones_and_follows_the_formula():
    box = np.array([[0.1, 0.2, 0.4, 0.7]], "float32")
    assert float(ciou(box, box)[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(ciou(box, box + 0.5)[0]) < 0
    rng = np.random.default_rng(0)
    corners = rng.uniform(size=(2, 64, 2, 2)).astype("float32")
    a, b = (np.concatenate([c.min(axis=1), c.max(axis=1)], axis=-1) for c in corners)
    np.testing.assert_allclose(ciou(a, b).numpy(), numpy_ciou(a, b), atol=1e-5)
    np.testing.assert_allclose(pairwise_iou(a[:3], b[:5]).numpy(), iou(a[:3, None], b[None, :5]).numpy())


# A 0.11 x 0.11 box fits anchors 0..3 with shape IoU 0.13, 0.53, 0.84 (the best) and 0.30, the rest < 0.25.
BOX = [0.25, 0.5, 0.36, 0.61]  # centre (0.305, 0.555): cell (4, 2) of 8 x 8, (2, 1) of 4 x 4


@pytest.mark.parametrize("match_threshold, assigned", [(0.9, {2}), (0.5, {1, 2}), (0.25, {1, 2, 3})])
def test_a_box_goes_to_its_centre_cell_on_its_best_anchor_and_those_above_the_threshold(match_threshold, assigned):
    np.testing.assert_allclose(wh_iou(np.array([[0.11, 0.11]]), ANCHORS)[0, :4], [0.13, 0.53, 0.84, 0.30], atol=0.01)
    gt = np.array([[BOX + [1], BOX + [-1]], [BOX + [-1], [0, 0, 0, 0, -1]]], "float32")  # padding assigns nothing
    for first, grid in SCALES:
        targets = assign_targets(gt, ANCHORS, first, 3, (grid, grid), match_threshold)
        cell = (int(0.555 * grid), int(0.305 * grid))
        expected = sorted((0, *cell, j - first) for j in assigned if first <= j < first + 3)
        assert np.argwhere(targets["positive"].numpy()).tolist() == [list(e) for e in expected]
        for _, row, col, anchor in expected:
            np.testing.assert_allclose(targets["box"][0, row, col, anchor], BOX, atol=1e-6)
            assert targets["label"][0, row, col, anchor] == 1
        assert targets["box"].shape == (2, grid, grid, 3, 4) and targets["label"].dtype == tf.int32


def test_two_boxes_on_one_cell_and_anchor_the_better_fit_wins_then_the_later_box():
    small, smaller = [0.1, 0.1, 0.21, 0.21], [0.105, 0.105, 0.205, 0.205]  # fits 0.84 and 0.69 on anchor 2, cell (1, 1)
    for gt, label in [([small + [0], smaller + [1]], 0), ([small + [0], small + [1]], 1)]:
        targets = assign_targets(np.array([gt], "float32"), ANCHORS, 0, 3, (8, 8), 0.9)
        assert targets["positive"].numpy().sum() == 1 and targets["label"][0, 1, 1, 2] == label


def loss_on(raw, gt, **kwargs):
    """ScaleLoss of the 4 x 4 scale (anchors 3, 4, 5), 2 classes, per image."""
    return ScaleLoss(ANCHORS.tolist(), 3, 3, 2, **kwargs).call(tf.constant(gt), tf.constant(raw)).numpy()


def test_a_prediction_already_on_a_box_is_not_pushed_down():
    gt = np.array([[[0.1, 0.1, 0.5, 0.5, 0]]], "float32")  # 0.4 x 0.4: anchor 5; anchor 3 fits with IoU 0.25
    raw = np.zeros((1, 4, 4, 3, 7), "float32")
    raw[0, 1, 1, 0, :5] = np.log(0.25), np.log(0.25), np.log(2.0), np.log(2.0), 5.0  # anchor 3 predicts the box
    ignored = loss_on(raw, gt, match_threshold=0.3)
    counted = loss_on(raw, gt, match_threshold=0.3, ignore_threshold=1.0)
    assert counted - ignored == pytest.approx(np.logaddexp(0, 5.0) / (4 * 4 * 3), rel=1e-4)


def test_with_an_iou_objectness_target_a_positive_learns_how_well_its_box_fits():
    gt = np.array([[[0.1, 0.1, 0.5, 0.5, 0]]], "float32")  # the centre cell (1, 1), anchor 5 (0.4 x 0.4)
    raw = np.zeros((1, 4, 4, 3, 7), "float32")
    raw[0, 1, 1, 2, :4] = np.log(0.2 / 0.8), np.log(0.2 / 0.8), np.log(0.5), 0.0  # 0.2 x 0.4 at the centre: IoU 0.5
    only = {"box_weight": 0.0, "class_weight": 0.0, "match_threshold": 0.9}  # one positive: anchor 5
    raw[0, 1, 1, 2, 4] = 3.0  # a confident positive: pushed up towards 1, or down towards its IoU
    one, fit = loss_on(raw, gt, **only)[0], loss_on(raw, gt, objectness_target="iou", **only)[0]
    cell = lambda target: np.logaddexp(0, 3.0) - target * 3.0  # noqa: E731
    assert fit - one == pytest.approx((cell(0.5) - cell(1.0)) / 48, rel=1e-3)


def test_the_batch_mean_is_the_mean_over_positives_and_objectness_over_cells():
    gt = np.array([[[0.1, 0.1, 0.5, 0.5, 0], [0, 0, 0, 0, -1]], [[0.5, 0.1, 0.9, 0.4, 1], [0.1, 0.6, 0.4, 0.9, 0]]],
                  "float32")
    raw = np.random.default_rng(0).normal(size=(2, 4, 4, 3, 7)).astype("float32")
    positives = [assign_targets(gt[i:i + 1], ANCHORS, 3, 3, (4, 4))["positive"].numpy().sum() for i in range(2)]
    for weights, per_positive in [((1.0, 0.0, 0.0), True), ((0.0, 0.0, 1.0), True), ((0.0, 1.0, 0.0), False)]:
        kwargs = dict(zip(["box_weight", "objectness_weight", "class_weight"], weights))
        alone = [loss_on(raw[i:i + 1], gt[i:i + 1], **kwargs)[0] for i in range(2)]
        shares = np.array(positives if per_positive else [1, 1], "float64")
        assert loss_on(raw, gt, **kwargs).mean() == pytest.approx((alone @ shares) / shares.sum(), rel=1e-5)
    assert loss_on(raw, gt, objectness_weight=1.0, box_weight=0, class_weight=0, balance=4.0) == pytest.approx(
        4 * loss_on(raw, gt, box_weight=0, class_weight=0), rel=1e-6)


def test_the_loss_serialises():
    loss = ScaleLoss(ANCHORS.tolist(), 6, 3, 4, balance=0.4, class_weight=0.3, name="p32")
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, ScaleLoss) and again.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="not among"):
        ScaleLoss(ANCHORS.tolist(), 7, 3, 4)


# Two 64 x 64 images of coloured rectangles (red, green, blue: classes 0, 1, 2), learnt on the 1/8 and 1/16 maps.
TINY_ANCHORS = [[0.12, 0.12], [0.2, 0.15], [0.15, 0.3], [0.3, 0.3], [0.45, 0.35], [0.4, 0.5]]
TRUTH = np.array([[[0.1, 0.1, 0.3, 0.4, 0], [0.55, 0.5, 0.95, 0.9, 1]],
                  [[0.3, 0.2, 0.7, 0.55, 2], [0, 0, 0, 0, -1]]], "float32")


def rectangles(size: int):
    images = np.full((2, size, size, 3), 0.5, "float32")
    for image, boxes in zip(images, TRUTH):
        for x1, y1, x2, y2, label in boxes[boxes[:, 4] >= 0]:
            rows, cols = slice(round(y1 * size), round(y2 * size)), slice(round(x1 * size), round(x2 * size))
            image[rows, cols] = np.eye(3)[int(label)]
    return images


def tiny_detector():
    conv = keras.layers.Conv2D
    inputs = keras.Input((None, None, 3))
    x = inputs
    for filters in (16, 32, 48):
        x = conv(filters, 3, strides=2, padding="same", activation="relu")(x)
    x = conv(48, 3, padding="same", activation="relu")(x)
    y = conv(64, 3, padding="same", activation="relu")(conv(64, 3, strides=2, padding="same", activation="relu")(x))
    return keras.Model(inputs, [conv(3 * 8, 1, name="p8")(x), conv(3 * 8, 1, name="p16")(y)])


def test_a_tiny_detector_learns_two_images_under_xla_at_two_sizes_and_the_decoder_finds_the_boxes():
    keras.utils.set_random_seed(0)
    model = tiny_detector()
    losses = [ScaleLoss(TINY_ANCHORS, first, 3, 3, balance=balance, name=name)
              for first, balance, name in [(0, 4.0, "p8"), (3, 1.0, "p16")]]
    model.compile(keras.optimizers.Adam(3e-3), loss=losses, jit_compile=True)
    x = rectangles(64)
    steps = tf.data.Dataset.from_tensors((x, (TRUTH, TRUTH))).repeat()
    history = model.fit(steps, steps_per_epoch=25, epochs=6, verbose=0, shuffle=False).history["loss"]
    assert history[-1] < history[0] / 4, history
    assert np.isfinite(model.train_on_batch(rectangles(96), [TRUTH, TRUTH])).all()  # another grid, the same losses
    found = DetectionDecoder([TINY_ANCHORS[:3], TINY_ANCHORS[3:]], 3, score_threshold=0.5)(model(x))
    for i, boxes in enumerate(TRUTH):
        count = int(found["num_detections"][i])
        for *box, label in boxes[boxes[:, 4] >= 0]:
            same_class = found["classes"][i, :count].numpy() == label
            overlap = iou(found["boxes"][i, :count], np.array(box, "float32")[None]).numpy()
            assert (same_class & (overlap >= 0.5)).any(), (i, box, label, found)
