"""TFRecord shards of resized images with normalised boxes, and the ``tf.data`` reader.

An example holds the JPEG of the resized image, ``boxes`` as normalised xyxy
(flattened, 4 floats per object; resizing the whole image leaves normalised boxes
unchanged), ``labels`` as 0-based class indices, and the COCO ``image_id``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from visionflow.boxes import convert_boxes, normalize_boxes
from visionflow.data.coco_layout import RawDataset

META_FILE = "dataset.json"


def _resized_jpeg(path: Path, size: int) -> bytes:
    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=95)
        return buf.getvalue()


def _example(tf, image_bytes: bytes, image_id: int, boxes_xyxy_norm: np.ndarray, labels: list[int]):
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
        "image_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[image_id])),
        "boxes": tf.train.Feature(float_list=tf.train.FloatList(value=boxes_xyxy_norm.reshape(-1).tolist())),
        "labels": tf.train.Feature(int64_list=tf.train.Int64List(value=labels)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_split_shards(raw: RawDataset, image_ids: list[int], split: str, out_dir: Path,
                       image_size: int, num_shards: int) -> list[str]:
    """Write one split as ``<split>-XXXXX-of-YYYYY.tfrecord``; returns the shard file names."""
    import tensorflow as tf

    images = {img["id"]: img for img in raw.images}
    index = raw.label_index()
    num_shards = max(1, min(num_shards, len(image_ids)))
    names = [f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(str(out_dir / n)) for n in names]
    try:
        for k, image_id in enumerate(image_ids):
            img = images[image_id]
            anns = [a for a in raw.annotations_by_image[image_id] if "bbox" in a]
            boxes = normalize_boxes(convert_boxes(np.array([a["bbox"] for a in anns]).reshape(-1, 4), "xywh", "xyxy"),
                                    img["width"], img["height"])
            labels = [index[a["category_id"]] for a in raw.annotations_by_image[image_id]]
            jpeg = _resized_jpeg(raw.root / img["file_name"], image_size)
            writers[k % num_shards].write(_example(tf, jpeg, image_id, np.clip(boxes, 0, 1), labels).SerializeToString())
    finally:
        for w in writers:
            w.close()
    return names


def write_meta(out_dir: Path, meta: dict) -> None:
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=1))


def read_meta(processed_dir: Path) -> dict:
    path = Path(processed_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (run the preprocess stage first)")
    return json.loads(path.read_text())


def parse_example(serialized):
    """Serialized example -> dict(image uint8 (H, W, 3), image_id, boxes (N, 4) normalised xyxy, labels (N,))."""
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "image_id": tf.io.FixedLenFeature([], tf.int64),
        "boxes": tf.io.VarLenFeature(tf.float32),
        "labels": tf.io.VarLenFeature(tf.int64),
    }
    ex = tf.io.parse_single_example(serialized, spec)
    return {
        "image": tf.io.decode_jpeg(ex["image"], channels=3),
        "image_id": ex["image_id"],
        "boxes": tf.reshape(tf.sparse.to_dense(ex["boxes"]), [-1, 4]),
        "labels": tf.sparse.to_dense(ex["labels"]),
    }


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


def split_files(processed_dir: Path, split: str) -> list[str]:
    files = sorted(str(p) for p in Path(processed_dir).glob(f"{split}-*.tfrecord"))
    if not files:
        raise FileNotFoundError(f"{processed_dir}: no TFRecord shards for split {split!r}")
    return files


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
