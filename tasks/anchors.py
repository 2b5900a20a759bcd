"""Stage ``anchors``: anchor boxes for detection, by k-means over the training split's box sizes."""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.anchors import anchors_for_split
from visionflow.config import Config
from visionflow.data.coco_layout import load_raw_dataset
from visionflow.data.split import read_manifest
from visionflow.io import write_json
from visionflow.layout import ANCHORS_FILE, DATA_METRICS_DIR, RAW_DIR, SPLIT_DIR
from visionflow.tracking import stage_run


def run(cfg: Config) -> None:
    raw, train_ids = load_raw_dataset(RAW_DIR), read_manifest(SPLIT_DIR, "train")
    with stage_run("anchors", cfg.tracking.experiment, {"anchors": cfg.anchors.model_dump()}, dvc_tags("anchors")):
        anchors, metrics = anchors_for_split(raw, train_ids, cfg.anchors.num_anchors, cfg.anchors.seed)
        write_json(ANCHORS_FILE, anchors)
        write_json(DATA_METRICS_DIR / "anchors.json", metrics)
        mlflow.log_metrics({f"anchors_{k}": v for k, v in metrics.items()})


if __name__ == "__main__":
    main(run)
