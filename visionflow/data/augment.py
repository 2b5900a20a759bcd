"""Training augmentation that moves boxes with the pixels, a whole batch at a time.

Images are (B, H, W, 3), uint8 or float in 0..255, before ``preprocess_input``; boxes
are (B, N, 4) normalised xyxy, padded, with ``valid`` (B, N) marking the real ones.
Each image draws its own flip, window and colours, but the work is two passes over
the batch: per image, a dozen small ops cost more than decoding the JPEG, and so does
every extra pass over a batch (see ``benchmarks/input_pipeline.py``).

- Geometry is one separable bilinear resample over the batch (:func:`resample`, made of
  gathers; it matches ``tf.image.crop_and_resize``). Each image's window is the whole
  image, a zoom-in that keeps every box whole, or a zoom-out onto a gray canvas (scale
  jitter); a horizontal flip is the same window read right to left.
- Colour jitter (brightness, contrast, saturation) is affine in RGB, so it is one 3x3
  matrix and offset per image, written channel by channel so that XLA fuses it with
  the resample.
Output images are float32 at their input size, so the batch shape never changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    crop: bool = True  # zoom in on a random window that keeps every box whole
    zoom_out: float = 1.3  # scale jitter: shrink onto a canvas up to this factor (1 = off)
    colour: bool = True


CANVAS = 127.5  # the gray around a zoomed-out image (0 after most backbones' ``preprocess_input``)
IDENTITY = (0.0, 0.0, 1.0, 1.0)


def flip_boxes(boxes, flip):
    """Mirror the boxes of the images where ``flip`` (B,) is true: x -> 1 - x, corners swap."""
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.where(flip[:, None, None], tf.stack([1 - x2, y1, 1 - x1, y2], axis=-1), boxes)


def _sample_positions(start, extent, size, mirror=None):
    """Input pixel-centre positions read by each output pixel of a window; ``(B,)`` windows -> ``(B, size)``.

    Output pixel ``i``'s centre, ``(i + .5) / size`` of the window, sits at pixel-centre
    position ``(start + (i + .5) / size * extent) * size - .5`` of the input; mirrored,
    output ``i`` reads what output ``size - 1 - i`` would.
    """
    size = tf.cast(size, tf.float32)
    i = tf.range(size)[None, :]
    if mirror is not None:
        i = tf.where(mirror[:, None], size - 1 - i, i)
    return (start[:, None] + (i + 0.5) / size * extent[:, None]) * size - 0.5


def _lerp_along(images, positions, axis: int):
    """Linear interpolation of ``images`` at ``positions`` (B, n) along ``axis`` (1 rows, 2 columns)."""
    size = tf.shape(images)[axis]
    lo = tf.floor(positions)
    frac = positions - lo
    lo = tf.cast(lo, tf.int32)
    a = tf.cast(tf.gather(images, tf.clip_by_value(lo, 0, size - 1), axis=axis, batch_dims=1), tf.float32)
    b = tf.cast(tf.gather(images, tf.clip_by_value(lo + 1, 0, size - 1), axis=axis, batch_dims=1), tf.float32)
    frac = frac[:, :, None, None] if axis == 1 else frac[:, None, :, None]
    return a + (b - a) * frac


def resample(images, boxes, windows, flip):
    """Read each image's window (normalised xyxy, (B, 4), may reach outside the image), mirrored where ``flip``.

    Windows are in the same edge-based coordinates as the boxes (0 and 1 are the image's
    outer edges), and pixels land exactly where the boxes say. Bilinear, separable (columns,
    then rows) and made of gathers, so XLA fuses it with the colour jitter; it gives
    what ``tf.image.crop_and_resize`` gives for the matching window, canvas included:
    a pixel read from outside the image is gray. Boxes follow: moved into the window,
    clipped to it, then mirrored.
    """
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    wx1, wy1, wx2, wy2 = tf.unstack(windows, axis=-1)
    ys = _sample_positions(wy1, wy2 - wy1, shape[1])
    xs = _sample_positions(wx1, wx2 - wx1, shape[2], mirror=flip)
    out = _lerp_along(_lerp_along(images, xs, axis=2), ys, axis=1)
    inside_y = (ys >= 0) & (ys <= height - 1)
    inside_x = (xs >= 0) & (xs <= width - 1)
    out = tf.where(inside_y[:, :, None, None] & inside_x[:, None, :, None], out, CANVAS)
    offset = tf.stack([wx1, wy1, wx1, wy1], axis=-1)[:, None, :]
    scale = tf.stack([wx2 - wx1, wy2 - wy1, wx2 - wx1, wy2 - wy1], axis=-1)[:, None, :]
    return out, flip_boxes(tf.clip_by_value((boxes - offset) / scale, 0.0, 1.0), flip)


def box_keeping_windows(boxes, valid, seed=None):
    """Per image, a random window (normalised xyxy) whose edges fall outside the union of its valid boxes."""
    big = tf.constant(2.0)
    lo = tf.reduce_min(tf.where(valid[..., None], boxes[..., :2], big), axis=1)
    hi = tf.reduce_max(tf.where(valid[..., None], boxes[..., 2:], -big), axis=1)
    empty = tf.logical_not(tf.reduce_any(valid, axis=1))[:, None]
    lo, hi = tf.where(empty, 0.5, lo), tf.where(empty, 0.5, hi)  # no boxes: any window around the centre
    u = tf.random.uniform([tf.shape(boxes)[0], 4], seed=seed)
    return tf.concat([u[:, :2] * lo, hi + u[:, 2:] * (1 - hi)], axis=-1)


def zoom_out_windows(batch_size, max_factor):
    """Per image, the window that shrinks it by a factor in [1, max_factor] onto a larger canvas at a random spot."""
    factor = tf.random.uniform([batch_size, 1], 1.0, max_factor)
    offset = tf.random.uniform([batch_size, 2]) * (factor - 1.0)  # the image's corner on the canvas
    return tf.concat([-offset, factor - offset], axis=-1)


def colour_jitter(images, mean=None):
    """Per image: brightness +-25, contrast and saturation x0.75..1.25, clipped to 0..255.

    The three steps compose to one affine map of the RGB vector: brightness adds ``b``;
    contrast scales around each channel's mean (as ``tf.image.adjust_contrast``):
    ``c x + (1 - c) mean + b``; saturation mixes each pixel with its gray, ``x S`` with
    ``S = s I + (1 - s) / 3``, an affine stand-in for the RGB-HSV round trip of
    ``tf.image.adjust_saturation``. It is written out channel by channel so that XLA
    fuses it with whatever produced the pixels. ``mean`` (B, 3) is each image's channel
    mean, computed here if not given.
    """
    images = tf.cast(images, tf.float32)
    n = tf.shape(images)[0]
    if mean is None:
        mean = tf.reduce_mean(images, axis=[1, 2])
    brightness = tf.random.uniform([n, 1, 1], -25.0, 25.0)
    contrast = tf.random.uniform([n, 1, 1], 0.75, 1.25)
    saturation = tf.random.uniform([n, 1, 1], 0.75, 1.25)
    mix = saturation * tf.eye(3) + (1 - saturation) / 3  # (B, 3, 3): row k says what input channel k adds
    offset = tf.linalg.matmul((1 - contrast) * mean[:, None, :] + brightness, mix)[:, None, :, :]  # (B, 1, 1, 3)
    gain = (contrast * mix)[:, None, None, :, :]  # (B, 1, 1, 3, 3)
    out = offset + sum(images[..., k:k + 1] * gain[..., k, :] for k in range(3))
    return tf.clip_by_value(out, 0.0, 255.0)


def augment_batch(images, boxes, valid, config: AugmentConfig = AugmentConfig()):
    """Random flip, a box-keeping crop (1/3), a zoom-out (1/3) or neither, then colour jitter."""
    n = tf.shape(images)[0]
    if config.colour:  # the contrast's channel means, from the image before geometry; every 4th pixel is enough
        mean = tf.reduce_mean(tf.cast(images[:, ::4, ::4], tf.float32), axis=[1, 2])
    if config.flip or config.crop or config.zoom_out > 1:
        windows = tf.tile(tf.constant([IDENTITY]), [n, 1])
        choice = tf.random.uniform([n, 1])
        if config.crop:
            windows = tf.where(choice < 1 / 3, box_keeping_windows(boxes, valid), windows)
        if config.zoom_out > 1:
            windows = tf.where(choice > 2 / 3, zoom_out_windows(n, config.zoom_out), windows)
        flip = tf.random.uniform([n]) < 0.5 if config.flip else tf.zeros([n], tf.bool)
        images, boxes = resample(images, boxes, windows, flip)
    if config.colour:
        images = colour_jitter(images, mean)
    return tf.cast(images, tf.float32), tf.where(valid[..., None], boxes, 0.0)
