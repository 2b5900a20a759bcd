"""One stage of ``dvc.yaml`` run in another clone of the project (a GPU worker's), its data through the DVC remote.

The workspace that runs the pipeline pushes the stage's inputs to the DVC remote and sends
the worker its git commit, ``params.yaml`` and ``dvc.lock``. The worker checks out that
commit in its own clone, takes the two files, pulls the inputs, runs the stage with
``dvc repro``, pushes the outputs, and answers with the stage's ``dvc.lock`` entry (and
the small outputs DVC does not cache: metrics and plots). The workspace records the entry
and pulls the outputs, so ``dvc.lock`` stays the record and later stages read them.
Both sides need the same default DVC remote; only the stage's code must be committed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from visionflow.config import PARAMS_FILE, ConfigError
from visionflow.dvc_stages import LOCK_FILE, environment_with_this_python
from visionflow.io import atomic_write_text

CODE = ("visionflow", "tasks", "flows", "dvc.yaml", "pyproject.toml")  # what a worker gets from git, not from us


class RemoteStageError(RuntimeError):
    """A git or DVC step around a remote stage failed."""


def _run(root: Path, *cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=environment_with_this_python())
    if proc.returncode != 0:
        raise RemoteStageError(f"{' '.join(cmd)} in {root}: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout.strip()


def committed_code(root: Path) -> tuple[str, str]:
    """The commit a worker checks out and where it fetches it from; an error if the code differs from it."""
    changed = _run(root, "git", "status", "--porcelain", "--", *(c for c in CODE if (root / c).exists()))
    if changed:
        raise ConfigError(f"orchestration.gpu_work_pool: a worker runs the committed code, and {root} has changes "
                          f"({changed.splitlines()[0].strip()}, ...): commit them first")
    try:
        source = _run(root, "git", "remote", "get-url", "origin")
    except RemoteStageError:  # no origin: a worker on this machine fetches from the workspace itself
        source = str(Path(root).resolve())
    return _run(root, "git", "rev-parse", "HEAD"), source


def checkout(root: Path, source: str, commit: str, params: str, lock: str) -> None:
    """The worker's clone at ``commit`` (its own changes dropped), with the pipeline's params and lock."""
    _run(root, "git", "fetch", "--quiet", source, commit)
    _run(root, "git", "checkout", "--quiet", "--force", "--detach", commit)
    atomic_write_text(root / PARAMS_FILE, params)
    atomic_write_text(root / LOCK_FILE, lock)


def _stage(root: Path, name: str):
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        (stage,) = repo.stage.collect(name)
        produced = {str(out.def_path) for s in repo.index.stages if s.name != name for out in s.outs}
        return ([str(d.def_path) for d in stage.deps if str(d.def_path) in produced],
                [(str(o.def_path), o.use_cache) for o in stage.outs])


def inputs(root: Path, stage: str) -> list[str]:
    """The stage's deps that other stages write (DVC-tracked data and models, not code)."""
    return _stage(root, stage)[0]


def uncached_outputs(root: Path, stage: str) -> dict[str, str]:
    """The stage's outputs DVC does not cache (metrics, plots), path -> text: they travel with the answer."""
    return {path: (root / path).read_text() for path, cached in _stage(root, stage)[1] if not cached}


def push(root: Path, targets: list[str]) -> None:
    if targets:
        _run(root, "dvc", "push", "--quiet", *targets)


def pull(root: Path, targets: list[str]) -> None:
    if targets:
        _run(root, "dvc", "pull", "--quiet", "--force", *targets)


def lock_entry(root: Path, stage: str) -> dict:
    return yaml.safe_load((root / LOCK_FILE).read_text())["stages"][stage]


def record(root: Path, stage: str, entry: dict, files: dict[str, str]) -> None:
    """Take the worker's answer: its small outputs, then its ``dvc.lock`` entry; then pull the rest."""
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / path, text)
    path = root / LOCK_FILE
    lock = yaml.safe_load(path.read_text()) if path.exists() else {"schema": "2.0", "stages": {}}
    lock["stages"][stage] = entry
    atomic_write_text(path, yaml.safe_dump(lock, sort_keys=False))
    pull(root, [stage])
