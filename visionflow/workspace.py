"""One pipeline run at a time on a workspace: a lock the flows take before they write anything.

DVC locks its repo too, but only stage by stage, and a run that finds it taken fails in the
middle. This lock covers a whole flow run (its params, its MLflow parent run, every stage),
and a second run either waits for it or stops before it has done anything
(``orchestration.on_busy``). It is a file lock (``flock``: the system frees it when its
process dies), and re-entrant within a process, so a flow may run another as a subflow.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

LOCK_FILE = ".dvc/tmp/visionflow-run.lock"
HOLDER_FILE = ".dvc/tmp/visionflow-run.json"  # who holds it: for the message another run prints


class WorkspaceBusy(RuntimeError):
    """Another pipeline run holds the workspace, and ``orchestration.on_busy`` is ``fail``."""


def _lock(root: Path) -> FileLock:
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), is_singleton=True, thread_local=False)


def holder(root: Path) -> str:
    """Who holds the workspace, as far as it wrote down."""
    try:
        found = json.loads((Path(root) / HOLDER_FILE).read_text())
    except (OSError, ValueError):
        return "another pipeline run"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(found["since"]))
    return f"another pipeline run (pid {found['pid']} on {found['host']}, since {since})"


@contextmanager
def workspace_lock(root: Path, on_busy: str = "wait", on_wait: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the workspace at ``root`` for the block; when another run holds it, wait (``on_wait``
    hears why) or, with ``on_busy="fail"``, raise :class:`WorkspaceBusy` at once."""
    root = Path(root).resolve()
    lock = _lock(root)
    subflow = lock.is_locked  # this process holds it already
    try:
        lock.acquire(timeout=0)
    except Timeout:
        busy = f"{holder(root)} holds the workspace {root} ({LOCK_FILE})"
        if on_busy == "fail":
            raise WorkspaceBusy(f"{busy}: stopping, as orchestration.on_busy is fail; run again once it has "
                                "finished, or set orchestration.on_busy: wait") from None
        on_wait(f"{busy}: waiting for it to finish (orchestration.on_busy: wait)")
        lock.acquire()
    if not subflow:
        _write_holder(root)
    try:
        yield
    finally:
        lock.release()


def _write_holder(root: Path) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    (root / HOLDER_FILE).write_text(json.dumps(info))
