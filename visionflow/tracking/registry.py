"""The model registry: tested versions as challengers, the gate's decision, the champion and its rollback.

Each family registers as ``<prefix><family>`` (``visionflow-detector``). A version is
created only by ``promote@<family>``, after the test evaluation, and gets the alias
``challenger``; the gate's decision, its numbers and its reason become tags of the
version; a promoted version takes the alias ``champion`` and remembers the one it
replaced (``visionflow.previous_champion``), which is what a rollback restores.
"""

from __future__ import annotations

import time

import mlflow
from mlflow.exceptions import MlflowException

from visionflow.errors import DataError
from visionflow.tracking.runs import flatten_params

CHAMPION, CHALLENGER = "champion", "challenger"
PREVIOUS = "visionflow.previous_champion"


def client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient()


def version_by_alias(name: str, alias: str):
    """The version holding ``alias``, or None (also when the model is not registered yet)."""
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def register(name: str, model_uri: str, tags: dict[str, str], description: str):
    """A new version of ``name`` from a logged model, tagged, with the alias ``challenger``."""
    version = mlflow.register_model(model_uri, name, tags=tags)
    client().update_model_version(name, version.version, description=description)
    client().set_registered_model_alias(name, CHALLENGER, version.version)
    return version


def decision_tags(decision: dict) -> dict[str, str]:
    """The gate's decision as version tags: ``gate.decision``, ``gate.reason`` and every number."""
    numbers = {k: v for k, v in decision.items() if k not in ("promote", "reason")}
    return {"gate.decision": "promoted" if decision["promote"] else "refused", "gate.reason": decision["reason"],
            **{f"gate.{k}": str(v) for k, v in flatten_params(numbers).items()}}


def record_decision(name: str, version: str, decision: dict) -> None:
    """Tag the version with the decision; on a promotion, move ``champion`` to it."""
    registry = client()
    previous = version_by_alias(name, CHAMPION)
    for key, value in decision_tags(decision).items():
        registry.set_model_version_tag(name, version, key, value)
    if decision["promote"]:
        registry.set_model_version_tag(name, version, PREVIOUS, previous.version if previous else "none")
        registry.set_model_version_tag(name, version, "visionflow.promoted_at", time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                              time.gmtime()))
        registry.set_registered_model_alias(name, CHAMPION, version)


def discard(name: str, version: str) -> None:
    """Undo a registration that could not be completed, so the registry stays as it was."""
    try:
        client().delete_model_version(name, version)
    except MlflowException:
        pass


def rollback(name: str) -> tuple[str, str]:
    """Move ``champion`` back to the version it replaced; (from, to)."""
    current = version_by_alias(name, CHAMPION)
    if current is None:
        raise DataError(f"{name}: no champion to roll back")
    previous = current.tags.get(PREVIOUS, "none")
    if previous == "none":
        raise DataError(f"{name}: version {current.version} is the first champion; there is none before it")
    registry = client()
    registry.set_registered_model_alias(name, CHAMPION, previous)
    registry.set_model_version_tag(name, current.version, "visionflow.rolled_back_at",
                                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return str(current.version), previous
