"""Stage ``backbone``: the initial backbone weights, versioned like any other artifact.

``backbone.init`` is ``imagenet`` (downloads ``keras.applications`` weights: a connected
machine only), ``pretrain`` (offline, from the training split), ``none`` (random), or
a path to a ``.weights.h5`` file for this backbone.
"""

import mlflow

from tasks._entry import dvc_tags, main, write_json
from visionflow.config import Config
from visionflow.data.tfrecords import read_meta
from visionflow.errors import DataError
from visionflow.layout import BACKBONE_WEIGHTS, METRICS_DIR, PROCESSED_DIR
from visionflow.models.backbones import BACKBONES
from visionflow.models.pretrain import pretrain_backbone
from visionflow.tracking import keras_callback, stage_run


CHANCE_MARGIN = 1.5  # below 1.5x chance accuracy, pretraining is taken not to have converged


def initial_backbone(cfg: Config, image_size: int, num_classes: int):
    """Returns the backbone and the metrics of how it was made."""
    bcfg, spec = cfg.backbone, BACKBONES.get(cfg.backbone.name)
    if bcfg.init == "pretrain":
        p = bcfg.pretrain
        result = pretrain_backbone(spec, PROCESSED_DIR, image_size, num_classes, bcfg.width, p.epochs,
                                   p.batch_size, p.learning_rate, p.crop_size, cfg.split.seed,
                                   [keras_callback("pretrain")], crop_window=p.crop_window)
        accuracy = result.history["accuracy"][-1]
        if accuracy < CHANCE_MARGIN / num_classes:
            # From scratch, a network can sit at chance for a while before it takes off.
            print(f"warning: backbone pretraining ended at accuracy {accuracy:.2f}, near chance "
                  f"({1 / num_classes:.2f}): features will be poor; raise backbone.pretrain.epochs "
                  f"or lower backbone.pretrain.learning_rate")
            mlflow.set_tag("visionflow.warning", "pretraining did not converge")
        return result.backbone, {"pretrain_accuracy": accuracy, "pretrain_loss": result.history["loss"][-1]}
    if bcfg.init in ("imagenet", "none"):
        weights = "imagenet" if bcfg.init == "imagenet" else None
        return spec.build(image_size, weights=weights, width=bcfg.width), {}
    backbone = spec.build(image_size, weights=None, width=bcfg.width)
    try:
        backbone.load_weights(bcfg.init)
    except (ValueError, OSError) as e:
        raise DataError(f"{bcfg.init}: not weights for backbone {bcfg.name!r}: {e}") from None
    return backbone, {}


def run(cfg: Config) -> None:
    meta = read_meta(PROCESSED_DIR)
    with stage_run("backbone", cfg.tracking.experiment, {"backbone": cfg.backbone.model_dump()}, dvc_tags("backbone")):
        backbone, metrics = initial_backbone(cfg, meta["image_size"], len(meta["classes"]))
        BACKBONE_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        tmp = BACKBONE_WEIGHTS.with_name(".tmp-" + BACKBONE_WEIGHTS.name)
        backbone.save_weights(tmp)
        tmp.replace(BACKBONE_WEIGHTS)
        metrics["num_params"] = backbone.count_params()
        write_json(METRICS_DIR / "backbone.json", metrics)
        mlflow.log_metrics(metrics)


if __name__ == "__main__":
    main(run)
