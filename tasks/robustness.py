"""Stage ``robustness@<family>``: ``python -m tasks.robustness <family>``: the saved model under corruptions.

Writes ``metrics/<family>/robustness.json`` (per corruption and severity, the headline
metric and its ratio to the clean score, and the mean ratio) and
``plots/<family>/robustness.csv`` (the ratio against severity, a column per corruption,
for ``dvc plots``), and logs both, with a figure, to the stage's MLflow run.
"""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.tfrecords import read_meta
from visionflow.figures import robustness_figure
from visionflow.io import write_csv, write_json
from visionflow.layout import model_file, model_metrics, model_plots, processed_dir
from visionflow.models.fit import family_for
from visionflow.models.saved import load_saved_model
from visionflow.robustness import report_rows, robustness_report
from visionflow.tracking import stage_run


def run(cfg: Config, model: str) -> None:
    stage = f"robustness@{model}"
    with stage_run(stage, cfg.tracking.experiment, {"robustness": cfg.robustness.model_dump()}, dvc_tags(stage)):
        processed = processed_dir(cfg.family_config(model).dataset)
        family = family_for(cfg, model, read_meta(processed)["classes"])
        saved = load_saved_model(model_file(model))
        report = robustness_report(cfg, saved, family, processed)
        write_json(model_metrics(model, "robustness"), report)
        write_csv(model_plots(model) / "robustness.csv", *report_rows(report))
        print(f"{model}: {report['metric']} clean {report['clean']:.4f}, "
              f"mean over corruptions {report['mean_relative']:.3f} of clean")
        mlflow.log_metrics({"robustness_clean": report["clean"], "robustness_mean_relative": report["mean_relative"],
                            **{f"robustness_{name}_{level}": s["relative"]
                               for name, levels in report["corruptions"].items() for level, s in levels.items()}})
        mlflow.log_dict(report, "robustness/robustness.json")
        mlflow.log_figure(robustness_figure(report, model), "figures/robustness.png")


if __name__ == "__main__":
    main(run)
