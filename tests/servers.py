"""What the tests that start a server share: a free loopback port, waiting for an answer, stopping it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until_up(server: subprocess.Popen, url: str, log: Path | None = None, timeout: float = 120) -> None:
    """Until ``url`` answers 200; fails, with the end of ``log``, if the server exits or takes longer."""
    tail = (lambda: log.read_text()[-3000:]) if log else (lambda: "")
    deadline = time.monotonic() + timeout
    while not answers(url):
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no answer at {url} within {timeout:.0f} s:\n{tail()}")
        time.sleep(0.5)


def stop(server: subprocess.Popen) -> None:
    """Its whole process group (started with ``start_new_session=True``): SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
