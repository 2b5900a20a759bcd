"""Prefect flows: they order and route the DVC stages, nothing more."""
