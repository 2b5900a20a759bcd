"""Training augmentation that moves boxes with the pixels (TensorFlow ops, for ``tf.data``).

Images are (H, W, 3) float32 in 0..255, before ``preprocess_input``; boxes are (N, 4)
normalised xyxy. Every geometric op returns the image at its input size, so the
batch shape never changes.
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


def horizontal_flip(image, boxes):
    """Mirror left-right: x -> 1 - x (and the corners swap)."""
    x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
    return tf.image.flip_left_right(image), tf.stack([1 - x2, y1, 1 - x1, y2], axis=-1)


def crop_to_window(image, boxes, window):
    """Crop to ``window`` (normalised xyxy) and resize back; boxes follow."""
    size = tf.shape(image)[:2]
    wx1, wy1, wx2, wy2 = tf.unstack(window)
    crop = tf.image.crop_and_resize(image[None], [[wy1, wx1, wy2, wx2]], [0], size)[0]
    scale = tf.stack([wx2 - wx1, wy2 - wy1, wx2 - wx1, wy2 - wy1])
    offset = tf.stack([wx1, wy1, wx1, wy1])
    return crop, tf.clip_by_value((boxes - offset) / scale, 0.0, 1.0)


def random_box_keeping_window(boxes, seed=None):
    """A window (normalised xyxy) that contains every box: its edges fall outside their union."""
    union = tf.concat([tf.reduce_min(boxes[:, :2], axis=0), tf.reduce_max(boxes[:, 2:], axis=0)], axis=0)
    union = tf.where(tf.shape(boxes)[0] > 0, union, tf.constant([0.5, 0.5, 0.5, 0.5]))
    u = tf.random.uniform([4], seed=seed)
    x1, y1 = u[0] * union[0], u[1] * union[1]
    x2, y2 = union[2] + u[2] * (1 - union[2]), union[3] + u[3] * (1 - union[3])
    return tf.stack([x1, y1, x2, y2])


def zoom_out(image, boxes, factor):
    """Place the image, shrunk by ``factor`` >= 1, at a random spot on a mean-coloured canvas."""
    size = tf.shape(image)[:2]
    u = tf.random.uniform([2])
    offset = u * (factor - 1.0)  # top-left corner of the image on a canvas of side ``factor``
    # The window, in the image's own normalised coordinates, that is the whole canvas.
    window = tf.stack([-offset[0], -offset[1], factor - offset[0], factor - offset[1]])
    mean = tf.reduce_mean(image, axis=[0, 1])
    canvas = tf.image.crop_and_resize((image - mean)[None], [[window[1], window[0], window[3], window[2]]], [0],
                                      size, extrapolation_value=0.0)[0] + mean
    scale = tf.stack([factor, factor, factor, factor])
    shift = tf.stack([offset[0], offset[1], offset[0], offset[1]])
    return canvas, (boxes + shift) / scale


def colour_jitter(image):
    """Brightness +-25, contrast and saturation x0.75..1.25.

    Saturation is an affine mix with the image's gray, not ``tf.image.random_saturation``,
    whose RGB-HSV round trip cost more per image than decoding the JPEG.
    """
    image = tf.image.random_brightness(image, 25.0)
    image = tf.image.random_contrast(image, 0.75, 1.25)
    gray = tf.reduce_mean(image, axis=-1, keepdims=True)
    image = gray + (image - gray) * tf.random.uniform([], 0.75, 1.25)
    return tf.clip_by_value(image, 0.0, 255.0)


def augment(image, boxes, config: AugmentConfig = AugmentConfig()):
    """Random flip, box-keeping crop or zoom-out, and colour jitter; boxes stay consistent."""
    image = tf.cast(image, tf.float32)
    if config.flip:
        image, boxes = tf.cond(tf.random.uniform([]) < 0.5, lambda: horizontal_flip(image, boxes),
                               lambda: (image, boxes))
    if config.crop or config.zoom_out > 1:
        choice = tf.random.uniform([])
        if config.crop:
            image, boxes = tf.cond(choice < 1 / 3, lambda: crop_to_window(image, boxes, random_box_keeping_window(boxes)),
                                   lambda: (image, boxes))
        if config.zoom_out > 1:
            factor = tf.random.uniform([], 1.0, config.zoom_out)
            image, boxes = tf.cond(choice > 2 / 3, lambda: zoom_out(image, boxes, factor), lambda: (image, boxes))
    if config.colour:
        image = colour_jitter(image)
    return image, boxes
