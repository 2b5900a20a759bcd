"""A throwaway visionflow project: the real code, a tiny config, its own git and DVC repo."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import yaml

from visionflow.dvc_stages import environment_with_this_python

ROOT = Path(__file__).resolve().parents[1]

# Small enough to run every stage in seconds, big enough for every split to have each class.
TINY_PARAMS = {
    "ingest": {"synthetic": {"num_images": 80, "image_size": 64, "min_object_size": 10, "max_object_size": 32}},
    "preprocess": {"image_size": 64, "num_shards": 2},
    # two data paths, not three: the localizer trains on shapes, as the classifier does
    "datasets": {"shapes_mixed": None, "scenes": {"ingest": {"synthetic": {"num_images": 80, "max_object_size": 32}}}},
    "backbone": {"name": "mobilenet_v2", "width": 0.35, "init": "none",  # pretraining: tests/test_pretrain.py
                 "pretrain": {"epochs": 1, "batch_size": 16}},
    "train": {"localizer": {"dataset": "shapes", "batch_size": 16, "frozen": {"epochs": 1}, "finetune": {"epochs": 1}},
              "classifier": {"batch_size": 16, "frozen": {"epochs": 1}, "finetune": {"epochs": 1}},
              "detector": {"batch_size": 16, "frozen": {"epochs": 1}, "finetune": {"epochs": 1}, "input_sizes": [64],
                           "neck_channels": 16}},
    # Every first version passes (tiny models score little); the bootstrap stays at its smallest.
    "promote": {"min_metric": {"localizer": 0.0, "classifier": 0.0, "detector": 0.0}, "bootstrap": {"samples": 200}},
}


def deep_update(base: dict, changes: dict) -> dict:
    """``changes`` merged into ``base`` key by key; ``None`` in place of a mapping deletes it."""
    for key, value in changes.items():
        if value is None and isinstance(base.get(key), dict):
            del base[key]
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value
    return base


def tool_env() -> dict[str, str]:
    """This interpreter's bin first on PATH, so ``python`` and ``dvc`` are the venv's."""
    env = environment_with_this_python()
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("VISIONFLOW_PARENT_RUN_ID", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # stages write __pycache__ beside the code, as on a user's machine
    return env


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_project(dest: Path, params: dict | None = None) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("visionflow", "tasks", "flows"):
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, dest / name)
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    (dest / "params.yaml").write_text(yaml.safe_dump(deep_update(shipped, deep_update(copy.deepcopy(TINY_PARAMS), params or {}))))
    return commit_as_repo(dest, "project")


def commit_as_repo(dest: Path, message: str) -> Path:
    """Make ``dest`` a git + DVC repo (analytics off) holding everything in it, committed."""
    run(["git", "init", "-q"], dest)
    run(["git", "config", "user.email", "test@visionflow.local"], dest)
    run(["git", "config", "user.name", "visionflow tests"], dest)
    run(["dvc", "init", "-q"], dest)
    run(["dvc", "config", "core.analytics", "false"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", message], dest)
    return dest
