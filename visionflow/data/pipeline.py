"""The generic ``tf.data`` pipeline: shards -> padded batches -> model inputs and a family's targets.

A family only says what its targets are (``targets(boxes, labels, valid, image_labels)``); the
pipeline reads and decodes the shards, caches, shuffles, batches, augments, runs the
backbone's ``preprocess_input`` and calls that function, all the per-pixel work in one
XLA-compiled function that may use every core (``tf.data`` otherwise runs each op on
one thread).

A training pipeline is reproducible and resumable: it repeats without end, in full
batches (one may hold the end of a pass over the data and the start of the next), every
batch is numbered from the first epoch on, the augmentation of batch ``k`` draws from the
seed ``(seed, k)``, and the shuffle order of each pass follows from ``seed``. Started at
``start_epoch``, it yields exactly the batches that epoch would have had.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

from visionflow.data.tfrecords import parse_example, split_files

SHUFFLE_BUFFER = 2048
SIZE_STREAM = 7_919_000_003  # added to the seed for the multi-scale draws
PADDED_KEYS = ("image", "image_id", "boxes", "labels", "window", "image_labels")


def padded_batches(ds, batch_size: int):
    """Batch parsed examples, padding ``boxes`` with zeros and the labels with -1 (which marks padding)."""
    import tensorflow as tf

    shapes = {"image": [None, None, 3], "image_id": [], "boxes": [None, 4], "labels": [None], "window": [4],
              "image_labels": [None]}
    values = {"image": tf.constant(0, tf.uint8), "image_id": tf.constant(0, tf.int64),
              "boxes": tf.constant(0.0), "labels": tf.constant(-1, tf.int64), "window": tf.constant(0.0),
              "image_labels": tf.constant(-1, tf.int64)}
    return ds.padded_batch(batch_size, padded_shapes=shapes, padding_values=values).map(_pad_to_power_of_two)


def _pad_to_power_of_two(batch):
    """Pad the boxes and labels of a batch on to a power of two: the compiled function sees a few shapes, not one
    per number of objects (each new shape costs a compile)."""
    import tensorflow as tf

    def pad(values, fill):
        n = tf.shape(values)[1]
        bucket = tf.cast(2.0 ** tf.math.ceil(tf.math.log(tf.cast(tf.maximum(n, 1), tf.float32)) / tf.math.log(2.0)),
                         tf.int32)
        paddings = tf.concat([[[0, 0], [0, bucket - n]], tf.zeros([tf.rank(values) - 2, 2], tf.int32)], axis=0)
        return tf.pad(values, paddings, constant_values=fill)

    return {**batch, "boxes": pad(batch["boxes"], 0.0), "labels": pad(batch["labels"], tf.constant(-1, tf.int64)),
            "image_labels": pad(batch["image_labels"], tf.constant(-1, tf.int64))}


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_examples / batch_size))


def model_dataset(processed_dir: Path, split: str, batch_size: int, preprocess_input: Callable,
                  targets: Callable, training: bool = False, augment=None, seed: int = 0, start_epoch: int = 0,
                  num_examples: int | None = None, with_meta: bool = False, cache: bool = True,
                  input_sizes: tuple[int, ...] = (), size_every: int = 1):
    """``tf.data`` of (preprocessed images, targets) batches, or (images, targets, meta) ``with_meta``.

    ``targets`` is a family's ``targets(boxes_xyxy_norm, labels, valid, image_labels)``; ``augment`` an
    :class:`~visionflow.data.augment_config.AugmentConfig` (training only, None: off);
    ``meta`` holds each image's ``image_id`` and ``window`` (where the image sits in the
    model input). Training batches repeat without end from ``start_epoch`` (which needs
    ``num_examples`` of the split): fit them with ``steps_per_epoch``. With ``input_sizes``
    (multi-scale training), every ``size_every`` batches draw one of those sizes, seeded,
    and the batch's images are resized to it; targets in normalised coordinates stay as they are.
    """
    import tensorflow as tf

    # One shard after another: a parallel read's order would depend on the number of cores.
    ds = tf.data.TFRecordDataset(split_files(processed_dir, split))
    ds = ds.map(lambda s: {k: v for k, v in parse_example(s).items() if k in PADDED_KEYS},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache()  # decoded, before augmentation: every epoch draws new augmentations
    if training:
        # Batched after the repeat, so every batch is full (a last, smaller batch of each epoch would cost the
        # compiled function a second compile, which was measured at over a minute) and epochs run on seamlessly.
        ds = ds.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()
        skip = start_epoch * steps_per_epoch(num_examples, batch_size) if start_epoch else 0
        ds = padded_batches(ds, batch_size).enumerate().skip(skip)
    else:
        ds = padded_batches(ds, batch_size).map(lambda batch: (tf.constant(0, tf.int64), batch))
    to_model = _inputs_and_targets(preprocess_input, targets, augment if training else None, seed)
    ds = ds.map(lambda step, batch: _select(to_model(step, batch), batch, with_meta),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)  # in order: an epoch is reproducible
    if training and input_sizes:
        ds = ds.enumerate().map(_multi_scale(input_sizes, size_every, seed, skip),
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(pipeline_options())


def _inputs_and_targets(preprocess_input: Callable, targets: Callable, augment, seed: int):
    """One XLA-compiled function: (batch number, padded batch) -> (model inputs, targets)."""
    import tensorflow as tf

    augment_batch = None
    if augment is not None:
        from visionflow.data.augment import augment_batch

    @tf.function(jit_compile=True)
    def to_model(step, batch):
        images, boxes, valid = batch["image"], batch["boxes"], batch["labels"] >= 0
        if augment_batch is not None:
            images, boxes, valid = augment_batch(images, boxes, valid, augment, tf.stack([tf.cast(seed, tf.int64), step]))
        labels = tf.where(valid, batch["labels"], -1)
        return preprocess_input(tf.cast(images, tf.float32)), targets(boxes, labels, valid, batch["image_labels"])

    return to_model


def _multi_scale(sizes: tuple[int, ...], every: int, seed: int, first_step: int):
    """(k, (images, targets...)) -> the same with the images resized to the size drawn for batch ``first_step + k``."""
    import tensorflow as tf

    table = tf.constant(sizes, tf.int32)

    def resize(k, element):
        group = (k + first_step) // every
        stream = tf.cast(seed, tf.int64) + SIZE_STREAM  # not the augmentation's seeds
        pick = tf.random.stateless_uniform([], tf.stack([stream, group]), maxval=len(sizes), dtype=tf.int32)
        size = table[pick]
        return (tf.image.resize(element[0], tf.stack([size, size])), *element[1:])

    return resize


def _select(inputs_targets, batch, with_meta: bool):
    x, y = inputs_targets
    return (x, y, {"image_id": batch["image_id"], "window": batch["window"]}) if with_meta else (x, y)


def pipeline_options():
    """``tf.data`` options for pipelines that feed training on the CPU that trains.

    The map may use every core for its ops. Autotuning is off: ``AUTOTUNE`` then means
    one call per core, and no tuning thread competes with the training step for the same
    cores (measured with 2 cores: epochs of the same steps took 1x or 2x as long at
    random with it on, and stayed at 1x with it off).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = len(os.sched_getaffinity(0))
    options.autotune.enabled = False
    return options
