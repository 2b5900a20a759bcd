"""The git and DVC steps around a stage run on a worker: what is sent, what is refused, how the answer is recorded."""

import pytest
from dvc.utils.serialize import load_yaml

from tests.project import run
from visionflow.config import ConfigError
from visionflow.remote_stage import committed_code, merge_lock_entry, without_credentials

LOCK = """schema: '2.0'
stages:
  train:
    cmd: python train.py
    params:
      params.yaml:
        lr: 1e-05
        answer: no
"""


def test_a_recorded_entry_leaves_the_other_entries_as_dvc_reads_them(tmp_path):
    (tmp_path / "dvc.lock").write_text(LOCK)
    entry = {"cmd": "python evaluate.py", "outs": [{"path": "out.json", "md5": "a" * 32, "size": 3}]}
    merge_lock_entry(tmp_path, "evaluate", entry)
    lock = load_yaml(tmp_path / "dvc.lock")
    assert lock["stages"]["train"]["params"]["params.yaml"] == {"lr": 1e-05, "answer": "no"}  # YAML 1.2, untouched
    assert lock["stages"]["evaluate"] == entry and lock["schema"] == "2.0"


def test_an_entry_starts_a_missing_lock(tmp_path):
    merge_lock_entry(tmp_path, "train", {"cmd": "python train.py"})
    assert load_yaml(tmp_path / "dvc.lock") == {"schema": "2.0", "stages": {"train": {"cmd": "python train.py"}}}


@pytest.mark.parametrize("url, sent", [
    ("https://x-access-token:s3cret@github.com/o/r.git", "https://github.com/o/r.git"),
    ("https://github.com/o/r.git", "https://github.com/o/r.git"),
    ("git@github.com:o/r.git", "git@github.com:o/r.git"),  # scp-like: the user is not a secret
    ("/srv/git/r", "/srv/git/r"),
])
def test_the_source_sent_to_a_worker_carries_no_credentials(url, sent):
    assert without_credentials(url) == sent


def repo(path):
    path.mkdir()
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t"], ["git", "config", "user.name", "t"]):
        run(cmd, path)
    (path / "dvc.yaml").write_text("stages: {}\n")
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-qm", "one"], path)
    return path


def test_code_must_be_committed_and_on_origin_before_a_worker_runs_it(tmp_path):
    origin = repo(tmp_path / "origin")
    run(["git", "clone", "-q", str(origin), str(tmp_path / "work")], tmp_path)
    work = tmp_path / "work"
    commit, source = committed_code(work)
    assert source == str(origin) and len(commit) == 40
    (work / "dvc.yaml").write_text("stages: {a: {cmd: x}}\n")
    with pytest.raises(ConfigError, match="has changes .*dvc.yaml.*commit them first"):
        committed_code(work)
    run(["git", "commit", "-qam", "two"], work)
    with pytest.raises(ConfigError, match="is on no branch of origin.*git push first"):
        committed_code(work)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/feature"], work)
    run(["git", "fetch", "-q"], work)
    assert committed_code(work)[0] == run(["git", "rev-parse", "HEAD"], work).stdout.strip()
