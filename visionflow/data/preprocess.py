"""The ``preprocess`` stage's work: every split as TFRecord shards at the model's input size, plus their meta."""

from __future__ import annotations

from pathlib import Path

from visionflow.data.tfrecords import write_meta, write_split_shards
from visionflow.io import atomic_dir


def write_processed(raw, manifests: dict[str, list[int]], out_dir: Path, cfg) -> None:
    """Replace ``out_dir`` with the shards of every non-empty split; ``cfg`` is the ``preprocess`` section."""
    with atomic_dir(out_dir) as tmp:
        shards = {split: write_split_shards(raw, ids, split, tmp, cfg.image_size, cfg.num_shards, resize=cfg.resize)
                  for split, ids in manifests.items() if ids}
        write_meta(tmp, {"image_size": cfg.image_size, "classes": raw.category_names,
                         "category_ids": [c["id"] for c in raw.categories], "resize": cfg.resize,
                         "num_examples": {split: len(ids) for split, ids in manifests.items()},
                         "shards": shards, "box_format": "xyxy normalized"})
