"""CPU inference speed of the saved detector, NMS included, against the same network without its decoder.

Loads ``models/detector/model.keras`` (what ``make run`` writes; raw RGB pixels in,
detections out) and, from its layers, the same network ending at the heads' raw outputs.
Prints for each: ms per image at batch 1 (median) and images/s at batch 32, and the
ratio of the two models' times, so the cost of decoding and NMS reads off directly.
Random pixels give the decoder many candidates above its score threshold, NMS's worst case.

    python benchmarks/detector_speed.py [--model models/detector/model.keras] [--size 128] [--repeats 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def without_decoder(saved):
    """The saved model up to the decoder's inputs: pixels -> the three heads' raw outputs."""
    import keras

    from visionflow.models.pixels import PIXEL_LAYER

    detector = saved.get_layer("detector")
    raw = keras.Model(detector.input, detector.get_layer("detections").input, name="detector_raw")
    pixels = keras.Input(saved.input.shape[1:], name="pixels")
    return keras.Model(pixels, raw(saved.get_layer(PIXEL_LAYER)(pixels)), name="no_nms")


def timed(model, batch, repeats: int) -> float:
    """Median seconds of one call on ``batch``, after warming up (tracing) once."""
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    x = tf.constant(batch)
    call(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), call(x))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/detector/model.keras"))
    parser.add_argument("--size", type=int, default=128, help="input side, px (a multiple of 32)")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    from visionflow.models.saved import load_saved_model

    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no such model; run `make run` (or `dvc repro train@detector`) first")
    saved = load_saved_model(args.model)
    rng = np.random.default_rng(0)
    results = {}
    for name, model in (("with NMS", saved), ("without NMS", without_decoder(saved))):
        one = timed(model, rng.uniform(0, 255, (1, args.size, args.size, 3)).astype("float32"), args.repeats)
        many = timed(model, rng.uniform(0, 255, (32, args.size, args.size, 3)).astype("float32"), max(3, args.repeats // 5))
        results[name] = (one, many)
        print(f"{name}: {1000 * one:.2f} ms/image at batch 1, {32 / many:.1f} images/s at batch 32", flush=True)
    (one_nms, many_nms), (one_raw, many_raw) = results["with NMS"], results["without NMS"]
    print(f"with / without NMS: {one_nms / one_raw:.2f}x the time at batch 1, {many_nms / many_raw:.2f}x at batch 32")


if __name__ == "__main__":
    main()
