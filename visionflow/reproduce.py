"""``visionflow reproduce``: a registered model's commit and params, run again in a folder of its own.

The model's run records its commit (``git.commit``) and logs the ``params.yaml`` it ran
with. Reproducing clones this repository into the folder, checks that commit out, puts
the recorded ``params.yaml`` back, and has DVC reproduce the family's ``evaluate``
stage with everything upstream of it. The folder's runs go to its own MLflow store, so
a reproduction registers nothing. The reproduced test metrics are returned beside the
recorded ones (the version's ``test.*`` tags).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from visionflow.dvc_stages import environment_with_this_python
from visionflow.errors import DataError
from visionflow.layout import model_metrics
from visionflow.tracking.runs import default_uri


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> None:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        raise DataError(f"{' '.join(cmd[:3])} in {cwd}: failed ({tail[0]})")


def checkout(root: Path, commit: str, workdir: Path) -> None:
    if workdir.exists() and any(workdir.iterdir()):
        raise DataError(f"{workdir}: not empty; reproduce into a new folder")
    _run(["git", "clone", "--quiet", str(root.resolve()), str(workdir)], root)
    _run(["git", "checkout", "--quiet", commit], workdir)


def restore_params(run_id: str, workdir: Path) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="params.yaml", dst_path=tmp)
        shutil.copyfile(local, workdir / "params.yaml")


def compare(recorded: dict[str, str], reproduced: dict) -> dict[str, dict]:
    rows = {}
    for key, value in reproduced.items():
        if isinstance(value, (int, float)) and f"test.{key}" in recorded:
            original = float(recorded[f"test.{key}"])
            rows[key] = {"recorded": original, "reproduced": value, "difference": value - original}
    return rows


def reproduce(run_id: str, tags: dict[str, str], workdir: Path, root: Path) -> dict:
    """Check out, restore, ``dvc repro evaluate@<family>``; the test metrics, recorded and reproduced."""
    stage, commit = tags.get("visionflow.stage", ""), tags.get("git.commit", "unknown")
    if not stage.startswith("promote@") or commit == "unknown":
        raise DataError(f"run {run_id}: not a registered model's run with a commit (stage {stage or 'unknown'})")
    model = stage.split("@", 1)[1]
    checkout(root, commit, workdir)
    restore_params(run_id, workdir)
    env = {**environment_with_this_python(), "MLFLOW_TRACKING_URI": default_uri(workdir)}
    env.pop("VISIONFLOW_PARENT_RUN_ID", None)
    _run(["dvc", "repro", f"evaluate@{model}"], workdir, env)
    reproduced = json.loads((workdir / model_metrics(model, "test")).read_text())
    return {"workdir": str(workdir), "commit": commit, "dirty_when_recorded": tags.get("git.dirty"),
            "stage": f"evaluate@{model}", "metrics": compare(tags, reproduced)}

