"""Writes that are all or nothing: a file or folder appears complete, or not at all.

Every stage output goes through here, so a failed or killed stage leaves the previous
outputs exactly as they were.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a scratch path beside ``target`` that replaces it only if the block succeeds.

    The scratch name keeps every suffix (``.weights.h5``, ``.keras``), which Keras checks.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stem, dot, suffixes = target.name.partition(".")
    tmp = target.with_name(f".{stem}.tmp-{os.getpid()}{dot}{suffixes}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: Path, data: Any) -> None:
    """``data`` as indented, key-sorted JSON, atomically."""
    atomic_write_text(target, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(target: Path, header: list[str], rows) -> None:
    """A header and rows as CSV, atomically."""
    with atomic_path(target) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a scratch folder that replaces ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
