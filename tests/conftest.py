import os

# Before anything imports Prefect, TensorFlow or MLflow.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """A few of scikit-image's photographs, exported as the photos stage does (for photo backgrounds)."""
    from visionflow.data.photos import export_photos

    folder = tmp_path_factory.mktemp("photos")
    export_photos(["astronaut", "coins", "grass"], folder)
    return str(folder)
