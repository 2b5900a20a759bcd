"""Where a run's model came from, as tags: code, data, params, backbone, versions, orchestration.

- ``git.commit`` and ``git.dirty`` (uncommitted changes to tracked files);
- ``dvc.data``, ``dvc.split``, ``dvc.backbone``: the hashes ``dvc.lock`` records for the
  raw data, the split and the backbone weights the stage read;
- ``params.hash``: of the whole checked config (``params.yaml`` itself is logged too);
- ``backbone``, ``tensorflow``, ``keras``;
- ``prefect.flow_run_id`` and ``prefect.flow_run_url`` when a Prefect flow started it.

The same tags go on the run and on the registered version; ``visionflow lineage`` prints them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from visionflow.config import Config
from visionflow.layout import BACKBONE_WEIGHTS, raw_dir, split_dir

PREFECT_RUN_ENV = "VISIONFLOW_PREFECT_FLOW_RUN_ID"
PREFECT_URL_ENV = "VISIONFLOW_PREFECT_FLOW_RUN_URL"
LINEAGE_KEYS = ("git.commit", "git.dirty", "dvc.data", "dvc.split", "dvc.backbone", "params.hash", "backbone",
                "tensorflow", "keras", "prefect.flow_run_id", "prefect.flow_run_url")


def _git(root: Path, *args: str) -> str | None:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def git_commit(root: Path) -> str:
    return _git(root, "rev-parse", "HEAD") or "unknown"


def git_dirty(root: Path) -> str:
    """``true`` when tracked files differ from the commit (DVC's outputs are git-ignored, so they do not count)."""
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return "unknown" if status is None else str(bool(status)).lower()


def params_hash(cfg: Config) -> str:
    text = json.dumps(cfg.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_hashes(dvc_deps: dict[str, str], dataset: str) -> dict[str, str]:
    """The stage's ``dvc.dep.<path>`` tags -> ``dvc.data``/``dvc.split``/``dvc.backbone`` where it read them."""
    wanted = {"dvc.data": raw_dir(dataset), "dvc.split": split_dir(dataset), "dvc.backbone": BACKBONE_WEIGHTS}
    return {key: dvc_deps[f"dvc.dep.{path.as_posix()}"] for key, path in wanted.items()
            if f"dvc.dep.{path.as_posix()}" in dvc_deps}


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


def prefect_tags() -> dict[str, str]:
    found = {"prefect.flow_run_id": os.environ.get(PREFECT_RUN_ENV), "prefect.flow_run_url": os.environ.get(PREFECT_URL_ENV)}
    return {k: v for k, v in found.items() if v}


def lineage_tags(cfg: Config, model: str, dvc_deps: dict[str, str], root: Path = Path(".")) -> dict[str, str]:
    """Every lineage tag of a model family's run; ``dvc_deps``: the stage's ``dvc.dep.*`` tags."""
    return {"git.commit": git_commit(root), "git.dirty": git_dirty(root),
            **data_hashes(dvc_deps, cfg.family_config(model).dataset), "params.hash": params_hash(cfg),
            "backbone": cfg.backbone.name, **versions(), **prefect_tags()}
