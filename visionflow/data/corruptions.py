"""Image corruptions, a whole batch at a time: Gaussian noise, Gaussian blur, JPEG, brightness and contrast.

Images are (B, H, W, 3) float32 in 0..255; every strength is a (B,) tensor, so each
image gets its own, and an image whose strength is the identity's (sigma 0, delta 0,
factor 1) comes back unchanged. Outputs are clipped to 0..255 and keep the input's shape.
Everything compiles under XLA (``tf.function(jit_compile=True)``): no per-image Python
loops, only static kernel sizes, and draws that are the same eagerly and compiled.

Training draws blur, noise and JPEG (:func:`visionflow.data.augment.corrupt`); a
robustness check applies any of them, and brightness and contrast, at fixed severities.
The training pipeline's budget is a few milliseconds a batch, on the CPU, so each
function is written for what XLA's CPU backend does well (see each one's docstring;
``benchmarks/input_pipeline.py`` measures the pipeline with them on).
"""

from __future__ import annotations

import functools
import math
import statistics

import numpy as np
import tensorflow as tf

__all__ = ["adjust_brightness", "adjust_contrast", "gaussian_blur", "gaussian_noise", "jpeg"]

# JFIF's RGB -> YCbCr (ITU-R BT.601, full range); Cb and Cr are centred on 0 here, not 128.
RGB_TO_YCC = np.array([[0.299, 0.587, 0.114],
                       [-0.168735892, -0.331264108, 0.5],
                       [0.5, -0.418687589, -0.081312411]])
YCC_TO_RGB = np.linalg.inv(RGB_TO_YCC)

# The IJG base quantisation tables (ITU-T T.81, Annex K), row-major over (vertical, horizontal) frequency.
LUMA_TABLE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)
CHROMA_TABLE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99]).reshape(8, 8)


def _dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II, ``D[u, x]``: JPEG's 2-D DCT of a block ``X`` is ``D X D^T``."""
    u, x = np.mgrid[0:8, 0:8]
    scale = np.where(u == 0, math.sqrt(1 / 8), math.sqrt(2 / 8))
    return scale * np.cos((2 * x + 1) * u * math.pi / 16)


DCT = _dct_matrix()


def _per_image(values):
    """A (B,) strength as float32 (B, 1, 1, 1), to broadcast over an image batch."""
    return tf.reshape(tf.cast(values, tf.float32), [-1, 1, 1, 1])


def hash_bits(seed, index):
    """Pseudo-random uint32s, one per element of ``index`` (int32, any shape): its hash keyed by ``seed`` (shape [2]).

    Two rounds of Wellons's ``lowbias32`` integer hash, so the bits are the same eagerly and
    under XLA, and cost a few integer ops each: Philox under XLA takes 6x as long for
    per-pixel draws (TF 2.21, CPU). Good enough for noise, not for cryptography.
    """
    key = tf.bitcast(tf.cast(seed, tf.int32), tf.uint32)
    return _lowbias32(tf.bitwise.bitwise_xor(_lowbias32(tf.bitcast(index, tf.uint32) + key[0]), key[1]))


def _lowbias32(x):
    """A bijective uint32 hash whose every output bit flips with any input bit at odds near 1/2 (C. Wellons, 2018)."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16)) * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15)) * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


@functools.cache
def normal_quantiles() -> np.ndarray:
    """N(0, 1)'s quantiles at the midpoints of 2**16 equal slices of probability: a draw is one of them at random."""
    inverse_cdf = statistics.NormalDist().inv_cdf
    return np.array([inverse_cdf((i + 0.5) / 2 ** 16) for i in range(2 ** 16)], np.float32)


def standard_normal(seed, shape, index=None):
    """Stateless N(0, 1) floats, the same eagerly and under XLA (``stateless_normal``'s are not, TF 2.21, CPU).

    Each draw looks up one of :func:`normal_quantiles` with 16 bits of :func:`hash_bits` of
    its ``index`` (int32, of ``shape``; by default its place in the row-major order): the
    normal distribution to 1/65536 of probability (so within +-4.3). Box–Muller's log and
    cosine on the same bits cost 10x as much under XLA (TF 2.21, CPU: 35 ms against 3.5
    for a batch of 32 128x128 RGB images).
    """
    if index is None:
        index = tf.reshape(tf.range(tf.reduce_prod(shape)), shape)
    quantile = tf.cast(tf.bitwise.right_shift(hash_bits(seed, index), 16), tf.int32)
    return tf.gather(tf.constant(normal_quantiles()), quantile)


def gaussian_noise(images, sigma, seed, places=None):
    """Add N(0, sigma_b^2) to every pixel and channel of image ``b`` (``sigma`` (B,), in 0..255 units).

    Stateless from ``seed`` (a shape-[2] int32 seed, as :func:`~visionflow.data.augment.split_seed`
    makes): the same seed gives the same noise. Sigma 0 leaves an image as it is. An
    image's noise depends on the seed and its place in the batch alone; ``places`` (B,)
    int32 gives the places of a sub-batch's images (by default 0..B-1), so that they get
    the noise they would get in the whole batch.
    """
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    if places is None:
        places = tf.range(shape[0])
    pixels = shape[1] * shape[2] * shape[3]
    index = places[:, None, None, None] * pixels + tf.reshape(tf.range(pixels), [1, shape[1], shape[2], shape[3]])
    noise = standard_normal(seed, shape, index)
    return tf.clip_by_value(images + _per_image(sigma) * noise, 0.0, 255.0)


def gaussian_kernels(sigma, radius: int):
    """Per image, the normalised 1-D Gaussian of ``sigma`` (B,) on taps -radius..radius: (B, 2 radius + 1).

    Sigma 0 is the unit impulse, so that a blur with it is exactly the identity.
    """
    sigma = tf.cast(sigma, tf.float32)[:, None]
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)[None, :]
    blurs = sigma > 0
    weights = tf.exp(-0.5 * tf.square(taps / tf.where(blurs, sigma, 1.0)))
    weights = weights / tf.reduce_sum(weights, axis=1, keepdims=True)
    return tf.where(blurs, weights, tf.cast(taps == 0, tf.float32))


def _edges(images, axis: int, radius: int):
    """``images`` with ``radius`` copies of its first and last slice along ``axis`` (1 or 2) on either side."""
    first, last = (images[:, :1], images[:, -1:]) if axis == 1 else (images[:, :, :1], images[:, :, -1:])
    return tf.concat([first] * radius + [images] + [last] * radius, axis=axis)


def _blur_columns(images, kernels):
    """Correlate each image's rows with its own symmetric kernel (B, 2r + 1), replicating the edges.

    Written as shifted slices of each row with its channels side by side, (B, H, W * C),
    so a shift by one pixel is one by C values: under XLA (CPU) that runs 2.5x as fast as
    gathers along W, whose innermost axis is only the 3 channels.
    """
    radius = (kernels.shape[1] - 1) // 2
    shape = tf.shape(images)
    rows = tf.reshape(_edges(images, 2, radius), [shape[0], shape[1], -1])
    channels, width = shape[3], shape[2] * shape[3]

    def shifted(k):
        return rows[:, :, (radius + k) * channels:(radius + k) * channels + width]

    out = shifted(0) * kernels[:, radius, None, None]
    for k in range(1, radius + 1):  # a symmetric kernel: both neighbours at distance k share a weight
        out += (shifted(k) + shifted(-k)) * kernels[:, radius + k, None, None]
    return tf.reshape(out, shape)


def _blur_rows(images, kernels):
    """Correlate each image's columns with its own symmetric kernel (B, 2r + 1), replicating the edges.

    Gathers of whole rows, which are contiguous: as fast as slices here.
    """
    radius = (kernels.shape[1] - 1) // 2
    size = tf.shape(images)[1]
    out = images * kernels[:, radius, None, None, None]
    for k in range(1, radius + 1):
        ahead = tf.gather(images, tf.minimum(tf.range(size) + k, size - 1), axis=1)
        behind = tf.gather(images, tf.maximum(tf.range(size) - k, 0), axis=1)
        out += (ahead + behind) * kernels[:, radius + k, None, None, None]
    return out


def gaussian_blur(images, sigma, max_sigma: float):
    """Blur image ``b`` with a Gaussian of ``sigma[b]`` pixels (0: unchanged), separably, replicating the edges.

    The kernel's radius, ``ceil(3 max_sigma)``, is fixed when the function is traced (a
    larger ``sigma`` is cut at that radius), so it compiles under XLA; a blur preserves
    the mean of a flat image. The first pass sits in a ``tf.cond`` (skipped when no image
    blurs): XLA cannot fuse across it, and fused, the second pass would recompute the first
    for each of its taps (8x the cost, TF 2.21, CPU).
    """
    images, sigma = tf.cast(images, tf.float32), tf.cast(sigma, tf.float32)
    kernels = gaussian_kernels(sigma, max(math.ceil(3 * max_sigma), 0))
    if kernels.shape[1] == 1:
        return tf.clip_by_value(images, 0.0, 255.0)
    across = tf.cond(tf.reduce_any(sigma > 0), lambda: _blur_columns(images, kernels), lambda: images)
    return tf.clip_by_value(_blur_rows(across, kernels), 0.0, 255.0)


def quantisation_tables(quality):
    """Per image, libjpeg's luminance and chrominance tables at ``quality`` (B,), each (B, 8, 8).

    As ``jpeg_set_quality`` does: the quality is an integer in 1..100 (rounded here), the
    scale ``5000 / q`` below 50 (integer division) and ``200 - 2 q`` above, and each entry
    ``floor((base scale + 50) / 100)`` clipped to 1..255 (baseline JPEG).
    """
    q = tf.clip_by_value(tf.round(tf.cast(quality, tf.float32)), 1.0, 100.0)
    scale = tf.where(q < 50, tf.floor(5000.0 / q), 200.0 - 2.0 * q)[:, None, None]

    def scaled(base):
        return tf.clip_by_value(tf.floor((tf.constant(base, tf.float32) * scale + 50.0) / 100.0), 1.0, 255.0)

    return scaled(LUMA_TABLE), scaled(CHROMA_TABLE)


def _replicate_to_multiple(images, multiple: int):
    """Pad H and W up to multiples of ``multiple`` by repeating the last row and column (as libjpeg does)."""
    shape = tf.shape(images)
    rows, cols = -shape[1] % multiple, -shape[2] % multiple
    images = tf.concat([images, tf.repeat(images[:, -1:], rows, axis=1)], axis=1)
    return tf.concat([images, tf.repeat(images[:, :, -1:], cols, axis=2)], axis=2)


def _mix_channels(images, matrix: np.ndarray):
    """``images @ matrix.T`` over the channels, written out so that XLA fuses it with its neighbours."""
    channels = tf.unstack(images, axis=-1)
    return tf.stack([sum(float(m) * c for m, c in zip(row, channels)) for row in matrix], axis=-1)


def _block_round_trip(planes, table):
    """DCT each 8x8 block of ``planes`` (B, H, W, C; H, W multiples of 8), quantise with ``table`` (B, 8, 8), invert.

    The 2-D DCT of a block, ``D X D^T``, is one product of its 64 values with the 64x64
    ``kron(D, D)``: one matrix product over every block of the batch, a quarter faster
    under XLA (TF 2.21, CPU) than the two 8x8 products of an einsum (3.1 against 4.1 ms
    for the luma of 32 128x128 images), whose dots are too small to pay for themselves.
    """
    shape = tf.shape(planes)
    grid = [shape[0], shape[1] // 8, shape[2] // 8, shape[3]]
    blocks = tf.transpose(tf.reshape(planes, [shape[0], grid[1], 8, grid[2], 8, shape[3]]), [0, 1, 3, 5, 2, 4])
    kron = tf.constant(np.kron(DCT, DCT), tf.float32)
    coefficients = tf.matmul(tf.reshape(blocks, [-1, 64]), kron, transpose_b=True)
    table = tf.reshape(tf.broadcast_to(tf.reshape(table, [-1, 1, 1, 1, 64]), grid + [64]), [-1, 64])
    coefficients = tf.round(coefficients / table) * table
    blocks = tf.reshape(tf.matmul(coefficients, kron), grid + [8, 8])
    return tf.reshape(tf.transpose(blocks, [0, 1, 4, 2, 5, 3]), shape)


def _downsample(planes):
    """The 2x2 mean of (B, H, W, C) with H and W even: libjpeg's 4:2:0 chroma."""
    shape = tf.shape(planes)
    return tf.reduce_mean(tf.reshape(planes, [shape[0], shape[1] // 2, 2, shape[2] // 2, 2, shape[3]]), axis=[2, 4])


def _upsample_along(planes, axis: int):
    """Double ``axis`` (1 or 2) as libjpeg's "fancy" upsampling does: 3/4 of a sample, 1/4 of its nearer neighbour."""
    before = _edges(planes, axis, 1)
    size = tf.shape(planes)[axis]
    ahead, behind = ((before[:, 2:], before[:, :size]) if axis == 1 else (before[:, :, 2:], before[:, :, :size]))
    pair = tf.stack([0.75 * planes + 0.25 * behind, 0.75 * planes + 0.25 * ahead], axis=axis + 1)
    shape = tf.unstack(tf.shape(planes))
    shape[axis] = 2 * size
    return tf.reshape(pair, shape)


def jpeg(images, quality):
    """Simulate a JPEG round trip of image ``b`` at ``quality[b]`` (1..100; rounded, as libjpeg takes an integer).

    What libjpeg does with its defaults (PIL's ``save(..., quality=q)``), in float: RGB ->
    YCbCr (JFIF), level shift by 128, 4:2:0 chroma (2x2 means), an orthonormal DCT of each
    8x8 block, quantisation with the IJG tables scaled by the quality, then the decoder's
    way back, with its "fancy" (triangular) chroma upsampling. H and W are padded to
    multiples of 16 by repeating the edge and cropped back. Unlike
    ``tf.image.adjust_jpeg_quality``, it compiles under XLA and takes a quality per image.
    """
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    luma_table, chroma_table = quantisation_tables(quality)
    ycc = _mix_channels(_replicate_to_multiple(images, 16), RGB_TO_YCC)
    luma = _block_round_trip(ycc[..., :1] - 128.0, luma_table) + 128.0
    chroma = _block_round_trip(_downsample(ycc[..., 1:]), chroma_table)
    chroma = _upsample_along(_upsample_along(chroma, 1), 2)
    ycc = tf.concat([tf.clip_by_value(luma, 0.0, 255.0), tf.clip_by_value(chroma, -128.0, 127.0)], axis=-1)
    rgb = _mix_channels(ycc[:, :shape[1], :shape[2]], YCC_TO_RGB)
    return tf.clip_by_value(rgb, 0.0, 255.0)


def adjust_brightness(images, delta):
    """Add ``delta[b]`` (0..255 units, may be negative) to every pixel of image ``b``."""
    return tf.clip_by_value(tf.cast(images, tf.float32) + _per_image(delta), 0.0, 255.0)


def adjust_contrast(images, factor):
    """Scale image ``b``'s distance from its mean by ``factor[b]``, as ImageNet-C's ``contrast`` does.

    ImageNet-C (``make_imagenet_c.py``) takes the mean per channel, ``np.mean(x, axis=(0, 1))``,
    so an image fades towards its mean colour (a factor of 0 leaves that flat colour), not towards gray.
    """
    images = tf.cast(images, tf.float32)
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return tf.clip_by_value(mean + (images - mean) * _per_image(factor), 0.0, 255.0)
