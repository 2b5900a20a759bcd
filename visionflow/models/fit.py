"""The ``train@<family>`` stage's work: any model family on the backbone, frozen then fine-tuned, saved.

Generic: the family builds, compiles and names its targets; the data, the two phases,
resuming and the saved model are the same for every family. It trains on the devices it
sees (see :mod:`visionflow.models.devices`): the model is built and compiled in the
strategy's scope and the dtype policy, and ``batch_size`` is per replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras

from visionflow.config import Config
from visionflow.data.pipeline import model_dataset, steps_per_epoch
from visionflow.io import atomic_path, write_csv
from visionflow.layout import BACKBONE_WEIGHTS, CHECKPOINT_DIR, processed_dir
from visionflow.models.backbones import BACKBONES
from visionflow.models.devices import (current_plan, deterministic_ops, dtype_policy, global_batch_size, make_strategy,
                                      shard_by_data)
from visionflow.models.family import FAMILIES, ModelFamily
from visionflow.models.pixels import with_pixel_input
from visionflow.training import train_two_phase


@dataclass
class Trained:
    family: ModelFamily
    served: keras.Model  # what is saved: plain Keras, reading raw RGB pixels
    history: list[dict]  # one row per epoch, both phases
    sample: object  # a batch of raw pixel inputs, for a signature
    # how it trained: strategy, replicas, global_batch_size, dtype_policy, jit_compile (None: the family's own)
    compute: dict = field(default_factory=dict)


def family_for(cfg: Config, model: str, classes: list[str]) -> ModelFamily:
    return FAMILIES.get(model)(cfg.family_config(model), classes)


def fit_family(cfg: Config, model: str, meta: dict, fingerprint: str, callbacks_for_phase=lambda phase: [],
               backbone_weights: Path | None = BACKBONE_WEIGHTS, checkpoint_dir: Path | None = None,
               strategy=None) -> Trained:
    """Train ``model`` (a family name) on the processed data; resumes a run with the same ``fingerprint``.

    ``backbone_weights`` None starts the backbone from random weights (to measure what transfer gives).
    ``strategy`` None: the one the visible devices and ``TF_CONFIG`` call for (``cfg.compute``).
    """
    plan = current_plan(cfg.compute)
    strategy = strategy or make_strategy(plan)  # first: a multi-worker strategy must come before any TF op
    family = family_for(cfg, model, meta["classes"])
    tcfg, spec = family.config, BACKBONES.get(cfg.backbone.name)
    batch = global_batch_size(tcfg.batch_size, strategy)
    # Keras turns XLA off under op determinism, so where XLA is asked for, it wins
    deterministic = cfg.compute.deterministic and not plan.jit_compile
    with deterministic_ops(deterministic), dtype_policy(plan.dtype_policy), strategy.scope():
        keras.utils.set_random_seed(tcfg.seed)
        net, backbone = family.build(spec, meta["image_size"], cfg.backbone.width,
                                     str(backbone_weights) if backbone_weights else None)
        num_train, processed = meta["num_examples"]["train"], processed_dir(tcfg.dataset)
        sizes, every = family.input_sizes()

        def train_from(epoch: int):
            return shard_by_data(model_dataset(
                processed, "train", batch, spec.preprocess_input, family.targets, training=True,
                augment=tcfg.augment if tcfg.augment.enabled else None, seed=tcfg.seed, start_epoch=epoch,
                num_examples=num_train, input_sizes=sizes, size_every=every), strategy)

        valid = (shard_by_data(model_dataset(processed, "valid", batch, spec.preprocess_input, family.targets),
                               strategy) if meta["num_examples"]["valid"] else None)
        history = train_two_phase(family, net, backbone, train_from, steps_per_epoch(num_train, batch), valid,
                                  checkpoint_dir or CHECKPOINT_DIR / model, fingerprint, callbacks_for_phase,
                                  jit_compile=plan.jit_compile)
    if plan.mixed_precision or strategy.num_replicas_in_sync > 1:
        net = float32_copy(family, net, spec, meta["image_size"], cfg.backbone.width)
    split = "valid" if meta["num_examples"]["valid"] else "train"
    sample = next(iter(model_dataset(processed, split, 2, lambda x: x, family.targets)))[0].numpy()
    compute = {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
               "global_batch_size": batch, "dtype_policy": plan.dtype_policy, "jit_compile": plan.jit_compile}
    return Trained(family, with_pixel_input(family.inference_model(net), spec.preprocess_input), history, sample,
                   compute)


def float32_copy(family: ModelFamily, net: keras.Model, spec, image_size: int, width: float) -> keras.Model:
    """``net`` rebuilt in float32 outside any strategy, with its weights (float32 in every policy).

    What is saved then computes in float32 on any device and holds plain variables, as
    a model trained on one CPU does.
    """
    with dtype_policy("float32"):
        copy, _ = family.build(spec, image_size, width, None)
    copy.set_weights(net.get_weights())
    for trained, copied in zip(net._flatten_layers(), copy._flatten_layers()):  # parents first, then their layers
        copied.trainable = trained.trainable
    return copy


def save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def write_history_csv(path: Path, history: list[dict]) -> None:
    """Per-epoch metrics of both phases as one table, for ``dvc plots show``."""
    keys = sorted({k for row in history for k in row} - {"epoch"})
    write_csv(path, ["epoch", *keys], ([row["epoch"], *(row.get(k, "") for k in keys)] for row in history))
