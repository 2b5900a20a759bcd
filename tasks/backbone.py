"""Stage ``backbone``: the initial backbone weights, versioned like any other artifact."""

import mlflow

from tasks._entry import dvc_tags, main
from visionflow.config import Config
from visionflow.data.tfrecords import read_meta
from visionflow.io import atomic_path, write_json
from visionflow.layout import BACKBONE_WEIGHTS, METRICS_DIR, processed_dir
from visionflow.models.initial import initial_backbone
from visionflow.models.devices import deterministic_ops
from visionflow.tracking import keras_callback, stage_run


def run(cfg: Config) -> None:
    meta = read_meta(processed_dir(cfg.backbone.pretrain.dataset))
    with stage_run("backbone", cfg.tracking.experiment, {"backbone": cfg.backbone.model_dump()}, dvc_tags("backbone")):
        with deterministic_ops(cfg.compute.deterministic):
            made = initial_backbone(cfg, meta["image_size"], len(meta["classes"]), [keras_callback("pretrain")])
        if made.warning:
            print(f"warning: {made.warning}")
            mlflow.set_tag("visionflow.warning", made.warning)
        with atomic_path(BACKBONE_WEIGHTS) as tmp:
            made.backbone.save_weights(tmp)
        metrics = {**made.metrics, "num_params": made.backbone.count_params()}
        write_json(METRICS_DIR / "backbone.json", metrics)
        mlflow.log_metrics(metrics)


if __name__ == "__main__":
    main(run)
