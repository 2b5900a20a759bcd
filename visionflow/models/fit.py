"""The ``train@<family>`` stage's work: any model family on the backbone, frozen then fine-tuned, saved.

Generic: the family builds, compiles and names its targets; the data, the two phases,
resuming and the saved model are the same for every family.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras

from visionflow.config import Config
from visionflow.data.pipeline import model_dataset, steps_per_epoch
from visionflow.io import atomic_path, write_csv
from visionflow.layout import BACKBONE_WEIGHTS, CHECKPOINT_DIR, processed_dir
from visionflow.models.backbones import BACKBONES
from visionflow.models.family import FAMILIES, ModelFamily
from visionflow.models.pixels import with_pixel_input
from visionflow.training import train_two_phase


@dataclass
class Trained:
    family: ModelFamily
    served: keras.Model  # what is saved: plain Keras, reading raw RGB pixels
    history: list[dict]  # one row per epoch, both phases
    sample: object  # a batch of raw pixel inputs, for a signature


def family_for(cfg: Config, model: str, classes: list[str]) -> ModelFamily:
    return FAMILIES.get(model)(cfg.family_config(model), classes)


def fit_family(cfg: Config, model: str, meta: dict, fingerprint: str, callbacks_for_phase=lambda phase: [],
               backbone_weights: Path | None = BACKBONE_WEIGHTS, checkpoint_dir: Path | None = None) -> Trained:
    """Train ``model`` (a family name) on the processed data; resumes a run with the same ``fingerprint``.

    ``backbone_weights`` None starts the backbone from random weights (to measure what transfer gives).
    """
    family = family_for(cfg, model, meta["classes"])
    tcfg, spec = family.config, BACKBONES.get(cfg.backbone.name)
    keras.utils.set_random_seed(tcfg.seed)
    net, backbone = family.build(spec, meta["image_size"], cfg.backbone.width,
                                 str(backbone_weights) if backbone_weights else None)
    num_train, processed = meta["num_examples"]["train"], processed_dir(tcfg.dataset)
    sizes, every = family.input_sizes()

    def train_from(epoch: int):
        return model_dataset(processed, "train", tcfg.batch_size, spec.preprocess_input, family.targets,
                             training=True, augment=tcfg.augment if tcfg.augment.enabled else None, seed=tcfg.seed,
                             start_epoch=epoch, num_examples=num_train, input_sizes=sizes, size_every=every)

    valid = (model_dataset(processed, "valid", tcfg.batch_size, spec.preprocess_input, family.targets)
             if meta["num_examples"]["valid"] else None)
    history = train_two_phase(family, net, backbone, train_from, steps_per_epoch(num_train, tcfg.batch_size), valid,
                              checkpoint_dir or CHECKPOINT_DIR / model, fingerprint, callbacks_for_phase)
    split = "valid" if meta["num_examples"]["valid"] else "train"
    sample = next(iter(model_dataset(processed, split, 2, lambda x: x, family.targets)))[0].numpy()
    return Trained(family, with_pixel_input(family.inference_model(net), spec.preprocess_input), history, sample)


def save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def write_history_csv(path: Path, history: list[dict]) -> None:
    """Per-epoch metrics of both phases as one table, for ``dvc plots show``."""
    keys = sorted({k for row in history for k in row} - {"epoch"})
    write_csv(path, ["epoch", *keys], ([row["epoch"], *(row.get(k, "") for k in keys)] for row in history))
