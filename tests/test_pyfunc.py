"""The saved model as an MLflow pyfunc model: registered, loaded by its alias and served, with the detections of
``visionflow predict`` (the localizer stretched, the detector letterboxed with its NMS inside)."""

import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image

from tests.servers import free_port, stop, wait_until_up
from tests.test_detector import SPEC as DETECTOR_SPEC
from tests.tiny import SPEC as LOCALIZER_SPEC
from visionflow.cli import main
from visionflow.models.card import ModelCard, card_path
from visionflow.models.detector.config import DetectorConfig
from visionflow.models.detector.family import Detector
from visionflow.models.localizer.config import LocalizerConfig
from visionflow.models.localizer.family import Localizer
from visionflow.models.pixels import with_pixel_input
from visionflow.predict import load_model, predict_files
from visionflow.tracking.pyfunc import log_pyfunc_model

CLASSES = ["circle", "square", "star"]
CATEGORY_IDS = [3, 7, 9]
FAMILIES = ("localizer", "detector")
SIZES = {"wide.png": (97, 45), "tall.jpg": (30, 70)}  # (width, height), no side a multiple of 32


def build(family: str, folder: Path) -> Path:
    """An untrained model of ``family`` on a tiny backbone, saved with its card: stretched localizer, letterboxed
    detector."""
    keras.utils.set_random_seed(0)
    if family == "localizer":
        model_family, spec, size, resize = Localizer(LocalizerConfig(), CLASSES), LOCALIZER_SPEC, 32, "stretch"
    else:
        model_family, spec, size, resize = Detector(DetectorConfig(), CLASSES), DETECTOR_SPEC, 64, "letterbox"
        model_family.anchors = [[s, s] for s in np.linspace(0.15, 0.45, 9).tolist()]  # not the dataset's file
    net, _ = model_family.build(spec, size, 1.0, None)
    if family == "localizer":  # untrained boxes have no size: give them sqrt w 0.5 and sqrt h 0.6
        net.get_layer("box_sizes").bias.assign([0.5, 0.6])
    path = folder / family / "model.keras"
    path.parent.mkdir()
    with_pixel_input(model_family.inference_model(net), keras.applications.mobilenet_v2.preprocess_input).save(path)
    ModelCard(family, CLASSES, CATEGORY_IDS, "mobilenet_v2", size, resize).write(card_path(path))
    return path


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A SQLite tracking store in a temporary folder, its artifacts beside it, two images and ``champion(family)``:
    the family's model logged as a pyfunc model, registered as ``visionflow-<family>``, aliased ``champion``."""
    root = tmp_path_factory.mktemp("pyfunc")
    rng = np.random.default_rng(0)
    files = []
    for name, (w, h) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / name)
        files.append(str(root / name))
    logged = {}

    def champion(family: str) -> tuple[str, Path]:
        if family not in logged:
            path = build(family, root)
            with mlflow.start_run(experiment_id=experiment):
                info = log_pyfunc_model(path, registered_model_name=f"visionflow-{family}")
            mlflow.MlflowClient().set_registered_model_alias(f"visionflow-{family}", "champion",
                                                             info.registered_model_version)
            logged[family] = (f"models:/visionflow-{family}@champion", path)
        return logged[family]

    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setattr(sys, "path", list(sys.path))  # loading a pyfunc model prepends its code folder
        experiment = mlflow.create_experiment("pyfunc", artifact_location=(root / "artifacts").as_uri())
        yield uri, files, champion


def encoded(path: str) -> bytes:
    return Path(path).read_bytes()


def assert_same_detections(records: list[dict], expected: list[dict]):
    """The records of ``visionflow predict`` without ``file_name``, boxes within 1e-3 px."""
    assert len(records) == len(expected) > 0
    for got, want in zip(records, expected):
        assert set(got) == set(want) - {"file_name"}
        assert (got["image_id"], got["category_id"], got["category_name"]) == \
               (want["image_id"], want["category_id"], want["category_name"])
        np.testing.assert_allclose(got["bbox"], want["bbox"], atol=1e-3)
        assert got["score"] == pytest.approx(want["score"], abs=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_champion_as_pyfunc_gives_the_detections_of_visionflow_predict(registry, family):
    _, files, champion = registry
    uri, path = champion(family)
    expected = predict_files(load_model(str(path)), files)
    model = mlflow.pyfunc.load_model(uri)
    pixels = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    for images in ([encoded(f) for f in files], pixels, [encoded(files[0]), pixels[1]]):  # files' bytes or pixels
        found = model.predict(pd.DataFrame({"image": images}))
        assert list(found.columns) == ["image_id", "category_id", "category_name", "bbox", "score"]
        assert_same_detections(found.to_dict(orient="records"), expected)
    threshold = sorted(d["score"] for d in expected)[len(expected) // 2]
    kept = model.predict({"image": pixels}, params={"min_score": threshold})
    assert_same_detections(kept.to_dict(orient="records"), [d for d in expected if d["score"] >= threshold])


@pytest.mark.parametrize("family", FAMILIES)
def test_visionflow_predict_reads_the_pyfunc_model_from_the_registry(registry, family, capsys):
    _, files, champion = registry
    uri, path = champion(family)
    assert main(["predict", "--model", uri, *files]) == 0
    assert json.loads(capsys.readouterr().out) == predict_files(load_model(str(path)), files)


@pytest.fixture(scope="module")
def localizer_pyfunc(registry):
    return mlflow.pyfunc.load_model(registry[2]("localizer")[0])


@pytest.mark.parametrize("value, message", [
    (b"not an image", "image 2: not an image (UnidentifiedImageError)"),
    (np.zeros((20, 30, 3), np.float32), "image 2: expected the bytes of an image file or uint8 RGB pixels "
                                        "(height, width, 3), got float32 array of shape (20, 30, 3)"),
    (np.zeros((20, 30), np.uint8), "got uint8 array of shape (20, 30)"),
    ("wide.png", "got str"),
])
def test_a_cell_that_is_not_an_image_is_a_one_line_error_naming_it(registry, localizer_pyfunc, value, message):
    _, files, _ = registry
    with pytest.raises(MlflowException) as error:
        localizer_pyfunc.predict(pd.DataFrame({"image": [encoded(files[0]), value]}))
    assert message in error.value.message and "\n" not in error.value.message


def test_mlflow_models_serve_answers_with_the_detections_of_visionflow_predict(registry, tmp_path):
    tracking, files, champion = registry
    uri, path = champion("detector")
    url = f"http://127.0.0.1:{free_port()}"
    bindir = str(Path(sys.executable).parent)  # `--env-manager local` starts `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager",
                                   "local", "-h", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
                                  env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(server, url + "/ping", log)
        body = {"dataframe_records": [{"image": base64.b64encode(encoded(f)).decode("ascii")} for f in files]}
        request = urllib.request.Request(url + "/invocations", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    finally:
        stop(server)
    assert_same_detections(answer["predictions"], predict_files(load_model(str(path)), files))


def test_log_model_logs_the_trained_model_from_the_stage_outputs_later(registry, tmp_path, monkeypatch, capsys):
    """After the server dropped as training ended: ``visionflow log-model`` logs models/<family>/model.keras."""
    tracking, files, champion = registry
    _, path = champion("localizer")
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(Path(__file__).resolve().parents[1] / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(path.parent, tmp_path / "models" / "localizer")
    assert main(["log-model", "localizer"]) == 0
    run_id = capsys.readouterr().out.strip().rsplit(" ", 1)[1]
    run = mlflow.get_run(run_id)
    assert run.data.tags["visionflow.stage"] == "log-model@localizer" and run.data.tags["backbone"] == "mobilenet_v2"
    logged = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert_same_detections(logged.predict(pd.DataFrame({"image": [encoded(f) for f in files]})).to_dict("records"),
                           predict_files(load_model(str(path)), files))


def test_log_model_without_a_trained_model_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    assert main(["log-model", "detector"]) == 2
    assert capsys.readouterr().err.strip() == "error: models/detector/model.keras: no such model file " \
                                              "(run train@detector first)"
