"""What tracking costs a training epoch: the same epoch with and without the ``train@`` stage's MLflow logging.

The localizer as ``params.yaml`` configures it (backbone, width, heads, input size, batch
size, augmentation), fine-tuning (every layer trains, as in 22 of its 24 epochs), on the
project's synthetic shapes, written to TFRecords and read through the training input pipeline.

- untracked: ``model.fit`` for one epoch with the learning-rate schedule, no MLflow run;
- tracked: the same inside ``mlflow.start_run(log_system_metrics=True)`` on a local SQLite
  store, with :func:`visionflow.tracking.callback.keras_callback` (the optimizer's params at
  the start, the epoch's metrics at its end), as the ``train@`` stage runs it.

Each run is started and ended outside the timed epoch (the stage opens one run for both
phases). The system-metrics monitor samples when its run starts, then every 10 s, so an epoch
shorter than that would time none of its samples: the default epoch is longer (its samples
are counted and printed). Repeats are interleaved (ABBA...) so the machine's load hits both alike; prints the
medians of wall time and of this process's CPU time, and their ratios. Target: <= 1.05x.
A short epoch overstates the relative cost: tracking adds a fixed cost an epoch. On a
shared machine single epochs swing by 10 %, so the time spent inside the callback's own
hooks (its MLflow calls) is also timed directly, a steadier measure of that fixed cost.

    python benchmarks/tracking_overhead.py [--images 1024] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FAMILY = "localizer"


def synthetic_shards(root: Path, n: int, image_size: int) -> tuple[Path, list[str]]:
    """``n`` synthetic images as one training split of TFRecords (as ingest and preprocess write them)."""
    from visionflow.config import PhotosConfig
    from visionflow.data.coco_layout import load_raw_dataset, write_raw_dataset
    from visionflow.data.photos import export_photos
    from visionflow.data.synthetic import SyntheticOptions, SyntheticShapes
    from visionflow.data.tfrecords import write_split_shards

    export_photos(list(PhotosConfig().train), root / "photos")
    write_raw_dataset(SyntheticShapes(SyntheticOptions(num_images=n, photo_dir=str(root / "photos"))), root / "raw",
                      progress=False)
    raw = load_raw_dataset(root / "raw")
    out = root / "processed"
    out.mkdir()
    write_split_shards(raw, [img["id"] for img in raw.images], "train", out, image_size, 4)
    return out, raw.category_names


def epoch_timer(model, dataset, steps: int, callbacks: list):
    """A function timing one epoch of ``model.fit``: (wall seconds, CPU seconds of this process)."""
    def one(extra_callbacks: list) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[*callbacks, *extra_callbacks])
        return time.perf_counter() - start, time.process_time() - cpu

    return one


def with_hook_timer(callback, spent: list[float]):
    """``callback`` with the seconds each of its epoch hooks takes appended to ``spent``."""
    for name in ("on_train_begin", "on_epoch_end"):
        def timed(*args, _hook=getattr(callback, name), **kwargs):
            start = time.perf_counter()
            _hook(*args, **kwargs)
            spent.append(time.perf_counter() - start)

        setattr(callback, name, timed)
    return callback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024, help="training images an epoch (default: 1024)")
    parser.add_argument("--repeats", type=int, default=7, help="timed epochs of each kind (default: 7)")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")
    import keras
    import mlflow

    from visionflow.config import load_config
    from visionflow.data.pipeline import model_dataset, steps_per_epoch
    from visionflow.models.backbones import BACKBONES
    from visionflow.models.family import FAMILIES
    from visionflow.models.transfer import make_optimizer, set_backbone_trainable
    from visionflow.tracking.callback import keras_callback
    from visionflow.training import learning_rate_schedule

    cfg = load_config(ROOT / "params.yaml")
    spec, size = BACKBONES.get(cfg.backbone.name), cfg.preprocess.image_size
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        processed, classes = synthetic_shards(tmp, args.images, size)
        family = FAMILIES.get(FAMILY)(cfg.family_config(FAMILY), classes)
        tcfg, phase = family.config, family.config.finetune
        keras.utils.set_random_seed(tcfg.seed)
        model, backbone = family.build(spec, size, cfg.backbone.width, None)
        set_backbone_trainable(backbone, True)
        family.compile(model, make_optimizer(phase.optimizer, phase.learning_rate, phase.momentum))
        dataset = model_dataset(processed, "train", tcfg.batch_size, spec.preprocess_input, family.targets,
                                training=True, augment=tcfg.augment if tcfg.augment.enabled else None,
                                seed=tcfg.seed, num_examples=args.images)
        steps = steps_per_epoch(args.images, tcfg.batch_size)
        epoch = epoch_timer(model, dataset, steps, [learning_rate_schedule(phase, 0, steps)])
        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        mlflow.set_experiment("tracking-overhead")

        hooks: list[list[float]] = []  # per tracked epoch, the seconds of each callback hook
        run_ids: list[str] = []

        def timed(tracked: bool) -> tuple[float, float]:
            if not tracked:
                return epoch([])
            hooks.append([])
            with mlflow.start_run(log_system_metrics=True) as run:
                run_ids.append(run.info.run_id)
                return epoch([with_hook_timer(keras_callback("finetune"), hooks[-1])])

        print(f"{cfg.backbone.name} (width {cfg.backbone.width}) {FAMILY} at {size} px, batch {tcfg.batch_size}, "
              f"{steps} steps an epoch, {args.repeats} timed epochs each; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        timed(False), timed(True)  # warm-up: tracing, the store's tables, MLflow's imports
        times = {False: [], True: []}
        for i in range(args.repeats):
            for tracked in ((False, True) if i % 2 == 0 else (True, False)):
                times[tracked].append(timed(tracked))
        wall = {k: float(np.median([t[0] for t in v])) for k, v in times.items()}
        cpu = {k: float(np.median([t[1] for t in v])) for k, v in times.items()}
        print(f"untracked: {wall[False]:6.2f} s an epoch (CPU {cpu[False]:6.2f} s)   "
              f"tracked: {wall[True]:6.2f} s (CPU {cpu[True]:6.2f} s)")
        print(f"tracked / untracked: wall {wall[True] / wall[False]:.3f}x, CPU {cpu[True] / cpu[False]:.3f}x "
              f"(target <= 1.05x)")
        in_hooks = float(np.median([sum(h) for h in hooks[1:]]))  # past the warm-up
        print(f"inside the callback's hooks (its MLflow calls): {in_hooks * 1e3:.0f} ms an epoch, "
              f"{in_hooks / wall[False]:.1%} of the untracked epoch")
        client = mlflow.MlflowClient()
        samples = [len(client.get_metric_history(run_id, "system/cpu_utilization_percentage"))
                   for run_id in run_ids[1:]]
        print(f"system-metrics samples logged in each tracked run: {samples}")
        print("each epoch, s (untracked | tracked): " + " | ".join(
            f"{a[0]:.2f} {b[0]:.2f}" for a, b in zip(times[False], times[True])))


if __name__ == "__main__":
    main()
