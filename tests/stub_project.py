"""A throwaway project whose DVC stages are stubs that run in a second: for testing the flow.

It has the repo's real ``params.yaml`` (the flow validates it), its own git and DVC
repo, and a ``dvc.yaml`` of stub stages shaped like the real graph: a chain, a branch
beside it and a join. Each stage runs ``python stub.py <stage>``, which reads its own
entry of ``dvc.yaml``, writes its outs from its deps and params, and logs a child run
through ``visionflow.tracking.stage_run`` as the real stages do. A stage can be told to
fail once (``fail_next_run``), and every start of one is logged (``stage_starts``). Through
the same side channel a test can give a stage data DVC does not see (``set_source``: what a
forced re-ingest picks up), the numbers of its metrics file (``set_metrics``) and a pause.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.project import commit_as_repo

ROOT = Path(__file__).resolve().parents[1]

# stage: (the stages whose outs it reads, the params.yaml keys it reads). Like the real
# graph: a chain (ingest -> split -> evaluate, which reads both) and a branch (stats).
GRAPH: dict[str, tuple[list[str], list[str]]] = {
    "ingest": ([], ["ingest.source"]),
    "split": (["ingest"], ["split.seed"]),
    "stats": (["ingest"], []),
    "evaluate": (["ingest", "split"], ["evaluate.iou_thresholds"]),
}
# The flow logs this file's numbers on its parent run.
TEST_METRICS = {"evaluate": "metrics/localizer/test.json"}

CONTROL_DIR = ".stub"  # the test's side channel to the stages, outside DVC's view
STARTS_LOG = f"{CONTROL_DIR}/starts.log"

STUB = r'''"""A stub stage: ``python stub.py <stage>``, its deps, params and outs read from dvc.yaml."""

import hashlib
import json
import sys
import time
from pathlib import Path

import yaml

CONTROL = Path(".stub")  # CONTROL_DIR of stub_project.py


def lookup(params, dotted):
    for key in dotted.split("."):
        params = params[key]
    return params


def control(kind, name, default):
    path = CONTROL / kind / name
    return path.read_text() if path.exists() else default


def main(name):
    with (CONTROL / "starts.log").open("a") as log:
        log.write(name + "\n")
    fail = CONTROL / "fail" / name
    if fail.exists():  # fail once, with the exit code the file holds
        code = int(fail.read_text())
        fail.unlink()
        sys.exit(code)
    time.sleep(float(control("sleep", name, "0")))
    stage = yaml.safe_load(Path("dvc.yaml").read_text())["stages"][name]
    params = yaml.safe_load(Path("params.yaml").read_text())
    values = {key: lookup(params, key) for key in stage.get("params", [])}
    deps = {dep: hashlib.md5(Path(dep).read_bytes()).hexdigest() for dep in stage["deps"]}
    source = control("source", name, "")  # data from outside the project: DVC does not see it

    from visionflow.tracking import stage_run

    with stage_run(name, params["tracking"]["experiment"], values):
        for out in stage["outs"]:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps({"stage": name, "deps": deps, "params": values, "source": source},
                                            sort_keys=True))
        for metrics in stage.get("metrics", []):
            (path,) = metrics
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(control("metrics", name, json.dumps({"accuracy": 0.75, "num_examples": 3})))


if __name__ == "__main__":
    main(sys.argv[1])
'''


def out_path(stage: str) -> str:
    return f"out/{stage}.json"


def dvc_yaml(graph: dict = GRAPH, metrics: dict = TEST_METRICS) -> dict:
    stages = {}
    for name, (upstream, params) in graph.items():
        stage = {"cmd": f"python stub.py {name}", "deps": ["stub.py"] + [out_path(u) for u in upstream]}
        if params:
            stage["params"] = params
        stage["outs"] = [out_path(name)]
        if name in metrics:
            stage["metrics"] = [{metrics[name]: {"cache": False}}]
        stages[name] = stage
    return {"stages": stages}


def downstream(stage: str) -> set[str]:
    """``stage`` and every stage that reads, directly or not, what it writes."""
    found = {stage}
    for name in GRAPH:  # GRAPH lists every stage after the stages it reads
        if found & set(GRAPH[name][0]):
            found.add(name)
    return found


def make_stub_project(dest: Path, graph: dict = GRAPH, metrics: dict = TEST_METRICS) -> Path:
    """A git + DVC repo at ``dest`` with the real ``params.yaml`` and the stub stages (``graph``,
    each writing the metrics file ``metrics`` names), committed."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", dest / "params.yaml")
    (dest / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml(graph, metrics), sort_keys=False))
    (dest / "stub.py").write_text(STUB)
    (dest / ".gitignore").write_text(f"/{CONTROL_DIR}/\n/mlflow.db\n/mlartifacts/\n")
    for kind in ("fail", "source", "metrics", "sleep"):
        (dest / CONTROL_DIR / kind).mkdir(parents=True)
    return commit_as_repo(dest, "stub project")


def set_source(root: Path, stage: str, text: str) -> None:
    """What ``stage`` reads from outside the project from now on (it lands in its outputs)."""
    (root / CONTROL_DIR / "source" / stage).write_text(text)


def set_metrics(root: Path, stage: str, values: dict) -> None:
    """What ``stage`` writes to its metrics file from now on."""
    (root / CONTROL_DIR / "metrics" / stage).write_text(json.dumps(values))


def set_pause(root: Path, stage: str, seconds: float) -> None:
    """``stage`` sleeps this long before its work."""
    (root / CONTROL_DIR / "sleep" / stage).write_text(str(seconds))


def fail_next_run(root: Path, stage: str, exit_code: int) -> None:
    """The next start of ``stage`` exits with ``exit_code`` before any work; the one after succeeds."""
    (root / CONTROL_DIR / "fail" / stage).write_text(str(exit_code))


def stage_starts(root: Path) -> list[str]:
    """Every start of a stub stage so far, in order (failed ones too)."""
    log = root / STARTS_LOG
    return log.read_text().split() if log.exists() else []


def set_param(root: Path, dotted: str, value) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    *path, last = dotted.split(".")
    section = params
    for key in path:
        section = section[key]
    section[last] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
