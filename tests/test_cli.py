import os
import subprocess
import sys
from pathlib import Path

import pytest

from visionflow.cli import main

DVC = Path(sys.executable).parent / "dvc"
STAGE = """stages:
  write:
    cmd: python -c "import sys, pathlib; pathlib.Path('out.txt').write_text(sys.executable)"
    outs:
      - out.txt
"""


@pytest.fixture
def dvc_repo(tmp_path):
    """A git+DVC repo with one stage that writes the path of the ``python`` it ran with to out.txt."""
    repo = tmp_path / "repo"
    repo.mkdir()
    # /usr/bin:/bin: the venv's bin is not on PATH, as when one runs .venv/bin/visionflow unactivated.
    env = {**os.environ, "PATH": "/usr/bin:/bin", "DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site"),
           "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1"}
    subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
    subprocess.run([str(DVC), "init", "-q"], cwd=repo, env=env, check=True)
    (repo / "dvc.yaml").write_text(STAGE)
    return repo, env


def visionflow_repro(repo: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "visionflow.cli", "repro", *args], cwd=repo, env=env,
                          capture_output=True, text=True)


def test_repro_runs_stages_with_this_environments_python(dvc_repo):
    repo, env = dvc_repo
    first = visionflow_repro(repo, env)
    assert first.returncode == 0, first.stderr
    assert Path((repo / "out.txt").read_text()).is_relative_to(sys.prefix)
    forced = visionflow_repro(repo, env, "write", "--force")  # unchanged, so it runs again only if forced
    assert forced.returncode == 0, forced.stderr
    assert "Running stage 'write'" in forced.stdout


def test_repro_passes_a_leading_option_to_dvc(dvc_repo):
    repo, env = dvc_repo
    proc = visionflow_repro(repo, env, "--dry", "write")
    assert proc.returncode == 0, proc.stderr
    assert "Running stage 'write'" in proc.stdout
    assert not (repo / "out.txt").exists()  # --dry reached dvc: nothing ran


@pytest.fixture
def fake_dvc(tmp_path, monkeypatch):
    """A ``dvc`` beside a stand-in for this interpreter: it records its arguments and exits with 3."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dvc = bin_dir / "dvc"
    dvc.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$0.args\"\nexit 3\n")
    dvc.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    return Path(f"{dvc}.args")


@pytest.mark.parametrize("args", [[], ["train@localizer", "--force"], ["-f", "-s", "train@localizer"],
                                  ["--dry", "--", "x"]])
def test_repro_passes_its_arguments_in_order_and_returns_dvcs_exit_code(fake_dvc, args):
    assert main(["repro", *args]) == 3
    assert fake_dvc.read_text().splitlines() == ["repro", *args]


def test_repro_without_dvc_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["repro"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no dvc")


def test_argparse_errors_are_one_line_with_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate-coco", "--gt", "gt.json"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dt" in err and "visionflow evaluate-coco --help" in err
