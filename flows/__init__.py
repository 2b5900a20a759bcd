"""Prefect flows: they order and route the DVC stages, nothing more.

Telemetry stays off unless the user turns it on: importing this package sets each switch
below that is not set yet, unless ``DO_NOT_TRACK=0`` says the user wants it (then each
tool keeps its own default). It must happen here, before Prefect is imported: Prefect
reads its settings once, on import, and ``python -m flows.pipeline`` imports this package
first. Without it an offline run logs ``ERROR ... Failed to send telemetry`` (Prefect's server).
"""

import os

TELEMETRY_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # the Prefect server's heartbeat (the ERROR above)
    "DO_NOT_TRACK": "1",  # Prefect's client analytics
    "MLFLOW_DISABLE_TELEMETRY": "true",  # MLflow's (it takes DO_NOT_TRACK only as "true")
    "DVC_NO_ANALYTICS": "1",  # DVC's, for the `dvc repro` of each stage
}

if os.environ.get("DO_NOT_TRACK", "").lower() not in ("0", "false", "no"):
    for _name, _value in TELEMETRY_OFF.items():
        os.environ.setdefault(_name, _value)
