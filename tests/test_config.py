import subprocess
import sys

import pytest
import yaml

from visionflow.config import Config, ConfigError, load_config, parse_config

PARAMS = "params.yaml"


def shipped_params() -> dict:
    return yaml.safe_load(open(PARAMS))


def test_shipped_params_are_valid():
    cfg = load_config(PARAMS)
    assert cfg.ingest.source == "synthetic"
    assert cfg.split.fractions.train == 0.75
    assert cfg.models == ["localizer", "classifier", "detector"]
    assert cfg.family_config("localizer").loss_weights.class_ == 0.8
    assert cfg.family_config("localizer").loss_weights.box == 0.2


def leaves(tree: dict, prefix: str = "") -> dict:
    """{"a.b.c": value} for every leaf of a nested mapping."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_config(cfg: Config) -> dict:
    """Every key the config model reads, with its value: the sections, each family's and the source's options."""
    from visionflow.data.sources import SOURCES

    data = cfg.model_dump(mode="json", by_alias=True)
    data["datasets"] = {name: overrides.model_dump(mode="json", exclude_defaults=True)  # overrides only: optional
                        for name, overrides in cfg.datasets.items()}
    data["train"] = {name: cfg.family_config(name).model_dump(mode="json", by_alias=True) for name in cfg.models}
    options = SOURCES.get(cfg.ingest.source).Options(**cfg.ingest.source_options())
    data["ingest"][cfg.ingest.source] = options.model_dump(mode="json")
    return leaves(data)


def test_params_yaml_spells_out_every_key_the_config_reads():
    shipped = leaves(shipped_params())
    missing = sorted(set(read_config(load_config(PARAMS))) - set(shipped))
    assert not missing, f"read by the config but absent from params.yaml: {missing}"


def test_the_code_defaults_are_the_shipped_params():
    """Nothing in the code contradicts params.yaml: a config of defaults only reads the same values."""
    defaults = Config(ingest={"synthetic": {}}, train={"localizer": {}, "classifier": {}, "detector": {}})
    shipped, default = read_config(load_config(PARAMS)), read_config(defaults)
    differ = {key: (shipped[key], default.get(key)) for key in shipped if default.get(key) != shipped[key]}
    assert not differ, f"params.yaml value, code default: {differ}"


@pytest.mark.parametrize(
    "edit, key, message",
    [
        (lambda p: p["ingest"]["synthetic"].update(num_imags=5), "ingest.synthetic.num_imags", "unknown key"),
        (lambda p: p["train"]["localizer"].update(frozn={}), "train.localizer.frozn", "unknown key"),
        (lambda p: p.update(trian={}), "trian", "unknown key"),
        (lambda p: p["train"]["localizer"]["frozen"].update(epochs="three"), "train.localizer.frozen.epochs",
         "valid integer"),
        (lambda p: p["train"]["localizer"]["frozen"].update(epochs="3"), "train.localizer.frozen.epochs",
         "valid integer"),  # a quoted number is not an integer
        (lambda p: p["preprocess"].update(num_shards=4.0), "preprocess.num_shards", "valid integer"),
        (lambda p: p["ingest"]["synthetic"].update(seed="42"), "ingest.synthetic.seed", "valid integer"),
        (lambda p: p["train"]["localizer"]["finetune"].update(learning_rate=-1),
         "train.localizer.finetune.learning_rate", "greater than 0"),
        (lambda p: p["train"]["localizer"].update(class_gradient=2), "train.localizer.class_gradient",
         "less than or equal to 1"),
        (lambda p: p["evaluate"].update(iou_thresholds=[0.5, 1.5]), "evaluate.iou_thresholds.1",
         "less than or equal to 1"),
        (lambda p: p["evaluate"]["nms"].update(iou_threshold=1.5), "evaluate.nms.iou_threshold",
         "less than or equal to 1"),
        (lambda p: p["train"]["localizer"]["augment"].update(flip=1.5), "train.localizer.augment.flip",
         "less than or equal to 1"),
        (lambda p: p["split"]["fractions"].update(test=0.2), "split.fractions", "sum to 1"),
        (lambda p: p["ingest"]["synthetic"].update(min_object_size=80), "ingest.synthetic", "min_object_size"),
        (lambda p: p["backbone"].update(name="mobilenet"), "backbone.name", "valid: "),
        (lambda p: p["ingest"].update(source="nope"), "ingest.source", "not in the sources registry"),
        (lambda p: p["backbone"].update(init="missing/weights.h5"), "backbone.init", "does not exist"),
        (lambda p: p["backbone"].update(name="resnet34", width=1.0, init="imagenet"), "backbone.init",
         "resnet34 has no ImageNet weights"),
        (lambda p: p["train"].update(detektor={}), "train.detektor", "not in the families registry"),
        (lambda p: p.update(train={}), "train", "at least one model family"),
        (lambda p: p["train"]["localizer"]["augment"].update(keep_boxes_whole=False), "train.localizer",
         "keep_boxes_whole must be true"),
        (lambda p: p["preprocess"].update(image_size=64) or p["backbone"].update(name="xception", width=1.0),
         "preprocess.image_size", "at least 71"),
        (lambda p: p["photos"].update(train=["astronaut", "lena"]), "photos", "'lena' is not a photograph"),
        (lambda p: p["photos"].update(held_out=["coffee", "camera"]), "photos", "held out and trained on: camera"),
        (lambda p: p["robustness"].update(jpeg=[]), "robustness.jpeg", "at least 1 item"),
        (lambda p: p["ingest"]["synthetic"].update(jpeg_quality=[30, 120]), "ingest.synthetic", "jpeg_quality"),
        (lambda p: p["ingest"]["synthetic"]["backgrounds"].update(photo=-1), "ingest.synthetic.backgrounds.photo",
         "greater than or equal to 0"),
        (lambda p: p["datasets"]["scenes"]["ingest"]["synthetic"].update(max_objects=0),
         "datasets.scenes.ingest.synthetic.max_objects", "greater than or equal to 1"),
        (lambda p: p["datasets"]["scenes"]["ingest"]["synthetic"].update(min_object_size=80),
         "datasets.scenes.ingest.synthetic", "min_object_size"),
        (lambda p: p["datasets"]["scenes"].update(train={}), "datasets.scenes.train", "unknown key"),
        (lambda p: p["train"]["localizer"].update(dataset="nope"), "train.localizer.dataset", "'nope' is not a dataset"),
        (lambda p: p["backbone"]["pretrain"].update(dataset="nope"), "backbone.pretrain.dataset",
         "'nope' is not a dataset"),
        (lambda p: p["datasets"].update({"a.b": {}}), "datasets.a.b", "only letters, digits, _ and -"),
        (lambda p: p["train"]["detector"].update(input_sizes=[96, 100]), "train.detector.input_sizes",
         "multiple of 32"),
        (lambda p: p["train"]["detector"].update(input_sizes=[160, 192]), "train.detector.input_sizes",
         "dataset scenes's image_size 128"),
        (lambda p: p["datasets"]["scenes"].update(anchors={"num_anchors": 6}), "train.detector.anchors_per_scale",
         "need 9, but dataset scenes makes 6 (datasets.scenes.anchors.num_anchors)"),
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


def test_a_dataset_is_the_data_sections_with_its_overrides_merged_key_by_key():
    cfg = load_config(PARAMS)
    shapes, scenes = cfg.dataset("shapes"), cfg.dataset("scenes")
    assert shapes.ingest == cfg.ingest and shapes.preprocess == cfg.preprocess  # no overrides
    options = scenes.ingest.source_options()
    assert (options["min_objects"], options["max_objects"]) == (1, 8)  # overridden
    assert options["noise_std"] == cfg.ingest.source_options()["noise_std"]  # a sibling key kept
    assert scenes.split == cfg.split and scenes.anchors == cfg.anchors
    with pytest.raises(ConfigError, match=r"^params.yaml: datasets.nope: no such dataset "
                                          r"\(datasets: shapes, shapes_mixed, scenes\)$"):
        cfg.dataset("nope")


def test_missing_empty_duplicate_and_bad_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    with pytest.raises(ConfigError, match="no such file"):
        load_config(path)
    path.write_text("split: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    path.write_text("")
    with pytest.raises(ConfigError, match="params.yaml: empty"):
        load_config(path)
    path.write_text("split:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'seed'") as err:
        load_config(path)
    assert "line 3" in str(err.value) and "\n" not in str(err.value)


def test_exponent_floats_read_as_numbers_as_dvc_reads_them(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(open(PARAMS).read().replace("learning_rate: 0.003", "learning_rate: 3e-3"))
    assert load_config(path).family_config("localizer").frozen.learning_rate == 0.003


def test_a_family_the_config_does_not_train_is_one_line():
    params = shipped_params()
    del params["train"]["detector"]
    with pytest.raises(ConfigError, match=r"train\.detector: not a section of train \(trains: localizer, classifier\)"):
        parse_config(params).family_config("detector")


def test_config_is_immutable():
    cfg = load_config(PARAMS)
    with pytest.raises(Exception):
        cfg.split.seed = 1


def test_checking_the_config_imports_neither_tensorflow_nor_keras():
    code = ("import sys; from visionflow.cli import main; assert main(['check-config']) == 0; "
            "loaded = {'tensorflow', 'keras'} & set(sys.modules); assert not loaded, loaded")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "params.yaml: ok" in proc.stdout
