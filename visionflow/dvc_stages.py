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
    """``dvc repro`` of one stage failed; ``user_error`` marks bad input and ``busy`` a workspace another
    DVC process holds: no retry fixes either."""

    def __init__(self, stage: str, output: str, user_error: bool, busy: bool = False):
        self.stage, self.output, self.user_error, self.busy = stage, output, user_error, busy
        super().__init__(f"stage {stage!r} failed:\n{output.strip()[-4000:]}")

    def __reduce__(self):  # unpickled as it was raised: a worker's failure keeps its kind across machines
        return StageFailed, (self.stage, self.output, self.user_error, self.busy)

    @property
    def transient(self) -> bool:
        return not (self.user_error or self.busy)


# A stage exits with this code for bad config or data (see tasks/_entry.py).
USER_ERROR_EXIT_CODE = 2
# DVC 3's words when another DVC process holds the repo (dvc/lock.py) or a stage's outputs (dvc/rwlock.py).
DVC_BUSY = re.compile(r"Unable to acquire lock\. Most likely another DVC process is running"
                      r"|is busy, it is being blocked by")


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
        raise StageFailed(stage, output, user_error, busy=DVC_BUSY.search(output) is not None)
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
    return list(stage_graph(root))


def stage_graph(root: Path = Path(".")) -> dict[str, list[str]]:
    """Each stage of ``dvc.yaml`` -> the stages whose outputs it reads; in pipeline order (each after those)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        order = reversed(list(nx.topological_sort(graph)))
        return {stage.name: sorted(dep.name for dep in graph.successors(stage)) for stage in order}


def upstream(graph: dict[str, list[str]], stages) -> list[str]:
    """``stages`` and every stage they read from, directly or not, in pipeline order."""
    found, todo = set(), list(stages)
    while todo:
        stage = todo.pop()
        if stage not in found:
            found.add(stage)
            todo.extend(graph[stage])
    return [stage for stage in graph if stage in found]


def family_groups(root: Path = Path(".")) -> set[str]:
    """The stage groups of ``dvc.yaml`` that run once per model family (``foreach: ${train}``): train, evaluate..."""
    import yaml

    stages = yaml.safe_load((Path(root) / "dvc.yaml").read_text()).get("stages", {})
    return {name for name, spec in stages.items() if isinstance(spec, dict) and spec.get("foreach") == "${train}"}


def named(stage: str, name: str) -> bool:
    """``name`` is the stage, or its group (``train`` names ``train@localizer``)."""
    return stage == name or stage.split("@")[0] == name


def select_stages(graph: dict[str, list[str]], stages=None, models=None, groups=frozenset()) -> list[str]:
    """The stages to run, in pipeline order: all of them, or those ``stages`` names (a stage, or a group).

    With ``models``, only what those families need: their own stages (``<group>@<family>`` for
    each of ``groups``) and every stage upstream of them, the data stages of their datasets among them.
    """
    unknown = [name for name in stages or [] if not any(named(s, name) for s in graph)]
    if unknown:
        raise ValueError(f"not a stage of dvc.yaml: {', '.join(unknown)} (stages: {', '.join(graph)})")
    chosen = [s for s in graph if not stages or any(named(s, name) for name in stages)]
    if models:
        own = [s for s in graph if s.split("@")[0] in groups and s.split("@")[-1] in models]
        missing = [m for m in models if not any(s.split("@")[-1] == m for s in own)]
        if missing:
            raise ValueError(f"no stage of dvc.yaml is {', '.join(missing)}'s (a family's stages: "
                             f"{', '.join(f'{g}@<family>' for g in sorted(groups)) or 'none'})")
        needed = set(upstream(graph, own))
        chosen = [s for s in chosen if s in needed]
    return chosen


def outdated_stages(root: Path, stages: list[str]) -> list[str]:
    """Those of ``stages`` whose data, params, code or outputs differ from ``dvc.lock`` (``dvc status``)."""
    from dvc.repo import Repo

    # Stage by stage: `repo.status(targets=...)` would look names up in the dvc.yaml of the current folder.
    with Repo(str(root)) as repo, repo.lock:
        changed = {stage.name for stage in repo.index.stages if stage.name in stages and stage.status()}
    return [stage for stage in stages if stage in changed]
