"""Stage ``train_localizer``: class + box heads on the backbone, frozen then fine-tuned."""

import csv
import hashlib
import json
import shutil
from pathlib import Path

import keras
import mlflow

from tasks._entry import dvc_tags, main, write_json
from visionflow.config import Config
from visionflow.data.augment import AugmentConfig
from visionflow.data.pipeline import localizer_dataset
from visionflow.data.tfrecords import read_meta
from visionflow.layout import (BACKBONE_WEIGHTS, CHECKPOINT_DIR, LOCALIZER_MODEL, METRICS_DIR, PLOTS_DIR,
                               PROCESSED_DIR)
from visionflow.models.backbones import BACKBONES
from visionflow.models.localizer import build_localizer, inference_model
from visionflow.tracking import keras_callback, log_keras_model, stage_run
from visionflow.training import train_two_phase


def fingerprint(cfg: Config, meta: dict) -> str:
    """What a resumed training must share with the interrupted one."""
    digest = hashlib.md5(BACKBONE_WEIGHTS.read_bytes())
    digest.update(json.dumps([cfg.backbone.model_dump(), cfg.train_localizer.model_dump(by_alias=True), meta],
                             sort_keys=True).encode())
    return digest.hexdigest()


def write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    """Per-epoch metrics of both phases as one table, for ``dvc plots show``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(history)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *keys])
        for epoch, row in enumerate(zip(*(history[k] for k in keys))):
            writer.writerow([epoch, *row])


def run(cfg: Config) -> None:
    tcfg = cfg.train_localizer
    meta = read_meta(PROCESSED_DIR)
    spec = BACKBONES.get(cfg.backbone.name)
    keras.utils.set_random_seed(tcfg.seed)
    model, backbone = build_localizer(spec, meta["image_size"], len(meta["classes"]), cfg.backbone.width,
                                      str(BACKBONE_WEIGHTS), tcfg.class_head, tcfg.box_head, tcfg.class_gradient)
    train = localizer_dataset(PROCESSED_DIR, "train", tcfg.batch_size, spec.preprocess_input, True, tcfg.seed,
                              augment_config=AugmentConfig() if tcfg.augment else None)
    valid = (localizer_dataset(PROCESSED_DIR, "valid", tcfg.batch_size, spec.preprocess_input, False)
             if meta["num_examples"]["valid"] else None)
    params = {"train_localizer": tcfg.model_dump(by_alias=True), "backbone": cfg.backbone.model_dump()}
    with stage_run("train_localizer", cfg.tracking.experiment, params, dvc_tags("train_localizer")):
        checkpoints = CHECKPOINT_DIR / "localizer"
        history = train_two_phase(model, backbone, train, valid, tcfg, checkpoints, fingerprint(cfg, meta),
                                  callbacks_for_phase=lambda phase: [keras_callback(phase)])
        LOCALIZER_MODEL.parent.mkdir(parents=True, exist_ok=True)
        tmp = LOCALIZER_MODEL.with_name(".tmp-" + LOCALIZER_MODEL.name)
        served = inference_model(model, tcfg.flip_average)
        served.save(tmp)
        tmp.replace(LOCALIZER_MODEL)
        final = {k: v[-1] for k, v in history.items()}
        write_json(METRICS_DIR / "train_localizer.json", final)
        write_history_csv(PLOTS_DIR / "localizer_history.csv", history)
        mlflow.log_metrics({f"final_{k}": v for k, v in final.items()})
        sample = next(iter(train.unbatch().batch(2)))[0].numpy()
        log_keras_model(served, sample, registered_model_name=cfg.tracking.registered_model)
        shutil.rmtree(checkpoints, ignore_errors=True)


if __name__ == "__main__":
    main(run)
