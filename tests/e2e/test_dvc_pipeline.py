"""The whole pipeline under ``dvc repro`` in a fresh git + DVC repo, on a tiny config."""

import json

import mlflow
import numpy as np
import pytest
import yaml

from tests.project import make_project, run

pytestmark = pytest.mark.e2e

STAGES = ["photos", *(f"{stage}@{dataset}" for dataset in ("shapes", "scenes")
                      for stage in ("ingest", "split", "preprocess", "anchors")), "backbone",
          *(f"{stage}@{family}" for family in ("localizer", "classifier", "detector")
            for stage in ("train", "evaluate", "robustness", "promote"))]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("dvc_project"))
    first = run(["dvc", "repro"], root)
    return root, first.stdout + first.stderr


@pytest.fixture(scope="module")
def runs(project):
    root, _ = project
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("visionflow")
    found = mlflow.search_runs([exp.experiment_id], output_format="list")
    return {r.data.tags["visionflow.stage"]: r for r in found}


def test_every_stage_ran_and_wrote_its_outputs(project):
    root, output = project
    for stage in STAGES:
        assert f"Running stage '{stage}'" in output
    coco = json.loads((root / "data/shapes/raw/annotations.json").read_text())
    assert len(coco["images"]) == 80 and len(coco["annotations"]) == 80
    assert all((root / "data/shapes/raw" / img["file_name"]).is_file() for img in coco["images"])
    manifests = {s: json.loads((root / f"data/shapes/split/{s}.json").read_text())["image_ids"] for s in ("train", "valid", "test")}
    assert sorted(sum(manifests.values(), [])) == sorted(img["id"] for img in coco["images"])
    assert len(manifests["train"]) == 60
    assert list((root / "data/shapes/processed").glob("train-*.tfrecord"))
    anchors = json.loads((root / "data/shapes/anchors/anchors.json").read_text())["anchors"]
    assert len(anchors) == 9 and all(0 < w <= 1 and 0 < h <= 1 for w, h in anchors)
    assert 0 < json.loads((root / "metrics/data/shapes/anchors.json").read_text())["mean_best_iou"] <= 1
    assert json.loads((root / "data/shapes/raw/validation.json").read_text())["num_written"] == 80
    assert (root / "models/backbone.weights.h5").stat().st_size > 0
    assert (root / "models/localizer/model.keras").stat().st_size > 0
    metrics = json.loads((root / "metrics/localizer/test.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["mean_iou"] <= 1
    assert metrics["num_examples"] == len(manifests["test"])
    history = (root / "plots/localizer/history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and len(history) == 1 + 2  # one epoch per phase


def test_evaluation_writes_coco_metrics_pr_curves_and_predictions_beside_their_ground_truth(project):
    root, _ = project
    metrics = json.loads((root / "metrics/localizer/test.json").read_text())
    for key in ("coco_AP", "coco_AP50", "coco_AR100", "share_iou_ge_0.5", "share_iou_ge_0.75", "per_class_AP50"):
        assert key in metrics
    predictions = json.loads((root / "reports/localizer/test_predictions.json").read_text())
    assert len(predictions) == metrics["num_examples"]  # one box per test image survives NMS
    assert set(predictions[0]) == {"image_id", "category_id", "bbox", "score"}
    curves = sorted(p.stem for p in (root / "plots/localizer/precision_recall").glob("*.csv"))
    assert curves and set(curves) <= {"circle", "square", "triangle", "diamond", "star"}
    first = (root / "plots/localizer/precision_recall" / f"{curves[0]}.csv").read_text().splitlines()
    assert first[0] == "recall,precision" and len(first) == 1 + 101
    truth = root / "reports/localizer/test_ground_truth.json"
    test_ids = json.loads((root / "data/shapes/split/test.json").read_text())["image_ids"]
    assert sorted(img["id"] for img in json.loads(truth.read_text())["images"]) == sorted(test_ids)
    again = run(["visionflow", "evaluate-coco", "--gt", str(truth), "--dt", str(root / "reports/localizer/test_predictions.json")], root)
    assert json.loads(again.stdout)["AP"] == pytest.approx(metrics["coco_AP"]) and "warning" not in again.stderr


def test_the_classifier_is_scored_as_a_classifier_with_its_plots(project, runs):
    root, _ = project
    metrics = json.loads((root / "metrics/classifier/test.json").read_text())
    for key in ("accuracy", "top_3_accuracy", "macro_f1", "ece", "per_class"):
        assert key in metrics
    assert "coco_AP" not in metrics  # whole-image detections have no boxes to score
    confusion = json.loads((root / "reports/classifier/confusion.json").read_text())
    assert len(confusion) == metrics["num_examples"] and set(confusion[0]) == {"actual", "predicted"}
    assert sorted(p.stem for p in (root / "plots/classifier/precision_recall").glob("*.csv"))  # one vs the rest
    shown = json.loads(run(["dvc", "plots", "show", "--json"], root).stdout)["data"]
    assert '"actual": ' in json.dumps(shown["classifier confusion matrix (test)"])  # drawn from the rows
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs["evaluate@classifier"].info.run_id, "figures")}
    assert {"figures/confusion_matrix.png", "figures/reliability.png"} <= artifacts
    robustness = json.loads((root / "metrics/classifier/robustness.json").read_text())
    assert robustness["metric"] == "accuracy"


def test_predict_on_the_test_images_gives_the_evaluations_detections(project):
    """``visionflow predict`` reads the files and fits them to the model itself: the same boxes as the stage's."""
    root, _ = project
    truth = json.loads((root / "reports/localizer/test_ground_truth.json").read_text())
    evaluated = {d["image_id"]: d for d in json.loads((root / "reports/localizer/test_predictions.json").read_text())}
    files = {str(root / "data/shapes/raw" / img["file_name"]): img["id"] for img in truth["images"]}
    card = json.loads((root / "models/localizer/model.json").read_text())
    assert card["family"] == "localizer" and card["image_size"] == 64 and len(card["classes"]) == 5
    out = run(["visionflow", "predict", "--model", "models/localizer/model.keras", *files], root)
    predicted = json.loads(out.stdout)
    assert len(predicted) == len(files)
    for det in predicted:
        expected = evaluated[files[det["file_name"]]]
        assert det["category_id"] == expected["category_id"]
        assert det["score"] == pytest.approx(expected["score"], abs=1e-4)
        np.testing.assert_allclose(det["bbox"], expected["bbox"], atol=0.05)


def test_the_detector_trains_on_the_scenes_and_is_scored_with_coco_map_and_predicts_as_it_was_scored(project, runs):
    from visionflow.metrics.coco import STAT_KEYS

    root, _ = project
    raw = json.loads((root / "data/scenes/raw/annotations.json").read_text())
    assert len(raw["annotations"]) > len(raw["images"])  # several objects an image
    assert len(json.loads((root / "data/scenes/anchors/anchors.json").read_text())["anchors"]) == 9
    metrics = json.loads((root / "metrics/detector/test.json").read_text())
    assert {f"coco_{k}" for k in STAT_KEYS} | {"map", "map50", "per_class_AP", "per_class_AP50"} <= set(metrics)
    assert 0 <= metrics["map"] <= metrics["map50"] <= 1
    truth = json.loads((root / "reports/detector/test_ground_truth.json").read_text())
    test_ids = json.loads((root / "data/scenes/split/test.json").read_text())["image_ids"]
    assert sorted(img["id"] for img in truth["images"]) == sorted(test_ids)
    assert json.loads((root / "metrics/detector/robustness.json").read_text())["metric"] == "map50"
    figures = {a.path for a in mlflow.MlflowClient().list_artifacts(runs["evaluate@detector"].info.run_id, "figures")}
    assert "figures/test_predictions.png" in figures
    evaluated = json.loads((root / "reports/detector/test_predictions.json").read_text())
    files = {str(root / "data/scenes/raw" / img["file_name"]): img["id"] for img in truth["images"][:3]}
    predicted = json.loads(run(["visionflow", "predict", "--model", "models/detector/model.keras", *files], root).stdout)
    def same(a, b):
        return (a["category_id"] == b["category_id"] and abs(a["score"] - b["score"]) < 1e-4
                and np.allclose(a["bbox"], b["bbox"], atol=0.05))

    for name, image_id in files.items():  # each of predict's best five is one of the stage's (ties in any order)
        mine = sorted((d for d in predicted if d["file_name"] == name), key=lambda d: -d["score"])[:5]
        theirs = [d for d in evaluated if d["image_id"] == image_id]
        assert mine and all(any(same(d, e) for e in theirs) for d in mine)


def test_robustness_scores_the_saved_model_under_each_corruption_and_logs_it(project, runs):
    root, _ = project
    report = json.loads((root / "metrics/localizer/robustness.json").read_text())
    test = json.loads((root / "metrics/localizer/test.json").read_text())
    assert report["metric"] == "mean_iou" and report["clean"] == pytest.approx(test["mean_iou"], abs=1e-5)
    assert set(report["corruptions"]) == {"gaussian_noise", "gaussian_blur", "jpeg", "brightness", "contrast",
                                          "photo_background"}
    assert all(list(levels) == ["1", "2", "3", "4", "5"] for levels in report["corruptions"].values())
    table = (root / "plots/localizer/robustness.csv").read_text().splitlines()
    assert table[0] == "severity,gaussian_noise,gaussian_blur,jpeg,brightness,contrast,photo_background"
    assert len(table) == 6
    logged = runs["robustness@localizer"]
    assert logged.data.metrics["robustness_mean_relative"] == pytest.approx(report["mean_relative"])
    files = {a.path for a in mlflow.MlflowClient().list_artifacts(logged.info.run_id, "figures")}
    assert files == {"figures/robustness.png"}


def test_dvc_metrics_and_plots_render_each_chart_once_with_its_model_and_class(project, tmp_path):
    root, _ = project
    shown = json.loads(run(["dvc", "metrics", "show", "--json", "metrics/localizer"], root).stdout)
    files = shown[""]["data"]
    assert set(files) == {"metrics/localizer/train.json", "metrics/localizer/test.json",
                          "metrics/localizer/robustness.json", "metrics/localizer/promotion.json"}
    assert "mean_iou" in files["metrics/localizer/test.json"]["data"] and "coco_AP50" in files["metrics/localizer/test.json"]["data"]
    assert "class_counts" not in run(["dvc", "metrics", "show", "--json"], root).stdout  # the data's counts stay apart
    plots = json.loads(run(["dvc", "plots", "show", "--json"], root).stdout)
    assert not plots.get("errors")
    titles = [p["content"]["title"]["text"] if isinstance(p["content"]["title"], dict) else p["content"]["title"]
              for charts in plots["data"].values() for p in charts]
    assert len(titles) == len(set(titles))  # no chart twice
    curves = sorted(p.stem for p in (root / "plots/localizer/precision_recall").glob("*.csv"))
    assert {f"plots/localizer/precision_recall/{name}.csv" for name in curves} <= set(titles)
    assert {"localizer loss (train and valid)", "localizer box IoU (train and valid)",
            "plots/localizer/robustness.csv"} <= set(titles)
    assert not any("step" in json.dumps(p["content"]["encoding"]) for charts in plots["data"].values() for p in charts
                   if "encoding" in p["content"])


def test_dvc_lock_records_every_stage(project):
    root, _ = project
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert lock["stages"]["train@localizer"]["params"]["params.yaml"]["train.localizer"]["frozen"]["epochs"] == 1


def test_each_stage_logged_a_run_tagged_with_commit_and_lock_hashes(project, runs):
    root, _ = project
    commit = run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(runs) == set(STAGES)
    for stage, r in runs.items():
        assert r.data.tags["git.commit"] == commit
        assert "mlflow.parentRunId" not in r.data.tags  # run alone by dvc repro: no parent
        recorded = {d["path"]: d["md5"] for d in lock["stages"][stage]["deps"]}
        tagged = {k.removeprefix("dvc.dep."): v for k, v in r.data.tags.items() if k.startswith("dvc.dep.")}
        assert tagged == recorded, stage
        assert len(r.data.tags["dvc.inputs_hash"]) == 32


def test_training_metrics_continue_across_both_phases(runs):
    client = mlflow.MlflowClient()
    train = runs["train@localizer"]
    steps = [m.step for m in client.get_metric_history(train.info.run_id, "loss")]
    assert steps == [0, 1]
    params = train.data.params
    assert {"frozen.optimizer.learning_rate", "finetune.optimizer.learning_rate"} <= set(params)  # one per compile
    rates = [m.step for m in client.get_metric_history(train.info.run_id, "learning_rate")]
    assert rates == [0, 1]  # the schedule's rate, logged in both phases
    assert params["train.localizer.loss_weights.class"] == "0.8"
    test = runs["evaluate@localizer"].data.metrics
    assert {"test_accuracy", "test_mean_iou", "test_share_iou_ge_0.5"} <= set(test)


def test_training_logs_its_model_history_datasets_and_lineage_but_registers_nothing(project, runs):
    root, _ = project
    train = runs["train@localizer"]
    model_uri = f"runs:/{train.info.run_id}/model"
    info = mlflow.models.get_model_info(model_uri)
    assert {spec.name for spec in info.signature.outputs.inputs} == {"class", "box"}
    model = mlflow.keras.load_model(model_uri)
    pred = model.predict(np.zeros((3, 64, 64, 3), np.float32), verbose=0)
    assert pred["class"].shape == (3, 5) and pred["box"].shape == (3, 4)
    client = mlflow.MlflowClient()
    assert [a.path for a in client.list_artifacts(train.info.run_id, "history")] == ["history/history.csv"]
    assert "figures/history.png" in [a.path for a in client.list_artifacts(train.info.run_id, "figures")]
    inputs = {(d.dataset.name, d.dataset.digest) for d in train.inputs.dataset_inputs}
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["train@localizer"]
    processed = next(d["md5"] for d in lock["deps"] if d["path"] == "data/shapes/processed")
    assert inputs == {("shapes/train", processed[:36]), ("shapes/valid", processed[:36])}
    tags = train.data.tags
    assert tags["git.dirty"] == "false" and tags["backbone"] == "mobilenet_v2" and len(tags["params.hash"]) == 16
    assert tags["dvc.backbone"] == next(d["md5"] for d in lock["deps"] if d["path"] == "models/backbone.weights.h5")
    assert {"system/cpu_utilization_percentage"} <= set(train.data.metrics)  # system metrics, sampled
    versions = client.search_model_versions("name = 'visionflow-localizer'")
    assert [v.run_id for v in versions] == [runs["promote@localizer"].info.run_id]  # only the tested one


def test_a_tested_model_is_registered_with_its_metrics_and_becomes_the_first_champion(project, runs):
    root, _ = project
    client = mlflow.MlflowClient()
    promote = runs["promote@localizer"]
    version = client.get_model_version_by_alias("visionflow-localizer", "champion")
    assert str(version.version) == "1" and version.run_id == promote.info.run_id
    assert set(client.get_registered_model("visionflow-localizer").aliases) == {"champion", "challenger"}
    test = json.loads((root / "metrics/localizer/test.json").read_text())
    assert float(version.tags["test.mean_iou"]) == pytest.approx(test["mean_iou"], rel=1e-5)
    assert version.tags["gate.decision"] == "promoted" and "no champion yet" in version.tags["gate.reason"]
    assert version.tags["visionflow.previous_champion"] == "none"
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["promote@localizer"]
    deps = {d["path"]: d["md5"] for d in lock["deps"]}
    assert version.tags["dvc.data"] == deps["data/shapes/raw"] and version.tags["dvc.split"] == deps["data/shapes/split"]
    assert version.tags["git.commit"] == run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    decision = json.loads((root / "metrics/localizer/promotion.json").read_text())
    assert decision["promote"] is True and str(decision["version"]) == "1"
    lineage = json.loads(run(["visionflow", "lineage", "models:/visionflow-localizer@champion"], root).stdout)
    assert lineage["version"] == "visionflow-localizer/1" and lineage["dvc.data"] == deps["data/shapes/raw"]
    assert {"tensorflow", "keras", "params.hash", "git.dirty", "backbone"} <= set(lineage)


def test_evaluation_figures_and_predictions_are_mlflow_artifacts(runs):
    client = mlflow.MlflowClient()
    run_id = runs["evaluate@localizer"].info.run_id
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert figures == {"figures/pr_curves.png", "figures/test_predictions.png"}
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="figures/test_predictions.png")
    from PIL import Image

    assert Image.open(local).size[0] >= 256
    preds = mlflow.artifacts.load_dict(f"runs:/{run_id}/predictions/localizer_test_coco_results.json")
    assert isinstance(preds, list) and preds


def test_second_repro_runs_nothing(project, runs):
    root, _ = project
    again = run(["dvc", "repro"], root)
    out = again.stdout + again.stderr
    assert "Running stage" not in out
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in out
    exp = mlflow.get_experiment_by_name("visionflow")
    assert len(mlflow.search_runs([exp.experiment_id], output_format="list")) == len(STAGES)


def test_a_registered_model_reproduces_from_its_commit_and_params(project, runs, tmp_path):
    """``visionflow reproduce`` checks the commit out elsewhere, restores params.yaml and reruns up to evaluate.

    Tolerance 1e-6 absolute: the same code, data seeds and params on the same machine and
    thread count give the same float32 arithmetic, so the metrics agree to float32 rounding
    (a different machine or TensorFlow build may not, and would need a looser bound).
    """
    root, _ = project
    workdir = tmp_path / "again"
    result = json.loads(run(["visionflow", "reproduce", "models:/visionflow-localizer/1", "--workdir", str(workdir)],
                            root).stdout)
    assert result["commit"] == run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    assert (workdir / "params.yaml").read_text() == (root / "params.yaml").read_text()
    assert (workdir / "mlflow.db").exists()  # its runs went to its own store
    assert {"mean_iou", "accuracy"} <= set(result["metrics"])
    for name, row in result["metrics"].items():
        assert abs(row["difference"]) <= 1e-6 + 1e-5 * abs(row["recorded"]), (name, row)


def test_the_gate_refuses_an_equal_model_promotes_one_past_its_margin_and_rolls_back(project, runs):
    """The same localizer tested again: refused (not better); with a margin below zero, promoted; rolled back."""
    root, _ = project
    client, name = mlflow.MlflowClient(), "visionflow-localizer"
    run(["dvc", "repro", "--force", "--single-item", "promote@localizer"], root)
    refused = client.get_model_version(name, "2")
    assert refused.tags["gate.decision"] == "refused"
    assert "not better than the champion with 95% confidence" in refused.tags["gate.reason"]
    assert float(refused.tags["gate.bootstrap.difference"]) == 0  # the same model on the same images
    assert client.get_model_version_by_alias(name, "champion").version == 1
    assert client.get_model_version_by_alias(name, "challenger").version == 2
    params_file = root / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["promote"]["min_improvement"] = -0.5
    params_file.write_text(yaml.safe_dump(params))
    try:
        run(["dvc", "repro", "--single-item", "promote@localizer"], root)
    finally:
        params_file.write_text(original)
    promoted = client.get_model_version(name, "3")
    assert promoted.tags["gate.decision"] == "promoted" and promoted.tags["visionflow.previous_champion"] == "1"
    assert client.get_model_version_by_alias(name, "champion").version == 3
    back = run(["visionflow", "promote", "--rollback", "localizer"], root)
    assert back.stdout.strip() == "visionflow-localizer: champion moved back from version 3 to version 1"
    assert client.get_model_version_by_alias(name, "champion").version == 1
    again = run(["visionflow", "promote", "--rollback", "localizer"], root, check=False)
    assert again.returncode == 2 and again.stderr.strip() == (
        "error: visionflow-localizer: version 1 is the first champion; there is none before it")


def test_a_failing_stage_keeps_the_previous_outputs_and_lock(project, runs):
    """Runs last: breaks the source, checks nothing was lost, then restores the params."""
    root, _ = project
    params_file = root / "params.yaml"
    original = params_file.read_text()
    raw_before = (root / "data/shapes/raw/annotations.json").read_bytes()
    lock_before = (root / "dvc.lock").read_text()
    bad = root.parent / "bad_coco"
    bad.mkdir()
    (bad / "annotations.json").write_text('{"images": [], "annotations": 3}')
    params = yaml.safe_load(original)
    params["ingest"].update(source="coco", coco={"path": str(bad)})
    params_file.write_text(yaml.safe_dump(params))
    try:
        failed = run(["dvc", "repro", "ingest@shapes"], root, check=False)
        assert failed.returncode != 0
        errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "bad_coco/annotations.json: not a COCO annotations file" in errors[0]
        assert (root / "data/shapes/raw/annotations.json").read_bytes() == raw_before
        assert (root / "dvc.lock").read_text() == lock_before
        assert (bad / "annotations.json").read_text() == '{"images": [], "annotations": 3}'  # source untouched
    finally:
        params_file.write_text(original)
    assert "didn't change" in run(["dvc", "repro", "ingest@shapes"], root).stdout
