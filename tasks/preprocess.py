"""Stage ``preprocess``: resize every split to the model's input size as TFRecord shards."""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.coco_layout import atomic_dir, load_raw_dataset
from visionflow.data.split import SPLITS, read_manifest
from visionflow.data.tfrecords import write_meta, write_split_shards
from visionflow.layout import PROCESSED_DIR, RAW_DIR, SPLIT_DIR
from visionflow.tracking import stage_run


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
        mlflow.log_metrics({f"num_{split}": len(ids) for split, ids in manifests.items()})


if __name__ == "__main__":
    main(run)
