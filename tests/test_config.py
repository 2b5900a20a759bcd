import pytest
import yaml

from visionflow.config import ConfigError, load_config, parse_config

PARAMS = "params.yaml"


def shipped_params() -> dict:
    return yaml.safe_load(open(PARAMS))


def test_shipped_params_are_valid():
    cfg = load_config(PARAMS)
    assert cfg.ingest.source == "synthetic"
    assert cfg.split.fractions.train == 0.75
    assert cfg.train_localizer.loss_weights.class_ == 0.8
    assert cfg.train_localizer.loss_weights.box == 0.2


@pytest.mark.parametrize(
    "edit, key, message",
    [
        (lambda p: p["ingest"]["synthetic"].update(num_imags=5), "ingest.synthetic.num_imags", "unknown key"),
        (lambda p: p["train_localizer"].update(frozn={}), "train_localizer.frozn", "unknown key"),
        (lambda p: p.update(trian={}), "trian", "unknown key"),
        (lambda p: p["train_localizer"]["frozen"].update(epochs="three"), "train_localizer.frozen.epochs",
         "valid integer"),
        (lambda p: p["train_localizer"]["finetune"].update(learning_rate=-1), "train_localizer.finetune.learning_rate",
         "greater than 0"),
        (lambda p: p["train_localizer"].update(class_gradient=2), "train_localizer.class_gradient",
         "less than or equal to 1"),
        (lambda p: p["split"]["fractions"].update(test=0.2), "split.fractions", "sum to 1"),
        (lambda p: p["ingest"]["synthetic"].update(min_object_size=80), "ingest.synthetic", "min_object_size"),
        (lambda p: p["backbone"].update(name="mobilenet"), "backbone.name", "valid: "),
        (lambda p: p["ingest"].update(source="nope"), "ingest.source", "not in the sources registry"),
        (lambda p: p["backbone"].update(init="missing/weights.h5"), "backbone.init", "does not exist"),
        (lambda p: p["preprocess"].update(image_size=64) or p["backbone"].update(name="xception", width=1.0),
         "preprocess.image_size", "at least 71"),
    ],
)
def test_bad_params_name_the_dotted_key(edit, key, message):
    params = shipped_params()
    edit(params)
    with pytest.raises(ConfigError) as err:
        parse_config(params)
    text = str(err.value)
    assert f"{key}:" in text and message in text
    assert "\n" not in text  # one line


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("split: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "params.yaml")


def test_config_is_immutable():
    cfg = load_config(PARAMS)
    with pytest.raises(Exception):
        cfg.split.seed = 1
