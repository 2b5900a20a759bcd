"""Stage ``evaluate@<family>``: ``python -m tasks.evaluate <family>``: the saved model on the test split.

Writes ``metrics/<family>/test.json`` (the family's metrics and the COCO AP of its
detections), per-class PR curves for ``dvc plots``, and the test split's detections
and ground truth side by side, so ``visionflow evaluate-coco`` can score them again.
"""

from pathlib import Path

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.evaluation import PR_IOU, evaluate_model, sample_figure
from visionflow.figures import pr_curve_figure
from visionflow.io import atomic_dir, write_csv, write_json
from visionflow.layout import model_metrics, model_plots, model_reports, raw_dir
from visionflow.tracking.datasets import log_splits
from visionflow.tracking.runs import stage_run


def write_pr_curves(curves: dict, out_dir: Path) -> None:
    """One CSV per class (recall, precision): ``dvc plots`` titles each chart with its path, so model and class."""
    with atomic_dir(out_dir) as tmp:
        for name, (recall, precision) in curves.items():
            write_csv(tmp / f"{name}.csv", ["recall", "precision"], zip(recall.round(2).tolist(), precision.tolist()))


def run(cfg: Config, model: str) -> None:
    stage, tags = f"evaluate@{model}", dvc_tags(f"evaluate@{model}")
    with stage_run(stage, cfg.tracking.experiment, {"evaluate": cfg.evaluate.model_dump()}, tags):
        log_splits(cfg.family_config(model).dataset, tags, ("test",))
        result = evaluate_model(cfg, model)
        for warning in result.coco.warnings if result.coco else ():
            print(f"warning: {warning}")
        write_json(model_metrics(model, "test"), result.metrics)
        write_pr_curves(result.curves, model_plots(model) / "precision_recall")
        write_json(model_reports(model) / "test_predictions.json", result.detections)
        write_json(model_reports(model) / "test_ground_truth.json", result.ground_truth)
        for name, rows in result.reports.tables.items():
            write_json(model_reports(model) / f"{name}.json", rows)
        mlflow.log_metrics({f"test_{k}": v for k, v in result.metrics.items() if not isinstance(v, dict)})
        mlflow.log_dict(result.detections, f"predictions/{model}_test_coco_results.json")
        title = f"{model}, test split" + (f", IoU {PR_IOU}" if result.coco else ", one class against the rest")
        mlflow.log_figure(pr_curve_figure(result.curves, title), "figures/pr_curves.png")
        for name, figure in result.reports.figures.items():
            mlflow.log_figure(figure, f"figures/{name}.png")
        figure = sample_figure(raw_dir(cfg.family_config(model).dataset), result.ground_truth, result.detections)
        mlflow.log_image(figure, "figures/test_predictions.png")


if __name__ == "__main__":
    main(run)
