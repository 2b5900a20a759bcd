"""The registry's commands: ``promote`` (by hand, or ``--rollback``), ``lineage``, ``reproduce`` and ``log-model``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from visionflow.errors import DataError


def _registered(model: str) -> str:
    """A family name (``detector``) or a registered model's name."""
    from visionflow.config import PARAMS_FILE, TrackingConfig, load_config

    tracking = load_config().tracking if Path(PARAMS_FILE).exists() else TrackingConfig()  # the default prefix
    return model if model.startswith(tracking.registered_model_prefix) else f"{tracking.registered_model_prefix}{model}"


def _connect() -> None:
    from visionflow.tracking.runs import connect

    connect(Path("."))


def _promote(args: argparse.Namespace) -> int:
    from visionflow.tracking import registry

    _connect()
    name = _registered(args.model)
    if args.rollback:
        old, new = registry.rollback(name)
        print(f"{name}: champion moved back from version {old} to version {new}")
        return 0
    if args.version is None:
        raise DataError("say which: --rollback, or --version N to make version N the champion by hand")
    registry.record_decision(name, str(args.version), {"promote": True, "reason": "promoted by hand"})
    print(f"{name}: version {args.version} is the champion")
    return 0


def resolve(uri: str) -> tuple[str, dict[str, str], str | None]:
    """A model URI -> (its run id, its tags, its registered version): version tags over run tags."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from visionflow.tracking import registry

    client = registry.client()
    try:
        if uri.startswith("models:/"):
            ref = uri.removeprefix("models:/")
            name, alias = ref.split("@", 1) if "@" in ref else (ref.split("/")[0], None)
            version = client.get_model_version_by_alias(name, alias) if alias else \
                client.get_model_version(name, ref.split("/")[1])
            run = client.get_run(version.run_id)
            return version.run_id, {**run.data.tags, **version.tags}, f"{name}/{version.version}"
        if uri.startswith("runs:/"):
            run = mlflow.get_run(uri.removeprefix("runs:/").split("/")[0])
            return run.info.run_id, dict(run.data.tags), None
    except (MlflowException, IndexError, ValueError) as e:
        raise DataError(f"{uri}: the model URI does not resolve ({str(e).splitlines()[0]})") from None
    raise DataError(f"{uri}: not a models:/ or runs:/ URI")


def _lineage(args: argparse.Namespace) -> int:
    from visionflow.tracking.lineage import LINEAGE_KEYS

    _connect()
    run_id, tags, version = resolve(args.model_uri)
    found = {"run_id": run_id, "version": version, **{k: tags[k] for k in LINEAGE_KEYS if k in tags}}
    print(json.dumps(found, indent=2))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from visionflow.reproduce import reproduce

    _connect()
    run_id, tags, _ = resolve(args.model_uri)
    result = reproduce(run_id, tags, Path(args.workdir), Path("."))
    print(json.dumps(result, indent=2))
    return 0


def _log_model(args: argparse.Namespace) -> int:
    """The trained model in the stage's outputs, logged in a run of its own (after the server dropped mid-run)."""
    from visionflow.config import load_config
    from visionflow.layout import model_file
    from visionflow.tracking.lineage import lineage_tags
    from visionflow.tracking.pyfunc import log_pyfunc_model
    from visionflow.tracking.runs import stage_run

    cfg, path = load_config(), model_file(args.model)
    if not path.is_file():
        raise DataError(f"{path}: no such model file (run train@{args.model} first)")
    with stage_run(f"log-model@{args.model}", cfg.tracking.experiment, {}, lineage_tags(cfg, args.model, {})) as run:
        info = log_pyfunc_model(path)
    print(f"{path}: logged as {info.model_uri} in run {run.info.run_id}")
    return 0


def add_commands(sub) -> None:
    promote = sub.add_parser("promote", help="move a registered model's champion alias: back (--rollback), "
                                             "or to a version by hand; the gate does it in the pipeline")
    promote.add_argument("model", help="a model family (detector) or a registered model name")
    promote.add_argument("--rollback", action="store_true", help="back to the champion it replaced")
    promote.add_argument("--version", type=int, help="make this version the champion")
    promote.set_defaults(func=_promote)
    lineage = sub.add_parser("lineage", help="where a logged or registered model came from: commit, data, params, "
                                             "backbone, versions, Prefect flow run")
    lineage.add_argument("model_uri", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/...")
    lineage.set_defaults(func=_lineage)
    repro = sub.add_parser("reproduce", help="check out a model's commit into a folder, restore its params.yaml, "
                                             "dvc repro its stages, and compare the test metrics")
    repro.add_argument("model_uri", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    repro.add_argument("--workdir", required=True, help="an empty or new folder")
    repro.set_defaults(func=_reproduce)
    log = sub.add_parser("log-model", help="log models/FAMILY/model.keras to MLflow in a run of its own "
                                           "(when the server dropped as training ended)")
    log.add_argument("model", help="a model family (detector)")
    log.set_defaults(func=_log_model)

