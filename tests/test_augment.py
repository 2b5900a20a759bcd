"""Augmentation moves boxes with the pixels: draw boxes, augment the batch, find the drawn pixels again."""

import numpy as np
import pytest
import tensorflow as tf

from visionflow.data.augment import (CANVAS, AugmentConfig, augment_batch, box_keeping_windows, colour_jitter,
                                     resample, zoom_out_windows)

SIZE = 64


WHITE, RED = (255.0, 255.0, 255.0), (255.0, 0.0, 0.0)


def drawn(*images_boxes_px, colour=WHITE):
    """A batch of black images with white rectangles; boxes padded to the most per image, with the valid mask."""
    n = max(len(b) for b in images_boxes_px)
    images = np.zeros((len(images_boxes_px), SIZE, SIZE, 3), np.float32)
    boxes = np.zeros((len(images_boxes_px), n, 4), np.float32)
    valid = np.zeros((len(images_boxes_px), n), bool)
    for i, boxes_px in enumerate(images_boxes_px):
        for j, (x1, y1, x2, y2) in enumerate(boxes_px):
            images[i, y1:y2, x1:x2] = colour
            boxes[i, j] = np.array([x1, y1, x2, y2]) / SIZE
            valid[i, j] = True
    return images, boxes, valid


def is_white(image):
    return image.mean(-1) > 160  # above the gray canvas


def is_red(image):
    """Red, not gray, by half the red-minus-blue range in view.

    Colour jitter can lift the gray canvas above any fixed brightness threshold, but
    keeps it gray; and cutting halfway between box and background puts a bilinear edge
    where it truly is, however much a crop magnified it.
    """
    redness = image[..., 0] - image[..., 2]
    return redness > (redness.max() + redness.min()) / 2


def pixel_box(image, box_norm, drawn_pixels=is_white):
    """The bounding box, in pixels, of the drawn pixels inside a box (with a margin)."""
    x1, y1, x2, y2 = (np.array(box_norm) * SIZE).round().astype(int)
    m = 3
    region = drawn_pixels(image[max(y1 - m, 0):y2 + m, max(x1 - m, 0):x2 + m])
    ys, xs = np.nonzero(region)
    return np.array([xs.min() + max(x1 - m, 0), ys.min() + max(y1 - m, 0),
                     xs.max() + 1 + max(x1 - m, 0), ys.max() + 1 + max(y1 - m, 0)])


def assert_boxes_bound_pixels(images, boxes, valid, tol=1.0, drawn_pixels=is_white):
    for image, image_boxes, image_valid in zip(images, boxes, valid):
        for box in image_boxes[image_valid]:
            np.testing.assert_allclose(pixel_box(image, box, drawn_pixels), np.array(box) * SIZE, atol=tol)


WHOLE = [0.0, 0.0, 1.0, 1.0]


def test_flip_by_hand_only_where_asked():
    images, boxes, valid = drawn([(4, 10, 20, 30)], [(4, 10, 20, 30)])
    out, b = resample(tf.constant(images), tf.constant(boxes), tf.constant([WHOLE, WHOLE]), tf.constant([True, False]))
    np.testing.assert_allclose(b.numpy()[:, 0] * SIZE, [[44, 10, 60, 30], [4, 10, 20, 30]], atol=1e-5)
    np.testing.assert_allclose(out.numpy()[0], images[0, :, ::-1], atol=1e-3)
    np.testing.assert_allclose(out.numpy()[1], images[1], atol=1e-3)
    assert_boxes_bound_pixels(out.numpy(), b.numpy(), valid, tol=0)


def test_identity_window_changes_nothing():
    images, boxes, valid = drawn([(3, 7, 41, 22)])
    images = images + np.random.default_rng(0).uniform(0, 100, images.shape).astype(np.float32)
    out, b = resample(tf.constant(images), tf.constant(boxes), tf.constant([WHOLE]), tf.constant([False]))
    np.testing.assert_allclose(out.numpy(), images, atol=1e-3)
    np.testing.assert_allclose(b.numpy(), boxes, atol=1e-6)


def test_resample_is_crop_and_resize_of_the_same_window():
    """The gather-based bilinear resampling agrees with ``tf.image.crop_and_resize``, canvas and mirroring included."""
    rng = np.random.default_rng(5)
    images = rng.uniform(0, 255, (6, 20, 24, 3)).astype(np.float32)
    centre, half = rng.uniform(0.2, 0.8, (6, 2)), rng.uniform(0.2, 0.8, (6, 2))
    windows = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)  # some reach outside
    flip = np.array([False, True] * 3)
    out, _ = resample(tf.constant(images), tf.zeros([6, 0, 4]), tf.constant(windows), tf.constant(flip))
    h, w = 20, 24
    # crop_and_resize's output pixel i reads input position x1 (w - 1) + i (x2 - x1) (for an output as wide as the input)
    ww, wh = windows[:, 2] - windows[:, 0], windows[:, 3] - windows[:, 1]
    x1, y1 = (windows[:, 0] * w + 0.5 * ww - 0.5) / (w - 1), (windows[:, 1] * h + 0.5 * wh - 0.5) / (h - 1)
    x2, y2 = x1 + ww, y1 + wh
    x1, x2 = np.where(flip, x2, x1), np.where(flip, x1, x2)
    expected = tf.image.crop_and_resize(images, np.stack([y1, x1, y2, x2], 1), tf.range(6), (h, w),
                                        extrapolation_value=CANVAS)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=0.05)


def test_crop_windows_keep_every_valid_box_whole():
    _, boxes, valid = drawn([(10, 12, 20, 30), (40, 5, 60, 25)], [(30, 30, 34, 34)], [])
    boxes[1, 1] = [0.0, 0.0, 1.0, 1.0]  # padding: must not widen the second image's window
    windows = box_keeping_windows(tf.constant(np.repeat(boxes, 50, 0)), tf.constant(np.repeat(valid, 50, 0)),
                                  seed=1).numpy().reshape(3, 50, 4)
    assert np.all(windows[0, :, 0] <= 10 / SIZE) and np.all(windows[0, :, 1] <= 5 / SIZE)
    assert np.all(windows[0, :, 2] >= 60 / SIZE) and np.all(windows[0, :, 3] >= 30 / SIZE)
    assert np.all(windows[1, :, :2] <= 30 / SIZE) and np.all(windows[1, :, 2:] >= 34 / SIZE)
    assert windows[1, :, 0].max() > 0.25  # the padding box did not count
    assert np.all(windows[2, :, :2] <= 0.5) and np.all(windows[2, :, 2:] >= 0.5)  # no boxes: still a window
    assert np.all(windows >= 0) and np.all(windows <= 1)


def test_crop_and_zoom_move_boxes_with_pixels():
    images, boxes, valid = drawn([(10, 12, 26, 30), (38, 36, 60, 58)], [(5, 5, 21, 40)])
    windows = tf.constant([[0.1, 0.05, 0.95, 0.97], [0.0, 0.0, 0.5, 0.75]])
    out, b = resample(tf.constant(images), tf.constant(boxes), windows, tf.constant([False, True]))
    assert_boxes_bound_pixels(out.numpy(), b.numpy(), valid)
    tf.random.set_seed(3)
    windows = zoom_out_windows(2, 1.4)
    assert np.all(windows.numpy()[:, :2] <= 0) and np.all(windows.numpy()[:, 2:] >= 1)
    out, b = resample(tf.constant(images), tf.constant(boxes), windows, tf.constant([False, False]))
    assert_boxes_bound_pixels(out.numpy(), b.numpy(), valid)
    assert np.allclose(out.numpy()[:, -1, -1], CANVAS) or np.allclose(out.numpy()[:, 0, 0], CANVAS)  # gray canvas
    sizes = b.numpy()[..., 2:] - b.numpy()[..., :2]
    assert np.all(sizes[valid] < (boxes[..., 2:] - boxes[..., :2])[valid])  # they shrank


def sequential_colour_jitter(image, brightness, contrast, saturation):
    """The three steps one after another, as the docstring states them."""
    image = image + brightness
    mean = image.mean(axis=(0, 1))
    image = mean + (image - mean) * contrast
    gray = image.mean(axis=-1, keepdims=True)
    return np.clip(gray + (image - gray) * saturation, 0, 255)


def test_colour_jitter_is_brightness_then_contrast_then_saturation():
    images = np.random.default_rng(1).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    tf.random.set_seed(11)
    out = colour_jitter(tf.constant(images)).numpy()
    tf.random.set_seed(11)  # the same draws, in the same order
    draws = [tf.random.uniform([4, 1, 1], lo, hi).numpy().ravel()
             for lo, hi in ((-25.0, 25.0), (0.75, 1.25), (0.75, 1.25))]
    for i in range(4):
        np.testing.assert_allclose(out[i], sequential_colour_jitter(images[i], *(d[i] for d in draws)), atol=1e-3)


def test_colour_jitter_draws_per_image_and_stays_in_range():
    tf.random.set_seed(0)
    images = np.full((8, SIZE, SIZE, 3), 120.0, np.float32)
    images[:, :, :32] = [200.0, 40.0, 90.0]
    out = colour_jitter(tf.constant(images)).numpy()
    assert out.min() >= 0 and out.max() <= 255
    assert len({round(float(o[0, 0, 0]), 3) for o in out}) == 8  # each image its own colours


@pytest.mark.parametrize("seed", range(15))
def test_full_augmentation_keeps_boxes_on_their_pixels(seed):
    tf.random.set_seed(seed)
    images, boxes, valid = drawn([(8, 6, 24, 22), (34, 30, 58, 50)], [(20, 20, 44, 40)], [(2, 40, 14, 62)],
                                 [(30, 2, 62, 30), (3, 3, 9, 9)])
    out, b = augment_batch(tf.constant(images), tf.constant(boxes), tf.constant(valid), AugmentConfig(colour=False))
    assert out.shape == images.shape
    assert_boxes_bound_pixels(out.numpy(), b.numpy(), valid)
    assert np.all(b.numpy()[~valid] == 0)  # padding stays padding


def test_full_augmentation_with_colour_keeps_a_bright_box_findable():
    tf.random.set_seed(7)
    images, boxes, valid = drawn(*[[(8, 6, 30, 28)]] * 16, colour=RED)
    out, b = augment_batch(tf.constant(images), tf.constant(boxes), tf.constant(valid), AugmentConfig())
    assert_boxes_bound_pixels(out.numpy(), b.numpy(), valid, tol=1.0, drawn_pixels=is_red)


def test_the_training_pipeline_augments_anew_each_epoch_and_keeps_boxes_on_their_pixels(tmp_path):
    """Through ``localizer_dataset`` (cache, shuffle, batch, the XLA-compiled augmentation), from real shards."""
    import io

    from PIL import Image

    from visionflow.data.pipeline import localizer_dataset
    from visionflow.data.tfrecords import _example

    rects = [(8, 6, 24, 22), (20, 20, 44, 40), (2, 40, 14, 62), (30, 2, 62, 30), (10, 10, 50, 50), (40, 44, 60, 60)]
    with tf.io.TFRecordWriter(str(tmp_path / "train-00000-of-00001.tfrecord")) as writer:
        for i, rect in enumerate(rects):
            image, boxes, _ = drawn([rect], colour=RED)
            buf = io.BytesIO()
            Image.fromarray(image[0].astype(np.uint8)).save(buf, format="JPEG", quality=98, subsampling=0)
            writer.write(_example(tf, buf.getvalue(), i + 1, boxes[0], [i % 2]).SerializeToString())
    tf.random.set_seed(0)
    ds = localizer_dataset(tmp_path, "train", 4, lambda x: x, training=True, augment_config=AugmentConfig())
    epochs = []
    for _ in range(2):
        seen = {}
        for x, y in ds:
            cx, cy, sw, sh = np.moveaxis(y["box"].numpy(), -1, 0)
            xyxy = np.stack([cx - sw ** 2 / 2, cy - sh ** 2 / 2, cx + sw ** 2 / 2, cy + sh ** 2 / 2], -1)
            assert_boxes_bound_pixels(x.numpy(), xyxy[:, None], np.ones((len(xyxy), 1), bool), tol=1.5,
                                      drawn_pixels=is_red)
            for box, image in zip(xyxy, x.numpy()):
                seen[round(float(image.sum()))] = box
        epochs.append(np.array(sorted(seen.values(), key=tuple)))
        assert len(seen) == len(rects)
    assert not np.allclose(epochs[0], epochs[1])  # new draws each epoch
