"""Stratified, seeded train/valid/test split written as manifest files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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
