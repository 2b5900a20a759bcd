"""The command line of ``python -m flows.pipeline``: the flow's parameters as options."""

from __future__ import annotations

import argparse
import json
import sys

from visionflow.config import ConfigError
from visionflow.dvc_stages import StageFailed
from visionflow.presets import parse_override
from visionflow.workspace import WorkspaceBusy

DESCRIPTION = """Run the pipeline: every stage of dvc.yaml through `dvc repro`, in dependency order, as
Prefect tasks under one MLflow parent run. DVC skips each stage whose code, data and params are
unchanged. With no option, every stage (what `make run` does)."""


def _override(text: str) -> tuple[str, object]:
    try:
        return parse_override(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=DESCRIPTION)
    parser.add_argument("--stage", action="append", metavar="STAGE",
                        help="a stage of dvc.yaml (`dvc stage list`), or a group of them (train: every "
                             "train@<family>); repeatable; default: every stage")
    parser.add_argument("--model", action="append", metavar="FAMILY",
                        help="only this model family's stages (train@FAMILY, evaluate@FAMILY, ...) and the "
                             "stages upstream of them (its dataset's data stages, the backbone); repeatable; "
                             "default: every family under train in params.yaml")
    parser.add_argument("-S", "--set-param", action="append", type=_override, metavar="KEY=VALUE", dest="params",
                        help="set a dotted key of params.yaml before the run, as `dvc exp run -S` does (the value "
                             "is YAML: 10, [0.5, 0.6], null): checked by the config loader, then written into "
                             "params.yaml; repeatable")
    parser.add_argument("--experiment", help="the MLflow experiment of the run (default: tracking.experiment)")
    parser.add_argument("--root", default=".", help="the project folder (default: the current one)")
    return parser


def main(pipeline, argv: list[str] | None = None) -> int:
    """Run ``pipeline`` (the flow) with the options in ``argv``; bad input stops it with one line."""
    args = build_parser().parse_args(argv)
    try:
        summary = pipeline(root=args.root, stages=args.stage, models=args.model, params=dict(args.params or []),
                           experiment=args.experiment)
    except (ConfigError, ValueError, WorkspaceBusy, StageFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, StageFailed) else 2
    print(json.dumps(summary, indent=2, default=str))
    return 0
