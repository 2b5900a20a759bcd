"""Transfer against scratch: a model family from the ``backbone`` stage's weights and from random ones.

Both train for the same number of epochs on the same data, with the same seed: the
transferred one as ``params.yaml`` says (frozen, then fine-tuned), the scratch one with
every layer training for all those epochs (a frozen random backbone would teach nothing).
Prints each one's headline test metric (the classifier's accuracy, the detector's mAP@0.5)
and their ratio. Run it in a workspace where ``make run`` (or ``dvc repro backbone``) has
run, so the family's ``data/<dataset>/processed`` and ``models/backbone.weights.h5`` exist:

    python benchmarks/transfer.py [--model classifier|detector|localizer] [--epochs N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def test_score(trained) -> float:
    """The family's headline metric on the test split, as ``evaluate`` computes it from the saved model."""
    from visionflow.evaluation import predict_split

    preds = predict_split(trained.served, trained.family, "test", 64)
    return float(trained.family.metrics(preds.outputs, preds.targets)[trained.family.headline_metric])


def with_finetune_epochs(cfg, model: str, epochs: int | None):
    """``cfg`` with the family's fine-tuning shortened to ``epochs`` (None: as it is)."""
    if epochs is None:
        return cfg
    section = cfg.family_config(model)
    changed = section.model_copy(update={"finetune": section.finetune.model_copy(update={"epochs": epochs})})
    return cfg.model_copy(update={"train": {**cfg.train, model: changed.model_dump(by_alias=True)}})


def scratch_config(cfg, model: str):
    """The same epochs, every layer training from the first."""
    section = cfg.family_config(model)
    epochs = section.frozen.epochs + section.finetune.epochs
    changed = section.model_copy(update={"frozen": section.frozen.model_copy(update={"epochs": 0}),
                                         "finetune": section.finetune.model_copy(update={"epochs": epochs})})
    return cfg.model_copy(update={"train": {**cfg.train, model: changed.model_dump(by_alias=True)}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="classifier", help="the family to train (default: classifier)")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs of the transferred run (default: params.yaml's)")
    args = parser.parse_args()
    from visionflow.config import load_config
    from visionflow.data.tfrecords import read_meta
    from visionflow.layout import BACKBONE_WEIGHTS, processed_dir
    from visionflow.models.fit import fit_family

    cfg = with_finetune_epochs(load_config(), args.model, args.epochs)
    meta = read_meta(processed_dir(cfg.family_config(args.model).dataset))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, config, weights in (("transfer", cfg, BACKBONE_WEIGHTS),
                                      ("scratch", scratch_config(cfg, args.model), None)):
            trained = fit_family(config, args.model, meta, f"benchmark-{name}", backbone_weights=weights,
                                 checkpoint_dir=Path(tmp) / name)
            results[name] = test_score(trained)
            print(f"{name}: test {trained.family.headline_metric} {results[name]:.4f}", flush=True)
    print(f"transfer / scratch: {results['transfer'] / max(results['scratch'], 1e-9):.2f}x "
          f"({np.round(results['transfer'] - results['scratch'], 4):+})")


if __name__ == "__main__":
    main()
