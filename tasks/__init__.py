"""Pipeline stages, one module each, run by DVC as ``python -m tasks.<stage>``."""

import os

# Before TensorFlow loads: its C++ INFO and WARNING lines (a cost-estimator warning per
# batch, CUDA probing) would bury the training progress users read in the stage output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
