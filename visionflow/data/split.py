"""Stratified, seeded train/valid/test split written as manifest files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from visionflow.errors import DataError

SPLITS = ("train", "valid", "test")


def _allocate(n: int, fractions: list[float]) -> list[int]:
    """Split ``n`` items into counts proportional to ``fractions`` (largest remainder)."""
    exact = np.array(fractions) * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def stratified_split(labels: list[int], fractions: dict[str, float], seed: int) -> dict[str, list[int]]:
    """Assign each item (by position) to a split, class by class.

    Within every class the items are shuffled with ``seed`` and cut by ``fractions``,
    so each split keeps the class proportions. Returns split -> sorted positions.
    """
    labels_arr = np.asarray(labels)
    names = list(fractions)
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {name: [] for name in names}
    for label in np.unique(labels_arr):
        members = np.flatnonzero(labels_arr == label)
        members = members[rng.permutation(len(members))]
        start = 0
        for name, count in zip(names, _allocate(len(members), [fractions[n] for n in names])):
            out[name].extend(members[start:start + count].tolist())
            start += count
    return {name: sorted(idx) for name, idx in out.items()}


def iterative_stratified_split(label_sets: list[set[int]], groups: list, fractions: dict[str, float],
                               seed: int) -> dict[str, list[int]]:
    """Multi-label, group-aware split: every item of a group lands in the same split.

    Iterative stratification (Sechidis et al., 2011) over units (a group, or an item
    without one): the rarest label still to place goes first; each unit carrying it
    goes to the split that most lacks that label, then the one that most lacks items.
    Returns split -> sorted item positions.
    """
    names = list(fractions)
    frac = np.array([fractions[n] for n in names])
    rng = np.random.default_rng(seed)
    members: dict = {}
    for position, group in enumerate(groups):
        members.setdefault(("group", group) if group is not None else ("item", position), []).append(position)
    units = list(members.values())
    unit_labels = [set().union(*(label_sets[p] for p in unit)) for unit in units]
    labels = sorted(set().union(*unit_labels)) if unit_labels else []
    label_need = {l: frac * sum(1 for ls in label_sets if l in ls) for l in labels}
    size_need = frac * len(label_sets)
    remaining = set(range(len(units)))
    out: dict[str, list[int]] = {n: [] for n in names}

    def place(u: int, label=None) -> None:
        score = np.stack([label_need[label] if label is not None else size_need, size_need, rng.random(len(names))])
        split = int(np.lexsort(score[::-1])[-1])  # largest label need, then size need, then chance
        out[names[split]].extend(units[u])
        for l in unit_labels[u]:
            label_need[l][split] -= sum(1 for p in units[u] if l in label_sets[p])
        size_need[split] -= len(units[u])
        remaining.discard(u)

    while remaining:
        open_labels = [l for l in labels if any(l in unit_labels[u] for u in remaining)]
        if not open_labels:
            for u in rng.permutation(sorted(remaining)):
                place(int(u))
            break
        rarest = min(open_labels, key=lambda l: (sum(1 for u in remaining if l in unit_labels[u]), l))
        for u in rng.permutation(sorted(u for u in remaining if rarest in unit_labels[u])):
            place(int(u), rarest)
    return {n: sorted(v) for n, v in out.items()}


def write_manifests(out_dir: Path, splits: dict[str, list[int]], class_counts: dict[str, dict[str, int]]) -> None:
    """One ``<split>.json`` per split with its image ids and class counts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, ids in splits.items():
        manifest = {"split": name, "image_ids": ids, "class_counts": class_counts[name]}
        (out_dir / f"{name}.json").write_text(json.dumps(manifest, indent=1))


def read_manifest(split_dir: Path, name: str) -> list[int]:
    path = Path(split_dir) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (run the split stage first)")
    return json.loads(path.read_text())["image_ids"]


def read_manifests(split_dir: Path) -> dict[str, list[int]]:
    return {name: read_manifest(split_dir, name) for name in SPLITS}


def object_counts(raw, image_ids: list[int]) -> dict[str, int]:
    """Objects per class in these images (for classification data: images per class)."""
    names, index = raw.category_names, raw.label_index()
    counts = Counter(names[index[a["category_id"]]] for i in image_ids for a in raw.annotations_by_image[i])
    return {name: counts.get(name, 0) for name in names}


def split_raw_dataset(raw, cfg) -> tuple[dict[str, list[int]], dict[str, dict[str, int]]]:
    """Split a raw dataset by ``cfg`` (the ``split`` section): image ids and class counts per split.

    One label per image: stratified by it. Several labels, or a ``group_key``:
    iterative stratification, every group in one split.
    """
    if not raw.images:
        raise DataError(f"{raw.root}/annotations.json: the dataset has no images")
    key = cfg.group_key
    if key is not None and not any(key in img for img in raw.images):
        raise DataError(f"split.group_key: no image in {raw.root}/annotations.json has a field {key!r}")
    ids = [img["id"] for img in raw.images]
    fractions = cfg.fractions.model_dump()
    label_sets = [raw.label_set(i) for i in ids]
    if key is not None or any(len(s) > 1 for s in label_sets):
        groups = [img.get(key) if key is not None else None for img in raw.images]
        positions = iterative_stratified_split(label_sets, groups, fractions, cfg.seed)
    else:
        positions = stratified_split([raw.primary_label(i) for i in ids], fractions, cfg.seed)
    splits = {name: [ids[p] for p in pos] for name, pos in positions.items()}
    return splits, {name: object_counts(raw, split_ids) for name, split_ids in splits.items()}
