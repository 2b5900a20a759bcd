"""Pipeline stages, one module each, run by DVC as ``python -m tasks.<stage>``."""
