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


def split_files(processed_dir: Path, split: str) -> list[str]:
    files = sorted(str(p) for p in Path(processed_dir).glob(f"{split}-*.tfrecord"))
    if not files:
        raise FileNotFoundError(f"{processed_dir}: no TFRecord shards for split {split!r}")
    return files
