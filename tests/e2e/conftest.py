"""What the tests of the flows on Prefect's test server share: the server, and an environment of their own.

A test module asks for both with ``pytest.mark.usefixtures("prefect_server", "flow_env")``; they last the module.
"""

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows import pipeline
from visionflow.tracking import PARENT_RUN_ENV

PRODUCTION_TASK = pipeline.dvc_stage  # before flow_env swaps in one that retries at once


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def flow_env():
    """No tracking URI or parent run from outside; retries without the production waits."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv(PARENT_RUN_ENV, raising=False)
        patch.setattr(pipeline, "dvc_stage", PRODUCTION_TASK.with_options(retry_delay_seconds=0))
        yield
