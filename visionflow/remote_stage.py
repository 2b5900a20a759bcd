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
from urllib.parse import urlsplit, urlunsplit

from visionflow.config import PARAMS_FILE, ConfigError
from visionflow.dvc_stages import LOCK_FILE, environment_with_this_python
from visionflow.io import atomic_write_text

# What a worker gets from git, not from us: the code, and DVC's config (its default remote, which both sides use).
CODE = ("visionflow", "tasks", "flows", "dvc.yaml", "pyproject.toml", ".dvc/config")


class RemoteStageError(RuntimeError):
    """A git or DVC step around a remote stage failed."""


def _run(root: Path, *cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=environment_with_this_python())
    if proc.returncode != 0:
        raise RemoteStageError(f"{' '.join(cmd)} in {root}: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout.strip()


def committed_code(root: Path) -> tuple[str, str]:
    """The commit a worker checks out and where it may fetch it from; an error if the code differs from it,
    or if the commit is not on ``origin`` (when there is one) for the worker to fetch."""
    changed = _run(root, "git", "status", "--porcelain", "--", *(c for c in CODE if (root / c).exists()))
    if changed:
        raise ConfigError(f"orchestration.gpu_work_pool: a worker runs the committed code, and {root} has changes "
                          f"({changed.splitlines()[0].strip()}, ...): commit them first")
    commit = _run(root, "git", "rev-parse", "HEAD")
    try:
        source = _run(root, "git", "remote", "get-url", "origin")
    except RemoteStageError:  # no origin: a worker on this machine fetches from the workspace itself
        return commit, str(Path(root).resolve())
    if not _run(root, "git", "branch", "--remotes", "--contains", commit):
        raise ConfigError(f"orchestration.gpu_work_pool: commit {commit[:7]} is on no branch of origin, where a "
                          f"worker fetches it: git push first")
    return commit, without_credentials(source)


def without_credentials(url: str) -> str:
    """``url`` without a user or token in it: it becomes a flow-run parameter, shown in Prefect's UI."""
    parts = urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def checkout(root: Path, source: str, commit: str, params: str, lock: str) -> None:
    """The worker's clone at ``commit`` (its own changes dropped), with the pipeline's params and lock.

    The commit comes from the clone's own ``origin`` (which holds the worker's credentials), else ``source``.
    """
    try:
        _run(root, "git", "fetch", "--quiet", "origin", commit)
    except RemoteStageError:
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
    """The stage's ``dvc.lock`` entry, read as DVC reads it (YAML 1.2: ``1e-05`` is a number, ``no`` a string)."""
    from dvc.utils.serialize import load_yaml

    return load_yaml(root / LOCK_FILE)["stages"][stage]


def record(root: Path, stage: str, entry: dict, files: dict[str, str]) -> None:
    """Take the worker's answer: its small outputs, then its ``dvc.lock`` entry; then pull the rest.

    The entry goes in as DVC writes its lock (the other entries stay as they were).
    """
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / path, text)
    merge_lock_entry(root, stage, entry)
    pull(root, [stage])


def merge_lock_entry(root: Path, stage: str, entry: dict) -> None:
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(root / LOCK_FILE) as lock:
        lock.setdefault("schema", "2.0")
        lock.setdefault("stages", {})[stage] = entry
