"""Stage ``preprocess@<dataset>``: every split resized to the model's input size, as TFRecord shards."""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.coco_layout import load_raw_dataset
from visionflow.data.preprocess import write_processed
from visionflow.data.split import read_manifests
from visionflow.layout import processed_dir, raw_dir, split_dir
from visionflow.tracking import stage_run


def run(cfg: Config, dataset: str) -> None:
    stage, preprocess = f"preprocess@{dataset}", cfg.dataset(dataset).preprocess
    raw, manifests = load_raw_dataset(raw_dir(dataset)), read_manifests(split_dir(dataset))
    with stage_run(stage, cfg.tracking.experiment, {"preprocess": preprocess.model_dump()}, dvc_tags(stage)):
        write_processed(raw, manifests, processed_dir(dataset), preprocess)
        mlflow.log_metrics({f"num_{split}": len(ids) for split, ids in manifests.items()})


if __name__ == "__main__":
    main(run)
