"""``visionflow preset``: a preset merged into params.yaml key by key, checked before it is written, comments kept."""

import shutil
import textwrap
from pathlib import Path

import pytest

from visionflow.cli import main
from visionflow.config import ConfigError
from visionflow.presets import apply_preset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    """The shipped params.yaml and presets in a folder of their own."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "presets", tmp_path / "presets")
    return tmp_path


def write_preset(project: Path, name: str, text: str) -> None:
    (project / "presets" / f"{name}.yaml").write_text(textwrap.dedent(text))


def test_null_deletes_a_mapping_merges_and_anything_else_replaces(project):
    write_preset(project, "small", """\
        datasets:
          scenes: null         # gone, with its stages
        train:
          detector: null
          localizer:
            frozen:
              epochs: 3        # the preset's own note
            class_head: avg
        split:
          group_key: null
        """)
    cfg = apply_preset("small", project / "params.yaml")
    assert list(cfg.datasets) == ["shapes", "shapes_mixed"] and cfg.models == ["localizer", "classifier"]
    localizer = cfg.family_config("localizer")
    assert localizer.frozen.epochs == 3 and localizer.frozen.learning_rate == 0.003  # merged, not replaced
    assert localizer.class_head == "avg" and cfg.split.group_key is None
    text = (project / "params.yaml").read_text()
    assert "group_key" not in text and "scenes" not in text.split("backbone:")[0]
    assert "      epochs: 3        # the preset's own note\n" in text
    assert "  class_head: avg          # avg (Géron) | max | attention" in text  # params.yaml's note stays
    assert text.startswith("# One section per stage")  # and its header
    assert "jpeg_quality: [50, 95]\n\nbackbone:" in text  # the blank lines after a deleted last entry stay
    assert "    top_k: 3                 # the top-k accuracy reported\n\ncompute:" in text


def test_the_chapters_preset_gives_a_valid_params_yaml_and_applies_twice_the_same(project):
    cfg = apply_preset("tf_flowers", project / "params.yaml")
    assert (cfg.ingest.source, cfg.backbone.name, cfg.backbone.init) == ("tfds", "xception", "imagenet")
    assert list(cfg.datasets) == ["tf_flowers"] and cfg.models == ["classifier"]
    frozen, finetune = cfg.family_config("classifier").frozen, cfg.family_config("classifier").finetune
    assert (frozen.optimizer, frozen.learning_rate, frozen.momentum, frozen.schedule, frozen.decay) == (
        "sgd", 0.2, 0.9, "inverse_time", 0.01)
    assert (finetune.learning_rate, finetune.decay) == (0.01, 0.001)
    once = (project / "params.yaml").read_text()
    apply_preset("tf_flowers", project / "params.yaml")
    assert (project / "params.yaml").read_text() == once


def test_the_randomised_preset_mixes_every_background_kind_into_every_synthetic_dataset(project):
    cfg = apply_preset("randomised", project / "params.yaml")
    for name in ("shapes", "scenes"):
        synthetic = cfg.dataset(name).ingest.source_options()
        assert all(weight > 0 for weight in synthetic["backgrounds"].values()), name
        assert (synthetic["noise_std"], synthetic["jpeg_quality"]) == ([1, 25], [50, 95])
    assert cfg.dataset("scenes").ingest.source_options()["max_objects"] == 8  # the detector's scenes stay scenes


@pytest.mark.parametrize("text, message", [
    ("train:\n  classifier:\n    frozen:\n      decay: 0.1\n",
     "params.yaml with preset bad: train.classifier.frozen: decay: only schedule inverse_time reads it"),
    ("train:\n  classifier:\n    frozn: {}\n", "params.yaml with preset bad: train.classifier.frozn: unknown key"),
    ("datasets:\n  shapes: null\n", "params.yaml with preset bad: backbone.pretrain.dataset: 'shapes' is not a dataset"),
    ("train: [1\n", "bad.yaml: not valid YAML: line 2: expected ',' or ']'"),
    ("a: 1\na: 2\n", 'bad.yaml: not valid YAML: line 2: found duplicate key "a"'),
])
def test_a_bad_preset_changes_nothing_and_says_why_in_one_line(project, capsys, text, message):
    before = (project / "params.yaml").read_bytes()
    write_preset(project, "bad", text)
    assert main(["preset", "bad", "--params", str(project / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert (project / "params.yaml").read_bytes() == before
    assert sorted(p.name for p in project.iterdir()) == ["params.yaml", "presets"]  # no scratch file left


def test_an_unknown_preset_lists_the_ones_there(project):
    with pytest.raises(ConfigError, match=r"nope.yaml: no such preset \(presets: randomised, tf_flowers\)"):
        apply_preset("nope", project / "params.yaml")
