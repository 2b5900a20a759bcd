"""Stage ``train@<family>``: ``python -m tasks.train <family>``: the family on the backbone, frozen then fine-tuned."""

import shutil
import sys

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.figures import history_figure
from visionflow.data.tfrecords import read_meta
from visionflow.io import write_json
from visionflow.layout import CHECKPOINT_DIR, model_file, model_metrics, model_plots, processed_dir
from visionflow.models.card import ModelCard, card_path
from visionflow.models.fit import fit_family, save_model, write_history_csv
from visionflow.training import ResumeState
from visionflow.tracking.callback import keras_callback
from visionflow.tracking.datasets import log_splits
from visionflow.tracking.lineage import lineage_tags
from visionflow.tracking.models import log_keras_model
from visionflow.tracking.resume import take_over
from visionflow.tracking.runs import TRACKING_ERRORS, stage_run


def log_record(model: str, trained, card: ModelCard, final: dict) -> None:
    """The history, the final metrics and the trained model, in the training run (registered only once tested)."""
    mlflow.log_artifact(str(model_plots(model) / "history.csv"), "history")
    frozen = trained.family.config.frozen.epochs  # train and validation on one chart per metric
    mlflow.log_figure(history_figure(trained.history, f"{model} training", frozen or None), "figures/history.png")
    mlflow.log_metrics({f"final_{k}": v for k, v in final.items()})
    logged = log_keras_model(trained.served, trained.sample, metadata=card.as_dict())
    mlflow.log_metrics({f"final_{k}": v for k, v in final.items()}, model_id=logged.model_id)


def run(cfg: Config, model: str) -> None:
    dataset = cfg.family_config(model).dataset
    stage, meta = f"train@{model}", read_meta(processed_dir(dataset))
    tags = dvc_tags(stage)
    params = {"train": {model: cfg.family_config(model).model_dump(by_alias=True)}, "backbone": cfg.backbone.model_dump()}
    with stage_run(stage, cfg.tracking.experiment, params, {**tags, **lineage_tags(cfg, model, tags)},
                   system_metrics=True) as tracked:
        log_splits(dataset, tags, ("train", "valid"))
        checkpoints = CHECKPOINT_DIR / model
        resume = ResumeState(checkpoints, tags["dvc.inputs_hash"])  # a killed run's, if any
        resume.attach_run(tracked.info.run_id)
        take_over(resume.previous_run_id, resume.history())
        trained = fit_family(cfg, model, meta, tags["dvc.inputs_hash"], checkpoint_dir=checkpoints,
                             callbacks_for_phase=lambda phase: [keras_callback(phase)])
        card = ModelCard(model, meta["classes"], meta["category_ids"],
                         cfg.backbone.name, meta["image_size"], meta["resize"])
        save_model(trained.served, model_file(model))
        card.write(card_path(model_file(model)))
        final = {k: v for k, v in trained.history[-1].items() if k != "epoch"} if trained.history else {}
        write_json(model_metrics(model, "train"), final)
        write_history_csv(model_plots(model) / "history.csv", trained.history)
        try:
            log_record(model, trained, card, final)
        except TRACKING_ERRORS as e:  # the model is safe in the stage's outputs; log it when the server is back
            print(f"warning: MLflow did not take the trained model ({type(e).__name__}); it is in "
                  f"{model_file(model)}: `visionflow log-model {model}` logs it later", file=sys.stderr)
        shutil.rmtree(checkpoints, ignore_errors=True)


if __name__ == "__main__":
    main(run)
