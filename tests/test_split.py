import numpy as np
import pytest

from visionflow.data.split import stratified_split

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
