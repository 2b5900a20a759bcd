"""Augmentation moves boxes with the pixels: draw boxes, augment the batch, find the drawn pixels again."""

import functools
import json
import subprocess
import sys

import numpy as np
import pydantic
import pytest
import tensorflow as tf

from visionflow.data.augment import (CANVAS, AugmentConfig, apply_windows, augment_batch, box_keeping_windows,
                                     chance_and_strength, colour_draws, colour_jitter, corrupt, crop_windows,
                                     draw_windows, resample, split_seed, sub_batch_size, where_drawn, zoom_out_windows)
from visionflow.data.corruptions import gaussian_blur, gaussian_noise, jpeg

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


NO_COLOUR = dict(brightness=0.0, contrast=(1.0, 1.0), saturation=(1.0, 1.0))
NO_CORRUPTION = dict(blur=0.0, noise=0.0, jpeg=0.0)  # noise and JPEG blur the edges these tests look for
SSD_CROPS = dict(crop_scale=(0.3, 1.0), crop_aspect=(0.5, 2.0))  # bounded random crops, as for a detector
SQUARE = tf.constant(1.0)  # an image's aspect ratio, W / H


def seed(*values):
    return tf.constant(values or (1, 2), tf.int32)


@functools.lru_cache(maxsize=None)
def compiled(config):
    """``augment_batch`` under XLA, as the pipeline runs it; one compilation per config."""
    return tf.function(lambda images, boxes, valid, s: augment_batch(images, boxes, valid, config, s),
                       jit_compile=True)


def augmented(config, images, boxes, valid, s):
    return [t.numpy() for t in compiled(config)(tf.constant(images), tf.constant(boxes), tf.constant(valid), s)]


MANY_BOXES = ([(8, 6, 24, 22), (34, 30, 58, 50)], [(20, 20, 44, 40)], [(2, 40, 14, 62)],
              [(30, 2, 62, 30), (3, 3, 9, 9)])


def window_areas_aspects(windows, image_aspect=1.0):
    w, h = windows[..., 2] - windows[..., 0], windows[..., 3] - windows[..., 1]
    return w * h, w / h * image_aspect


def test_the_defaults_are_the_augmentation_the_localizer_trained_with():
    config = AugmentConfig()
    assert (config.flip, config.crop, config.zoom_out, config.zoom_out_max) == (0.5, 1 / 3, 1 / 3, 1.3)
    assert config.enabled and config.keep_boxes_whole and config.crop_scale is None and config.crop_aspect is None
    assert (config.brightness, config.contrast, config.saturation) == (25.0, (0.75, 1.25), (0.75, 1.25))
    assert config.jitters_colour and not AugmentConfig(**NO_COLOUR).jitters_colour
    assert (config.blur, config.blur_sigma, config.noise, config.noise_std, config.jpeg, config.jpeg_quality) == (
        0.2, (0.3, 1.5), 0.3, (2.0, 20.0), 0.3, (30, 95))


def test_default_windows_are_a_third_crops_a_third_zoom_outs_a_third_the_image():
    """As before the config: each edge of a crop uniform between the boxes and the image's edge; zoom 1..1.3."""
    n = 3000
    boxes = np.tile(np.array([[[0.25, 0.375, 0.5, 0.625]]], np.float32), (n, 1, 1))
    windows = draw_windows(tf.constant(boxes), tf.ones([n, 1], tf.bool), AugmentConfig(), SQUARE, seed(4, 5)).numpy()
    whole = np.all(windows == [0, 0, 1, 1], axis=1)
    zoom = ~whole & np.all(windows[:, :2] <= 0, axis=1) & np.all(windows[:, 2:] >= 1, axis=1)
    crop = ~whole & ~zoom
    for share in (whole.mean(), zoom.mean(), crop.mean()):
        assert abs(share - 1 / 3) < 0.04
    factor = windows[zoom, 2] - windows[zoom, 0]
    np.testing.assert_allclose(factor, windows[zoom, 3] - windows[zoom, 1], atol=1e-6)
    assert factor.min() >= 1 and factor.max() <= 1.3 and abs(factor.mean() - 1.15) < 0.01
    c = windows[crop]
    assert np.all(c[:, :2] <= [0.25, 0.375]) and np.all(c[:, 2:] >= [0.5, 0.625])
    edge_draws = np.stack([c[:, 0] / 0.25, c[:, 1] / 0.375, (c[:, 2] - 0.5) / 0.5, (c[:, 3] - 0.625) / 0.375], 1)
    np.testing.assert_allclose(edge_draws.mean(0), 0.5, atol=0.04)  # uniform between box and image edge
    np.testing.assert_allclose(np.percentile(edge_draws, 10, axis=0), 0.1, atol=0.04)


@pytest.mark.parametrize("bad, key", [
    ({"crop_scale": [0.9, 0.3]}, "crop_scale"),
    ({"contrast": [1.2, 0.8]}, "contrast"),
    ({"crop": 0.7, "zoom_out": 0.5}, "crop + zoom_out"),
    ({"flip": 1.5}, "flip"),
    ({"crop_scale": [0.0, 1.0]}, "crop_scale"),
    ({"crop_aspect": [0.5, 50.0]}, "crop_aspect"),
    ({"zoom_out_max": 0.8}, "zoom_out_max"),
    ({"min_visible": -0.1}, "min_visible"),
    ({"colour": False}, "colour"),
    ({"blur_sigma": [1.5, 0.3]}, "blur_sigma"),
    ({"noise_std": [20.0, 2.0]}, "noise_std"),
    ({"jpeg_quality": [95, 30]}, "jpeg_quality"),
    ({"jpeg_quality": [0, 50]}, "jpeg_quality"),
    ({"blur": 1.5}, "blur"),
    ({"noise": -0.1}, "noise"),
    ({"jpeg": 1.5}, "jpeg"),
])
def test_config_refuses_bad_values_and_names_the_key(bad, key):
    with pytest.raises(pydantic.ValidationError) as err:
        AugmentConfig.model_validate_json(json.dumps(bad), strict=True)
    assert key in str(err.value)


def test_config_is_frozen_and_its_module_does_not_import_tensorflow():
    with pytest.raises(pydantic.ValidationError):
        AugmentConfig().flip = 0.0
    code = "import sys, visionflow.data.augment_config; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


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
                                  seed(1, 0)).numpy().reshape(3, 50, 4)
    assert np.all(windows[0, :, 0] <= 10 / SIZE) and np.all(windows[0, :, 1] <= 5 / SIZE)
    assert np.all(windows[0, :, 2] >= 60 / SIZE) and np.all(windows[0, :, 3] >= 30 / SIZE)
    assert np.all(windows[1, :, :2] <= 30 / SIZE) and np.all(windows[1, :, 2:] >= 34 / SIZE)
    assert windows[1, :, 0].max() > 0.25  # the padding box did not count
    assert np.all(windows[2, :, :2] <= 0.5) and np.all(windows[2, :, 2:] >= 0.5)  # no boxes: still a window
    assert np.all(windows >= 0) and np.all(windows <= 1)


@pytest.mark.parametrize("image_aspect", [1.0, 1.5])
def test_random_crops_stay_within_their_scale_and_aspect_bounds(image_aspect):
    config = AugmentConfig(keep_boxes_whole=False, **SSD_CROPS)
    boxes, valid = tf.constant([[[0.4, 0.4, 0.6, 0.6]]] * 200), tf.ones([200, 1], tf.bool)  # free to cut them
    windows = np.concatenate([crop_windows(boxes, valid, config, tf.constant(image_aspect), seed(s, 7)).numpy()
                              for s in range(20)])
    area, aspect = window_areas_aspects(windows, image_aspect)
    assert np.all(windows >= -1e-6) and np.all(windows <= 1 + 1e-6)
    assert area.min() >= 0.3 - 1e-5 and area.max() <= 1 + 1e-5
    assert aspect.min() >= 0.5 - 1e-4 and aspect.max() <= 2 + 1e-4
    assert area.min() < 0.31 and area.max() > 0.95 and aspect.min() < 0.52 and aspect.max() > 1.9  # the whole range
    size = windows[:, 2:] - windows[:, :2]
    room = size < 0.9
    np.testing.assert_allclose((windows[:, :2] / (1 - size))[room].mean(), 0.5, atol=0.03)  # placed anywhere


def test_box_keeping_crops_meet_the_bounds_where_the_boxes_allow_and_keep_the_boxes_where_not():
    _, boxes, valid = drawn([(10, 12, 20, 30), (40, 5, 50, 25)], [(30, 30, 34, 34)], [], [(3, 3, 61, 61)],
                            [(2, 28, 60, 36)])
    n = 60
    boxes, valid = tf.constant(np.repeat(boxes, n, 0)), tf.constant(np.repeat(valid, n, 0))
    for config, fits in ((AugmentConfig(**SSD_CROPS), [0, 1, 2, 4]),
                         (AugmentConfig(crop_scale=(0.3, 0.5), crop_aspect=(0.5, 2.0)), [0, 1, 2]),
                         (AugmentConfig(crop_aspect=(0.5, 0.8)), [0, 1, 2])):
        windows = crop_windows(boxes, valid, config, SQUARE, seed(3, 3)).numpy().reshape(5, n, 4)
        area, aspect = window_areas_aspects(windows)
        lo, hi = np.array(config.crop_scale or (0, 1)), np.array(config.crop_aspect)
        assert np.all(area[fits] >= lo[0] - 1e-5) and np.all(area[fits] <= lo[1] + 1e-5), config
        assert np.all(aspect[fits] >= hi[0] - 1e-4) and np.all(aspect[fits] <= hi[1] + 1e-4), config
        for image, (image_boxes, image_valid) in enumerate(zip(boxes.numpy()[::n], valid.numpy()[::n])):
            inside = image_boxes[image_valid] if image_valid.any() else np.full((1, 4), 0.5)  # no boxes: the centre
            assert np.all(windows[image, :, :2] <= inside[:, :2].min(0)), (config, image)
            assert np.all(windows[image, :, 2:] >= inside[:, 2:].max(0)), (config, image)
        assert np.all(windows >= 0) and np.all(windows <= 1)
        assert all(len(np.unique(w.round(4), axis=0)) > n / 2 for w in windows)  # random, bounds met or not


def test_a_crop_clips_a_box_half_outside_and_drops_one_mostly_outside_by_hand():
    """Window x, y in 16..48 px: the first box keeps its right half, the second 0.2 x 0.2 = 4% of itself."""
    images, boxes, valid = drawn([(0, 16, 32, 48), (0, 0, 20, 20), (50, 50, 64, 64), (36, 20, 44, 28)])
    window = tf.constant([[0.25, 0.25, 0.75, 0.75]])
    out, b, v = (t.numpy() for t in apply_windows(tf.constant(images), tf.constant(boxes), tf.constant(valid), window,
                                                  tf.constant([False]), min_visible=0.25))
    assert v.tolist() == [[True, False, False, True]]
    np.testing.assert_allclose(b[0, 0], [0.0, 0.0, 0.5, 1.0], atol=1e-6)  # its visible part, in the window
    np.testing.assert_allclose(b[0, 3], [0.625, 0.125, 0.875, 0.375], atol=1e-6)  # whole
    assert_boxes_bound_pixels(out, b, v)
    _, _, v = apply_windows(tf.constant(images), tf.constant(boxes), tf.constant(valid), window, tf.constant([False]),
                            min_visible=0.6)
    assert v.numpy().tolist() == [[False, False, False, True]]  # half of the first box is not enough
    _, _, v = apply_windows(tf.constant(images), tf.constant(boxes), tf.constant(valid), window, tf.constant([False]),
                            min_visible=0.0)
    assert v.numpy().tolist() == [[True, True, False, True]]  # but a box wholly outside goes anyway


def test_crop_and_zoom_move_boxes_with_pixels():
    images, boxes, valid = drawn([(10, 12, 26, 30), (38, 36, 60, 58)], [(5, 5, 21, 40)])
    windows = tf.constant([[0.1, 0.05, 0.95, 0.97], [0.0, 0.0, 0.5, 0.75]])
    out, b = resample(tf.constant(images), tf.constant(boxes), windows, tf.constant([False, True]))
    assert_boxes_bound_pixels(out.numpy(), b.numpy(), valid)
    windows = zoom_out_windows(2, 1.4, seed(3, 0))
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
    draws = colour_draws(4, AugmentConfig(), seed(11, 0))
    out = colour_jitter(tf.constant(images), *draws).numpy()
    draws = [d.numpy().ravel() for d in draws]
    for i in range(4):
        np.testing.assert_allclose(out[i], sequential_colour_jitter(images[i], *(d[i] for d in draws)), atol=1e-3)


@pytest.mark.parametrize("config", [AugmentConfig(),
                                    AugmentConfig(brightness=10, contrast=(0.5, 0.6), saturation=(1.0, 2.0))])
def test_colour_draws_fill_their_ranges(config):
    brightness, contrast, saturation = (d.numpy().ravel() for d in colour_draws(2000, config, seed(2, 9)))
    for draws, (lo, hi) in ((brightness, (-config.brightness, config.brightness)), (contrast, config.contrast),
                            (saturation, config.saturation)):
        assert draws.min() >= lo and draws.max() <= hi
        assert draws.min() < lo + 0.01 * (hi - lo) and draws.max() > hi - 0.01 * (hi - lo)
    assert abs(np.corrcoef(brightness, contrast)[0, 1]) < 0.1  # independent


def test_colour_jitter_draws_per_image_and_stays_in_range():
    images = np.full((8, SIZE, SIZE, 3), 120.0, np.float32)
    images[:, :, :32] = [200.0, 40.0, 90.0]
    out = colour_jitter(tf.constant(images), *colour_draws(8, AugmentConfig(), seed(0, 0))).numpy()
    assert out.min() >= 0 and out.max() <= 255
    assert len({round(float(o[0, 0, 0]), 3) for o in out}) == 8  # each image its own colours


@pytest.mark.parametrize("crops", [{}, SSD_CROPS, dict(keep_boxes_whole=False, **SSD_CROPS)],
                         ids=["box-keeping", "box-keeping-bounded", "random"])
@pytest.mark.parametrize("s", range(15))
def test_full_augmentation_keeps_boxes_on_their_pixels(s, crops):
    images, boxes, valid = drawn(*MANY_BOXES)
    out, b, v = augmented(AugmentConfig(**NO_COLOUR, **NO_CORRUPTION, **crops), images, boxes, valid, seed(s, 0))
    assert out.shape == images.shape
    assert_boxes_bound_pixels(out, b, v)
    assert np.all(b[~v] == 0)  # padding stays padding, dropped boxes join it
    assert np.all(valid[v])  # no box appears


def test_box_keeping_crops_keep_every_box_whole_and_random_crops_cut_some():
    """No drawn box touches the image's edge, so a box that touches it after augmentation was cut."""
    images, boxes, valid = drawn(*MANY_BOXES * 8)
    cut = {}
    for crops in ({}, SSD_CROPS, dict(keep_boxes_whole=False, **SSD_CROPS)):
        runs = [augmented(AugmentConfig(**NO_COLOUR, **crops, crop=1.0, zoom_out=0.0), images, boxes, valid,
                          seed(s, 1)) for s in range(3)]
        touches = [np.any((b[v][:, :2] <= 1e-6) | (b[v][:, 2:] >= 1 - 1e-6), axis=1) for _, b, v in runs]
        cut[crops.get("keep_boxes_whole", True)] = np.concatenate(touches).mean()
        if crops.get("keep_boxes_whole", True):
            assert all(np.array_equal(v, valid) for _, _, v in runs)
    assert cut[True] == 0 and cut[False] > 0.1


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    images, boxes, valid = drawn(*MANY_BOXES * 2)
    config = AugmentConfig(keep_boxes_whole=False, **SSD_CROPS)
    first, again, other = (augmented(config, images, boxes, valid, s) for s in (seed(5, 6), seed(5, 6), seed(5, 7)))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], other[0], atol=1) and not np.allclose(first[1], other[1])
    int64 = augmented(config, images, boxes, valid, tf.constant([5, 6], tf.int64))
    np.testing.assert_array_equal(int64[0], first[0])


@pytest.mark.parametrize("s", [(5, 6), (-3, 2**31 - 1)])
def test_eager_and_xla_draw_the_same(s):
    """Stateless draws that do not depend on whether XLA compiled them, from any seed."""
    images, boxes, valid = drawn(*MANY_BOXES * 2)
    config = AugmentConfig(keep_boxes_whole=False, **SSD_CROPS)
    eager = augment_batch(tf.constant(images), tf.constant(boxes), tf.constant(valid), config, seed(*s))
    xla = augmented(config, images, boxes, valid, seed(*s))
    np.testing.assert_allclose(eager[0].numpy(), xla[0], atol=0.05)  # float rounding, not other draws
    np.testing.assert_allclose(eager[1].numpy(), xla[1], atol=1e-5)
    np.testing.assert_array_equal(eager[2].numpy(), xla[2])


@pytest.mark.parametrize("config", [AugmentConfig(enabled=False),
                                    AugmentConfig(flip=0, crop=0, zoom_out=0, **NO_COLOUR, **NO_CORRUPTION)],
                         ids=["disabled", "nothing-drawn"])
def test_augmentation_that_draws_nothing_changes_nothing(config):
    images, boxes, valid = drawn(*MANY_BOXES)
    out, b, v = (t.numpy() for t in augment_batch(tf.constant(images.astype(np.uint8)), tf.constant(boxes),
                                                  tf.constant(valid), config, seed()))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(b, boxes)
    np.testing.assert_array_equal(v, valid)


def test_full_augmentation_with_colour_keeps_a_bright_box_findable():
    images, boxes, valid = drawn(*[[(8, 6, 30, 28)]] * 16, colour=RED)
    out, b, v = augmented(AugmentConfig(), images, boxes, valid, seed(7, 0))
    assert np.array_equal(v, valid)
    assert_boxes_bound_pixels(out, b, v, tol=1.0, drawn_pixels=is_red)


ONLY = {"blur": dict(blur=1.0, noise=0.0, jpeg=0.0), "noise": dict(blur=0.0, noise=1.0, jpeg=0.0),
        "jpeg": dict(blur=0.0, noise=0.0, jpeg=1.0)}


@pytest.mark.parametrize("name", list(ONLY))
def test_a_corruption_changes_the_images_after_geometry_and_colour_and_leaves_the_boxes_alone(name):
    images, boxes, valid = drawn(*MANY_BOXES * 2)
    images = images + np.random.default_rng(3).uniform(0, 60, images.shape).astype(np.float32)
    s = seed(8, 1)
    plain = augmented(AugmentConfig(**NO_CORRUPTION), images, boxes, valid, s)
    out = augmented(AugmentConfig(**ONLY[name]), images, boxes, valid, s)
    np.testing.assert_array_equal(out[1], plain[1])
    np.testing.assert_array_equal(out[2], plain[2])
    assert np.mean(np.abs(out[0] - plain[0]) > 0.5) > 0.3  # most pixels moved
    # what changed is the corruption of the very images geometry and colour made, with its own draws
    expected = tf.function(lambda x, c: corrupt(x, AugmentConfig(**ONLY[name]), c), jit_compile=True)(
        tf.constant(plain[0]), split_seed(s, 4)[3]).numpy()
    assert np.abs(out[0] - expected).mean() < 1e-3 and np.abs(out[0] - expected).max() < 3  # a JPEG rounding may flip


@pytest.mark.parametrize("name", list(ONLY))
def test_a_corruption_with_no_chance_changes_nothing_whatever_its_strength(name):
    images, boxes, valid = drawn(*MANY_BOXES)
    strong = dict(blur_sigma=(3.0, 4.0), noise_std=(50.0, 60.0), jpeg_quality=(5, 10))
    off = {**ONLY[name], name: 0.0, **strong}
    plain = augmented(AugmentConfig(**NO_CORRUPTION), images, boxes, valid, seed(2, 2))
    for a, b in zip(augmented(AugmentConfig(**off), images, boxes, valid, seed(2, 2)), plain):
        np.testing.assert_array_equal(a, b)


def test_blur_noise_and_jpeg_come_in_that_order_with_their_own_draws():
    images, _, _ = drawn(*MANY_BOXES * 2)
    images = tf.constant(images + np.random.default_rng(4).uniform(0, 60, images.shape).astype(np.float32))
    config = AugmentConfig(blur=1.0, noise=1.0, jpeg=1.0)
    s = seed(6, 6)
    out = corrupt(images, config, s).numpy()
    blur_seed, noise_seed, pixel_seed, jpeg_seed = split_seed(s, 4)
    n = images.shape[0]
    expected = gaussian_blur(images, chance_and_strength(n, 1.0, config.blur_sigma, blur_seed)[1], config.blur_sigma[1])
    expected = gaussian_noise(expected, chance_and_strength(n, 1.0, config.noise_std, noise_seed)[1], pixel_seed)
    expected = jpeg(expected, chance_and_strength(n, 1.0, config.jpeg_quality, jpeg_seed)[1]).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_corruption_draws_have_their_chance_and_fill_their_range():
    drawn_, strength = (t.numpy() for t in chance_and_strength(20_000, 0.3, (30.0, 95.0), seed(9, 9)))
    assert abs(drawn_.mean() - 0.3) < 0.015
    assert strength.min() >= 30 and strength.max() <= 95 and abs(strength.mean() - 62.5) < 0.5
    assert abs(np.corrcoef(drawn_, strength)[0, 1]) < 0.03  # independent


def test_sub_batch_size_is_the_mean_plus_two_standard_deviations_and_compiles_for_any_batch():
    assert [int(sub_batch_size(32, p)) for p in (0.2, 0.3, 1.0)] == [11, 15, 32]  # 6.4 + 4.5, 9.6 + 5.2, all
    assert int(sub_batch_size(1, 0.3)) == 1

    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None, 2])])
    def sub_batch(x):  # the batch size is known only when XLA compiles
        return x[:sub_batch_size(tf.shape(x)[0], 0.3)]

    assert sub_batch(tf.zeros([32, 2])).shape == (15, 2) and sub_batch(tf.zeros([16, 2])).shape == (9, 2)


def square_and_shift(images, strength, places):
    """A stand-in corruption that treats each image on its own, and depends on its place in the batch."""
    return tf.sqrt(images) * 4 + (strength + 100 * tf.cast(places, tf.float32))[:, None, None, None]


@pytest.mark.parametrize("count", [0, 3, 15, 16, 32], ids=["none", "few", "as-many-as-fit", "more", "all"])
def test_where_drawn_is_tf_where_of_the_corruption_however_many_drew_it(count):
    """Up to 15 of 32 (chance 0.3) run on a sub-batch, more on the whole batch; the images are the same."""
    rng = np.random.default_rng(count)
    images = tf.constant(rng.uniform(0, 255, (32, 8, 8, 3)).astype(np.float32))
    strength = tf.constant(rng.uniform(0, 10, 32).astype(np.float32))
    drawn_ = tf.constant(rng.permutation(32) < count)
    expected = tf.where(drawn_[:, None, None, None], square_and_shift(images, strength, tf.range(32)), images).numpy()
    np.testing.assert_array_equal(where_drawn(square_and_shift, images, drawn_, strength, 0.3).numpy(), expected)
    xla = tf.function(lambda *a: where_drawn(square_and_shift, *a, 0.3), jit_compile=True,
                      input_signature=[tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None], tf.bool),
                                       tf.TensorSpec([None])])
    np.testing.assert_allclose(xla(images, drawn_, strength).numpy(), expected, rtol=1e-6)
