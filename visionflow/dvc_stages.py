"""Everything DVC: run one stage of ``dvc.yaml``, and read the hashes DVC records.

Stages run through the ``dvc`` command so ``dvc.lock`` stays the record and a stage
whose deps, params and outs are unchanged is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LOCK_FILE = "dvc.lock"


class StageFailed(RuntimeError):
    """``dvc repro`` of one stage failed; ``user_error`` marks bad input, which no retry fixes."""

    def __init__(self, stage: str, output: str, user_error: bool):
        self.stage, self.output, self.user_error = stage, output, user_error
        super().__init__(f"stage {stage!r} failed:\n{output.strip()[-4000:]}")


# A stage exits with this code for bad config or data (see tasks/_entry.py).
USER_ERROR_EXIT_CODE = 2


@dataclass(frozen=True)
class StageResult:
    stage: str
    ran: bool
    output: str


def environment_with_this_python() -> dict[str, str]:
    """The environment with this interpreter's ``bin`` first on PATH.

    Stage commands say ``python -m tasks.<stage>``; this makes that the Python (and
    the ``dvc``) of the environment visionflow is installed in.
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def repro_stage(stage: str, root: Path, force: bool = False, on_line=None,
                env: dict[str, str] | None = None) -> StageResult:
    """``dvc repro --single-item <stage>``: run it if anything it depends on changed.

    ``on_line`` receives each line of output as it comes (training progress, say);
    ``env`` is added to the stage's environment (the parent run's id, say).
    """
    cmd = ["dvc", "repro", "--single-item", stage] + (["--force"] if force else [])
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**environment_with_this_python(), **(env or {})})
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if on_line is not None:
            on_line(line.rstrip("\n"))
    proc.wait()
    output = "".join(lines)
    if proc.returncode != 0:
        user_error = re.search(rf"exited with {USER_ERROR_EXIT_CODE}\b", output) is not None
        raise StageFailed(stage, output, user_error)
    return StageResult(stage, ran=f"Running stage '{stage}'" in output, output=output)


@dataclass(frozen=True)
class StageInputs:
    """What ``dvc.lock`` records for a stage's inputs: file md5s and param values."""

    files: dict[str, str]
    params: dict[str, dict]

    def combined_hash(self) -> str:
        text = json.dumps({"deps": self.files, "params": self.params}, sort_keys=True, default=str)
        return hashlib.md5(text.encode()).hexdigest()


def stage_inputs(stage: str, root: Path = Path(".")) -> StageInputs:
    """The hashes DVC computes for ``stage``'s deps now (what it writes to ``dvc.lock`` on success)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    files, params = {}, {}
    with Repo(str(root)) as repo:
        (found,) = repo.stage.collect(stage)
        for dep in found.deps:
            if isinstance(dep, ParamsDependency):
                params[dep.def_path] = dep.read_params(flatten=False)
            else:
                files[dep.def_path] = dep.get_hash().value
    return StageInputs(files, params)


def lock_file_hash(root: Path = Path(".")) -> str:
    path = Path(root) / LOCK_FILE
    return hashlib.md5(path.read_bytes()).hexdigest() if path.exists() else "none"


def pipeline_stages(root: Path = Path(".")) -> list[str]:
    """The stages of ``dvc.yaml``, every stage after the stages it depends on."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        return [stage.name for stage in reversed(list(nx.topological_sort(graph)))]
