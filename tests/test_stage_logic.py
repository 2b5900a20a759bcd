"""The library logic behind the data stages and the backbone stage, on tiny inputs."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from tests.tiny import SPEC
from visionflow.anchors import anchors_for_split
from visionflow.config import SplitConfig, parse_config
from visionflow.data.coco_layout import load_raw_dataset
from visionflow.data.split import split_raw_dataset
from visionflow.errors import DataError


def raw_dataset(root: Path, boxes_per_image: list[list[tuple]], extra: dict | None = None):
    """A raw COCO layout (annotations only: these functions read no pixels), 100 x 50 px images."""
    images, anns = [], []
    for i, boxes in enumerate(boxes_per_image, start=1):
        images.append({"id": i, "file_name": f"{i}.png", "width": 100, "height": 50, **(extra or {})})
        anns += [{"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": list(b), "iscrowd": crowd}
                 for c, b, crowd in boxes]
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                       "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    return load_raw_dataset(root)


def test_anchors_come_from_the_training_boxes_normalised_and_without_crowds(tmp_path):
    raw = raw_dataset(tmp_path, [[(1, (0, 0, 10, 5), 0)], [(2, (0, 0, 50, 25), 0), (1, (0, 0, 90, 45), 1)],
                                 [(1, (0, 0, 10, 5), 0)]])
    anchors, metrics = anchors_for_split(raw, [1, 2], k=2, seed=0)
    assert anchors["anchors"] == [[0.1, 0.1], [0.5, 0.5]]  # the crowd box is left out; image 3 is not training
    assert metrics == {"mean_best_iou": 1.0, "num_anchors": 2, "num_boxes": 2}
    letterboxed, _ = anchors_for_split(raw, [1, 2], k=2, seed=0, resize="letterbox")
    assert letterboxed["anchors"] == [[0.1, 0.05], [0.5, 0.25]]  # of the longer side: the input's, letterboxed
    anchors, metrics = anchors_for_split(raw, [1], k=2, seed=0)  # fewer boxes than anchors: none, said so
    assert anchors["anchors"] == [] and metrics == {"num_anchors": 0, "num_boxes": 1}


def test_split_keeps_groups_together_and_counts_objects(tmp_path):
    boxes = [[(1 + i % 2, (0, 0, 10, 10), 0)] for i in range(40)]
    raw = raw_dataset(tmp_path, boxes)
    for img in raw.images:
        img["video"] = img["id"] // 4  # ten groups of four
    cfg = SplitConfig(fractions={"train": 0.6, "valid": 0.2, "test": 0.2}, group_key="video", seed=1)
    splits, counts = split_raw_dataset(raw, cfg)
    assert sorted(sum(splits.values(), [])) == list(range(1, 41))
    group_of = {img["id"]: img["video"] for img in raw.images}
    assert all(len({s for s, ids in splits.items() for i in ids if group_of[i] == g}) == 1 for g in range(11))
    assert {s: sum(c.values()) for s, c in counts.items()} == {s: len(ids) for s, ids in splits.items()}


def test_split_refuses_a_group_key_no_image_has_and_an_empty_dataset(tmp_path):
    raw = raw_dataset(tmp_path / "a", [[(1, (0, 0, 10, 10), 0)]] * 4)
    with pytest.raises(DataError, match="split.group_key: no image in .* has a field 'video'"):
        split_raw_dataset(raw, SplitConfig(group_key="video"))
    with pytest.raises(DataError, match="the dataset has no images"):
        split_raw_dataset(raw_dataset(tmp_path / "b", []), SplitConfig())


@pytest.fixture
def tiny_backbone_config(tmp_path):
    from visionflow.models.backbones import BACKBONES

    if "tiny_test" not in BACKBONES:
        BACKBONES.add("tiny_test", SPEC)
    weights = tmp_path / "given.weights.h5"
    SPEC.build(32).save_weights(weights)
    shipped = yaml.safe_load(Path("params.yaml").read_text())
    train = {**shipped["train"], "detector": {**shipped["train"]["detector"], "input_sizes": [32]}}
    return lambda init: parse_config({**shipped, "backbone": {"name": "tiny_test", "width": 1.0, "init": init},
                                      "preprocess": {**shipped["preprocess"], "image_size": 32}, "train": train}), weights


def test_initial_backbone_loads_given_weights_and_names_a_file_that_does_not_fit(tiny_backbone_config, tmp_path):
    from visionflow.models.initial import initial_backbone

    config, weights = tiny_backbone_config
    made = initial_backbone(config(str(weights)), 32, 5)
    saved = SPEC.build(32)
    saved.load_weights(weights)
    for a, b in zip(made.backbone.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert made.metrics == {} and made.warning is None
    other = tmp_path / "other.weights.h5"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save_weights(other)
    with pytest.raises(DataError, match=f"{other}: not weights for backbone 'tiny_test'"):
        initial_backbone(config(str(other)), 32, 5)
