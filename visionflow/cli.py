"""The ``visionflow`` command (library tools; the pipeline itself runs via ``make run``)."""

from __future__ import annotations

import argparse
import json
import sys

from visionflow.config import ConfigError, load_config


def _check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.params)
    print(f"{args.params}: ok (source {cfg.ingest.source}, backbone {cfg.backbone.name}, init {cfg.backbone.init})")
    return 0


def _evaluate_coco(args: argparse.Namespace) -> int:
    from visionflow.metrics.coco import evaluate_coco

    print(json.dumps(evaluate_coco(args.gt, args.dt).as_dict(), indent=2))
    return 0


def _evaluate_voc(args: argparse.Namespace) -> int:
    from visionflow.metrics.voc import evaluate_voc

    result = evaluate_voc(args.gt, args.dt, iou_threshold=args.iou, use_07_metric=args.metric == "11point")
    print(json.dumps(result.as_dict(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="visionflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate params.yaml without running anything")
    check.add_argument("params", nargs="?", default="params.yaml")
    check.set_defaults(func=_check_config)
    coco = sub.add_parser("evaluate-coco", help="COCO box AP/AR of detections against ground truth (as pycocotools)")
    coco.add_argument("--gt", required=True, help="COCO ground-truth JSON")
    coco.add_argument("--dt", required=True, help="detections in the COCO results format (JSON list)")
    coco.set_defaults(func=_evaluate_coco)
    voc = sub.add_parser("evaluate-voc", help="Pascal VOC AP per class and mAP (difficult boxes ignored)")
    voc.add_argument("--gt", required=True, help="COCO ground-truth JSON (a 'difficult' flag per annotation)")
    voc.add_argument("--dt", required=True, help="detections in the COCO results format (JSON list)")
    voc.add_argument("--iou", type=float, default=0.5, help="IoU a match must exceed (default 0.5)")
    voc.add_argument("--metric", choices=["11point", "allpoint"], default="allpoint",
                     help="11point: VOC2007; allpoint: VOC2010 and later (default)")
    voc.set_defaults(func=_evaluate_voc)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
