"""The ``evaluate@<family>`` stage's work: any family's saved model on the test split.

The saved model reads the test batches; the family turns its outputs into detections
(scored with the COCO evaluator against the test split's ground truth, after per-class
NMS) and into its own metrics. Nothing here knows which family it scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionflow.config import Config
from visionflow.data.coco_layout import load_raw_dataset
from visionflow.data.pipeline import model_dataset
from visionflow.data.split import read_manifest
from visionflow.layout import model_file, processed_dir, raw_dir, split_dir
from visionflow.metrics.coco import CocoEvaluation, evaluate_coco, pr_curves
from visionflow.metrics.detections import coco_results, ground_truth_subset, suppress
from visionflow.models.family import ModelFamily, Reports
from visionflow.models.fit import family_for
from visionflow.models.saved import load_saved_model

PR_IOU = 0.5


@dataclass
class SplitPredictions:
    image_ids: np.ndarray  # (N,)
    windows: np.ndarray  # (N, 4) where each image sits in the model input
    outputs: dict[str, np.ndarray]  # the saved model's outputs
    targets: dict[str, np.ndarray]  # the family's targets


@dataclass
class Evaluation:
    metrics: dict
    detections: list[dict]  # COCO results, original pixels
    ground_truth: dict  # COCO ground truth of the evaluated split
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # class -> (recall, precision) at IoU 0.5, or the family's
    coco: CocoEvaluation | None  # its ``warnings`` say when detections cover fewer images than the ground truth
    reports: Reports  # the family's own tables and figures


def stack_batches(batches: list[dict]) -> dict[str, np.ndarray]:
    """Per-batch dicts of arrays (or tensors) -> one dict of arrays, batches joined along the first axis."""
    return {key: np.concatenate([np.asarray(batch[key]) for batch in batches]) for key in batches[0]}


def predict_split(model, family: ModelFamily, split: str, batch_size: int) -> SplitPredictions:
    """The saved model (raw pixels in) on a split of its family's dataset, as the pipeline fits them to its input."""
    outputs, targets, metas = [], [], []
    batches = model_dataset(processed_dir(family.config.dataset), split, batch_size, lambda x: x, family.targets,
                            with_meta=True)
    for x, y, meta in batches:
        outputs.append(model.predict_on_batch(x))
        targets.append(y)
        metas.append(meta)
    meta = stack_batches(metas)
    return SplitPredictions(meta["image_id"], meta["window"], stack_batches(outputs), stack_batches(targets))


@dataclass
class SplitDetections:
    family: ModelFamily
    predictions: SplitPredictions
    detections: list[dict]  # COCO results, original pixels, after per-class NMS
    truth: dict  # COCO ground truth of the split
    raw: object  # the dataset's RawDataset


def split_detections(cfg: Config, model: str, split: str = "test", saved=None) -> SplitDetections:
    """A saved model's detections on a split of its family's dataset (default: the stage's ``models/<family>``)."""
    dataset = cfg.family_config(model).dataset
    raw = load_raw_dataset(raw_dir(dataset))
    family = family_for(cfg, model, raw.category_names)
    saved = saved if saved is not None else load_saved_model(model_file(model))
    preds = predict_split(saved, family, split, cfg.evaluate.batch_size)
    sizes = {img["id"]: (img["width"], img["height"]) for img in raw.images}
    detections = coco_results(preds.image_ids, family.decode(preds.outputs), preds.windows, sizes,
                              [c["id"] for c in raw.categories])
    nms = cfg.evaluate.nms
    detections = suppress(detections, nms.iou_threshold, nms.score_threshold)
    truth = ground_truth_subset(raw.as_coco(), read_manifest(split_dir(dataset), split))
    return SplitDetections(family, preds, detections, truth, raw)


def evaluate_model(cfg: Config, model: str, split: str = "test") -> Evaluation:
    found = split_detections(cfg, model, split)
    family, preds, detections, truth, raw = found.family, found.predictions, found.detections, found.truth, found.raw
    metrics = family.metrics(preds.outputs, preds.targets, cfg.evaluate.iou_thresholds)
    reports = family.reports(preds.outputs, preds.targets)
    if not family.localizes:  # whole-image detections: no boxes to score
        return Evaluation(metrics, detections, truth, reports.curves, None, reports)
    coco = evaluate_coco(truth, detections)
    metrics.update({f"coco_{k}": v for k, v in coco.stats.items()})  # the 12 of COCOeval.summarize
    metrics.update(map=coco.stats["AP"], map50=coco.stats["AP50"])  # COCO's AP@[.50:.95], VOC's AP@.5
    curves = pr_curves(coco, raw.category_names, PR_IOU)
    metrics["per_class_AP50"] = {name: float(p.mean()) for name, (_, p) in curves.items()}
    metrics["per_class_AP"] = coco.per_category
    return Evaluation(metrics, detections, truth, curves, coco, reports)


def sample_figure(raw_root: Path, truth: dict, detections: list[dict], count: int = 16, min_score: float = 0.3):
    """The first test images with their true (green) and predicted (red) boxes.

    Of an image's detections, its best and every other scoring at least ``min_score`` are drawn.
    """
    from PIL import Image

    from visionflow.boxes import convert_boxes
    from visionflow.figures import draw_boxes, image_grid

    names = {c["id"]: c["name"] for c in truth["categories"]}
    panels = []
    for img in truth["images"][:count]:
        pixels = np.asarray(Image.open(raw_root / img["file_name"]).convert("RGB"))
        xyxy = lambda anns: [convert_boxes(a["bbox"], "xywh", "xyxy").tolist() for a in anns]  # noqa: E731
        found = sorted((d for d in detections if d["image_id"] == img["id"]), key=lambda d: -d["score"])
        found = [d for k, d in enumerate(found) if k == 0 or d["score"] >= min_score]
        panels.append(draw_boxes(pixels, xyxy([a for a in truth["annotations"] if a["image_id"] == img["id"]]),
                                 xyxy(found), [f"{names[d['category_id']]} {d['score']:.2f}" for d in found]))
    return image_grid(panels)
