"""The ``visionflow`` command (library tools; the pipeline itself runs via ``make run``)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from visionflow.config import ConfigError, load_config
from visionflow.cli_registry import add_commands as add_registry_commands
from visionflow.errors import DataError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # One line, as every other error of this command (argparse would print the usage first).
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _iou_threshold(text: str) -> float:
    from visionflow.metrics.voc import check_iou_threshold

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return check_iou_threshold(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _warn(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)
    print(f"{args.params}: ok (source {cfg.ingest.source}, backbone {cfg.backbone.name}, init {cfg.backbone.init}, "
          f"models {', '.join(cfg.models)})")
    return 0


def _evaluate_coco(args: argparse.Namespace) -> int:
    from visionflow.metrics.coco import evaluate_coco

    result = evaluate_coco(args.gt, args.dt)
    _warn(result.warnings)
    print(json.dumps(result.as_dict(), indent=2))
    return 0


def _evaluate_voc(args: argparse.Namespace) -> int:
    from visionflow.metrics.voc import evaluate_voc

    result = evaluate_voc(args.gt, args.dt, iou_threshold=args.iou, use_07_metric=args.metric == "11point")
    _warn(result.warnings)
    print(json.dumps(result.as_dict(), indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from visionflow.predict import draw_predictions, image_files, load_model, predict_files

    files = image_files(args.images)
    if not files:
        raise DataError(f"no image files in {', '.join(args.images)}")
    loaded = load_model(args.model)
    results = [d for d in predict_files(loaded, files, args.batch_size) if d["score"] >= args.min_score]
    if args.draw:
        draw_predictions(files, results, args.draw)
    print(json.dumps(results, indent=1))
    return 0


def _preset(args: argparse.Namespace) -> int:
    from visionflow.presets import apply_preset

    cfg = apply_preset(args.name, args.params)
    print(f"{args.params}: preset {args.name} applied (source {cfg.ingest.source}, backbone {cfg.backbone.name}, "
          f"init {cfg.backbone.init}, datasets {', '.join(cfg.datasets)}, models {', '.join(cfg.models)})")
    return 0


def _repro(args: argparse.Namespace) -> int:
    from visionflow.dvc_stages import environment_with_this_python

    dvc_args = args.dvc_args[1:] if args.dvc_args[:1] == ["--"] else args.dvc_args  # the "--" main() put there
    env = environment_with_this_python()
    dvc = shutil.which("dvc", path=env["PATH"])
    if dvc is None:
        raise FileNotFoundError(f"no dvc next to {sys.executable} nor on PATH (install visionflow's dependencies)")
    try:
        return subprocess.run([dvc, "repro", *dvc_args], env=env).returncode
    except KeyboardInterrupt:  # dvc got the same SIGINT and has stopped; its message says what it left
        return 130


def _serve(args: argparse.Namespace) -> int:
    from flows.serve import serve_deployments  # Prefect, only for this command (the package turns telemetry off first)

    serve_deployments(Path(args.root))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="visionflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate params.yaml without running anything")
    check.add_argument("params", nargs="?", default="params.yaml")
    check.set_defaults(func=_check_config)
    coco = sub.add_parser("evaluate-coco", help="COCO box AP/AR of detections against ground truth (as pycocotools)")
    coco.add_argument("--gt", required=True, help="COCO ground-truth JSON (of the evaluated split only)")
    coco.add_argument("--dt", required=True, help="detections in the COCO results format (JSON list)")
    coco.set_defaults(func=_evaluate_coco)
    voc = sub.add_parser("evaluate-voc", help="Pascal VOC AP per class and mAP (difficult boxes ignored)")
    voc.add_argument("--gt", required=True,
                     help="COCO ground-truth JSON of the evaluated split (a 'difficult' flag per annotation)")
    voc.add_argument("--dt", required=True, help="detections in the COCO results format (JSON list)")
    voc.add_argument("--iou", type=_iou_threshold, default=0.5, help="IoU a match must exceed, in (0, 1) (default 0.5)")
    voc.add_argument("--metric", choices=["11point", "allpoint"], default="allpoint",
                     help="11point: VOC2007; allpoint: VOC2010 and later (default)")
    voc.set_defaults(func=_evaluate_voc)
    predict = sub.add_parser("predict", help="a saved model's detections on images, as a JSON list in the COCO "
                                             "results format (pixel [x, y, w, h] of each original image)")
    predict.add_argument("--model", required=True,
                         help="a .keras file (its model.json beside it) or an MLflow model URI (runs:/..., models:/...)")
    predict.add_argument("images", nargs="+", help="image files, or directories of them")
    predict.add_argument("--draw", type=Path, metavar="OUT_DIR", help="also write each image with its boxes here")
    predict.add_argument("--batch-size", type=int, default=16)
    predict.add_argument("--min-score", type=float, default=0.0,
                         help="leave out detections scoring below this (default 0: all, as mAP needs them)")
    predict.set_defaults(func=_predict)
    preset = sub.add_parser("preset", help="merge presets/NAME.yaml (beside params.yaml) into params.yaml, key by "
                                           "key (null deletes a key); checked before it is written")
    preset.add_argument("name", help="a preset, e.g. tf_flowers (Géron's chapter-14 recipe)")
    preset.add_argument("--params", default="params.yaml", help="the params file to change (default params.yaml)")
    preset.set_defaults(func=_preset)
    # All after "repro" is dvc's (`visionflow repro -h` is dvc repro's help); see main().
    repro = sub.add_parser("repro", help="dvc repro [args] with this environment's python first on PATH, so stages "
                                         "run with it; exits with dvc's exit code")
    repro.add_argument("dvc_args", nargs=argparse.REMAINDER)
    repro.set_defaults(func=_repro)
    serve = sub.add_parser("serve", help="serve the Prefect deployments from this machine until stopped: retraining "
                                         "on orchestration.schedule, training-pipeline on demand (needs PREFECT_API_URL)")
    serve.add_argument("--root", default=".", help="the project (default: the current folder)")
    serve.set_defaults(func=_serve)
    add_registry_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["repro"]:
        argv = ["repro", "--", *argv[1:]]  # else argparse takes a leading option (`repro --force`) for its own
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:  # DataError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
