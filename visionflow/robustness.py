"""The ``robustness@<family>`` stage's work: a saved model on its test split under corruptions.

In the spirit of ImageNet-C and COCO-C: each corruption of ``params.yaml``'s
``robustness`` section (Gaussian noise, blur, JPEG, brightness, contrast, a held-out
photograph in place of the background) at each of its severities is applied to the test
images at the model's input size, before ``preprocess_input``, and the family's headline
metric is computed as ``evaluate`` computes it. The report gives each score and its
ratio to the clean score, and the mean ratio over all corruptions and severities.
Every draw (noise, photo crops) is seeded, so a report is reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visionflow.config import Config, RobustnessConfig
from visionflow.data.backgrounds import photo
from visionflow.data.photos import load_photos
from visionflow.models.family import ModelFamily


def outside_boxes(shape, boxes, valid):
    """(B, H, W, 1) float: 1 where a pixel's centre lies in none of its image's valid boxes (normalised xyxy)."""
    import tensorflow as tf

    height, width = shape[1], shape[2]
    ys = (tf.range(height, dtype=tf.float32) + 0.5) / tf.cast(height, tf.float32)
    xs = (tf.range(width, dtype=tf.float32) + 0.5) / tf.cast(width, tf.float32)
    x1, y1, x2, y2 = (boxes[..., k][:, :, None, None] for k in range(4))  # (B, N, 1, 1)
    inside = ((ys[None, None, :, None] >= y1) & (ys[None, None, :, None] < y2)
              & (xs[None, None, None, :] >= x1) & (xs[None, None, None, :] < x2) & valid[:, :, None, None])
    return 1.0 - tf.cast(tf.reduce_any(inside, axis=1), tf.float32)[..., None]


def photo_background(images, boxes, valid, backdrops, share: float):
    """Outside the boxes, replace ``share`` of each image by its backdrop (a photograph crop)."""
    mix = outside_boxes(images.shape, boxes, valid) * share
    return images * (1.0 - mix) + backdrops * mix


def corrupt(name: str, severity: float, images, boxes, valid, backdrops, seed):
    """One corruption at one severity on a batch of 0..255 images."""
    import tensorflow as tf

    from visionflow.data import corruptions

    full = tf.fill([tf.shape(images)[0]], float(severity))
    if name == "gaussian_noise":
        return corruptions.gaussian_noise(images, full, seed)
    if name == "gaussian_blur":
        return corruptions.gaussian_blur(images, full, float(severity))
    if name == "jpeg":
        return corruptions.jpeg(images, full)
    if name == "brightness":
        return corruptions.adjust_brightness(images, full)
    if name == "contrast":
        return corruptions.adjust_contrast(images, full)
    if name == "photo_background":
        return photo_background(images, boxes, valid, backdrops, float(severity))
    raise ValueError(f"robustness: unknown corruption {name!r}")


class TestBatches:
    """The test split at the model's input size, 0..255, with each image's boxes; a held-out backdrop on demand."""

    def __init__(self, processed_dir: Path, family: ModelFamily, batch_size: int, rcfg: RobustnessConfig):
        from visionflow.data.pipeline import model_dataset

        def targets(boxes, labels, valid, image_labels):
            return {"family": family.targets(boxes, labels, valid, image_labels), "boxes": boxes, "valid": valid}

        self.dataset = model_dataset(processed_dir, "test", batch_size, lambda x: x, targets)
        self.photos = load_photos(Path(rcfg.photo_dir), "robustness.photo_dir")
        self.seed, self.batch_size = rcfg.seed, batch_size
        self._backdrops: dict[int, object] = {}

    def __iter__(self):
        """``(step, images, extra)`` per batch, in order (the split is cached after the first pass)."""
        for step, (images, extra) in enumerate(self.dataset):
            yield step, images, extra

    def noise_seed(self, step: int):
        import tensorflow as tf

        return tf.constant([self.seed, step], tf.int32)

    def backdrops(self, step: int, images):
        """Batch ``step``'s photograph crops, one per image, seeded by its place in the split; drawn once."""
        if step not in self._backdrops:
            import tensorflow as tf

            first, size = step * self.batch_size, int(images.shape[1])
            crops = [photo(np.random.default_rng([self.seed, first + i]), size, self.photos)
                     for i in range(int(images.shape[0]))]
            self._backdrops[step] = tf.image.resize(tf.constant(np.stack(crops), tf.float32), images.shape[1:3])
        return self._backdrops[step]


def _score(model, family: ModelFamily, batches: TestBatches, iou_thresholds, corruption=None):
    from visionflow.evaluation import stack_batches

    outputs, targets = [], []
    for step, images, extra in batches:
        if corruption is not None:
            backdrops = batches.backdrops(step, images) if corruption[0] == "photo_background" else None
            images = corrupt(*corruption, images, extra["boxes"], extra["valid"], backdrops, batches.noise_seed(step))
        outputs.append(model.predict_on_batch(images))
        targets.append(extra["family"])
    metrics = family.metrics(stack_batches(outputs), stack_batches(targets), iou_thresholds)
    return float(metrics[family.headline_metric])


def robustness_report(cfg: Config, model, family: ModelFamily, processed_dir: Path) -> dict:
    """``{"metric", "clean", "corruptions": {name: {severity_index: {"value", "relative"}}}, "mean_relative"}``.

    ``model`` is a saved model: it reads raw pixels, so the corruptions work on what a camera gives.
    """
    batches = TestBatches(processed_dir, family, cfg.evaluate.batch_size, cfg.robustness)
    score = lambda corruption=None: _score(model, family, batches, cfg.evaluate.iou_thresholds, corruption)  # noqa: E731
    clean = score()
    report: dict = {"metric": family.headline_metric, "clean": clean, "corruptions": {}}
    for name, severities in cfg.robustness.corruptions.items():
        report["corruptions"][name] = {}
        for level, severity in enumerate(severities, start=1):
            value = score((name, severity))
            report["corruptions"][name][str(level)] = {"severity": severity, "value": value,
                                                       "relative": value / clean if clean else 0.0}
    relative = [s["relative"] for levels in report["corruptions"].values() for s in levels.values()]
    report["mean_relative"] = float(np.mean(relative))
    return report


def report_rows(report: dict) -> tuple[list[str], list[list]]:
    """The plot's table: one row per severity level, a column per corruption (the relative score)."""
    names = list(report["corruptions"])
    levels = sorted({int(k) for levels in report["corruptions"].values() for k in levels})
    rows = [[level] + [round(report["corruptions"][n].get(str(level), {}).get("relative", float("nan")), 4)
                       for n in names] for level in levels]
    return ["severity"] + names, rows
