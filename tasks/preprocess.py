"""Stage ``preprocess``: every split resized to the model's input size, as TFRecord shards."""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.coco_layout import load_raw_dataset
from visionflow.data.preprocess import write_processed
from visionflow.data.split import read_manifests
from visionflow.layout import PROCESSED_DIR, RAW_DIR, SPLIT_DIR
from visionflow.tracking import stage_run


def run(cfg: Config) -> None:
    raw, manifests = load_raw_dataset(RAW_DIR), read_manifests(SPLIT_DIR)
    with stage_run("preprocess", cfg.tracking.experiment, {"preprocess": cfg.preprocess.model_dump()},
                   dvc_tags("preprocess")):
        write_processed(raw, manifests, PROCESSED_DIR, cfg.preprocess)
        mlflow.log_metrics({f"num_{split}": len(ids) for split, ids in manifests.items()})


if __name__ == "__main__":
    main(run)
