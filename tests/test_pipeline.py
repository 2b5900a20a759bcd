"""The generic training pipeline, from real shards: fresh augmentations each epoch, boxes on their pixels,
and epochs that are reproducible and resumable from their seed."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.test_augment import RED, assert_boxes_bound_pixels, drawn, is_red
from visionflow.data.augment_config import AugmentConfig
from visionflow.data.pipeline import model_dataset, steps_per_epoch
from visionflow.data.tfrecords import _example
from visionflow.models.localizer.config import LocalizerConfig
from visionflow.models.localizer.family import Localizer

RECTS = [(8, 6, 24, 22), (20, 20, 44, 40), (2, 40, 14, 62), (30, 2, 62, 30), (10, 10, 50, 50), (40, 44, 60, 60)]
BATCH = 4


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    with tf.io.TFRecordWriter(str(root / "train-00000-of-00001.tfrecord")) as writer:
        for i, rect in enumerate(RECTS):
            image, boxes, _ = drawn([rect], colour=RED)
            buf = io.BytesIO()
            Image.fromarray(image[0].astype(np.uint8)).save(buf, format="JPEG", quality=98, subsampling=0)
            writer.write(_example(tf, buf.getvalue(), i + 1, boxes[0], [i % 2]).SerializeToString())
    return root


def epochs_of(root, start_epoch=0, seed=7, epochs=2):
    """The batches of ``epochs`` epochs from ``start_epoch``, as numpy (images, encoded boxes)."""
    family = Localizer(LocalizerConfig(), ["a", "b"])
    ds = model_dataset(root, "train", BATCH, lambda x: x, family.targets, training=True, augment=AugmentConfig(),
                       seed=seed, start_epoch=start_epoch, num_examples=len(RECTS))
    steps = steps_per_epoch(len(RECTS), BATCH)
    batches = [(x.numpy(), y["box"].numpy()) for x, y in ds.take(steps * epochs)]
    return [batches[e * steps:(e + 1) * steps] for e in range(epochs)]


def test_the_training_pipeline_augments_anew_each_epoch_and_keeps_boxes_on_their_pixels(shards):
    seen_per_epoch = []
    for epoch in epochs_of(shards):
        seen = {}
        for x, boxes in epoch:
            cx, cy, sw, sh = np.moveaxis(boxes, -1, 0)
            xyxy = np.stack([cx - sw ** 2 / 2, cy - sh ** 2 / 2, cx + sw ** 2 / 2, cy + sh ** 2 / 2], -1)
            assert_boxes_bound_pixels(x, xyxy[:, None], np.ones((len(xyxy), 1), bool), tol=1.5, drawn_pixels=is_red)
            for box, image in zip(xyxy, x):
                seen[round(float(image.sum()))] = box
        assert len(seen) == steps_per_epoch(len(RECTS), BATCH) * BATCH  # full batches only...
        seen_per_epoch.append(np.array(sorted(seen.values(), key=tuple)))
    assert not np.allclose(seen_per_epoch[0], seen_per_epoch[1])  # new draws each epoch
    family = Localizer(LocalizerConfig(), ["a", "b"])
    ds = model_dataset(shards, "train", BATCH, lambda x: x, family.targets, training=True, seed=7,
                       num_examples=len(RECTS), with_meta=True)
    ids = np.concatenate([meta["image_id"].numpy() for _, _, meta in ds.take(3 * len(RECTS) // BATCH)])
    for start in range(0, len(ids) - len(RECTS) + 1, len(RECTS)):  # ...each pass over the data holds every image once
        assert sorted(ids[start:start + len(RECTS)]) == list(range(1, len(RECTS) + 1))


def test_an_epoch_is_reproducible_and_a_resumed_pipeline_sees_the_same_batches(shards):
    first = epochs_of(shards, epochs=3)
    again = epochs_of(shards, epochs=3)
    resumed = epochs_of(shards, start_epoch=2, epochs=1)
    for (x1, b1), (x2, b2) in zip(sum(first, []), sum(again, [])):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(b1, b2)
    for (x1, b1), (x2, b2) in zip(first[2], resumed[0]):  # epoch 2 when started there
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(b1, b2)
    other = epochs_of(shards, seed=8, epochs=1)
    assert not np.allclose(other[0][0][0], first[0][0][0])  # another seed, other draws


def test_evaluation_batches_carry_ids_and_windows_in_order(shards):
    family = Localizer(LocalizerConfig(), ["a", "b"])
    ds = model_dataset(shards, "train", BATCH, lambda x: x, family.targets, with_meta=True)
    metas = [meta for _, _, meta in ds]
    np.testing.assert_array_equal(np.concatenate([m["image_id"] for m in metas]), np.arange(1, len(RECTS) + 1))
    np.testing.assert_array_equal(np.concatenate([m["window"] for m in metas]), np.tile([0, 0, 1, 1], (len(RECTS), 1)))


def test_multi_scale_draws_sizes_every_few_batches_and_a_resumed_pipeline_draws_the_same(shards):
    family = Localizer(LocalizerConfig(), ["a", "b"])

    def sizes(start_epoch, batches):
        ds = model_dataset(shards, "train", BATCH, lambda x: x, family.targets, training=True, seed=7,
                           start_epoch=start_epoch, num_examples=len(RECTS), input_sizes=(32, 64, 96), size_every=2)
        return [int(x.shape[1]) for x, _ in ds.take(batches)]

    steps = steps_per_epoch(len(RECTS), BATCH)
    drawn_sizes = sizes(0, 12)
    assert set(drawn_sizes) == {32, 64, 96}
    assert all(drawn_sizes[k] == drawn_sizes[k + 1] for k in range(0, 12, 2))  # one size for every 2 batches
    assert sizes(3, 12 - 3 * steps) == drawn_sizes[3 * steps:]
