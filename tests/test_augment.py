"""Augmentation moves boxes with the pixels: draw a box, augment, find the drawn pixels again."""

import numpy as np
import pytest
import tensorflow as tf

from visionflow.data.augment import (AugmentConfig, augment, crop_to_window, horizontal_flip,
                                     random_box_keeping_window, zoom_out)

SIZE = 64


def drawn(boxes_px):
    image = np.zeros((SIZE, SIZE, 3), np.float32)
    for x1, y1, x2, y2 in boxes_px:
        image[y1:y2, x1:x2] = 255.0
    return image, np.array(boxes_px, np.float32) / SIZE


def pixel_box(image, box_norm):
    """The bounding box, in pixels, of the bright pixels inside a box (with a margin)."""
    x1, y1, x2, y2 = (np.array(box_norm) * SIZE).round().astype(int)
    m = 3
    region = image[max(y1 - m, 0):y2 + m, max(x1 - m, 0):x2 + m].mean(-1) > 127
    ys, xs = np.nonzero(region)
    return np.array([xs.min() + max(x1 - m, 0), ys.min() + max(y1 - m, 0),
                     xs.max() + 1 + max(x1 - m, 0), ys.max() + 1 + max(y1 - m, 0)])


def assert_box_bounds_pixels(image, boxes, tol=1.6):
    for box in boxes:
        np.testing.assert_allclose(pixel_box(image, box), np.array(box) * SIZE, atol=tol)


def test_flip_by_hand():
    image, boxes = drawn([(4, 10, 20, 30)])
    out, b = horizontal_flip(tf.constant(image), tf.constant(boxes))
    np.testing.assert_allclose(b.numpy() * SIZE, [[44, 10, 60, 30]])
    assert_box_bounds_pixels(out.numpy(), b.numpy())


def test_crop_window_keeps_every_box_whole():
    _, boxes = drawn([(10, 12, 20, 30), (40, 5, 60, 25)])
    for seed in range(50):
        w = random_box_keeping_window(tf.constant(boxes), seed=seed).numpy()
        assert w[0] <= boxes[:, 0].min() and w[1] <= boxes[:, 1].min()
        assert w[2] >= boxes[:, 2].max() and w[3] >= boxes[:, 3].max()


def test_crop_and_zoom_move_boxes_with_pixels():
    image, boxes = drawn([(10, 12, 26, 30), (38, 36, 60, 58)])
    window = tf.constant([0.1, 0.05, 0.95, 0.97])
    out, b = crop_to_window(tf.constant(image), tf.constant(boxes), window)
    assert_box_bounds_pixels(out.numpy(), b.numpy())
    tf.random.set_seed(3)
    out, b = zoom_out(tf.constant(image), tf.constant(boxes), 1.4)
    assert_box_bounds_pixels(out.numpy(), b.numpy())
    assert np.all((b.numpy()[:, 2:] - b.numpy()[:, :2]) < (boxes[:, 2:] - boxes[:, :2]))  # it shrank


@pytest.mark.parametrize("seed", range(25))
def test_full_augmentation_keeps_boxes_on_their_pixels(seed):
    tf.random.set_seed(seed)
    image, boxes = drawn([(8, 6, 24, 22), (34, 30, 58, 50)])
    out, b = augment(tf.constant(image), tf.constant(boxes), AugmentConfig())
    assert out.shape == (SIZE, SIZE, 3)
    assert_box_bounds_pixels(out.numpy(), b.numpy())
