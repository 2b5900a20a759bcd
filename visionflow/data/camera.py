"""What a camera and a codec do to a synthetic image: blur, sensor noise, JPEG compression.

Applied to the whole image once everything is drawn, in the physical order (optics,
sensor, codec), each from the image's own NumPy generator, so an image stays a pure
function of its seed and index.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image
    pil = Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8))
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius=sigma)), dtype=np.float64)


def add_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    return image + rng.normal(0, sigma, size=image.shape) if sigma > 0 else image


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode at ``quality`` (libjpeg's 1..95 scale, 4:2:0 chroma) and decode: uint8."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buffer).convert("RGB"))


@dataclass(frozen=True)
class Camera:
    """One image's draws: blur sigma (0: none), noise sigma and JPEG quality."""

    blur_sigma: float
    noise_sigma: float
    jpeg_quality: int

    @classmethod
    def draw(cls, rng: np.random.Generator, blur_chance: float, blur_sigma: tuple[float, float],
             noise_std: tuple[float, float], jpeg_quality: tuple[int, int], noise_skew: float = 1.0) -> "Camera":
        """Noise sigma is ``low + (high - low) * u ** noise_skew`` for a uniform ``u``: 1 is uniform, 2 puts
        half the images in the lowest quarter of the range (as most photographs are) and still reaches its top."""
        sigma = rng.uniform(*blur_sigma) if rng.random() < blur_chance else 0.0
        noise = noise_std[0] + (noise_std[1] - noise_std[0]) * rng.random() ** noise_skew
        return cls(float(sigma), float(noise),
                   int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1)))

    def apply(self, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
        """Blur, Gaussian noise (from ``rng``), then JPEG: uint8."""
        return jpeg(add_noise(rng, blur(image, self.blur_sigma), self.noise_sigma), self.jpeg_quality)
