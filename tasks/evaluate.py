"""Stage ``evaluate``: the localizer on the test split.

Writes ``metrics/localizer.json`` (accuracy, box IoU, COCO AP of its predictions),
per-class PR curves for ``dvc plots`` and the predictions as COCO results; logs
the metrics, the predictions and PNG figures to MLflow.
"""

import csv
import json
from pathlib import Path

import keras
import mlflow
import numpy as np

from tasks._entry import dvc_tags, main, write_json
from visionflow.boxes import convert_boxes
from visionflow.config import Config
from visionflow.data.coco_layout import ANNOTATIONS_FILE, load_raw_dataset
from visionflow.data.split import read_manifest
from visionflow.data.pipeline import localizer_dataset
from visionflow.figures import draw_boxes, image_grid, pr_curve_figure
from visionflow.layout import (LOCALIZER_MODEL, METRICS_DIR, PLOTS_DIR, PROCESSED_DIR, RAW_DIR, REPORTS_DIR,
                               SPLIT_DIR)
from visionflow.metrics.coco import evaluate_coco, pr_curves
from visionflow.metrics.detections import ground_truth_subset, localizer_detections, suppress
from visionflow.metrics.localization import localization_metrics
from visionflow.models.backbones import BACKBONES
from visionflow.tracking import stage_run

SAMPLE_IMAGES = 16


def predict_test_split(model, preprocess_input, batch_size: int) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {"image_ids": [], "labels": [], "class_probs": [], "true_boxes_sqrt": [],
                              "pred_boxes_sqrt": []}
    for x, y, ids in localizer_dataset(PROCESSED_DIR, "test", batch_size, preprocess_input, training=False,
                                       with_ids=True):
        out = model.predict_on_batch(x)
        parts["image_ids"].append(ids.numpy())
        parts["labels"].append(y["class"].numpy())
        parts["true_boxes_sqrt"].append(y["box"].numpy())
        parts["class_probs"].append(np.asarray(out["class"]))
        parts["pred_boxes_sqrt"].append(np.asarray(out["box"]))
    return {k: np.concatenate(v) for k, v in parts.items()}


def write_pr_curves(curves: dict, out_dir: Path) -> None:
    """One CSV per class (recall, precision) for ``dvc plots show``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.csv"):
        old.unlink()
    for name, (recall, precision) in curves.items():
        with (out_dir / f"{name}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["recall", "precision"])
            writer.writerows(zip(recall.round(2).tolist(), precision.tolist()))


def sample_figure(raw, detections: list[dict], names: dict[int, str]):
    """The first test images with their true (green) and predicted (red) boxes."""
    from PIL import Image

    panels = []
    for det in detections[:SAMPLE_IMAGES]:
        img = next(i for i in raw.images if i["id"] == det["image_id"])
        pixels = np.asarray(Image.open(raw.root / img["file_name"]).convert("RGB"))
        truth = [convert_boxes(a["bbox"], "xywh", "xyxy").tolist() for a in raw.annotations_by_image[img["id"]]
                 if "bbox" in a]
        pred = convert_boxes(det["bbox"], "xywh", "xyxy").tolist()
        panels.append(draw_boxes(pixels, truth, [pred], [f"{names[det['category_id']]} {det['score']:.2f}"]))
    return image_grid(panels)


def run(cfg: Config) -> None:
    ecfg = cfg.evaluate
    model = keras.saving.load_model(LOCALIZER_MODEL)
    spec = BACKBONES.get(cfg.backbone.name)
    raw = load_raw_dataset(RAW_DIR)
    test_ids = read_manifest(SPLIT_DIR, "test")
    with stage_run("evaluate", cfg.tracking.experiment, {"evaluate": ecfg.model_dump()}, dvc_tags("evaluate")):
        outputs = predict_test_split(model, spec.preprocess_input, ecfg.batch_size)
        metrics = localization_metrics(outputs["labels"], outputs["class_probs"], outputs["true_boxes_sqrt"],
                                       outputs["pred_boxes_sqrt"], ecfg.iou_thresholds)
        sizes = {img["id"]: (img["width"], img["height"]) for img in raw.images}
        detections = localizer_detections(outputs["image_ids"], outputs["class_probs"], outputs["pred_boxes_sqrt"],
                                          sizes, [c["id"] for c in raw.categories])
        detections = suppress(detections, ecfg.nms.iou_threshold, ecfg.nms.score_threshold)
        coco_gt = json.loads((RAW_DIR / ANNOTATIONS_FILE).read_text())
        coco = evaluate_coco(ground_truth_subset(coco_gt, test_ids), detections)
        metrics.update({f"coco_{k}": v for k, v in coco.stats.items()})
        curves = pr_curves(coco, raw.category_names, 0.5)
        metrics["per_class_AP50"] = {name: float(p.mean()) for name, (_, p) in curves.items()}
        write_json(METRICS_DIR / "localizer.json", metrics)
        write_pr_curves(curves, PLOTS_DIR / "pr")
        write_json(REPORTS_DIR / "localizer_test_predictions.json", detections)
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if not isinstance(v, dict)})
        mlflow.log_dict(detections, "predictions/localizer_test_coco_results.json")
        mlflow.log_figure(pr_curve_figure(curves, "Localizer, test split, IoU 0.5"), "figures/pr_curves.png")
        names = {c["id"]: c["name"] for c in raw.categories}
        mlflow.log_image(sample_figure(raw, detections, names), "figures/test_predictions.png")


if __name__ == "__main__":
    main(run)
