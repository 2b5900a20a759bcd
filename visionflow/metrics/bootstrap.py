"""The paired bootstrap: is model A better than model B on the same test images?

Both models are scored on the same resamples of the test images (drawn with
replacement), so what the images share (easy or hard) cancels in the difference. The
one-sided lower confidence bound of A − B is what the promotion gate reads: above its
margin, A is better with that confidence (Efron & Tibshirani, ch. 16; Koehn 2004).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PairedBootstrap:
    difference: float  # A − B on the test images as they are
    lower: float  # one-sided lower confidence bound of A − B
    upper: float  # and the upper one, for the report
    p_not_better: float  # share of resamples where A − B <= 0
    samples: int
    confidence: float

    def as_dict(self) -> dict:
        return asdict(self)


def resample_weights(num_images: int, samples: int, seed: int) -> np.ndarray:
    """(samples, N): how many times each image is drawn in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_images, np.full(num_images, 1.0 / num_images), size=samples).astype(float)


def paired_bootstrap(score_a, score_b, num_images: int, samples: int = 1000, confidence: float = 0.95,
                     seed: int = 0) -> PairedBootstrap:
    """``score_a``/``score_b``: (B, N) image weights -> (B,) metric, as the evidence objects give."""
    if num_images < 2:
        raise ValueError("a paired bootstrap needs at least 2 test images")
    weights = resample_weights(num_images, samples, seed)
    diffs = score_a(weights) - score_b(weights)
    ones = np.ones((1, num_images))
    observed = float(score_a(ones)[0] - score_b(ones)[0])
    alpha = 1.0 - confidence
    return PairedBootstrap(observed, float(np.quantile(diffs, alpha)), float(np.quantile(diffs, confidence)),
                           float(np.mean(diffs <= 0)), samples, confidence)
