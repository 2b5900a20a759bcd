"""``visionflow predict``: a saved localizer (file or MLflow URI) on image files, boxes in each file's own pixels."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from visionflow.cli import main
from visionflow.models.backbones import BACKBONES
from visionflow.models.card import ModelCard, card_path
from visionflow.models.localizer.config import LocalizerConfig
from visionflow.models.localizer.encoding import decode_sqrt_cxcywh
from visionflow.models.localizer.family import Localizer
from visionflow.models.pixels import with_pixel_input

SIZE = 32
CLASSES = ["circle", "square", "star"]
CATEGORY_IDS = [3, 7, 9]  # not 1..n: the card's ids must be the ones reported


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An untrained localizer on a real backbone, saved with its card, and two images of other sizes."""
    root = tmp_path_factory.mktemp("predict")
    keras.utils.set_random_seed(0)
    family = Localizer(LocalizerConfig(), CLASSES)
    net, _ = family.build(BACKBONES.get("mobilenet_v2"), SIZE, 0.35, None)
    path = root / "model.keras"
    with_pixel_input(family.inference_model(net), keras.applications.mobilenet_v2.preprocess_input).save(path)
    ModelCard("localizer", CLASSES, CATEGORY_IDS, "mobilenet_v2", SIZE, "stretch").write(card_path(path))
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    for name, (w, h) in {"wide.png": (96, 40), "tall.jpg": (30, 70)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / name)
    return path, images


def run_cli(capsys, *argv):
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def expected_box(model_path, image_path):
    """The oracle: the model on the stretched image; its box decoded and scaled to the file."""
    image = Image.open(image_path).convert("RGB")
    x = np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)[None]
    out = keras.saving.load_model(model_path).predict_on_batch(x)
    x0, y0, x1, y1 = np.asarray(decode_sqrt_cxcywh(out["box"]))[0] * ([image.width, image.height] * 2)
    return [x0, y0, x1 - x0, y1 - y0], CLASSES[int(np.argmax(out["class"][0]))]


def test_predict_prints_coco_results_in_each_images_own_pixels(saved, capsys, tmp_path):
    path, images = saved
    code, out, _ = run_cli(capsys, "--model", str(path), str(images), "--draw", str(tmp_path / "drawn"))
    assert code == 0
    results = json.loads(out)
    assert [r["file_name"] for r in results] == [str(images / "tall.jpg"), str(images / "wide.png")]  # sorted
    for r in results:
        box, name = expected_box(path, r["file_name"])
        np.testing.assert_allclose(r["bbox"], box, atol=0.01)
        assert r["category_name"] == name and r["category_id"] == CATEGORY_IDS[CLASSES.index(name)]
        assert set(r) == {"image_id", "category_id", "category_name", "bbox", "score", "file_name"}
        assert 0 < r["score"] <= 1
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["tall.png", "wide.png"]


def test_a_file_given_twice_keeps_its_name_and_gets_its_own_number(saved, capsys):
    path, images = saved
    given = str(images / "wide.png")
    _, out, _ = run_cli(capsys, "--model", str(path), given, given)
    results = json.loads(out)
    assert [(r["image_id"], r["file_name"]) for r in results] == [(1, given), (2, given)]
    assert results[0]["bbox"] == results[1]["bbox"]


def test_min_score_leaves_out_the_detections_below_it(saved, capsys):
    path, images = saved
    _, out, _ = run_cli(capsys, "--model", str(path), str(images))
    scores = sorted(r["score"] for r in json.loads(out))
    _, out, _ = run_cli(capsys, "--model", str(path), str(images), "--min-score", str(scores[0]))
    assert len(json.loads(out)) == len(scores)  # at the threshold is kept
    _, out, _ = run_cli(capsys, "--model", str(path), str(images), "--min-score", str(scores[-1] + 1e-3))
    assert json.loads(out) == []


def test_an_mlflow_model_uri_gives_the_same_detections_as_the_file(saved, capsys, tmp_path, monkeypatch):
    import mlflow

    from visionflow.tracking import log_keras_model

    path, images = saved
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    card = ModelCard.read(card_path(path))
    model = keras.saving.load_model(path)
    with mlflow.start_run() as run:
        log_keras_model(model, np.zeros((1, SIZE, SIZE, 3), np.float32), metadata=card.as_dict(),
                        registered_model_name="visionflow-localizer")
    _, from_file, _ = run_cli(capsys, "--model", str(path), str(images))
    for uri in (f"runs:/{run.info.run_id}/model", "models:/visionflow-localizer/1"):
        code, from_uri, err = run_cli(capsys, "--model", uri, str(images))
        assert code == 0, err
        assert json.loads(from_uri) == json.loads(from_file)


@pytest.mark.parametrize("case, message", [
    ("missing", "nothing.png: no such file or directory"),
    ("not_an_image", "notes.png: not an image"),
    ("no_model", "absent.keras: no such model file"),
    ("no_card", "model.json: no model card beside the model"),
])
def test_bad_input_is_one_line_naming_it(saved, capsys, tmp_path, case, message):
    path, images = saved
    (tmp_path / "notes.png").write_text("not pixels")
    lone = tmp_path / "lone" / "model.keras"
    lone.parent.mkdir()
    lone.write_bytes(path.read_bytes())
    argv = {"missing": ["--model", str(path), str(tmp_path / "nothing.png")],
            "not_an_image": ["--model", str(path), str(tmp_path / "notes.png")],
            "no_model": ["--model", str(tmp_path / "absent.keras"), str(images)],
            "no_card": ["--model", str(lone), str(images)]}[case]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1


def test_an_mlflow_uri_that_does_not_resolve_is_one_line(saved, capsys, tmp_path, monkeypatch):
    _, images = saved
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    code, _, err = run_cli(capsys, "--model", "models:/no-such-model/1", str(images))
    assert code == 2  # (before it, MLflow logs that it created the new store's tables)
    assert err.splitlines()[-1].startswith("error: models:/no-such-model/1: the model URI does not resolve")
