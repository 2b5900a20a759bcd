"""What the flows add around DVC, without a Prefect server: the command line, which stages run for
which models, ``-S`` overrides, the workspace lock, DVC's busy error, telemetry, the deployment
file and the retraining summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.cli import build_parser, main
from visionflow.config import ConfigError, OrchestrationConfig, load_config, parse_config, read_params
from visionflow.dvc_stages import DVC_BUSY, StageFailed, repro_stage, select_stages
from visionflow.presets import apply_overrides, parse_override
from visionflow.tracking.summary import decisions_table, metrics_table, run_link
from visionflow.workspace import WorkspaceBusy, workspace_lock

ROOT = Path(__file__).resolve().parents[1]

# The shape of the real graph (dvc.yaml, two datasets, two families): each stage -> the stages it reads.
GRAPH = {
    "photos": [],
    "ingest@shapes": ["photos"], "split@shapes": ["ingest@shapes"], "preprocess@shapes": ["split@shapes"],
    "anchors@shapes": ["split@shapes"],
    "ingest@scenes": ["photos"], "split@scenes": ["ingest@scenes"], "preprocess@scenes": ["split@scenes"],
    "anchors@scenes": ["split@scenes"],
    "backbone": ["preprocess@shapes"],  # pretrained on shapes, whichever family trains
    "train@localizer": ["anchors@shapes", "backbone", "preprocess@shapes"],
    "evaluate@localizer": ["train@localizer"],
    "train@detector": ["anchors@scenes", "backbone", "preprocess@scenes"],
    "evaluate@detector": ["train@detector"],
}
FAMILY_GROUPS = {"train", "evaluate"}
SHAPES = ["photos", "ingest@shapes", "split@shapes", "preprocess@shapes", "anchors@shapes"]
SCENES = ["ingest@scenes", "split@scenes", "preprocess@scenes", "anchors@scenes"]


@pytest.mark.parametrize("stages, models, expected", [
    (None, None, list(GRAPH)),
    (None, ["localizer"], SHAPES + ["backbone", "train@localizer", "evaluate@localizer"]),
    # the detector's data is scenes, but the backbone it starts from is pretrained on shapes
    (None, ["detector"], SHAPES[:4] + SCENES + ["backbone", "train@detector", "evaluate@detector"]),
    (["train"], None, ["train@localizer", "train@detector"]),
    (["train", "photos"], ["detector"], ["photos", "train@detector"]),
    (["evaluate@localizer"], ["detector"], []),
])
def test_stages_for_models_are_theirs_and_everything_upstream(stages, models, expected):
    assert select_stages(GRAPH, stages, models, FAMILY_GROUPS) == [s for s in GRAPH if s in expected]


def test_an_unknown_stage_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"not a stage of dvc.yaml: trian \(stages: photos, ingest@shapes"):
        select_stages(GRAPH, ["trian"])


@pytest.mark.parametrize("gpu_stages, refused", [(["train"], False), (["train@detector"], False),
                                                  (["trian"], True)])
def test_stages_for_the_gpu_pool_must_be_stages_of_dvc_yaml(gpu_stages, refused):
    from flows.pipeline import chosen_stages

    cfg = load_config(ROOT / "params.yaml")
    routed = cfg.model_copy(update={"orchestration": cfg.orchestration.model_copy(
        update={"gpu_work_pool": "visionflow-gpu", "gpu_stages": gpu_stages})})
    if refused:
        with pytest.raises(ConfigError, match=r"orchestration.gpu_stages: trian: not a stage of dvc.yaml"):
            chosen_stages(ROOT, routed, None, None)
    else:
        assert "train@detector" in chosen_stages(ROOT, routed, None, None)


def test_a_model_without_stages_is_refused():
    with pytest.raises(ValueError, match=r"no stage of dvc.yaml is classifier's \(a family's stages: "
                                         r"evaluate@<family>, train@<family>\)"):
        select_stages(GRAPH, None, ["classifier", "detector"], FAMILY_GROUPS)


def test_the_real_dvc_yaml_groups_per_family():
    from visionflow.dvc_stages import family_groups

    assert {"train", "evaluate", "robustness"} <= family_groups(ROOT)
    assert not family_groups(ROOT) & {"photos", "ingest", "split", "preprocess", "anchors", "backbone"}


@pytest.mark.parametrize("text, expected", [
    ("train.detector.finetune.epochs=10", ("train.detector.finetune.epochs", 10)),
    ("evaluate.iou_thresholds=[0.5, 0.6]", ("evaluate.iou_thresholds", [0.5, 0.6])),
    ("split.group_key=null", ("split.group_key", None)),
    ("train.localizer.frozen.learning_rate=3e-3", ("train.localizer.frozen.learning_rate", 0.003)),  # YAML 1.2
    ("orchestration.schedule=0 4 * * *", ("orchestration.schedule", "0 4 * * *")),
    ("orchestration.on_busy=fail", ("orchestration.on_busy", "fail")),
])
def test_an_override_is_a_dotted_key_and_a_yaml_value(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["epochs", "=3", "a.b=[1, 2"])
def test_a_malformed_override_is_refused(text):
    with pytest.raises(ValueError, match="KEY=VALUE|not valid YAML"):
        parse_override(text)


@pytest.fixture
def params(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path / "params.yaml"


def test_overrides_are_checked_then_written_keeping_comments(params):
    cfg = apply_overrides({"train.detector.finetune.epochs": 10, "evaluate.iou_thresholds": [0.5, 0.6]}, params)
    assert cfg.family_config("detector").finetune.epochs == 10
    text = params.read_text()
    assert "      epochs: 10             # 20 gave mAP@0.5 0.53, 40 0.69 (objectness target one)\n" in text
    assert "  iou_thresholds: [0.5, 0.6]   # the share of test boxes whose IoU reaches each\n" in text
    assert load_config(params) == cfg


@pytest.mark.parametrize("overrides, message", [
    ({"train.detector.finetune.epochs": "10"}, r"with -S train.detector.finetune.epochs: "
                                               r"train.detector.finetune.epochs: Input should be a valid integer"),
    ({"split.sed": 1}, r"split.sed: unknown key"),
    ({"split.seed.x": 1}, r"-S split.seed.x: split.seed is not a section of params.yaml"),
    ({"orchestration.schedule": "weekly"}, r"orchestration.schedule: 'weekly' is not a cron expression"),
])
def test_a_bad_override_changes_nothing(params, overrides, message):
    before = params.read_bytes()
    with pytest.raises(ConfigError, match=message):
        apply_overrides(overrides, params)
    assert params.read_bytes() == before


def test_the_orchestration_section_is_checked():
    data = read_params(ROOT / "params.yaml")
    data["orchestration"]["on_busy"] = "retry"
    with pytest.raises(ConfigError, match=r"orchestration.on_busy: Input should be 'wait' or 'fail'"):
        parse_config(data)


def test_the_command_line_passes_the_flow_its_parameters():
    calls = []
    code = main(lambda **kw: calls.append(kw) or {"ok": True},
                ["--stage", "train", "--model", "detector", "--model", "localizer", "-S", "split.seed=43",
                 "--set-param", "evaluate.iou_thresholds=[0.5]", "--experiment", "trial", "--root", "/p"])
    assert code == 0
    assert calls == [{"root": "/p", "stages": ["train"], "models": ["detector", "localizer"],
                      "params": {"split.seed": 43, "evaluate.iou_thresholds": [0.5]}, "experiment": "trial"}]


def test_no_option_runs_everything_as_before():
    args = build_parser().parse_args([])
    assert (args.stage, args.model, args.params, args.experiment, args.root) == (None, None, None, None, ".")


def test_a_busy_workspace_stops_the_command_with_one_line(capsys):
    def busy(**_):
        raise WorkspaceBusy("another pipeline run holds the workspace")

    assert main(busy, []) == 2
    assert capsys.readouterr().err == "error: another pipeline run holds the workspace\n"


def test_help_lists_the_parameters_and_runs_nothing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flows.pipeline", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    for option in ("--stage STAGE", "--model FAMILY", "-S KEY=VALUE, --set-param KEY=VALUE", "--experiment", "--root"):
        assert option in proc.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("env, expected", [
    ({}, {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
          "DVC_NO_ANALYTICS": "1"}),
    ({"PREFECT_SERVER_ANALYTICS_ENABLED": "true"}, {"PREFECT_SERVER_ANALYTICS_ENABLED": "true", "DO_NOT_TRACK": "1"}),
    ({"DO_NOT_TRACK": "0"}, {"PREFECT_SERVER_ANALYTICS_ENABLED": None, "DO_NOT_TRACK": "0",
                             "MLFLOW_DISABLE_TELEMETRY": None, "DVC_NO_ANALYTICS": None}),
])
def test_telemetry_is_off_unless_the_user_turns_it_on(env, expected):
    from flows import TELEMETRY_OFF

    clean = {k: v for k, v in os.environ.items() if k not in TELEMETRY_OFF}
    code = "import os, json, flows; print(json.dumps({k: os.environ.get(k) for k in flows.TELEMETRY_OFF}))"
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True).stdout
    found = json.loads(out)
    assert {k: found[k] for k in expected} == expected


def test_the_workspace_lock_is_reentrant_and_a_second_process_is_refused(tmp_path):
    other = ("import sys; from visionflow.workspace import workspace_lock\n"
             "with workspace_lock(sys.argv[1], 'fail'): pass")
    with workspace_lock(tmp_path, "fail"):
        with workspace_lock(tmp_path, "fail"):  # a subflow of the same process
            pass
        proc = subprocess.run([sys.executable, "-c", other, str(tmp_path)], capture_output=True, text=True)
        assert proc.returncode == 1
        assert f"another pipeline run (pid {os.getpid()} on " in proc.stderr
        assert "stopping, as orchestration.on_busy is fail" in proc.stderr
    assert subprocess.run([sys.executable, "-c", other, str(tmp_path)]).returncode == 0


def test_dvc_finding_the_repo_locked_is_not_worth_a_retry(tmp_path):
    """What DVC 3 says when another DVC process holds the repo; its 'is busy' (outputs locked) likewise."""
    import zc.lockfile

    from flows.pipeline import _transient
    from prefect.states import Failed
    from tests.stub_project import make_stub_project

    root = make_stub_project(tmp_path / "project")
    held = zc.lockfile.LockFile(str(root / ".dvc" / "tmp" / "lock"))
    try:
        with pytest.raises(StageFailed, match="Unable to acquire lock") as failed:
            repro_stage("ingest", root)
    finally:
        held.close()
    assert failed.value.busy and not failed.value.transient
    assert _transient(None, None, Failed(data=failed.value)) is False
    assert DVC_BUSY.search("ERROR: 'out/ingest.json' is busy, it is being blocked by:\n  (PID 1): dvc repro")


def test_prefect_yaml_declares_retraining_on_the_default_schedule_and_pool():
    from prefect.cli.deploy._config import _load_deploy_configs_and_actions
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from rich.console import Console

    shipped = load_config(ROOT / "params.yaml").orchestration
    assert shipped == OrchestrationConfig()  # params.yaml spells out the code's defaults
    raw = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (deployment,) = raw["deployments"]
    assert deployment["schedules"][0]["cron"] == shipped.schedule == "0 3 * * 1"
    console = Console(record=True)
    (loaded,), _ = _load_deploy_configs_and_actions(ROOT / "prefect.yaml", console=console)
    assert console.export_text() == ""  # no validation complaint
    assert loaded["name"] == "retraining" and loaded["entrypoint"] == "flows/retraining.py:retraining"
    assert loaded["work_pool"]["name"] == shipped.work_pool
    schedule = _schedule_config_to_deployment_schedule(loaded["schedules"][0])["schedule"]
    assert (schedule.cron, schedule.timezone) == (shipped.schedule, "UTC")


def test_a_tracking_server_gets_links_into_its_ui_and_a_local_store_ids():
    assert run_link("http://mlflow.internal:5000/", "3", "abc") == \
        "[abc](http://mlflow.internal:5000/#/experiments/3/runs/abc?workflowType=machine_learning)"
    assert run_link("sqlite:////p/mlflow.db", "3", "abc") == "`abc`"


def test_metrics_are_compared_with_the_previous_run():
    rows = metrics_table({"localizer/test_accuracy": 0.8, "new": 1.0}, {"localizer/test_accuracy": 0.75})
    assert rows[2:] == ["| localizer/test_accuracy | 0.8 | 0.75 | +0.05 |", "| new | 1 |  |  |"]


def test_each_family_gets_the_gates_new_decision_or_why_none():
    old = {"promote": True, "reason": "first", "registered_model": "visionflow-classifier", "version": "1"}
    new = {"promote": False, "reason": "AP50 0.41 < 0.5", "registered_model": "visionflow-detector", "version": "4"}
    rows = decisions_table({"classifier": old, "detector": None, "localizer": None},
                           {"classifier": old, "detector": new, "localizer": None})
    assert rows[2:] == ["| classifier | no new decision: its tested model did not change | | |",
                        "| detector | not promoted | visionflow-detector 4 | AP50 0.41 < 0.5 |",
                        "| localizer | no decision: no metrics/localizer/promotion.json | | |"]


def test_serve_takes_the_retraining_schedule_from_params_yaml(params):
    from flows.serve import deployments

    apply_overrides({"orchestration.schedule": "30 4 * * *"}, params)
    retrain, pipeline_on_demand = deployments(params.parent)
    assert (retrain.name, retrain.entrypoint) == ("retraining", "flows.retraining.retraining")
    assert [(s.schedule.cron, s.schedule.timezone) for s in retrain.schedules] == [("30 4 * * *", "UTC")]
    assert retrain.parameters == pipeline_on_demand.parameters == {"root": str(params.parent)}
    assert (pipeline_on_demand.name, pipeline_on_demand.schedules) == ("training-pipeline", [])


def test_serve_without_a_prefect_server_stops_with_one_line(params, capsys):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from visionflow.cli import main as visionflow

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert visionflow(["serve", "--root", str(params.parent)]) == 2
    assert "PREFECT_API_URL is not set; schedules need a Prefect server" in capsys.readouterr().err
