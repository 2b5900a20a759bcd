"""The ``backbone`` stage's work: the backbone's initial weights, by ``backbone.init``.

``imagenet`` downloads ``keras.applications`` weights (a connected machine only),
``pretrain`` trains offline on the training split, ``none`` is random, and a path loads
a ``.weights.h5`` file for this backbone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from visionflow.config import Config
from visionflow.errors import DataError
from visionflow.layout import processed_dir
from visionflow.models.backbones import BACKBONES

CHANCE_MARGIN = 1.5  # below 1.5x chance accuracy, pretraining is taken not to have converged


@dataclass
class InitialBackbone:
    backbone: object
    metrics: dict[str, float] = field(default_factory=dict)
    warning: str | None = None


def initial_backbone(cfg: Config, image_size: int, num_classes: int, callbacks: list | None = None) -> InitialBackbone:
    bcfg, spec = cfg.backbone, BACKBONES.get(cfg.backbone.name)
    keras.utils.set_random_seed(cfg.dataset(bcfg.pretrain.dataset).split.seed)  # random weights, reproducibly
    if bcfg.init == "pretrain":
        return _pretrained(cfg, spec, image_size, num_classes, callbacks)
    if bcfg.init in ("imagenet", "none"):
        return InitialBackbone(spec.build(image_size, weights="imagenet" if bcfg.init == "imagenet" else None,
                                          width=bcfg.width))
    backbone = spec.build(image_size, weights=None, width=bcfg.width)
    try:
        backbone.load_weights(bcfg.init)
    except (ValueError, OSError) as e:
        raise DataError(f"{bcfg.init}: not weights for backbone {bcfg.name!r}: {e}") from None
    return InitialBackbone(backbone)


def _pretrained(cfg: Config, spec, image_size: int, num_classes: int, callbacks) -> InitialBackbone:
    from visionflow.models.pretrain import pretrain_backbone

    p = cfg.backbone.pretrain
    result = pretrain_backbone(spec, processed_dir(p.dataset), image_size, num_classes, cfg.backbone.width, p.epochs,
                               p.batch_size, p.learning_rate, p.crop_size, cfg.dataset(p.dataset).split.seed, callbacks,
                               crop_window=p.crop_window, crop_jitter=p.crop_jitter)
    accuracy = result.history["accuracy"][-1]
    warning = None
    if accuracy < CHANCE_MARGIN / num_classes:  # from scratch, a network can sit at chance for a while
        warning = (f"backbone pretraining ended at accuracy {accuracy:.2f}, near chance ({1 / num_classes:.2f}): "
                   f"features will be poor; raise backbone.pretrain.epochs or lower backbone.pretrain.learning_rate")
    return InitialBackbone(result.backbone, {"pretrain_accuracy": accuracy, "pretrain_loss": result.history["loss"][-1]},
                           warning)
