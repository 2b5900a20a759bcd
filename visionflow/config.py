"""The one typed configuration, loaded from ``params.yaml`` and validated before any work.

Every section of ``params.yaml`` is a stage (plus ``tracking``). Unknown keys, wrong
types and out-of-range values raise :class:`ConfigError` naming the dotted key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """A bad ``params.yaml``: the message names the file and the dotted key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrackingConfig(Section):
    experiment: str = "visionflow"
    registered_model: str = "visionflow-localizer"  # each training adds a version of this registered model


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
    image_size: int = Field(128, ge=32, le=1024)
    num_shards: int = Field(4, ge=1, le=1024)
    num_anchors: int = Field(9, ge=1, le=64)  # k of the k-means over training box sizes (YOLOv3: 9)


class PretrainConfig(Section):
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(0.001, gt=0)
    crop_size: int = Field(48, ge=16, le=1024)  # the crops' side as the backbone sees them (at least its minimum)
    # how much of the preprocessed image, in pixels, a crop covers around its object (more
    # for objects larger than 1/1.2 of it); resized to crop_size. None: crop_size (native scale)
    crop_window: int | None = Field(None, ge=16, le=4096)


class BackboneConfig(Section):
    name: str = "mobilenet_v2"
    # imagenet | pretrain | none | a path to a Keras weights file
    init: str = "pretrain"
    width: float = Field(1.0, gt=0, le=2.0)
    pretrain: PretrainConfig = PretrainConfig()


class PhaseConfig(Section):
    """One training phase. ``warmup_epochs`` count within ``epochs``."""

    epochs: int = Field(..., ge=0)
    optimizer: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = Field(..., gt=0)
    schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 over the phase
    warmup_epochs: int = Field(0, ge=0)  # ramp up linearly to learning_rate over the phase's first epochs
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only


class LossWeights(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    class_: float = Field(0.8, ge=0, alias="class")
    box: float = Field(0.2, ge=0)


class TrainLocalizerConfig(Section):
    batch_size: int = Field(32, ge=1)
    frozen: PhaseConfig = PhaseConfig(epochs=3, learning_rate=0.2)
    finetune: PhaseConfig = PhaseConfig(epochs=8, learning_rate=0.01)
    loss_weights: LossWeights = LossWeights()
    class_head: str = "avg"  # a name in the class-head registry
    box_head: str = "pooled"  # a name in the box-head registry
    # the share of the class loss's gradient that reaches the backbone layers the box head reads too
    # (those up to the 1/16 map; 1: plain multi-task training)
    class_gradient: float = Field(1.0, ge=0, le=1)
    # the saved model averages its predictions on the image and on its mirror image
    flip_average: bool = False
    augment: bool = False  # flip, box-keeping crop, zoom-out and colour jitter of training images
    seed: int = 42


class NmsConfig(Section):
    """Per-class non-max suppression of predictions before they are scored."""

    iou_threshold: float = Field(0.6, gt=0, le=1)
    score_threshold: float = Field(0.001, ge=0, lt=1)


class EvaluateConfig(Section):
    batch_size: int = Field(64, ge=1)
    iou_thresholds: tuple[float, ...] = (0.5, 0.75)
    nms: NmsConfig = NmsConfig()


class Config(Section):
    tracking: TrackingConfig = TrackingConfig()
    ingest: IngestConfig = IngestConfig()
    split: SplitConfig = SplitConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    backbone: BackboneConfig = BackboneConfig()
    train_localizer: TrainLocalizerConfig = TrainLocalizerConfig()
    evaluate: EvaluateConfig = EvaluateConfig()


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc if part not in ("function-after",))


def _format_validation_error(source: str, err: ValidationError, prefix: str = "") -> str:
    problems = []
    for e in err.errors():
        key = (prefix + _dotted(e["loc"])).rstrip(".")
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        problems.append(f"{key}: {msg}" if key else msg)
    return f"{source}: " + "; ".join(problems)


def _validate_plugins(cfg: Config, source: str) -> None:
    """Check names that resolve through registries, and each source's own options."""
    from visionflow.data.sources import SOURCES
    from visionflow.models.backbones import BACKBONES
    from visionflow.registry import RegistryError

    def fail(key: str, msg: str) -> None:
        raise ConfigError(f"{source}: {key}: {msg}")

    try:
        source_cls = SOURCES.get(cfg.ingest.source)
    except RegistryError as e:
        fail("ingest.source", str(e))
    for key in cfg.ingest.model_extra or {}:
        if key not in SOURCES:
            fail(f"ingest.{key}", f"unknown key (not a registered source; valid: {', '.join(SOURCES.names())})")
    try:
        source_cls.Options(**cfg.ingest.source_options())
    except ValidationError as e:
        raise ConfigError(_format_validation_error(source, e, f"ingest.{cfg.ingest.source}.")) from None
    except TypeError as e:
        fail(f"ingest.{cfg.ingest.source}", str(e))

    try:
        spec = BACKBONES.get(cfg.backbone.name)
    except RegistryError as e:
        fail("backbone.name", str(e))
    if cfg.preprocess.image_size < spec.min_size:
        fail("preprocess.image_size", f"{cfg.backbone.name} needs at least {spec.min_size}, got {cfg.preprocess.image_size}")
    from visionflow.models.heads import BOX_HEADS, CLASS_HEADS

    for key, registry in (("class_head", CLASS_HEADS), ("box_head", BOX_HEADS)):
        try:
            registry.get(getattr(cfg.train_localizer, key))
        except RegistryError as e:
            fail(f"train_localizer.{key}", str(e))
    if cfg.train_localizer.class_head == "attention" and cfg.train_localizer.box_head != "attention":
        fail("train_localizer.class_head", "attention needs box_head: attention, which says where to look")
    init = cfg.backbone.init
    if init not in ("imagenet", "pretrain", "none") and not Path(init).is_file():
        fail("backbone.init", f"must be imagenet, pretrain, none or an existing weights file; {init!r} does not exist")


def parse_config(data: dict[str, Any] | None, source: str = PARAMS_FILE) -> Config:
    try:
        cfg = Config.model_validate(data or {})
    except ValidationError as e:
        raise ConfigError(_format_validation_error(source, e)) from None
    _validate_plugins(cfg, source)
    return cfg


def load_config(path: str | Path = PARAMS_FILE) -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return parse_config(data, str(path))
