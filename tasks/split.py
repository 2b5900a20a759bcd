"""Stage ``split@<dataset>``: stratified, seeded train/valid/test manifests (``data/<dataset>/split``)."""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.coco_layout import load_raw_dataset
from visionflow.data.split import split_raw_dataset, write_manifests
from visionflow.io import atomic_dir, write_json
from visionflow.layout import data_metrics, raw_dir, split_dir
from visionflow.tracking import stage_run


def run(cfg: Config, dataset: str) -> None:
    stage, split = f"split@{dataset}", cfg.dataset(dataset).split
    raw = load_raw_dataset(raw_dir(dataset))
    splits, counts = split_raw_dataset(raw, split)
    with stage_run(stage, cfg.tracking.experiment, {"split": split.model_dump()}, dvc_tags(stage)):
        with atomic_dir(split_dir(dataset)) as tmp:
            write_manifests(tmp, splits, counts)
        sizes = {f"num_{name}": len(ids) for name, ids in splits.items()}
        write_json(data_metrics(dataset, "split"), sizes)
        mlflow.log_metrics(sizes)


if __name__ == "__main__":
    main(run)
