"""``visionflow serve``: the deployments, served from this machine (Prefect's ``serve``, no worker needed).

- ``retraining/retraining``: the retraining flow on ``orchestration.schedule`` (cron, UTC);
- ``training_pipeline/training-pipeline``: the pipeline, unscheduled, to run from the UI or
  ``prefect deployment run`` with its parameters (stages, models, params, experiment).

Both run on the project at ``root``. Schedules need a Prefect server (its scheduler creates the
runs): Prefect's temporary one, started when ``PREFECT_API_URL`` is unset, schedules nothing.
"""

from __future__ import annotations

from pathlib import Path

from prefect import serve
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType
from prefect.settings import PREFECT_API_URL

from flows.pipeline import training_pipeline
from flows.retraining import retraining
from visionflow.config import PARAMS_FILE, ConfigError, load_config


def deployments(root: Path) -> list:
    """The deployments, their default ``root`` the project's absolute path; loaded by module (``flows.*``)."""
    cfg = load_config(root / PARAMS_FILE)
    common = {"parameters": {"root": str(root)}, "entrypoint_type": EntrypointType.MODULE_PATH}
    schedule = CronSchedule(cron=cfg.orchestration.schedule, timezone="UTC")
    return [retraining.to_deployment("retraining", schedule=schedule, **common),
            training_pipeline.to_deployment("training-pipeline", **common)]


def serve_deployments(root: Path) -> None:
    """Serve until interrupted; their schedules are paused when it stops."""
    if not PREFECT_API_URL.value():  # from the environment or the Prefect profile
        raise ConfigError("visionflow serve: PREFECT_API_URL is not set; schedules need a Prefect server: start "
                          "`prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api")
    serve(*deployments(Path(root).resolve()))
