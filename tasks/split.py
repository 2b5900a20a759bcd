"""Stage ``split``: stratified, seeded train/valid/test manifests (``data/split``)."""

from collections import Counter

import mlflow

from tasks._entry import dvc_tags, main, write_json
from visionflow.config import Config
from visionflow.data.coco_layout import atomic_dir, load_raw_dataset
from visionflow.data.split import iterative_stratified_split, stratified_split, write_manifests
from visionflow.errors import DataError
from visionflow.layout import METRICS_DIR, RAW_DIR, SPLIT_DIR
from visionflow.tracking import stage_run


def object_counts(raw, image_ids: list[int]) -> dict[str, int]:
    """Objects per class in these images (for classification data: images per class)."""
    names = raw.category_names
    index = raw.label_index()
    counts = Counter(names[index[a["category_id"]]] for i in image_ids for a in raw.annotations_by_image[i])
    return {name: counts.get(name, 0) for name in names}


def run(cfg: Config) -> None:
    raw = load_raw_dataset(RAW_DIR)
    if not raw.images:
        raise DataError(f"{RAW_DIR}/annotations.json: the dataset has no images")
    ids = [img["id"] for img in raw.images]
    fractions = cfg.split.fractions.model_dump()
    label_sets = [raw.label_set(i) for i in ids]
    key = cfg.split.group_key
    if key is not None and not any(key in img for img in raw.images):
        raise DataError(f"split.group_key: no image in {RAW_DIR}/annotations.json has a field {key!r}")
    if key is not None or any(len(s) > 1 for s in label_sets):
        groups = [img.get(key) if key is not None else None for img in raw.images]
        positions = iterative_stratified_split(label_sets, groups, fractions, cfg.split.seed)
    else:
        positions = stratified_split([raw.primary_label(i) for i in ids], fractions, cfg.split.seed)
    splits = {name: [ids[p] for p in pos] for name, pos in positions.items()}
    counts = {split: object_counts(raw, [ids[p] for p in pos]) for split, pos in positions.items()}
    with stage_run("split", cfg.tracking.experiment, {"split": cfg.split.model_dump()}, dvc_tags("split")):
        with atomic_dir(SPLIT_DIR) as tmp:
            write_manifests(tmp, splits, counts)
        sizes = {f"num_{name}": len(v) for name, v in splits.items()}
        write_json(METRICS_DIR / "split.json", {**sizes, "class_counts": counts})
        mlflow.log_metrics(sizes)


if __name__ == "__main__":
    main(run)
