"""What orchestration costs: the Prefect flow against plain ``dvc repro``, on the same stub project.

The end-to-end tests' stub project (``tests/stub_project.py``: the repo's ``params.yaml``, four
stub stages shaped like the real graph, each logging an MLflow child run), every run on a
fresh copy of one template:

1. ``dvc repro`` of the whole pipeline from scratch (the venv's bin first on PATH, as the flow runs it);
2. ``python -m flows.pipeline --root <copy>`` from scratch, in its own process, so Prefect's start-up
   counts: its temporary server (no ``PREFECT_API_URL``) and the MLflow parent run in the copy's
   SQLite store (no ``MLFLOW_TRACKING_URI``);
3. ``dvc repro`` again on the up-to-date copy of 1 (a no-op);
4. the flow again on the up-to-date copy of 2 (a no-op).

Repeats are interleaved (plain first, then the flow first, ...). Prints the medians, flow / plain
and flow - plain, which splits into a constant a run (Prefect's and MLflow's start-up) and a cost a stage:

- from the no-op runs: start-up = no-op flow - no-op ``dvc repro``. A no-op flow still runs a task and
  a ``dvc repro --single-item`` process for each stage, so this counts the stages' own overhead as
  start-up, and leaves a stage only what running it adds;
- from the flow's timeline: start-up = before its MLflow parent run opens plus after it closes (median
  over the no-op runs, whose MLflow store exists already: plain ``dvc repro`` creates one too); a stage =
  (flow - plain - start-up) / stages, of which a ``dvc`` process of its own: (no-op ``dvc repro
  --single-item`` of each stage in turn - no-op ``dvc repro``) / stages.

Telemetry is off in both (``flows.TELEMETRY_OFF``). Prefect's database is a temporary
``PREFECT_HOME``'s, created by an untimed warm-up run, so no timed run pays its migrations and
``~/.prefect`` is left alone. Takes about 2.5 minutes a repeat on two busy cores.

    python benchmarks/orchestration_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: flows and tests live beside visionflow

from flows import TELEMETRY_OFF  # noqa: E402
from tests.stub_project import GRAPH, make_stub_project, stage_starts  # noqa: E402
from visionflow.dvc_stages import environment_with_this_python  # noqa: E402
from visionflow.tracking import PARENT_RUN_ENV  # noqa: E402

STAGES = list(GRAPH)
SERVER_STOP = "Stopping temporary server"  # Prefect's log line as its exit handler stops the server


@dataclass(frozen=True)
class Finished:
    """One command run to its end: wall seconds, and when (epoch seconds) it started, ended and printed each line."""

    seconds: float
    started: float
    ended: float
    lines: list[tuple[float, str]]


@dataclass(frozen=True)
class Phases:
    """A flow run's wall time around its MLflow parent run, seconds."""

    before: float  # imports, Prefect's server, the flow run, the config, DVC's graph, the MLflow store
    inside: float  # the stages (a Prefect task and a `dvc repro --single-item` each), the run's tags
    after: float  # the flow run's end, Prefect's exit handlers (the server stop), the process's exit
    after_server_stop: float | None  # of ``after``: from Prefect's server-stop line to the process's exit

    @property
    def start_up(self) -> float:
        return self.before + self.after


def tool_env(prefect_home: Path) -> dict[str, str]:
    """The venv first on PATH, telemetry off, no tracking server, Prefect server or parent run from outside."""
    env = {**environment_with_this_python(), **TELEMETRY_OFF, "DO_NOT_TRACK": "1", "PREFECT_HOME": str(prefect_home)}
    for name in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", PARENT_RUN_ENV):
        env.pop(name, None)
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> Finished:
    """``cmd`` to its end, each line of its output (stderr too) timed as it arrives; a failure stops the benchmark."""
    started, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [(time.time(), line.rstrip("\n")) for line in proc.stdout]
    proc.wait()
    seconds, ended = time.perf_counter() - start, time.time()
    if proc.returncode != 0:
        tail = "\n".join(line for _, line in lines[-40:])
        raise SystemExit(f"{' '.join(cmd)} (in {cwd}) failed with exit code {proc.returncode}:\n{tail}")
    return Finished(seconds, started, ended, lines)


def expect_starts(root: Path, count: int, what: str) -> None:
    """The stub stages started ``count`` times in all so far: each ran once from scratch, none on a no-op."""
    found = len(stage_starts(root))
    if found != count:
        raise SystemExit(f"{what} in {root}: {found} stage starts so far, expected {count}")


def plain(root: Path, env: dict[str, str]) -> dict[str, float]:
    """``dvc repro`` from scratch, again (a no-op), then a no-op ``dvc repro --single-item`` of each stage."""
    scratch = run(["dvc", "repro"], root, env)
    expect_starts(root, len(STAGES), "dvc repro")
    noop = run(["dvc", "repro"], root, env)
    single = sum(run(["dvc", "repro", "--single-item", stage], root, env).seconds for stage in STAGES)
    expect_starts(root, len(STAGES), "no-op dvc repro")
    return {"plain": scratch.seconds, "plain no-op": noop.seconds, "single-item no-op": single}


def parent_run(root: Path):
    """The newest pipeline run in the copy's MLflow store."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "tags.`visionflow.stage` = 'pipeline'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0]


def phases(finished: Finished, root: Path, noop: bool) -> Phases:
    """Where the flow run's time went, from its MLflow parent run's start and end."""
    parent = parent_run(root)
    if parent.data.tags.get("visionflow.noop") != str(noop).lower():
        raise SystemExit(f"{root}: the flow's parent run says noop={parent.data.tags.get('visionflow.noop')}, "
                         f"expected {str(noop).lower()}")
    opened, closed = parent.info.start_time / 1e3, parent.info.end_time / 1e3
    stops = [at for at, line in finished.lines if SERVER_STOP in line]
    return Phases(opened - finished.started, closed - opened, finished.ended - closed,
                  finished.ended - stops[-1] if stops else None)


def flow(root: Path, env: dict[str, str]) -> tuple[dict[str, float], dict[str, Phases]]:
    """The flow from scratch, then again (a no-op), each in its own process."""
    cmd = [sys.executable, "-m", "flows.pipeline", "--root", str(root)]
    scratch = run(cmd, ROOT, env)
    expect_starts(root, len(STAGES), "the flow")
    scratch_phases = phases(scratch, root, noop=False)
    noop = run(cmd, ROOT, env)
    expect_starts(root, len(STAGES), "the no-op flow")
    return ({"flow": scratch.seconds, "flow no-op": noop.seconds},
            {"flow": scratch_phases, "flow no-op": phases(noop, root, noop=True)})


def warm_up(template: Path, tmp: Path, env: dict[str, str]) -> None:
    """One untimed flow run of the first stage: Prefect's database gets its tables, every import its caches."""
    root = shutil.copytree(template, tmp / "warm-up", symlinks=True)
    run([sys.executable, "-m", "flows.pipeline", "--root", str(root), "--stage", STAGES[0]], ROOT, env)


def measure(repeats: int, tmp: Path) -> tuple[dict[str, list[float]], dict[str, list[Phases]]]:
    env = tool_env(tmp / "prefect-home")
    template = make_stub_project(tmp / "template")
    warm_up(template, tmp, env)
    times: dict[str, list[float]] = {}
    timelines: dict[str, list[Phases]] = {"flow": [], "flow no-op": []}
    for i in range(repeats):
        arms = ("plain", "flow") if i % 2 == 0 else ("flow", "plain")
        for arm in arms:
            root = shutil.copytree(template, tmp / f"{arm}-{i}", symlinks=True)
            if arm == "plain":
                found = plain(root, env)
            else:
                found, timeline = flow(root, env)
                for key, value in timeline.items():
                    timelines[key].append(value)
            for key, seconds in found.items():
                times.setdefault(key, []).append(seconds)
            print(f"  repeat {i + 1}, {arm}: " + ", ".join(f"{k} {v:.1f} s" for k, v in found.items()), flush=True)
    return times, timelines


def report(times: dict[str, list[float]], timelines: dict[str, list[Phases]]) -> None:
    med = {key: statistics.median(values) for key, values in times.items()}
    n = len(STAGES)
    print(f"\n{'median, s':<24}{'dvc repro':>10}{'flow':>10}{'flow / dvc':>12}{'flow - dvc':>12}")
    for label, a, b in ((f"from scratch ({n} ran)", "plain", "flow"), ("no-op (0 ran)", "plain no-op", "flow no-op")):
        print(f"{label:<24}{med[a]:>10.1f}{med[b]:>10.1f}{med[b] / med[a]:>11.2f}x{med[b] - med[a]:>+12.1f}")
    difference = med["flow"] - med["plain"]
    noop_difference = med["flow no-op"] - med["plain no-op"]
    start_up = statistics.median(p.start_up for p in timelines["flow no-op"])
    dvc_process = (med["single-item no-op"] - med["plain no-op"]) / n
    print(f"\nflow - dvc = start-up a run + {n} x a stage, split two ways:\n"
          f"  no-op runs:    start-up {noop_difference:5.1f} s (no-op flow - no-op dvc repro), a stage "
          f"({difference:.1f} - {noop_difference:.1f}) / {n} = {(difference - noop_difference) / n:+.2f} s "
          f"(only what running it adds: a no-op flow runs a task and a dvc process a stage too)\n"
          f"  flow timeline: start-up {start_up:5.1f} s (before its MLflow parent run + after it), a stage "
          f"({difference:.1f} - {start_up:.1f}) / {n} = {(difference - start_up) / n:+.2f} s, of which a dvc "
          f"process of its own {dvc_process:.2f} s (no-op dvc repro --single-item of each stage: "
          f"{med['single-item no-op']:.1f} s in all)")
    for key, label in (("flow", "from scratch"), ("flow no-op", "no-op")):
        p = [statistics.median(getattr(t, name) for t in timelines[key]) for name in ("before", "inside", "after")]
        stops = [t.after_server_stop for t in timelines[key] if t.after_server_stop is not None]
        stop = f" (of which {statistics.median(stops):.1f} s from Prefect's server stop to the exit)" if stops else ""
        print(f"  flow {label:<13} before its parent run {p[0]:5.1f} s, inside {p[1]:5.1f} s, "
              f"after {p[2]:5.1f} s{stop}")
    runs = (f"{key} " + " ".join(f"{v:.1f}" for v in values) for key, values in times.items())
    print("each run, s: " + "   ".join(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (default: 3)")
    args = parser.parse_args()
    print(f"stub project: {len(STAGES)} stages ({', '.join(STAGES)}), {args.repeats} repeats each, interleaved; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="orchestration-overhead-") as tmp:
        times, timelines = measure(args.repeats, Path(tmp))
    report(times, timelines)


if __name__ == "__main__":
    main()
