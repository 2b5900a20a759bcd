"""What every stage does around its work: load the config, report bad input in one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

from visionflow.config import Config, load_config
from visionflow.dvc_stages import USER_ERROR_EXIT_CODE, stage_inputs
from visionflow.errors import USER_ERRORS


def dvc_tags(stage: str) -> dict[str, str]:
    """The hashes of the stage's inputs, as DVC will record them in ``dvc.lock``."""
    inputs = stage_inputs(stage)
    tags = {f"dvc.dep.{path}": value for path, value in inputs.files.items()}
    tags["dvc.inputs_hash"] = inputs.combined_hash()
    return tags


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def main(stage: Callable[[Config], None]) -> None:
    """Run ``stage`` with the validated config; bad input exits 2 with a one-line error."""
    try:
        stage(load_config())
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
