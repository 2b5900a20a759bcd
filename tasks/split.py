"""Stage ``split``: stratified, seeded train/valid/test manifests (``data/split``)."""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.coco_layout import load_raw_dataset
from visionflow.data.split import split_raw_dataset, write_manifests
from visionflow.io import atomic_dir, write_json
from visionflow.layout import DATA_METRICS_DIR, RAW_DIR, SPLIT_DIR
from visionflow.tracking import stage_run


def run(cfg: Config) -> None:
    raw = load_raw_dataset(RAW_DIR)
    splits, counts = split_raw_dataset(raw, cfg.split)
    with stage_run("split", cfg.tracking.experiment, {"split": cfg.split.model_dump()}, dvc_tags("split")):
        with atomic_dir(SPLIT_DIR) as tmp:
            write_manifests(tmp, splits, counts)
        sizes = {f"num_{name}": len(ids) for name, ids in splits.items()}
        write_json(DATA_METRICS_DIR / "split.json", sizes)
        mlflow.log_metrics(sizes)


if __name__ == "__main__":
    main(run)
