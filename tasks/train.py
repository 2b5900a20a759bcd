"""Stage ``train@<family>``: ``python -m tasks.train <family>``: the family on the backbone, frozen then fine-tuned."""

import shutil

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.tfrecords import read_meta
from visionflow.io import write_json
from visionflow.layout import CHECKPOINT_DIR, model_file, model_metrics, model_plots, processed_dir
from visionflow.models.card import ModelCard, card_path
from visionflow.models.fit import fit_family, save_model, write_history_csv
from visionflow.tracking import keras_callback, log_keras_model, stage_run


def run(cfg: Config, model: str) -> None:
    stage, meta = f"train@{model}", read_meta(processed_dir(cfg.family_config(model).dataset))
    tags = dvc_tags(stage)
    params = {"train": {model: cfg.family_config(model).model_dump(by_alias=True)}, "backbone": cfg.backbone.model_dump()}
    with stage_run(stage, cfg.tracking.experiment, params, tags):
        trained = fit_family(cfg, model, meta, tags["dvc.inputs_hash"],
                             callbacks_for_phase=lambda phase: [keras_callback(phase)])
        card = ModelCard(model, meta["classes"], meta["category_ids"],
                         cfg.backbone.name, meta["image_size"], meta["resize"])
        save_model(trained.served, model_file(model))
        card.write(card_path(model_file(model)))
        final = {k: v for k, v in trained.history[-1].items() if k != "epoch"} if trained.history else {}
        write_json(model_metrics(model, "train"), final)
        write_history_csv(model_plots(model) / "history.csv", trained.history)
        mlflow.log_metrics({f"final_{k}": v for k, v in final.items()})
        log_keras_model(trained.served, trained.sample, metadata=card.as_dict(),
                        registered_model_name=f"{cfg.tracking.registered_model_prefix}{model}")
        shutil.rmtree(CHECKPOINT_DIR / model, ignore_errors=True)


if __name__ == "__main__":
    main(run)
