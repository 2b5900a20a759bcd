"""Stage ``anchors@<dataset>``: anchor boxes for detection, by k-means over the training split's box sizes
(as fractions of the model input, so they follow ``preprocess.resize``)."""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.anchors import anchors_for_split
from visionflow.config import Config
from visionflow.data.coco_layout import load_raw_dataset
from visionflow.data.split import read_manifest
from visionflow.io import write_json
from visionflow.layout import anchors_file, data_metrics, raw_dir, split_dir
from visionflow.tracking import stage_run


def run(cfg: Config, dataset: str) -> None:
    stage, data = f"anchors@{dataset}", cfg.dataset(dataset)
    anchors, resize = data.anchors, data.preprocess.resize
    raw, train_ids = load_raw_dataset(raw_dir(dataset)), read_manifest(split_dir(dataset), "train")
    with stage_run(stage, cfg.tracking.experiment, {"anchors": anchors.model_dump()}, dvc_tags(stage)):
        sizes, metrics = anchors_for_split(raw, train_ids, anchors.num_anchors, anchors.seed, resize)
        write_json(anchors_file(dataset), sizes)
        write_json(data_metrics(dataset, "anchors"), metrics)
        mlflow.log_metrics({f"anchors_{k}": v for k, v in metrics.items()})


if __name__ == "__main__":
    main(run)
