"""Stage ``preprocess``: resize every split to the model's input size as TFRecord shards,
and find the detector's anchor boxes by k-means over the training boxes."""

import json

import mlflow
import numpy as np

from tasks._entry import dvc_tags, main, write_json
from visionflow.config import Config
from visionflow.data.coco_layout import atomic_dir, load_raw_dataset
from visionflow.data.split import SPLITS, read_manifest
from visionflow.data.tfrecords import write_meta, write_split_shards
from visionflow.anchors import kmeans_anchors
from visionflow.layout import METRICS_DIR, PROCESSED_DIR, RAW_DIR, SPLIT_DIR
from visionflow.tracking import stage_run


def training_box_sizes(raw, train_ids: list[int]) -> np.ndarray:
    """(N, 2) normalised widths and heights of the training boxes."""
    sizes = {img["id"]: (img["width"], img["height"]) for img in raw.images}
    wh = [(a["bbox"][2] / sizes[i][0], a["bbox"][3] / sizes[i][1])
          for i in train_ids for a in raw.annotations_by_image[i] if "bbox" in a and not a.get("iscrowd")]
    return np.array(wh, np.float64).reshape(-1, 2)


def run(cfg: Config) -> None:
    raw = load_raw_dataset(RAW_DIR)
    manifests = {split: read_manifest(SPLIT_DIR, split) for split in SPLITS}
    size = cfg.preprocess.image_size
    with stage_run("preprocess", cfg.tracking.experiment, {"preprocess": cfg.preprocess.model_dump()},
                   dvc_tags("preprocess")):
        with atomic_dir(PROCESSED_DIR) as tmp:
            shards = {split: write_split_shards(raw, ids, split, tmp, size, cfg.preprocess.num_shards)
                      for split, ids in manifests.items() if ids}
            write_meta(tmp, {"image_size": size, "classes": raw.category_names,
                             "num_examples": {split: len(ids) for split, ids in manifests.items()},
                             "shards": shards, "box_format": "xyxy normalized"})
            wh = training_box_sizes(raw, manifests["train"])
            anchor_metrics = {}
            if len(wh) >= cfg.preprocess.num_anchors:
                anchors = kmeans_anchors(wh, cfg.preprocess.num_anchors, seed=cfg.split.seed)
                (tmp / "anchors.json").write_text(json.dumps({"format": "width height, normalized",
                                                              "anchors": anchors.sizes.round(6).tolist()}))
                anchor_metrics = {"mean_best_iou": anchors.mean_best_iou, "num_anchors": len(anchors.sizes),
                                  "num_boxes": len(wh)}
        write_json(METRICS_DIR / "anchors.json", anchor_metrics)
        mlflow.log_metrics({f"num_{split}": len(ids) for split, ids in manifests.items()})
        mlflow.log_metrics({f"anchors_{k}": v for k, v in anchor_metrics.items()})


if __name__ == "__main__":
    main(run)
