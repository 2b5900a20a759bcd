"""Backbone pretraining: crops with each object whole, at the scale the localizer sees it; BatchNorm recalibration."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from visionflow.models.pretrain import _object_crops

SIZE = 96


def example_with(rects):
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    for x1, y1, x2, y2 in rects:
        image[y1:y2, x1:x2] = 255
    boxes = np.array(rects, np.float32) / SIZE
    return {"image": tf.constant(image), "boxes": tf.constant(boxes), "labels": tf.constant(np.arange(len(rects)))}


def crops_of(rects, crop_size=32, crop_window=32, draws=20, jitter=1.0):
    tf.random.set_seed(0)
    ex = example_with(rects)
    return [[(c.numpy(), int(label))
             for c, label in _object_crops(ex, crop_size, crop_window, SIZE, lambda x: x, jitter)]
            for _ in range(draws)]


@pytest.mark.parametrize("jitter, min_positions, max_positions", [(1.0, 11, 20), (0.0, 1, 1)])
def test_a_small_object_is_cropped_whole_at_its_own_scale_where_the_jitter_lets_it(jitter, min_positions,
                                                                                     max_positions):
    positions = set()
    for (crop, label), in crops_of([(40, 30, 52, 40)], jitter=jitter):  # 12 x 10 px, well under the 32 px crop
        assert label == 0
        ys, xs = np.nonzero(crop.mean(-1) > 127)
        # native scale (crop_and_resize maps the window's edges to pixel centres: within 2 %)
        assert 11 <= xs.max() - xs.min() + 1 <= 13 and 9 <= ys.max() - ys.min() + 1 <= 11
        positions.add((xs.min(), ys.min()))
    assert min_positions <= len(positions) <= max_positions  # anywhere, or always centred


def test_a_large_object_gets_a_larger_crop_shrunk_to_size():
    for (_, _), (crop, label) in crops_of([(2, 2, 8, 8), (20, 20, 80, 80)]):
        assert label == 1
        ys, xs = np.nonzero(crop.mean(-1) > 127)
        # 60 px in a crop of 1.2 x 60 = 72 px shrunk to 32: 60 * 32 / 72 = 26.7 px, all of it inside
        assert 25 <= xs.max() - xs.min() + 1 <= 28 and 25 <= ys.max() - ys.min() + 1 <= 28


def test_a_wider_window_is_shrunk_to_the_crop_size():
    for (crop, _), in crops_of([(40, 30, 60, 46)], crop_size=32, crop_window=64):  # 20 x 16 px at half scale
        ys, xs = np.nonzero(crop.mean(-1) > 127)
        assert 9 <= xs.max() - xs.min() + 1 <= 11 and 7 <= ys.max() - ys.min() + 1 <= 9


def test_batchnorm_recalibration_moves_only_the_moving_statistics():
    from visionflow.models.pretrain import recalibrate_batchnorm

    inputs = keras.Input((4, 4, 2))
    bn = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(bn(inputs)))
    kernel = model.layers[-1].kernel.numpy().copy()
    rng = np.random.default_rng(0)
    batches = [tf.constant(rng.normal([3.0, -1.0], [2.0, 0.5], (16, 4, 4, 2)), tf.float32) for _ in range(60)]
    assert recalibrate_batchnorm(model, batches) == 60
    np.testing.assert_allclose(bn.moving_mean.numpy(), [3.0, -1.0], atol=0.1)
    np.testing.assert_allclose(bn.moving_variance.numpy(), [4.0, 0.25], rtol=0.1)
    assert bn.momentum == 0.99  # put back
    np.testing.assert_array_equal(model.layers[-1].kernel.numpy(), kernel)


def test_pretraining_learns_from_training_crops_and_returns_a_full_size_backbone(tmp_path):
    """The whole of ``pretrain_backbone`` on real shards: crops of two classes, a tiny backbone, two epochs."""
    import io

    from PIL import Image

    from tests.tiny import SPEC
    from visionflow.data.tfrecords import _example
    from visionflow.models.pretrain import pretrain_backbone

    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(tmp_path / "train-00000-of-00001.tfrecord")) as writer:
        for i in range(32):
            x1, y1 = rng.integers(0, 40, 2)
            rect = (int(x1), int(y1), int(x1) + 16, int(y1) + 16)
            image = np.zeros((64, 64, 3), np.uint8)
            image[rect[1]:rect[3], rect[0]:rect[2]] = 255 if i % 2 else 80
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="PNG")
            writer.write(_example(tf, buf.getvalue(), i + 1, np.array([rect], np.float32) / 64, [i % 2]).SerializeToString())
    result = pretrain_backbone(SPEC, tmp_path, 64, 2, 1.0, epochs=2, batch_size=8, learning_rate=0.01, crop_size=32,
                               seed=0)
    assert len(result.history["loss"]) == 2 and 0 <= result.history["accuracy"][-1] <= 1
    assert result.backbone.input_shape == (None, 64, 64, 3)  # moved to the full image size
    bn = [l for l in result.backbone.layers if isinstance(l, keras.layers.BatchNormalization)][0]
    assert not np.allclose(bn.moving_mean.numpy(), 0)  # recalibrated on full-size training images
