"""The generic ``tf.data`` training pipeline: shards -> padded batches -> (augmented) model inputs and a family's targets."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from visionflow.data.tfrecords import parse_example, split_files


def localizer_targets(boxes, labels) -> dict:
    """The first object's class and its box encoded as (cx, cy, sqrt w, sqrt h), normalised.

    Works on one example ((N, 4), (N,)) or a padded batch ((B, N, 4), (B, N)).
    """
    import tensorflow as tf

    x1, y1, x2, y2 = tf.unstack(boxes[..., 0, :], axis=-1)
    box = tf.stack([(x1 + x2) / 2, (y1 + y2) / 2, tf.sqrt(tf.maximum(x2 - x1, 0.0)), tf.sqrt(tf.maximum(y2 - y1, 0.0))],
                   axis=-1)
    return {"class": labels[..., 0], "box": box}


def padded_batches(ds, batch_size: int):
    """Batch parsed examples, padding ``boxes`` with zeros and ``labels`` with -1 (which marks padding)."""
    import tensorflow as tf

    shapes = {"image": [None, None, 3], "image_id": [], "boxes": [None, 4], "labels": [None]}
    values = {"image": tf.constant(0, tf.uint8), "image_id": tf.constant(0, tf.int64),
              "boxes": tf.constant(0.0), "labels": tf.constant(-1, tf.int64)}
    return ds.padded_batch(batch_size, padded_shapes=shapes, padding_values=values)


def localizer_dataset(processed_dir: Path, split: str, batch_size: int, preprocess_input: Callable,
                      training: bool, seed: int = 0, with_ids: bool = False, augment_config=None,
                      cache: bool = True):
    """``tf.data`` of (preprocessed image, {"class", "box"}) batches for the localizer.

    Shards are read and decoded in parallel; decoded examples are cached in memory
    (before augmentation, so every epoch draws new augmentations) when ``cache``; then
    shuffled (training) and batched. ``augment_config`` (an
    :class:`~visionflow.data.augment.AugmentConfig`) augments training batches with
    boxes moved along, a batch at a time; the backbone's ``preprocess_input`` runs last.

    Augmentation, ``preprocess_input`` and the targets are one XLA-compiled function, so
    the per-pixel work is fused into a few passes over the batch, and that function may
    use every core (``tf.data`` otherwise runs each op on one thread).
    """
    import tensorflow as tf

    files = split_files(processed_dir, split)
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE if training else None)
    ds = ds.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
    ds = padded_batches(ds, batch_size)
    augment_batch = None
    if training and augment_config is not None:
        from visionflow.data.augment import augment_batch

    @tf.function(jit_compile=True)
    def inputs_and_targets(images, boxes, labels):
        if augment_batch is not None:
            images, boxes = augment_batch(images, boxes, labels >= 0, augment_config)
        return preprocess_input(tf.cast(images, tf.float32)), localizer_targets(boxes, labels)

    def to_xy(ex):
        x, y = inputs_and_targets(ex["image"], ex["boxes"], ex["labels"])
        return (x, y, ex["image_id"]) if with_ids else (x, y)

    ds = ds.map(to_xy, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not training)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(pipeline_options())


def pipeline_options():
    """``tf.data`` options for pipelines that feed training on the CPU that trains.

    The map may use every core for its ops. Autotuning is off: ``AUTOTUNE`` then means
    one call per core, and no tuning thread competes with the training step for the same
    cores (measured with 2 cores: epochs of the same steps took 1x or 2x as long at
    random with it on, and stayed at 1x with it off).
    """
    import os

    import tensorflow as tf

    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = len(os.sched_getaffinity(0))
    options.autotune.enabled = False
    return options
