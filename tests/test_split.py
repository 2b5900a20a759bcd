import numpy as np
import pytest

from visionflow.data.split import iterative_stratified_split, stratified_split

FRACTIONS = {"train": 0.75, "valid": 0.15, "test": 0.10}


def labels_for(n_per_class):
    return [c for c, n in enumerate(n_per_class) for _ in range(n)]


def test_stratified_counts_per_class():
    labels = labels_for([400, 200, 100])
    split = stratified_split(labels, FRACTIONS, seed=0)
    lab = np.array(labels)
    for c, n in enumerate([400, 200, 100]):
        counts = {name: int(np.sum(lab[idx] == c)) for name, idx in split.items()}
        assert counts == {"train": round(0.75 * n), "valid": round(0.15 * n), "test": round(0.10 * n)}


def test_disjoint_and_complete():
    labels = list(np.random.default_rng(0).integers(0, 5, 997))
    split = stratified_split(labels, FRACTIONS, seed=3)
    all_idx = sum(split.values(), [])
    assert len(all_idx) == len(set(all_idx)) == 997
    assert set(all_idx) == set(range(997))


def test_deterministic_for_a_seed_and_different_across_seeds():
    labels = list(np.random.default_rng(0).integers(0, 5, 500))
    assert stratified_split(labels, FRACTIONS, 1) == stratified_split(labels, FRACTIONS, 1)
    assert stratified_split(labels, FRACTIONS, 1)["test"] != stratified_split(labels, FRACTIONS, 2)["test"]


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_tiny_classes_still_sum(n):
    split = stratified_split([0] * n, FRACTIONS, seed=0)
    assert sum(len(v) for v in split.values()) == n


def test_groups_never_straddle_splits():
    rng = np.random.default_rng(0)
    groups = [f"video{v}" for v in rng.integers(0, 40, 600)]
    labels = [{int(c)} for c in rng.integers(0, 3, 600)]
    split = iterative_stratified_split(labels, groups, FRACTIONS, seed=1)
    where = {}
    for name, idx in split.items():
        for i in idx:
            assert where.setdefault(groups[i], name) == name
    assert sorted(sum(split.values(), [])) == list(range(600))
    sizes = {k: len(v) / 600 for k, v in split.items()}
    assert abs(sizes["train"] - 0.75) < 0.1 and sizes["test"] > 0


def test_multi_label_stratification_keeps_each_label_near_its_fractions():
    rng = np.random.default_rng(2)
    label_sets = [set(rng.choice(6, size=rng.integers(1, 4), replace=False, p=[.4, .25, .15, .1, .06, .04]).tolist())
                  for _ in range(2000)]
    split = iterative_stratified_split(label_sets, [None] * 2000, FRACTIONS, seed=0)
    assert sorted(sum(split.values(), [])) == list(range(2000))
    for label in range(6):
        total = sum(label in s for s in label_sets)
        for name, frac in FRACTIONS.items():
            share = sum(label in label_sets[i] for i in split[name]) / total
            assert abs(share - frac) < 0.03, (label, name, share)
    assert split == iterative_stratified_split(label_sets, [None] * 2000, FRACTIONS, seed=0)


def test_images_without_labels_are_still_placed():
    split = iterative_stratified_split([set(), {0}, set(), {0}], [None] * 4, FRACTIONS, seed=0)
    assert sorted(sum(split.values(), [])) == [0, 1, 2, 3]
