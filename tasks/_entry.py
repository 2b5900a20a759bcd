"""What every stage does around its work: load the config, report bad input in one line."""

from __future__ import annotations

import sys
from typing import Callable

from visionflow.config import load_config
from visionflow.dvc_stages import USER_ERROR_EXIT_CODE, stage_inputs
from visionflow.errors import USER_ERRORS


def dvc_tags(stage: str) -> dict[str, str]:
    """The hashes of the stage's inputs, as DVC will record them in ``dvc.lock``."""
    inputs = stage_inputs(stage)
    return {**{f"dvc.dep.{path}": value for path, value in inputs.files.items()},
            "dvc.inputs_hash": inputs.combined_hash()}


def main(stage: Callable[..., None]) -> None:
    """Run ``stage(config, *argv)``; bad input exits 2 with a one-line error."""
    try:
        stage(load_config(), *sys.argv[1:])
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
