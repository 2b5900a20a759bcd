"""The one typed configuration, loaded from ``params.yaml`` and validated before any work.

Every section of ``params.yaml`` is a stage (plus ``tracking``); ``train`` has one key
per model family to train, each validated by that family's own config model. Unknown
keys, wrong types (strictly: ``"5"`` is not an integer), out-of-range values, duplicate
keys and an empty file raise :class:`ConfigError` naming the file and the dotted key.

The defaults here are the shipped ``params.yaml``, which spells out every key, so DVC
tracks the whole configuration. Checking a config imports neither TensorFlow nor Keras:
plug-in names resolve through the registries' names and entry points.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from visionflow.data.augment_config import AugmentConfig

PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """A bad ``params.yaml``: the message names the file and the dotted key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


IoU = Annotated[float, Field(gt=0, le=1)]


class TrackingConfig(Section):
    experiment: str = "visionflow"
    registered_model_prefix: str = "visionflow-"  # each family registers as <prefix><family>


class IngestConfig(Section):
    """``source`` names a registered source; its options sit under a key of the same name."""

    model_config = ConfigDict(extra="allow", frozen=True)
    source: str = "synthetic"
    on_error: Literal["fail", "skip"] = "fail"

    def source_options(self) -> dict[str, Any]:
        return dict((self.model_extra or {}).get(self.source) or {})


class SplitFractions(Section):
    train: float = Field(0.75, gt=0, lt=1)
    valid: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.10, ge=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitFractions":
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + valid + test must sum to 1, got {total:g}")
        return self


class SplitConfig(Section):
    fractions: SplitFractions = SplitFractions()
    group_key: str | None = None  # an image field (e.g. video_id): images sharing it stay in one split
    seed: int = 42


class PreprocessConfig(Section):
    image_size: int = Field(128, ge=32, le=1024)  # the model's input size
    num_shards: int = Field(4, ge=1, le=1024)
    resize: Literal["stretch", "letterbox"] = "stretch"  # letterbox keeps the aspect ratio and pads


class AnchorsConfig(Section):
    num_anchors: int = Field(9, ge=1, le=64)  # k of the k-means over training box sizes (YOLOv3: 9)
    seed: int = 42


class PretrainConfig(Section):
    dataset: str = "shapes"  # whose training split's objects the crops come from
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(0.001, gt=0)
    crop_size: int = Field(48, ge=16, le=1024)  # the crops' side as the backbone sees them (at least its minimum)
    # how much of the preprocessed image, in pixels, a crop covers around its object (more
    # for objects larger than 1/1.2 of it); resized to crop_size. None: crop_size (native scale)
    crop_window: int | None = Field(None, ge=16, le=4096)
    # how far the object may sit from the crop's centre, as a share of the room the window leaves (0: centred)
    crop_jitter: float = Field(1.0, ge=0, le=1)


class BackboneConfig(Section):
    name: str = "mobilenet_v2"
    init: str = "pretrain"  # imagenet | pretrain | none | a path to a Keras weights file
    width: float = Field(0.5, gt=0, le=2.0)  # width multiplier, for backbones that have one
    pretrain: PretrainConfig = PretrainConfig()


class PhaseConfig(Section):
    """One training phase. ``warmup_epochs`` count within ``epochs``.

    ``inverse_time`` is legacy Keras's ``decay`` (Géron's ``SGD(lr=0.2, decay=0.01)``): the rate at the
    phase's optimizer step t (from 0, counted from the warm-up's end) is learning_rate / (1 + decay * t).
    """

    epochs: int = Field(..., ge=0)
    optimizer: Literal["sgd", "adam"] = "adam"
    learning_rate: float = Field(..., gt=0)
    # cosine: decays to 0 over the phase; inverse_time: learning_rate / (1 + decay * step)
    schedule: Literal["constant", "cosine", "inverse_time"] = "constant"
    decay: float = Field(0.0, ge=0)  # inverse_time only: per optimizer step
    warmup_epochs: int = Field(0, ge=0)  # ramp up linearly to learning_rate over the phase's first epochs
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only

    @model_validator(mode="after")
    def _decay_needs_inverse_time(self) -> "PhaseConfig":
        if self.decay and self.schedule != "inverse_time":
            raise ValueError(f"decay: only schedule inverse_time reads it (schedule is {self.schedule})")
        return self


def _on_off(value):
    """YAML 1.1 (PyYAML) reads an unquoted ``on`` / ``off`` as true / false: take them as meant."""
    return {True: "on", False: "off"}[value] if isinstance(value, bool) else value


Switch = Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off)]


class ComputeConfig(Section):
    """How training uses the devices it sees (see :mod:`visionflow.models.devices`); ``auto``: on with a GPU.

    ``mixed_precision``: layers compute in float16, variables and the output layers stay
    float32. ``xla``: XLA-compile the training step; ``auto`` leaves it to each family's
    compile (Keras: on with one GPU, off on CPUs and with several replicas; the detector
    opts out), ``on`` forces it where a single replica trains.
    """

    mixed_precision: Switch = "auto"
    xla: Switch = "auto"
    # TensorFlow's op determinism while training: a stage run twice on the same inputs gives
    # the same model (what `visionflow reproduce` checks) on the same machine and build.
    # Keras cannot XLA-compile under it, so where XLA is on (a GPU, or xla: on) XLA wins.
    deterministic: bool = True


class TrainConfig(Section):
    """What every model family's training shares: its dataset, the two transfer phases, batches, augmentation, seed.

    A family's own config (its section ``train.<family>``) extends this one.
    """

    dataset: str = "shapes"  # a key of ``datasets``: the data path it trains and is evaluated on
    batch_size: int = Field(32, ge=1)
    frozen: PhaseConfig = PhaseConfig(epochs=2, learning_rate=0.003)  # new heads on a frozen backbone
    # then everything, at a lower rate: warming up to it, then decaying
    finetune: PhaseConfig = PhaseConfig(epochs=22, learning_rate=0.001, warmup_epochs=2, schedule="cosine")
    augment: AugmentConfig = AugmentConfig()
    seed: int = 42

    def data_problem(self, data: "DatasetConfig", min_size: int) -> tuple[str, str] | None:
        """``(key, message)`` when this family cannot train on ``data`` with a backbone of ``min_size``; else None."""
        return None


class NmsConfig(Section):
    """Per-class non-max suppression of predictions before they are scored."""

    iou_threshold: IoU = 0.6
    score_threshold: float = Field(0.001, ge=0, lt=1)


class PhotosConfig(Section):
    """Photographs that ship inside scikit-image (``skimage.data``), exported by the ``photos`` stage.

    ``train`` are the synthetic source's photo backgrounds; ``held_out`` the robustness
    stage's background swap, never seen in training.
    """

    train: tuple[str, ...] = ("astronaut", "brick", "camera", "cell", "chelsea", "coins", "grass", "gravel",
                              "hubble_deep_field", "immunohistochemistry", "moon", "page", "text")
    held_out: tuple[str, ...] = ("coffee", "retina", "rocket")

    @model_validator(mode="after")
    def _known_and_disjoint(self) -> "PhotosConfig":
        from visionflow.data.photos import SKIMAGE_PHOTOS

        for name in self.train + self.held_out:
            if name not in SKIMAGE_PHOTOS:
                raise ValueError(f"{name!r} is not a photograph that ships with scikit-image "
                                 f"(one of {', '.join(SKIMAGE_PHOTOS)})")
        if set(self.train) & set(self.held_out):
            raise ValueError(f"held out and trained on: {', '.join(sorted(set(self.train) & set(self.held_out)))}")
        return self


Severities = Annotated[tuple[float, ...], Field(min_length=1)]


class BootstrapConfig(Section):
    samples: int = Field(1000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 0


class PromoteConfig(Section):
    """The registry's gate: when a challenger (a newly tested version) becomes the champion.

    It must reach ``min_metric`` (its family's headline test metric); against a champion,
    no class may fall by more than ``max_class_regression``, and a paired bootstrap over
    the test images must show it better, its lower confidence bound above ``min_improvement``.
    """

    min_metric: dict[str, float] = Field(default_factory=lambda: {"localizer": 0.5, "classifier": 0.9,
                                                                  "detector": 0.5})
    max_class_regression: float = Field(0.05, ge=0)
    min_improvement: float = 0.0
    bootstrap: BootstrapConfig = BootstrapConfig()


CRON_FIELD = re.compile(r"[0-9A-Za-z*/,?#-]+")


class OrchestrationConfig(Section):
    """How the flows run: the retraining deployment's schedule and work pool, and what a pipeline
    run does when another one holds the workspace (``on_busy``)."""

    schedule: str = "0 3 * * 1"  # cron (minute hour day month weekday, UTC) of the retraining deployment
    work_pool: str = "visionflow"  # the work pool prefect.yaml's deployment runs in
    on_busy: Literal["wait", "fail"] = "wait"  # another pipeline run on this workspace: wait for it, or stop at once
    gpu_work_pool: str | None = None  # gpu_stages run on a worker of this pool (deployment remote_stage/<pool>)
    gpu_stages: list[str] = ["train"]  # stages, or groups of them (train: every train@<family>), sent to that pool

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str) -> str:
        fields = schedule.split()
        if len(fields) != 5 or not all(CRON_FIELD.fullmatch(f) for f in fields):
            raise ValueError(f"{schedule!r} is not a cron expression of 5 fields (minute hour day month weekday)")
        return schedule


class RobustnessConfig(Section):
    """Corruptions of the test split, each at its severities (ImageNet-C's values where it has the corruption).

    Noise sigma and brightness are in 0..255, blur sigma in pixels of the model input,
    contrast a gain about the image's mean, ``photo_background`` how much of a held-out
    photograph replaces what lies outside the boxes.
    """

    gaussian_noise: Severities = (20.0, 31.0, 46.0, 66.0, 97.0)
    gaussian_blur: Severities = (0.5, 1.0, 1.5, 2.0, 3.0)
    jpeg: Severities = (25.0, 18.0, 15.0, 10.0, 7.0)
    brightness: Severities = (25.0, 51.0, 76.0, 102.0, 128.0)
    contrast: Severities = (0.4, 0.3, 0.2, 0.1, 0.05)
    photo_background: Severities = (0.2, 0.4, 0.6, 0.8, 1.0)
    photo_dir: str = "data/photos/held_out"
    seed: int = 42

    @property
    def corruptions(self) -> dict[str, tuple[float, ...]]:
        return {name: getattr(self, name) for name in CORRUPTIONS}


CORRUPTIONS = ("gaussian_noise", "gaussian_blur", "jpeg", "brightness", "contrast", "photo_background")


class EvaluateConfig(Section):
    batch_size: int = Field(64, ge=1)
    iou_thresholds: tuple[IoU, ...] = (0.5, 0.75)  # the share of test boxes whose IoU reaches each
    nms: NmsConfig = NmsConfig()


DATASET_SECTIONS = ("ingest", "split", "preprocess", "anchors")


class DatasetOverrides(Section):
    """A dataset's own values for the data sections, merged key by key over the top-level ones."""

    ingest: dict[str, Any] = {}
    split: dict[str, Any] = {}
    preprocess: dict[str, Any] = {}
    anchors: dict[str, Any] = {}


DATASET_NAME = re.compile(r"[A-Za-z0-9_-]+")  # a folder under data/ and a DVC stage key


class DatasetConfig(Section):
    """One dataset's data path, ``data/<name>/``: the top-level data sections with its overrides."""

    name: str
    ingest: IngestConfig
    split: SplitConfig
    preprocess: PreprocessConfig
    anchors: AnchorsConfig


DEFAULT_DATASETS = {
    "shapes": DatasetOverrides(),  # one shape an image: the classifier's, and the backbone's pretraining
    # the localizer's: the same, with a third of the images on textures and photographs, among distractors
    "shapes_mixed": DatasetOverrides(ingest={"synthetic": {
        "outline": 0.1, "backgrounds": {"flat": 0.15, "gradient": 0.55, "texture": 0.1, "photo": 0.2},
        "distractors": [0, 1], "clutter_strokes": [0, 4], "blur": 0.1, "noise_std": [1, 25], "noise_skew": 3.0,
        "jpeg_quality": [50, 95]}}),
    "scenes": DatasetOverrides(ingest={"synthetic": {  # the detector's: 1-8 shapes, 10 px to half the image
        "num_images": 2000, "min_objects": 1, "max_objects": 8, "min_object_size": 10, "max_object_size": 64,
        "max_overlap_iou": 0.5}}),
}


class Config(Section):
    tracking: TrackingConfig = TrackingConfig()
    ingest: IngestConfig = IngestConfig()
    split: SplitConfig = SplitConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    anchors: AnchorsConfig = AnchorsConfig()
    backbone: BackboneConfig = BackboneConfig()
    # name -> overrides of the data sections: stages ingest@, split@, preprocess@ and anchors@<name>
    datasets: dict[str, DatasetOverrides] = Field(default_factory=lambda: dict(DEFAULT_DATASETS))
    train: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"localizer": {}})  # family -> its section
    evaluate: EvaluateConfig = EvaluateConfig()
    photos: PhotosConfig = PhotosConfig()
    robustness: RobustnessConfig = RobustnessConfig()
    promote: PromoteConfig = PromoteConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()
    compute: ComputeConfig = ComputeConfig()  # devices, float16, XLA: train@<family>

    @property
    def models(self) -> list[str]:
        """The model families this config trains, in ``params.yaml`` order."""
        return list(self.train)

    def dataset(self, name: str, source: str = PARAMS_FILE) -> DatasetConfig:
        """The data sections as dataset ``name`` sees them: the top-level ones with its overrides merged in."""
        if name not in self.datasets:
            raise ConfigError(f"{source}: datasets.{name}: no such dataset (datasets: {', '.join(self.datasets)})")
        overrides = self.datasets[name]
        merged = {section: _merged(getattr(self, section).model_dump(mode="json"), getattr(overrides, section))
                  for section in DATASET_SECTIONS}
        return _validate(DatasetConfig, {"name": name, **merged}, source, f"datasets.{name}.")

    def family_config(self, family: str) -> TrainConfig:
        """The validated ``train.<family>`` section."""
        from visionflow.models.family_configs import family_config_class

        if family not in self.train:
            raise ConfigError(f"{PARAMS_FILE}: train.{family}: not a section of train (trains: {', '.join(self.train)})")
        return _validate(family_config_class(family), self.train[family], PARAMS_FILE, f"train.{family}.")


def _merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in, mapping by mapping."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if part not in ("function-after",))


def _format_validation_error(source: str, err: ValidationError, prefix: str = "") -> str:
    problems = []
    for e in err.errors():
        key = (prefix + _dotted(e["loc"])).rstrip(".")
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        problems.append(f"{key}: {msg}" if key else msg)
    return f"{source}: " + "; ".join(problems)


def _validate(model: type[BaseModel], data: Any, source: str, prefix: str = ""):
    """Strict validation, as JSON: a quoted number is not a number, but a list is a tuple."""
    try:
        return model.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(source, e, prefix)) from None
    except TypeError as e:  # a YAML value with no JSON equivalent (a date, say)
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'params'}: {e}") from None


def _validate_plugins(cfg: Config, source: str) -> None:
    """Check the names that resolve through registries, and the sections their plug-ins own."""
    from visionflow.models.backbones import BACKBONES
    from visionflow.registry import RegistryError

    try:
        spec = BACKBONES.get(cfg.backbone.name)
    except RegistryError as e:
        _fail(source, "backbone.name", str(e))
    _check_data(cfg.ingest, cfg.preprocess, spec, cfg.backbone.name, source, "")
    datasets = {}
    for name in cfg.datasets:  # the top level first: an error there is named there, not in every dataset
        if not DATASET_NAME.fullmatch(name):
            _fail(source, f"datasets.{name}", "a dataset's name may hold only letters, digits, _ and - "
                  "(it names a folder under data/ and its stages)")
        datasets[name] = data = cfg.dataset(name, source)
        _check_data(data.ingest, data.preprocess, spec, cfg.backbone.name, source, f"datasets.{name}.")
    init = cfg.backbone.init
    if init not in ("imagenet", "pretrain", "none") and not Path(init).is_file():
        _fail(source, "backbone.init", f"must be imagenet, pretrain, none or an existing weights file; {init!r} does not exist")
    if init == "imagenet" and not spec.imagenet_weights:
        _fail(source, "backbone.init", f"{cfg.backbone.name} has no ImageNet weights; use pretrain, none or a weights file")
    _check_dataset_name(datasets, cfg.backbone.pretrain.dataset, source, "backbone.pretrain.dataset")
    _check_families(cfg, datasets, spec.min_size, source)


def _fail(source: str, key: str, msg: str):
    raise ConfigError(f"{source}: {key}: {msg}")


def _check_data(ingest: IngestConfig, preprocess: PreprocessConfig, spec, backbone: str, source: str,
                prefix: str) -> None:
    """The source's name and its options; an input size the backbone takes."""
    from visionflow.data.sources import SOURCES
    from visionflow.registry import RegistryError

    try:
        source_cls = SOURCES.get(ingest.source)
    except RegistryError as e:
        _fail(source, f"{prefix}ingest.source", str(e))
    for key in ingest.model_extra or {}:
        if key not in SOURCES:
            _fail(source, f"{prefix}ingest.{key}",
                  f"unknown key (not a registered source; valid: {', '.join(SOURCES.names())})")
    _validate(source_cls.Options, ingest.source_options(), source, f"{prefix}ingest.{ingest.source}.")
    if preprocess.image_size < spec.min_size:
        _fail(source, f"{prefix}preprocess.image_size", f"{backbone} needs at least {spec.min_size}, got {preprocess.image_size}")


def _check_dataset_name(datasets: dict, name: str, source: str, key: str) -> None:
    if name not in datasets:
        _fail(source, key, f"{name!r} is not a dataset (datasets: {', '.join(datasets)})")


def _check_families(cfg: Config, datasets: dict[str, DatasetConfig], min_size: int, source: str) -> None:
    from visionflow.models.family_configs import family_config_class
    from visionflow.registry import RegistryError

    if not cfg.train:
        _fail(source, "train", "name at least one model family to train")
    for family, section in cfg.train.items():
        try:
            config_class = family_config_class(family)
        except RegistryError as e:
            _fail(source, f"train.{family}", str(e))
        family_cfg = _validate(config_class, section or {}, source, f"train.{family}.")
        _check_dataset_name(datasets, family_cfg.dataset, source, f"train.{family}.dataset")
        problem = family_cfg.data_problem(datasets[family_cfg.dataset], min_size)
        if problem:
            _fail(source, f"train.{family}.{problem[0]}", problem[1])


def parse_config(data: dict[str, Any] | None, source: str = PARAMS_FILE) -> Config:
    if not data:
        raise ConfigError(f"{source}: empty; it must hold the sections of the pipeline (see the shipped params.yaml)")
    cfg = _validate(Config, data, source)
    _validate_plugins(cfg, source)
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML keeps the last silently), and reads
    ``3e-3`` as a number, as YAML 1.2 and DVC do (PyYAML's YAML 1.1 wants a dot: ``3.0e-3``)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def read_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.constructor.ConstructorError as e:
        raise ConfigError(f"{path}: line {e.problem_mark.line + 1}: {e.problem}") from None
    except yaml.MarkedYAMLError as e:
        where = f"line {e.problem_mark.line + 1}: " if e.problem_mark else ""
        raise ConfigError(f"{path}: not valid YAML: {where}{e.problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return data


def load_config(path: str | Path = PARAMS_FILE) -> Config:
    return parse_config(read_params(path), str(path))
