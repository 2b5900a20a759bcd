"""Géron's chapter-14 recipe, ``presets/tf_flowers.yaml``, end to end under ``tfds.testing.mock_data``.

``visionflow preset tf_flowers`` rewrites a copy of the shipped ``params.yaml``; then only
what cannot run here changes: ``backbone.init: none`` (the ImageNet weights need the
network) and one epoch per phase. The stages run in-process, as DVC would order them,
on TFDS's mock of tf_flowers: 40 images of each of two classes, so each class splits
exactly 30/6/4 (75/15/10) and an epoch is two batches of 32 at 224 px: enough for the
inverse-time decay to show within an epoch.
"""

import json
import shutil

import numpy as np
import pytest
import yaml

from tests.project import ROOT, make_project

pytestmark = pytest.mark.e2e

PER_CLASS = 40
LABELS = (1, 3)  # daisy and sunflowers, of tf_flowers' dandelion, daisy, tulips, sunflowers, roses
SIZE = 224


def mock_flowers(builder, *args, **kwargs):
    """``as_dataset_fn`` for mock_data: small non-square photos, each class its own mean colour."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def examples():
        for i in range(PER_CLASS * len(LABELS)):
            label = LABELS[i % len(LABELS)]
            colour = np.array([200, 60, 40]) if label == LABELS[0] else np.array([40, 80, 200])
            image = np.clip(colour + rng.normal(0, 40, (48, 64, 3)), 0, 255).astype(np.uint8)
            yield {"image": image, "label": np.int64(label)}

    return tf.data.Dataset.from_generator(examples, output_signature={
        "image": tf.TensorSpec((None, None, 3), tf.uint8), "label": tf.TensorSpec((), tf.int64)})


def apply_recipe(root) -> dict:
    """The preset, through the command, on the shipped params; then what cannot run here. Returns the recipe."""
    from visionflow.cli import main

    shutil.copytree(ROOT / "presets", root / "presets")
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    assert main(["preset", "tf_flowers", "--params", str(root / "params.yaml")]) == 0
    recipe = yaml.safe_load((root / "params.yaml").read_text())
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["backbone"]["init"] = "none"  # no network here for the ImageNet weights
    for phase in ("frozen", "finetune"):
        params["train"]["classifier"][phase]["epochs"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return recipe


def run_stages() -> None:
    """Every stage ``dvc repro`` runs for the classifier, robustness aside (30 corrupted passes of the test split)."""
    import tensorflow_datasets as tfds

    from tasks import anchors, backbone, evaluate, ingest, photos, preprocess, split, train
    from visionflow.config import load_config

    cfg = load_config()
    with tfds.testing.mock_data(as_dataset_fn=mock_flowers):
        photos.run(cfg)
        for stage in (ingest, split, preprocess, anchors):
            stage.run(cfg, "tf_flowers")
        backbone.run(cfg)
        train.run(cfg, "classifier")
        evaluate.run(cfg, "classifier")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    import mlflow

    root = make_project(tmp_path_factory.mktemp("tf_flowers"))
    preset = apply_recipe(root)
    uri = f"sqlite:///{root / 'tracking.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.delenv("VISIONFLOW_PARENT_RUN_ID", raising=False)
        try:
            run_stages()
        finally:
            mlflow.set_tracking_uri(None)  # stage_run set it for the process
    return root, preset, uri


def test_the_preset_is_the_chapters_recipe(recipe):
    _, params, _ = recipe
    assert params["ingest"]["source"] == "tfds" and params["ingest"]["tfds"]["name"] == "tf_flowers"
    assert list(params["datasets"]) == ["tf_flowers"] and list(params["train"]) == ["classifier"]
    assert params["split"]["fractions"] == {"train": 0.75, "valid": 0.15, "test": 0.10}
    assert params["preprocess"]["image_size"] == SIZE
    assert {k: params["backbone"][k] for k in ("name", "init", "width")} == {
        "name": "xception", "init": "imagenet", "width": 1.0}
    classifier = params["train"]["classifier"]
    assert classifier["pooling"] == "avg" and classifier["batch_size"] == 32
    assert {k: classifier["frozen"][k] for k in ("optimizer", "learning_rate", "momentum", "schedule", "decay")} == {
        "optimizer": "sgd", "learning_rate": 0.2, "momentum": 0.9, "schedule": "inverse_time", "decay": 0.01}
    assert {k: classifier["finetune"][k] for k in ("optimizer", "learning_rate", "momentum", "decay")} == {
        "optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "decay": 0.001}


def test_the_split_is_75_15_10(recipe):
    root, _, _ = recipe
    sizes = json.loads((root / "metrics/data/tf_flowers/split.json").read_text())
    assert sizes == {"num_train": 60, "num_valid": 12, "num_test": 8}  # of 80: 75/15/10, and 30/6/4 per class
    anchors = json.loads((root / "data/tf_flowers/anchors/anchors.json").read_text())
    assert anchors["anchors"] == []  # tf_flowers has no boxes: the anchors stage writes none, and says so


def test_the_saved_classifier_reads_raw_224_px_rgb(recipe):
    import keras

    root, _, _ = recipe
    model = keras.saving.load_model(root / "models/classifier/model.keras")
    assert tuple(model.input_shape) == (None, SIZE, SIZE, 3)
    card = json.loads((root / "models/classifier/model.json").read_text())
    assert card["backbone"] == "xception" and card["image_size"] == SIZE and card["family"] == "classifier"
    pixels = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3)).astype("float32")
    probs = np.asarray(model.predict(pixels, verbose=0)["class"])
    assert probs.shape == (2, 5)  # all five tf_flowers classes, whichever the data holds
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_the_test_metrics_hold_accuracy(recipe):
    root, _, _ = recipe
    metrics = json.loads((root / "metrics/classifier/test.json").read_text())
    assert metrics["num_examples"] == 8 and 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["top_3_accuracy"] >= metrics["accuracy"]


def test_phase_one_ran_sgd_at_0_2_with_inverse_time_decay_and_phase_two_at_0_01(recipe):
    from mlflow import MlflowClient

    _, _, uri = recipe
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                "tags.`visionflow.stage` = 'train@classifier'")
    params = run.data.params
    assert params["train.classifier.frozen.optimizer"] == params["train.classifier.finetune.optimizer"] == "sgd"
    assert params["frozen.optimizer.name"].startswith("sgd") and params["finetune.optimizer.name"].startswith("sgd")
    assert [float(params[f"{phase}.optimizer.{k}"]) for phase in ("frozen", "finetune")
            for k in ("learning_rate", "momentum")] == pytest.approx([0.2, 0.9, 0.01, 0.9], rel=1e-6)
    assert params["train.classifier.frozen.schedule"] == "inverse_time"
    assert float(params["train.classifier.frozen.decay"]) == 0.01
    assert float(params["train.classifier.finetune.decay"]) == 0.001
    rates = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "learning_rate")}
    # two batches an epoch: each epoch logs the rate of its second batch, step 1 of its phase
    assert rates == pytest.approx({0: 0.2 / (1 + 0.01), 1: 0.01 / (1 + 0.001)}, rel=1e-6)
