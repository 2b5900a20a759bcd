"""The ``promote@<family>`` stage's work: register the tested model, and let the gate decide on the champion.

The challenger is the model ``evaluate`` just tested; its evidence comes from that
evaluation's detections. The champion, if there is one, is loaded from the registry
and run on the same test split, so both are judged on the same images. The decision
is made before anything is written; the registration, its tags and the aliases follow,
and a failure among them deletes the new version, so the registry is as it was.
"""

from __future__ import annotations

import json

import mlflow

from visionflow.config import Config, ConfigError
from visionflow.data.tfrecords import read_meta
from visionflow.errors import DataError
from visionflow.evaluation import split_detections
from visionflow.layout import model_file, model_metrics, model_reports, processed_dir
from visionflow.tracking import registry
from visionflow.tracking.gate import Decision, decide
from visionflow.tracking.pyfunc import log_pyfunc_model


def registered_name(cfg: Config, model: str) -> str:
    return f"{cfg.tracking.registered_model_prefix}{model}"


def minimum(cfg: Config, model: str) -> float:
    if model not in cfg.promote.min_metric:
        raise ConfigError(f"params.yaml: promote.min_metric.{model}: missing (the gate's minimum for {model})")
    return cfg.promote.min_metric[model]


def challenger_evidence(cfg: Config, model: str, family):
    reports = model_reports(model)
    truth = json.loads((reports / "test_ground_truth.json").read_text())
    return family.evidence(truth, json.loads((reports / "test_predictions.json").read_text()))


def comparable(card, cfg: Config, model: str, classes: list[str]) -> str | None:
    """Why the champion cannot be run on this test split, or None."""
    meta = read_meta(processed_dir(cfg.family_config(model).dataset))
    if list(card.classes) != list(classes):
        return f"its classes {list(card.classes)} differ from the data's {list(classes)}"
    if card.image_size != meta["image_size"]:
        return f"its input size {card.image_size} differs from the data's {meta['image_size']}"
    return None


def champion_evidence(cfg: Config, model: str, champion, family):
    """The champion's evidence on the current test split; refuses a champion that cannot read it."""
    from visionflow.predict import load_model

    loaded = load_model(f"models:/{registered_name(cfg, model)}@{registry.CHAMPION}")
    problem = comparable(loaded.card, cfg, model, family.classes)
    if problem:
        raise DataError(f"{registered_name(cfg, model)} version {champion.version} (champion): {problem}; "
                        "promote by hand with `visionflow promote MODEL --version N`")
    found = split_detections(cfg, model, "test", saved=loaded.keras_model)
    return family.evidence(found.truth, found.detections)


def gate(cfg: Config, model: str) -> tuple[Decision, object]:
    from visionflow.data.coco_layout import load_raw_dataset
    from visionflow.layout import raw_dir
    from visionflow.models.fit import family_for

    family = family_for(cfg, model, load_raw_dataset(raw_dir(cfg.family_config(model).dataset)).category_names)
    metrics = json.loads(model_metrics(model, "test").read_text())
    champion = registry.version_by_alias(registered_name(cfg, model), registry.CHAMPION)
    theirs = champion_evidence(cfg, model, champion, family) if champion else None
    decision = decide(family.headline_metric, float(metrics[family.headline_metric]), minimum(cfg, model),
                      challenger_evidence(cfg, model, family), theirs, cfg.promote)
    if champion:
        decision.numbers["champion_version"] = champion.version
    return decision, metrics


def register_and_decide(cfg: Config, model: str, lineage: dict[str, str]) -> dict:
    """Log the tested model, register it as challenger with its test metrics, and apply the gate."""
    decision, metrics = gate(cfg, model)
    scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    info = log_pyfunc_model(model_file(model))
    mlflow.log_metrics({f"test_{k}": v for k, v in scalars.items()}, model_id=info.model_id)
    name = registered_name(cfg, model)
    tags = {**lineage, **{f"test.{k}": f"{v:.6g}" for k, v in scalars.items()}}
    version = registry.register(name, info.model_uri, tags, f"{model}, tested: {decision.reason}")
    try:
        registry.record_decision(name, version.version, decision.as_dict())
    except Exception:
        registry.discard(name, version.version)
        raise
    return {"registered_model": name, "version": str(version.version), **decision.as_dict()}
