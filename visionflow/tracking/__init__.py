"""Everything MLflow, and the only place the library logs from.

- :mod:`.runs`: where runs go, the pipeline's parent run, one child run per stage;
- :mod:`.callback`: the Keras callback that logs each epoch;
- :mod:`.models`: logging a saved model with its signature and card;
- :mod:`.pyfunc`: the saved model as a pyfunc model, raw images in, detections out (what is served).
  Imported from there, not re-exported here: it runs ``visionflow.predict`` and the families, and
  every stage imports this package, so each stage would depend on that code (tests/test_dvc_deps.py).
"""

from visionflow.tracking.callback import keras_callback
from visionflow.tracking.models import log_keras_model, serving_requirements
from visionflow.tracking.runs import PARENT_RUN_ENV, flatten_params, git_commit, pipeline_run, stage_run, tracking_uri

__all__ = ["PARENT_RUN_ENV", "flatten_params", "git_commit", "keras_callback", "log_keras_model", "pipeline_run",
           "serving_requirements", "stage_run", "tracking_uri"]
