"""Corruptions against references: numbers by hand, scipy's Gaussian filter, PIL's (libjpeg's) JPEG round trip."""

import functools
import io

import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf
from PIL import Image, ImageDraw

from visionflow.data.corruptions import (adjust_brightness, adjust_contrast, gaussian_blur, gaussian_noise, jpeg,
                                         quantisation_tables, standard_normal)

SEED = tf.constant([3, 4], tf.int32)


def scene(seed: int, size: int = 96) -> np.ndarray:
    """A realistic test picture: a gradient, a texture, sensor-like noise and filled shapes with sharp colour edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    c0, c1 = rng.uniform(0, 255, (2, 3))
    image = c0 + ((xx + yy) / 2)[..., None] * (c1 - c0)
    image += 20 * (np.sin(xx * rng.uniform(5, 25)) * np.cos(yy * rng.uniform(5, 25)))[..., None]
    image += rng.normal(0, 3, image.shape)
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(4):
        x, y = rng.uniform(0, size - 30, 2)
        side = rng.uniform(10, 40)
        box = [x, y, x + side, y + side * rng.uniform(0.5, 1.5)]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return np.asarray(picture)


def smooth(size: int = 96) -> np.ndarray:
    """Slow colour ramps only: what 4:2:0 chroma and fine quantisation barely touch."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    return np.stack([60 + 120 * xx, 80 + 100 * yy, 200 - 90 * xx * yy], -1).astype(np.uint8)


def pil_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg through PIL, with its defaults (4:2:0 chroma, the IJG tables), encoded and decoded."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer)).astype(np.float32)


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - b) ** 2)))


def psnr(a, b) -> float:
    return 20 * np.log10(255 / rmse(a, b))


@functools.lru_cache(maxsize=None)
def compiled(function):
    return tf.function(function, jit_compile=True)


def gray(batch: int, size: int = 64, level: float = 128.0):
    return tf.fill([batch, size, size, 3], level)


# Gaussian noise


def test_standard_normal_draws_have_the_moments_and_quantiles_of_a_normal():
    z = standard_normal(SEED, [400_000]).numpy()
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(z ** 4) / z.var() ** 2 - 3) < 0.05  # kurtosis; a sum of 4 uniforms has 2.7
    for k, share in ((1, 0.6827), (2, 0.9545), (3, 0.9973)):
        assert abs(np.mean(np.abs(z) < k) - share) < 0.003
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01  # neighbours independent


def test_noise_has_each_images_sigma_and_sigma_zero_leaves_it_alone():
    images = gray(4)
    sigma = tf.constant([0.0, 2.0, 10.0, 25.0])
    out = gaussian_noise(images, sigma, SEED).numpy()
    noise = out - images.numpy()
    np.testing.assert_array_equal(out[0], images.numpy()[0])
    for i in (1, 2, 3):
        assert abs(noise[i].std() / sigma.numpy()[i] - 1) < 0.03  # 12,288 draws each
        assert abs(noise[i].mean()) < 0.05 * sigma.numpy()[i]
    assert abs(np.corrcoef(noise[2].ravel(), noise[3].ravel())[0, 1]) < 0.05  # each image its own noise


def test_an_images_noise_depends_on_its_place_so_a_sub_batch_gets_what_the_whole_batch_would():
    images, sigma = gray(5, size=16), tf.constant([3.0, 6.0, 9.0, 12.0, 15.0])
    whole = gaussian_noise(images, sigma, SEED).numpy()
    places = tf.constant([4, 1])
    part = gaussian_noise(tf.gather(images, places), tf.gather(sigma, places), SEED, places).numpy()
    np.testing.assert_array_equal(part, whole[[4, 1]])
    assert not np.allclose(gaussian_noise(tf.gather(images, places), tf.gather(sigma, places), SEED).numpy(), part)


def test_noise_is_clipped_to_the_pixel_range():
    out = gaussian_noise(tf.constant([[[[0.0, 128.0, 255.0]]]]), tf.constant([50.0]), SEED).numpy()
    assert out.min() >= 0 and out.max() <= 255


def test_noise_follows_its_seed_and_is_the_same_eagerly_and_under_xla():
    images = tf.constant(np.stack([scene(0), scene(1)]), tf.float32)
    sigma = tf.constant([5.0, 15.0])
    eager = gaussian_noise(images, sigma, SEED).numpy()
    xla = compiled(gaussian_noise)(images, sigma, SEED).numpy()
    np.testing.assert_allclose(eager, xla, atol=1e-4)
    np.testing.assert_array_equal(compiled(gaussian_noise)(images, sigma, SEED).numpy(), xla)
    other = gaussian_noise(images, sigma, tf.constant([3, 5], tf.int32)).numpy()
    assert np.mean(np.abs(other - eager) > 1) > 0.5


# Gaussian blur


def test_a_blur_of_sigma_zero_is_the_identity_and_a_flat_image_stays_flat():
    images = tf.constant(np.stack([scene(2), scene(3)]), tf.float32)
    out = gaussian_blur(images, tf.constant([0.0, 1.2]), 1.5).numpy()
    np.testing.assert_array_equal(out[0], images.numpy()[0])
    assert not np.allclose(out[1], images.numpy()[1], atol=1)
    flat = gaussian_blur(gray(2, level=77.0), tf.constant([0.7, 1.5]), 1.5).numpy()
    np.testing.assert_allclose(flat, 77.0, atol=1e-3)  # the kernels sum to 1, the edges replicated


@pytest.mark.parametrize("sigma", [0.3, 0.8, 1.5])
def test_a_blurred_step_edge_spreads_as_scipys_gaussian_filter_does(sigma):
    """Same radius (3 x the largest sigma), same edges (``nearest``: replicated): the same image."""
    step = np.zeros((1, 40, 48, 3), np.float32)
    step[:, :, 24:] = 200.0
    step[:, 20:, :, 1] = 100.0  # and a horizontal edge in one channel
    radius = int(np.ceil(3 * 1.5))
    out = gaussian_blur(tf.constant(step), tf.constant([sigma]), 1.5).numpy()
    expected = scipy.ndimage.gaussian_filter(step[0], sigma=(sigma, sigma, 0), mode="nearest",
                                             radius=(radius, radius, 0))
    np.testing.assert_allclose(out[0], expected, atol=1e-3)
    profile = out[0, 10, :, 0]
    assert 0 < profile[23] < 100 < profile[24] < 200  # the edge spread over both sides, symmetrically
    np.testing.assert_allclose(profile[23] + profile[24], 200.0, atol=1e-3)


def test_blur_is_the_same_eagerly_and_under_xla_and_each_image_is_blurred_alone():
    images = tf.constant(np.stack([scene(4), scene(5), scene(6)]), tf.float32)
    sigma = tf.constant([0.4, 0.0, 1.5])
    eager = gaussian_blur(images, sigma, 1.5).numpy()
    blur = functools.partial(gaussian_blur, max_sigma=1.5)
    np.testing.assert_allclose(compiled(blur)(images, sigma).numpy(), eager, atol=1e-3)
    for i in range(3):
        np.testing.assert_allclose(gaussian_blur(images[i:i + 1], sigma[i:i + 1], 1.5).numpy()[0], eager[i], atol=1e-3)


# JPEG


def test_quantisation_tables_are_libjpegs():
    """``jpeg_set_quality``: 50 is the base table, 75 halves it (rounded), 10 is 5x, 100 all ones."""
    luma, chroma = (t.numpy() for t in quantisation_tables(tf.constant([50.0, 75.0, 10.0, 100.0, 29.6])))
    assert luma[0, 0, :4].tolist() == [16, 11, 10, 16] and chroma[0, 0, :4].tolist() == [17, 18, 24, 47]
    assert luma[1, 0, :4].tolist() == [8, 6, 5, 8] and chroma[1, 7, 7] == 50
    assert luma[2, 0, :4].tolist() == [80, 55, 50, 80] and luma[2, 7, 7] == 255  # 495 clipped to baseline's 255
    assert luma[3].max() == 1 and chroma[3].max() == 1
    assert luma[4, 0, 0] == (16 * (5000 // 30) + 50) // 100  # a quality is rounded to an integer first


@pytest.mark.parametrize("quality", [30, 50, 75, 95])
def test_jpeg_errs_as_libjpeg_does_and_decodes_to_what_libjpeg_decodes(quality):
    """Measured on these scenes: the simulation's error is 0.98-1.01x PIL's at every quality,
    and its output is within 41 dB PSNR of PIL's decoded image (image by image); asserted with margin."""
    images = np.stack([scene(i) for i in range(6)])
    out = jpeg(tf.constant(images, tf.float32), tf.fill([6], float(quality))).numpy()
    for simulated, original in zip(out, images):
        real = pil_jpeg(original, quality)
        assert 0.9 < rmse(simulated, original) / rmse(real, original) < 1.1
        assert psnr(simulated, real) > 38


def test_jpeg_error_grows_as_quality_falls_and_quality_100_is_nearly_the_original():
    images = np.stack([scene(i) for i in range(4)])
    errors = [rmse(jpeg(tf.constant(images, tf.float32), tf.fill([4], float(q))).numpy(), images)
              for q in (95, 75, 50, 30, 10)]
    assert errors == sorted(errors) and errors[-1] > 1.5 * errors[0]
    ramps = smooth()[None]
    assert psnr(jpeg(tf.constant(ramps, tf.float32), tf.constant([100.0])).numpy(), ramps) > 45  # measured 58.6


def test_jpeg_pads_sizes_that_are_not_multiples_of_16_and_crops_back():
    image = scene(9)[:50, :37]
    out = jpeg(tf.constant(image[None], tf.float32), tf.constant([50.0])).numpy()[0]
    assert out.shape == image.shape
    assert psnr(out, pil_jpeg(image, 50)) > 40  # libjpeg repeats the edge too; measured 46.6


def test_jpeg_is_the_same_eagerly_and_under_xla_and_each_image_has_its_own_quality():
    images = tf.constant(np.stack([scene(i) for i in range(3)]), tf.float32)
    quality = tf.constant([30.0, 95.0, 60.0])
    eager = jpeg(images, quality).numpy()
    xla = compiled(jpeg)(images, quality).numpy()
    assert np.abs(eager - xla).mean() < 1e-3 and np.abs(eager - xla).max() < 3  # a rare rounding may flip
    for i in range(3):
        alone = jpeg(images[i:i + 1], quality[i:i + 1]).numpy()[0]
        assert np.abs(alone - eager[i]).mean() < 1e-3
    assert rmse(eager[0], images.numpy()[0]) > 1.3 * rmse(eager[1], images.numpy()[1])


# Brightness and contrast


def test_brightness_adds_per_image_and_clips():
    images = tf.constant([[[[100.0, 200.0, 250.0]]], [[[10.0, 20.0, 30.0]]]])
    out = adjust_brightness(images, tf.constant([30.0, -25.0])).numpy()
    np.testing.assert_allclose(out[:, 0, 0], [[130, 230, 255], [0, 0, 5]])
    np.testing.assert_array_equal(adjust_brightness(images, tf.zeros([2])).numpy(), images.numpy())


def test_contrast_scales_around_each_images_mean_colour_as_imagenet_c_does():
    """Halves of 50 and 150 have the mean 100: a gain of 0.5 makes them 75 and 125, one of 3 makes them 0 and 250."""
    image = np.zeros((1, 4, 4, 3), np.float32)
    image[:, :, :2], image[:, :, 2:] = 50.0, 150.0
    tinted = image * [1.0, 0.5, 0.0]  # channel means 100, 50 and 0
    out = adjust_contrast(tf.constant(np.concatenate([image, image, tinted])), tf.constant([0.5, 3.0, 0.0])).numpy()
    np.testing.assert_allclose(out[0, 0, :, 0], [75, 75, 125, 125])
    np.testing.assert_allclose(out[1, 0, :, 0], [0, 0, 250, 250])
    np.testing.assert_allclose(out[2], np.broadcast_to([100.0, 50.0, 0.0], (4, 4, 3)))  # its mean colour, not gray
    x = np.stack([scene(10), scene(11)]).astype(np.float32)
    means = x.mean(axis=(1, 2), keepdims=True)  # ImageNet-C: np.mean(x, axis=(0, 1), keepdims=True) per image
    np.testing.assert_allclose(adjust_contrast(tf.constant(x), tf.constant([0.3, 0.05])).numpy(),
                               np.clip((x - means) * np.array([0.3, 0.05])[:, None, None, None] + means, 0, 255),
                               atol=1e-3)
    np.testing.assert_array_equal(adjust_contrast(tf.constant(image), tf.ones([1])).numpy(), image)


@pytest.mark.parametrize("corruption, strength", [
    (lambda x, s: gaussian_noise(x, s, SEED), 10.0),
    (lambda x, s: gaussian_blur(x, s, 1.5), 1.0),
    (jpeg, 40.0),
    (adjust_brightness, 20.0),
    (adjust_contrast, 0.5),
], ids=["noise", "blur", "jpeg", "brightness", "contrast"])
def test_every_corruption_compiles_under_xla_keeps_the_shape_and_the_range(corruption, strength):
    images = tf.constant(np.stack([scene(7), scene(8)])[:, :40, :56], tf.float32)
    strengths = tf.fill([2], strength)
    out = tf.function(corruption, jit_compile=True)(images, strengths).numpy()
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    np.testing.assert_allclose(out, corruption(images, strengths).numpy(), atol=0.05)
