"""Input pipeline throughput, each figure against a baseline measured in the same run.

(a) median images/s (interleaved repeats) of the training pipeline (parallel decode, cache, shuffle, augmentation
    with the corruptions (Gaussian blur, Gaussian noise, JPEG re-encoding) at their default chances,
    ``preprocess_input``, batch, prefetch) against a bare ``tf.data`` pipeline that only
    reads, decodes, resizes and batches the same shards. Target: >= 0.8x. The same pipeline
    without the corruptions (geometry and colour only) is measured alongside, to show what they cost.
(b) seconds per training epoch of the localizer fed by that pipeline against the same
    model fed from tensors already in memory. Target: <= 1.15x.
(c) ingest + validate throughput, images/s, for a 5,000-image COCO folder.

    python benchmarks/input_pipeline.py [--images 2000] [--coco-images 5000]

Timings swing on a shared machine; CPU seconds per batch (``time.process_time``) of each
pipeline are printed too, a steadier measure of what each costs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_options(root: Path, n: int):
    """The synthetic source's defaults, its photo backgrounds exported to ``root`` (as the photos stage would)."""
    from visionflow.config import PhotosConfig
    from visionflow.data.photos import export_photos
    from visionflow.data.synthetic import SyntheticOptions

    photos = root / "photos"
    if not photos.is_dir():
        export_photos(list(PhotosConfig().train), photos)
    return SyntheticOptions(num_images=n, photo_dir=str(photos))


def build_shards(root: Path, n: int) -> Path:
    from visionflow.data.coco_layout import load_raw_dataset, write_raw_dataset
    from visionflow.data.synthetic import SyntheticShapes
    from visionflow.data.tfrecords import write_split_shards

    write_raw_dataset(SyntheticShapes(synthetic_options(root, n)), root / "raw", progress=False)
    raw = load_raw_dataset(root / "raw")
    out = root / "processed"
    out.mkdir()
    write_split_shards(raw, [img["id"] for img in raw.images], "train", out, 128, 4)
    return out


def compare_images_per_second(pipelines: list, n_images: int, repeats: int = 7,
                              epochs: int = 2) -> list[tuple[float, float]]:
    """Per pipeline, median images/s and CPU milliseconds per image, timed in turn so machine noise hits all alike.

    One pass over the bare pipeline takes a fraction of a second, so single timings swing
    by 2x from run to run; the median of interleaved repeats does not.
    """
    def one(ds) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(epochs):
            for _ in ds:
                pass
        images = epochs * n_images
        return images / (time.perf_counter() - start), (time.process_time() - cpu) * 1e3 / images

    for ds in pipelines:  # warm-up (fills the caches, compiles)
        one(ds)
    runs = [[one(ds) for ds in pipelines] for _ in range(repeats)]
    return [(float(np.median([r[i][0] for r in runs])), float(np.median([r[i][1] for r in runs])))
            for i in range(len(pipelines))]


def bare_pipeline(files: list[str], batch: int):
    import tensorflow as tf

    from visionflow.data.tfrecords import parse_example

    ds = tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE)
    ds = ds.map(lambda s: tf.image.resize(parse_example(s)["image"], (128, 128)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def make_coco_folder(root: Path, n: int) -> Path:
    from PIL import Image

    from visionflow.data.synthetic import render

    opts = synthetic_options(root.parent, n)
    images, anns = [], []
    for i in range(n):
        r = render(i, opts)
        Image.fromarray(r.image).save(root / f"{i:06d}.jpg", quality=90)
        images.append({"id": i + 1, "file_name": f"{i:06d}.jpg", "width": 128, "height": 128})
        x1, y1, x2, y2 = r.boxes_xyxy[0].tolist()
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": r.labels[0] + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    cats = [{"id": c + 1, "name": f"c{c}"} for c in range(5)]
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--coco-images", type=int, default=5000)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from visionflow.data.augment_config import AugmentConfig
    from visionflow.data.coco_layout import write_raw_dataset
    from visionflow.data.pipeline import model_dataset, steps_per_epoch
    from visionflow.data.sources import build_source
    from visionflow.data.tfrecords import split_files
    from visionflow.models.backbones import BACKBONES
    from visionflow.models.localizer.config import LocalizerConfig
    from visionflow.models.localizer.family import Localizer
    from visionflow.models.transfer import make_optimizer

    spec = BACKBONES.get("mobilenet_v2")
    batch = 32
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        processed = build_shards(tmp, args.images)
        files = split_files(processed, "train")

        family = Localizer(LocalizerConfig(class_head="max", box_head="attention"), [f"c{c}" for c in range(5)])
        steps = steps_per_epoch(args.images, batch)

        def training_pipeline(augment: AugmentConfig):
            return model_dataset(processed, "train", batch, spec.preprocess_input, family.targets, training=True,
                                 augment=augment, num_examples=args.images).take(steps)  # one epoch

        ours = training_pipeline(AugmentConfig())
        plain = training_pipeline(AugmentConfig(blur=0.0, noise=0.0, jpeg=0.0))
        (ours_ips, ours_cpu), (plain_ips, plain_cpu), (bare_ips, bare_cpu) = compare_images_per_second(
            [ours, plain, bare_pipeline(files, batch)], args.images)
        print(f"(a) training input pipeline, with blur, noise and JPEG: {ours_ips:8.0f} img/s   "
              f"bare tf.data: {bare_ips:8.0f} img/s   ratio {ours_ips / bare_ips:.2f}x (target >= 0.8x)\n"
              f"    without the corruptions (geometry and colour only): {plain_ips:8.0f} img/s   "
              f"ratio {plain_ips / bare_ips:.2f}x\n"
              f"    CPU ms per batch of {batch}: with corruptions {ours_cpu * batch:5.1f}, "
              f"without {plain_cpu * batch:5.1f}, bare {bare_cpu * batch:5.1f} "
              f"(bare / with: {bare_cpu / ours_cpu:.2f}x)")

        model, _ = family.build(spec, 128, 0.5, None)
        family.compile(model, make_optimizer("adam", 1e-3))
        xs, ys_class, ys_box = [], [], []
        for x, y in ours:
            xs.append(x.numpy()), ys_class.append(y["class"].numpy()), ys_box.append(y["box"].numpy())
        x_mem = np.concatenate(xs)
        y_mem = {"class": np.concatenate(ys_class), "box": np.concatenate(ys_box)}
        model.fit(x_mem[:batch * 4], {k: v[:batch * 4] for k, v in y_mem.items()}, batch_size=batch, verbose=0)

        def epoch_seconds(fit):
            start = time.perf_counter()
            fit()
            return time.perf_counter() - start

        mem = epoch_seconds(lambda: model.fit(x_mem, y_mem, batch_size=batch, epochs=1, verbose=0, shuffle=True))
        fed = epoch_seconds(lambda: model.fit(ours, epochs=1, verbose=0))
        print(f"(b) epoch fed by the pipeline: {fed:6.1f} s   from in-memory tensors: {mem:6.1f} s   "
              f"ratio {fed / mem:.2f}x (target <= 1.15x)")

        (tmp / "coco_src").mkdir()
        coco = make_coco_folder(tmp / "coco_src", args.coco_images)
        start = time.perf_counter()
        report = write_raw_dataset(build_source("coco", {"path": str(coco)}), tmp / "coco_raw", progress=False)
        seconds = time.perf_counter() - start
        print(f"(c) ingest + validate of a {report.num_records}-image COCO folder: {seconds:6.1f} s, "
              f"{report.num_records / seconds:6.0f} img/s ({report.num_written} written)")
        keras.backend.clear_session()
        del tf


if __name__ == "__main__":
    main()
