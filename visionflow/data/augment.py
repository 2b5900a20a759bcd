"""Training augmentation that moves boxes with the pixels, a whole batch at a time.

Images are (B, H, W, 3), uint8 or float in 0..255, before ``preprocess_input``; boxes
are (B, N, 4) normalised xyxy, padded, with ``valid`` (B, N) marking the real ones.
Each image draws its own flip, window, colours and corruptions, but the work is done
batch-wide, geometry and colour in two passes: per image, a dozen small ops cost more
than decoding the JPEG, and so does every extra pass over a batch (see
``benchmarks/input_pipeline.py``).

- Geometry is one separable bilinear resample over the batch (:func:`resample`, made of
  gathers; it matches ``tf.image.crop_and_resize``). Each image's window is the whole
  image, a crop (one that keeps every box whole, or a bounded random one that clips
  boxes and drops the ones mostly cut away), or a zoom-out onto a gray canvas (scale
  jitter); a horizontal flip is the same window read right to left.
- Colour jitter (brightness, contrast, saturation) is affine in RGB, so it is one 3x3
  matrix and offset per image, written channel by channel so that XLA fuses it with
  the resample.
- Then what a lens, a sensor and a file do to a picture, in that order, each image with
  its own chance and strength (:mod:`visionflow.data.corruptions`): a Gaussian blur,
  Gaussian noise and a JPEG round trip. The blur and the JPEG run on a sub-batch of the
  images that drew them (:func:`where_drawn`), each behind a ``tf.cond``, which XLA does
  not fuse across: fused, they would recompute the resample for every pixel they read.

Every draw is stateless, from the ``seed`` given to :func:`augment_batch`: the same seed
gives the same batch, so an augmented epoch can be replayed or resumed. Everything here
compiles under XLA (``tf.function(jit_compile=True)``), where the pipeline runs it.
Output images are float32 at their input size, so the batch shape never changes.
"""

from __future__ import annotations

import functools
import math

import tensorflow as tf

from visionflow.data.augment_config import AugmentConfig
from visionflow.data.corruptions import gaussian_blur, gaussian_noise, jpeg

__all__ = ["AugmentConfig", "augment_batch", "corrupt"]  # AugmentConfig lives in augment_config.py, free of TensorFlow

CANVAS = 127.5  # the gray around a zoomed-out image (0 after most backbones' ``preprocess_input``)
IDENTITY = (0.0, 0.0, 1.0, 1.0)
MIN_SIDE = 1 / 1024  # the narrowest crop window, as a fraction of the image's side


def split_seed(seed, num: int):
    """``num`` independent stateless seeds (each shape [2], int32) from one (int32 or int64, any values).

    Seeds stay in 0..2**31 - 1: there, and only there, a stateless op draws the same
    eagerly and under XLA (TF 2.21, CPU). A wider seed is folded into that range first,
    so an int32 seed and the same int64 seed give the same draws.
    """
    seed = tf.cast(seed, tf.int64)
    seed = tf.cast(tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(seed, tf.bitwise.right_shift(seed, 31)), 0x7FFFFFFF),
                   tf.int32)
    seeds = tf.random.experimental.stateless_split(seed, num)
    return tf.unstack(tf.bitwise.bitwise_and(seeds, 0x7FFFFFFF))


def random_bits(seed, shape):
    """Stateless uniform uint32 bits (Philox), the same eagerly and under XLA.

    Philox is what ``alg="auto_select"`` picks on the CPU, so the bits are the same, but
    under XLA ``auto_select`` draws them 100x slower (TF 2.21, CPU: 2.7 s against 22 ms for
    a batch of 32 128x128 RGB images' worth), so the algorithm is named.
    """
    return tf.random.stateless_uniform(shape, seed, minval=None, maxval=None, dtype=tf.uint32, alg="philox")


def uniform(seed, shape):
    """Stateless uniform floats in [0, 1), the same eagerly and under XLA.

    ``stateless_uniform``'s floats differ between the two (TF 2.21, CPU; tensorflow/tensorflow
    issue 121243) while its raw bits agree, so the floats are made here from the top 24 bits.
    """
    return tf.cast(tf.bitwise.right_shift(random_bits(seed, shape), 8), tf.float32) * 2.0 ** -24


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


def visible_fraction(boxes, windows):
    """The share of each box's area (B, N) inside its image's window ((B, 4)); boxes (B, N, 4), both normalised xyxy.

    A box with no area has no share (0).
    """
    low = tf.maximum(boxes[..., :2], windows[:, None, :2])
    high = tf.minimum(boxes[..., 2:], windows[:, None, 2:])
    inside = tf.reduce_prod(tf.maximum(high - low, 0.0), axis=-1)
    return tf.math.divide_no_nan(inside, tf.reduce_prod(boxes[..., 2:] - boxes[..., :2], axis=-1))


def apply_windows(images, boxes, valid, windows, flip, min_visible=None):
    """Read each image's window, mirrored where ``flip`` (:func:`resample`); boxes follow, clipped to the view.

    With ``min_visible``, a box left with less than that share of its area in view, or
    none, leaves ``valid``. Returns ``(images, boxes, valid)``.
    """
    if min_visible is not None:
        shown = visible_fraction(boxes, windows)
        valid = valid & (shown > 0) & (shown >= min_visible)
    images, boxes = resample(images, boxes, windows, flip)
    return images, boxes, valid


def boxes_union(boxes, valid):
    """Per image, the corners ``low``, ``high`` ((B, 2) each) of the smallest box around its valid boxes.

    An image without valid boxes gets the centre point, so that a window around it is any window about the centre.
    """
    big = tf.constant(2.0)
    low = tf.reduce_min(tf.where(valid[..., None], boxes[..., :2], big), axis=1)
    high = tf.reduce_max(tf.where(valid[..., None], boxes[..., 2:], -big), axis=1)
    empty = tf.logical_not(tf.reduce_any(valid, axis=1))[:, None]
    return tf.where(empty, 0.5, low), tf.where(empty, 0.5, high)


def box_keeping_windows(boxes, valid, seed):
    """Per image, a random window (normalised xyxy) whose edges fall outside the union of its valid boxes.

    Each edge is uniform between the union's edge and the image's: the crop the localizer
    has always trained with. Unbounded: a small box allows a long, thin window.
    """
    low, high = boxes_union(boxes, valid)
    u = uniform(seed, [tf.shape(boxes)[0], 4])
    return tf.concat([u[:, :2] * low, high + u[:, 2:] * (1 - high)], axis=-1)


def _log_bounds(pair, shift=0.0):
    """``log(pair) - shift``; ``None`` (no bound) is (-inf, inf)."""
    if pair is None:
        return -math.inf, math.inf
    return math.log(pair[0]) - shift, math.log(pair[1]) - shift


def bounded_windows(low, high, scale, aspect, image_aspect, seed):
    """Per image, a random window (normalised xyxy) inside the image that contains the region ``low``..``high``.

    ``low``, ``high`` are (B, 2) corners; a region with ``low > high`` is empty and
    constrains nothing. The window's area fraction lies in ``scale`` and its aspect ratio
    (width / height in pixels, of an image ``image_aspect`` = W / H) in ``aspect``;
    ``None`` is no bound. Returns the windows and whether each met the bounds ((B,)
    bool): where no window that holds the region and fits the image does, the region
    and the image win, and area and aspect fall between what they and the bounds ask.

    The area is uniform over what is possible, then the log aspect ratio uniform over
    what that area allows, then the place uniform. In log sides ``a = log w`` and
    ``b = log h`` (normalised), the window fits when ``a`` lies in ``[log region width, 0]``
    and ``b`` in ``[log region height, 0]``; its log area is ``a + b`` and its log aspect
    (normalised) ``a - b``, so for each log area the allowed log aspects form one
    interval, and the log areas that leave it non-empty form another.
    """
    u = uniform(seed, [tf.shape(low)[0], 4])
    lx, ly = tf.unstack(tf.math.log(tf.maximum(high - low, MIN_SIDE)), axis=-1)
    s_lo, s_hi = _log_bounds(scale)
    r_lo, r_hi = _log_bounds(aspect, tf.math.log(image_aspect))
    area_lo = tf.exp(functools.reduce(tf.maximum, [lx + ly, 2 * lx - r_hi, r_lo + 2 * ly, s_lo]))
    area_hi = tf.exp(functools.reduce(tf.minimum, [tf.zeros_like(lx), r_hi, -r_lo, s_hi]))
    met = area_lo <= area_hi * (1 + 1e-6)
    log_area = tf.clip_by_value(tf.math.log(area_lo + u[:, 0] * (area_hi - area_lo)), lx + ly, 0.0)
    fit_lo = tf.maximum(2 * lx - log_area, log_area)
    fit_hi = tf.minimum(-log_area, log_area - 2 * ly)
    ratio_lo, ratio_hi = tf.maximum(fit_lo, r_lo), tf.minimum(fit_hi, r_hi)
    log_ratio = tf.clip_by_value(ratio_lo + u[:, 1] * (ratio_hi - ratio_lo), fit_lo, fit_hi)
    size = tf.exp(tf.stack([log_area + log_ratio, log_area - log_ratio], axis=-1) / 2)
    size = tf.minimum(tf.maximum(size, high - low), 1.0)
    first, last = tf.maximum(high - size, 0.0), tf.minimum(low, 1.0 - size)  # where the window may start
    start = tf.minimum(first + u[:, 2:] * (last - first), low)
    return tf.concat([start, tf.maximum(start + size, high)], axis=-1), met


def crop_windows(boxes, valid, config: AugmentConfig, image_aspect, seed):
    """Per image, a crop window (normalised xyxy): around every valid box (``config.keep_boxes_whole``) or anywhere.

    A crop is :func:`bounded_windows` within ``config.crop_scale`` and ``config.crop_aspect``.
    A box-keeping crop is :func:`box_keeping_windows`, the unbounded crop of before the
    bounds, when there are none, and where the boxes leave no window within them.
    """
    if config.keep_boxes_whole and config.crop_scale is None and config.crop_aspect is None:
        return box_keeping_windows(boxes, valid, seed)
    if not config.keep_boxes_whole:
        n = tf.shape(boxes)[0]
        low, high = tf.fill([n, 2], 2.0), tf.fill([n, 2], -2.0)  # an empty region: nothing to keep
        return bounded_windows(low, high, config.crop_scale, config.crop_aspect, image_aspect, seed)[0]
    bounded_seed, unbounded_seed = split_seed(seed, 2)
    windows, met = bounded_windows(*boxes_union(boxes, valid), config.crop_scale, config.crop_aspect, image_aspect,
                                   bounded_seed)
    return tf.where(met[:, None], windows, box_keeping_windows(boxes, valid, unbounded_seed))


def zoom_out_windows(batch_size, max_factor, seed):
    """Per image, the window that shrinks it by a factor in [1, max_factor] onto a larger canvas at a random spot."""
    u = uniform(seed, [batch_size, 3])
    factor = 1.0 + u[:, :1] * (max_factor - 1.0)
    offset = u[:, 1:] * (factor - 1.0)  # the image's corner on the canvas
    return tf.concat([-offset, factor - offset], axis=-1)


def draw_windows(boxes, valid, config: AugmentConfig, image_aspect, seed):
    """Per image, the window to read: a crop (chance ``config.crop``), a zoom-out (``config.zoom_out``) or the image."""
    n = tf.shape(boxes)[0]
    choice_seed, crop_seed, zoom_seed = split_seed(seed, 3)
    choice = uniform(choice_seed, [n, 1])
    windows = tf.tile(tf.constant([IDENTITY]), [n, 1])
    if config.crop > 0:
        windows = tf.where(choice < config.crop, crop_windows(boxes, valid, config, image_aspect, crop_seed), windows)
    if config.zoom_out > 0 and config.zoom_out_max > 1:
        zoomed = zoom_out_windows(n, config.zoom_out_max, zoom_seed)
        windows = tf.where(choice >= 1 - config.zoom_out, zoomed, windows)
    return windows


def colour_draws(batch_size, config: AugmentConfig, seed):
    """Per image, (B, 1, 1) each: the brightness offset, contrast gain and saturation gain, uniform in their ranges."""
    low = tf.constant([-config.brightness, config.contrast[0], config.saturation[0]])
    high = tf.constant([config.brightness, config.contrast[1], config.saturation[1]])
    draws = low + uniform(seed, [batch_size, 1, 1, 3]) * (high - low)
    return tf.unstack(draws, axis=-1)


def colour_jitter(images, brightness, contrast, saturation, mean=None):
    """Per image, add ``brightness``, scale contrast and saturation by their gains ((B, 1, 1) each); clip to 0..255.

    The three steps compose to one affine map of the RGB vector: brightness adds ``b``;
    contrast scales around each channel's mean (as ``tf.image.adjust_contrast``):
    ``c x + (1 - c) mean + b``; saturation mixes each pixel with its gray, ``x S`` with
    ``S = s I + (1 - s) / 3``, an affine stand-in for the RGB-HSV round trip of
    ``tf.image.adjust_saturation``. It is written out channel by channel so that XLA
    fuses it with whatever produced the pixels. ``mean`` (B, 3) is each image's channel
    mean, computed here if not given.
    """
    images = tf.cast(images, tf.float32)
    if mean is None:
        mean = tf.reduce_mean(images, axis=[1, 2])
    mix = saturation * tf.eye(3) + (1 - saturation) / 3  # (B, 3, 3): row k says what input channel k adds
    offset = tf.linalg.matmul((1 - contrast) * mean[:, None, :] + brightness, mix)[:, None, :, :]  # (B, 1, 1, 3)
    gain = (contrast * mix)[:, None, None, :, :]  # (B, 1, 1, 3, 3)
    out = offset + sum(images[..., k:k + 1] * gain[..., k, :] for k in range(3))
    return tf.clip_by_value(out, 0.0, 255.0)


def chance_and_strength(batch_size, chance: float, strength: tuple[float, float], seed):
    """Per image, whether it draws a corruption (with probability ``chance``) and its strength, uniform in a range.

    Both (B,); the strength is drawn for every image, so each image's draws depend on the seed alone.
    """
    u = uniform(seed, [batch_size, 2])
    return u[:, 0] < chance, strength[0] + u[:, 1] * (strength[1] - strength[0])


def sub_batch_size(batch_size, chance: float):
    """How many images a corruption computes when they are few: the mean number that draw it plus 2 standard deviations.

    More draw it in 2% of batches or fewer (then the whole batch is computed). Under XLA
    the size is a compile-time constant: it follows from the batch's shape alone.
    """
    n = tf.cast(batch_size, tf.float32)
    size = tf.math.ceil(n * chance + 2.0 * tf.sqrt(n * chance * (1.0 - chance)))
    return tf.clip_by_value(tf.cast(size, tf.int32), 1, tf.maximum(batch_size, 1))


def where_drawn(corruption, images, drawn, strength, chance: float):
    """``tf.where(drawn, corruption(images, strength, places), images)`` per image, computing it only where it must.

    ``drawn`` and ``strength`` are (B,). Under XLA a batch function costs what its whole
    batch costs, so the images that drew the corruption are gathered into a sub-batch of
    :func:`sub_batch_size` (with others to fill it), corrupted there and put back; a batch
    where none drew it is left alone, and one where more did than fit is done whole. The
    three give the same images: ``corruption`` must treat each image on its own, its
    random draws depending on the image's place in the whole batch, which ``places`` (B,)
    gives. Being a ``tf.cond``, it also keeps XLA from fusing the corruption with what
    made its input, which it would then recompute for each pixel the corruption reads.
    """
    n = tf.shape(images)[0]
    size = sub_batch_size(n, chance)
    count = tf.reduce_sum(tf.cast(drawn, tf.int32))
    drawn_images = drawn[:, None, None, None]

    def some():
        order = tf.argsort(tf.cast(tf.logical_not(drawn), tf.int32), stable=True)  # those that drew it first
        chosen = order[:size]
        corrupted = corruption(tf.gather(images, chosen), tf.gather(strength, chosen), chosen)
        slot = tf.minimum(tf.math.invert_permutation(order), size - 1)  # each image's place in the sub-batch
        return tf.where(drawn_images, tf.gather(corrupted, slot), images)

    def every():
        return tf.where(drawn_images, corruption(images, strength, tf.range(n)), images)

    branch = tf.where(count == 0, 0, tf.where(count <= size, 1, 2))
    return tf.switch_case(branch, [lambda: images, some, every])


def corrupt(images, config: AugmentConfig, seed):
    """Blur, then add noise, then JPEG-compress, each image with its own chance and strength, as ``config`` says.

    The order is the physical one: the lens blurs, the sensor adds noise, the file is
    compressed. A corruption with no chance is not computed at all. Float32 images in 0..255.
    """
    n = tf.shape(images)[0]
    blur_seed, noise_seed, pixel_seed, jpeg_seed = split_seed(seed, 4)
    if config.blurs:
        drawn, sigma = chance_and_strength(n, config.blur, config.blur_sigma, blur_seed)
        images = where_drawn(lambda x, s, _: gaussian_blur(x, s, config.blur_sigma[1]), images, drawn, sigma,
                             config.blur)
    if config.adds_noise:
        drawn, sigma = chance_and_strength(n, config.noise, config.noise_std, noise_seed)
        images = where_drawn(lambda x, s, places: gaussian_noise(x, s, pixel_seed, places), images, drawn, sigma,
                             config.noise)
    if config.compresses:
        drawn, quality = chance_and_strength(n, config.jpeg, config.jpeg_quality, jpeg_seed)
        images = where_drawn(lambda x, q, _: jpeg(x, q), images, drawn, quality, config.jpeg)
    return images


def augment_batch(images, boxes, valid, config: AugmentConfig, seed):
    """Augment a batch as ``config`` says, every draw from ``seed`` (a shape-[2] int32 or int64 tensor).

    A random flip; a crop, a zoom-out or neither; colour jitter; then blur, noise and
    JPEG (:func:`corrupt`), which leave the boxes where they are. Boxes are (B, N, 4)
    normalised xyxy, ``valid`` (B, N). Returns ``(images, boxes, valid)``: float32 images
    of the same shape, the boxes moved with the pixels and clipped to the view, and
    ``valid`` with the boxes dropped that a crop cut below ``config.min_visible`` of
    their area (zeroed, like the padding). The same seed gives the same batch.
    """
    flip_seed, window_seed, colour_seed, corruption_seed = split_seed(seed, 4)  # the first three as with 3
    n = tf.shape(images)[0]
    if config.jitters_colour:  # the contrast's channel means, from the image before geometry; every 4th pixel is enough
        mean = tf.reduce_mean(tf.cast(images[:, ::4, ::4], tf.float32), axis=[1, 2])
    if config.moves_pixels:
        shape = tf.cast(tf.shape(images), tf.float32)
        windows = draw_windows(boxes, valid, config, shape[2] / shape[1], window_seed)
        flip = uniform(flip_seed, [n]) < config.flip
        min_visible = None if config.keep_boxes_whole else config.min_visible
        images, boxes, valid = apply_windows(images, boxes, valid, windows, flip, min_visible)
    if config.jitters_colour:
        images = colour_jitter(images, *colour_draws(n, config, colour_seed), mean=mean)
    images = tf.cast(images, tf.float32)
    if config.blurs or config.adds_noise or config.compresses:
        images = corrupt(images, config, corruption_seed)
    return images, tf.where(valid[..., None], boxes, 0.0), valid
