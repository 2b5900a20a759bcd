"""Stage ``split``: stratified, seeded train/valid/test manifests (``data/split``)."""

from collections import Counter

import mlflow

from tasks._entry import dvc_tags, main, write_json
from visionflow.config import Config
from visionflow.data.coco_layout import atomic_dir, load_raw_dataset
from visionflow.data.split import stratified_split, write_manifests
from visionflow.errors import DataError
from visionflow.layout import METRICS_DIR, RAW_DIR, SPLIT_DIR
from visionflow.tracking import stage_run


def run(cfg: Config) -> None:
    raw = load_raw_dataset(RAW_DIR)
    if not raw.images:
        raise DataError(f"{RAW_DIR}/annotations.json: the dataset has no images")
    ids = [img["id"] for img in raw.images]
    labels = [raw.primary_label(i) for i in ids]
    fractions = cfg.split.fractions.model_dump()
    positions = stratified_split(labels, fractions, cfg.split.seed)
    splits = {name: [ids[p] for p in pos] for name, pos in positions.items()}
    names = raw.category_names + ["unlabelled"]  # label -1: an image without objects
    counts = {split: {names[k]: n for k, n in sorted(Counter(labels[p] for p in pos).items())}
              for split, pos in positions.items()}
    with stage_run("split", cfg.tracking.experiment, {"split": cfg.split.model_dump()}, dvc_tags("split")):
        with atomic_dir(SPLIT_DIR) as tmp:
            write_manifests(tmp, splits, counts)
        sizes = {f"num_{name}": len(v) for name, v in splits.items()}
        write_json(METRICS_DIR / "split.json", {**sizes, "class_counts": counts})
        mlflow.log_metrics(sizes)


if __name__ == "__main__":
    main(run)
