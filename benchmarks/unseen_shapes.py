"""The saved localizer on shapes drawn by a generator the project does not contain.

A model that learned the shapes scores about as well on shapes drawn independently
(``tests/independent_shapes.py``: its own colours, geometry, placement, backgrounds,
clutter and noise) as on its own test split; one that learned the generator collapses.

(a) the project's own test split (the baseline, measured in the same run, read through
    the project's pipeline as ``visionflow.evaluation`` reads it);
(b) the independent generator on gradient backgrounds, noise sigma 0-20, 0-8 clutter strokes;
(c) the same on crops of real photographs (scikit-learn's and matplotlib's sample photographs).

Each prints accuracy, mean IoU and the share of IoU >= 0.5, (b) and (c) also as ratios to
(a), and accuracy by noise sigma. The independent images go through the project's own
ingest and preprocess functions (resize to the model's input, JPEG, window) and the same
``tf.data`` pipeline as (a), so the three differ only in how the shapes were drawn.

    python benchmarks/unseen_shapes.py [--model models/localizer/model.keras] [--images 500]
                                       [--processed data/shapes_mixed/processed] [--image-size PX] [--shape-size MIN MAX]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: tests.independent_shapes lives beside visionflow

from tests.independent_shapes import CLASSES, MARGIN, Options, ShapeSet, generate  # noqa: E402
from visionflow.boxes import elementwise_iou_xyxy  # noqa: E402

SIGMA_BINS = ((0.0, 6.0), (6.0, 12.0), (12.0, 20.0))  # noise sigma, 0..255; a bin holds (low, high]
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class Predictions:
    """One object per image: true and predicted class, boxes as normalised xyxy in the model-input frame."""

    image_ids: np.ndarray  # (N,)
    true_labels: np.ndarray  # (N,)
    true_boxes_xyxy_norm: np.ndarray  # (N, 4)
    labels: np.ndarray  # (N,)
    boxes_xyxy_norm: np.ndarray  # (N, 4)


@dataclass(frozen=True)
class Score:
    num_images: int
    accuracy: float
    mean_iou: float
    share_iou_ge_05: float

    def ratios(self, baseline: "Score") -> tuple[float, float, float]:
        """Each figure over the baseline's."""
        return (self.accuracy / max(baseline.accuracy, 1e-9), self.mean_iou / max(baseline.mean_iou, 1e-9),
                self.share_iou_ge_05 / max(baseline.share_iou_ge_05, 1e-9))


def score(preds: Predictions, keep: np.ndarray | None = None) -> Score:
    """Accuracy, mean IoU and the share of IoU >= 0.5 over the images ``keep`` selects (all: None)."""
    keep = np.ones(len(preds.labels), bool) if keep is None else keep
    if not keep.any():
        return Score(0, float("nan"), float("nan"), float("nan"))
    ious = elementwise_iou_xyxy(preds.boxes_xyxy_norm[keep], preds.true_boxes_xyxy_norm[keep])
    correct = preds.labels[keep] == preds.true_labels[keep]
    return Score(int(keep.sum()), float(correct.mean()), float(ious.mean()), float((ious >= IOU_THRESHOLD).mean()))


def centred_box_iou(true_boxes_xyxy_norm: np.ndarray) -> float:
    """Mean IoU of the best single box centred on the image (square, its side the best of 1 %..100 %):
    what a localizer that ignores the image can reach."""
    sides = np.linspace(0.01, 1.0, 100)
    centred = np.stack([0.5 - sides / 2, 0.5 - sides / 2, 0.5 + sides / 2, 0.5 + sides / 2], axis=1)
    ious = elementwise_iou_xyxy(centred[:, None, :], true_boxes_xyxy_norm[None, :, :])
    return float(ious.mean(axis=1).max())


def first_object(boxes_xyxy_norm, labels, valid, image_labels):
    """The pipeline's ``targets``: each image's first object, as the localizer's targets take it, unencoded."""
    return {"label": labels[:, 0], "box": boxes_xyxy_norm[:, 0, :]}


def predict_split(model, family, processed_dir: Path, split: str, preprocess_input,
                  batch_size: int = 64) -> Predictions:
    """The saved ``model`` on a processed split, through the project's pipeline; decoded by ``family``."""
    from visionflow.data.pipeline import model_dataset

    parts: dict[str, list[np.ndarray]] = {k: [] for k in Predictions.__dataclass_fields__}
    for x, truth, meta in model_dataset(Path(processed_dir), split, batch_size, preprocess_input, first_object,
                                        with_meta=True):
        found = family.decode(model.predict_on_batch(x))
        parts["image_ids"].append(meta["image_id"].numpy())
        parts["true_labels"].append(truth["label"].numpy())
        parts["true_boxes_xyxy_norm"].append(truth["box"].numpy())
        parts["labels"].append(np.array([d.classes[0] for d in found]))
        parts["boxes_xyxy_norm"].append(np.stack([d.boxes_xyxy_norm[0] for d in found]))
    return Predictions(**{k: np.concatenate(v) for k, v in parts.items()})


class IndependentSource:
    """A :class:`~visionflow.data.sources.Source` over a :class:`ShapeSet` (one shape per image), its
    categories in the model's class order."""

    def __init__(self, shapes: ShapeSet, classes: list[str]):
        if sorted(classes) != sorted(CLASSES):
            raise ValueError(f"the model's classes {classes} are not the independent generator's {list(CLASSES)}")
        self.shapes, self.classes = shapes, list(classes)

    def categories(self) -> list[str]:
        return self.classes

    def __len__(self) -> int:
        return len(self.shapes.images)

    def samples(self):
        from visionflow.data.sources import Sample, SourceObject

        for i, (image, label, (x1, y1, x2, y2)) in enumerate(zip(self.shapes.images, self.shapes.labels,
                                                                 self.shapes.boxes_xyxy.tolist())):
            box = SourceObject(CLASSES[label], (x1, y1, x2 - x1, y2 - y1))
            yield Sample(file_name=f"images/{i:06d}.png", image=image, objects=[box])


def independent_split(shapes: ShapeSet, classes: list[str], root: Path, image_size: int, resize: str) -> Path:
    """Write ``shapes`` as a raw dataset and then as the processed split ``test`` at the model's input size,
    with the project's ingest and preprocess functions; returns the processed folder. Image ``i`` gets id ``i + 1``."""
    from visionflow.config import PreprocessConfig
    from visionflow.data.coco_layout import load_raw_dataset, write_raw_dataset
    from visionflow.data.preprocess import write_processed

    write_raw_dataset(IndependentSource(shapes, classes), root / "raw", progress=False)
    raw = load_raw_dataset(root / "raw")
    preprocess = PreprocessConfig(image_size=image_size, num_shards=1, resize=resize)
    write_processed(raw, {"test": [img["id"] for img in raw.images]}, root / "processed", preprocess)
    return root / "processed"


def sigma_bins(sigmas: np.ndarray) -> list[tuple[str, np.ndarray]]:
    return [(f"{low:g}-{high:g}", (sigmas > low) & (sigmas <= high) if low > 0 else sigmas <= high)
            for low, high in SIGMA_BINS]


def format_row(name: str, preds: Predictions, baseline: Score | None) -> str:
    s = score(preds)
    row = (f"{name:<28}{s.num_images:>7}{s.accuracy:>10.3f}{s.mean_iou:>10.3f}{s.share_iou_ge_05:>10.3f}"
           f"{centred_box_iou(preds.true_boxes_xyxy_norm):>10.3f}")
    return row + ("" if baseline is None else "   " + "  ".join(f"{r:.2f}x" for r in s.ratios(baseline)))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/localizer/model.keras"))
    parser.add_argument("--images", type=int, default=500, help="independent images per background kind")
    parser.add_argument("--processed", type=Path, help="the processed data the model was trained on: its test "
                        "split is the baseline (default: that of params.yaml's train.localizer.dataset)")
    parser.add_argument("--image-size", type=int, help="side of the independent images, px (default: the "
                        "synthetic source's in params.yaml, else 128)")
    parser.add_argument("--shape-size", type=float, nargs=2, metavar=("MIN", "MAX"),
                        help="shape sizes, px (default: the synthetic source's in params.yaml, else 14 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg, processed, meta, model, family, preprocess_input = load_scoring(args.model, args.processed)
    image_size, shape_size = drawn_sizes(cfg, args.image_size, args.shape_size)
    print(f"independent images: {args.images} a background, {image_size} px, shapes {shape_size[0]:g}-"
          f"{shape_size[1]:g} px, resized to the model's input as the project's images are")
    results = {"(a) own test split": (predict_split(model, family, processed, "test", preprocess_input,
                                                    args.batch_size), None)}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, background) in enumerate((("(b) independent, gradients", "gradient"),
                                                ("(c) independent, photos", "photo"))):
            options = Options(image_size=image_size, shape_size=shape_size, background=background, seed=args.seed + i)
            shapes = generate(args.images, options)
            results[name] = (predict_independent(model, family, preprocess_input, meta, shapes, Path(tmp) / background,
                                                 args.batch_size), shapes.noise_sigmas)
    report(results)


def load_scoring(model_path: Path, processed: Path | None):
    """``(config, processed folder, its meta, saved model, family, preprocess_input)``: the saved localizer reads
    raw pixels."""

    from visionflow.config import load_config
    from visionflow.data.tfrecords import read_meta
    from visionflow.layout import processed_dir
    from visionflow.models.fit import family_for
    from visionflow.models.saved import load_saved_model

    cfg = load_config()
    processed = processed or processed_dir(cfg.family_config("localizer").dataset)
    meta = read_meta(processed)
    model = load_saved_model(model_path)
    size = int(model.inputs[0].shape[1])
    if size != meta["image_size"]:
        raise SystemExit(f"{model_path} reads {size} px images but {processed} holds {meta['image_size']} px ones")
    print(f"{model_path}: {size} px input, {cfg.backbone.name}, {meta.get('resize', 'stretch')} resize, "
          f"classes {', '.join(meta['classes'])}")
    return cfg, processed, meta, model, family_for(cfg, "localizer", meta["classes"]), lambda x: x


def drawn_sizes(cfg, image_size: int | None, shape_size: tuple[float, float] | None):
    """The independent images' side and shape sizes: as given, else as params.yaml's synthetic source draws them."""
    ingest = cfg.dataset(cfg.family_config("localizer").dataset).ingest
    synthetic = (ingest.model_extra or {}).get("synthetic") or {}
    side = image_size or synthetic.get("image_size", Options.image_size)
    low = synthetic.get("min_object_size", Options.shape_size[0])
    high = min(synthetic.get("max_object_size", Options.shape_size[1]), side - 2 * MARGIN)
    return side, tuple(shape_size) if shape_size else (float(low), float(high))


def predict_independent(model, family, preprocess_input, meta: dict, shapes: ShapeSet, root: Path,
                        batch_size: int = 64) -> Predictions:
    """The saved ``model`` on independent ``shapes``, prepared as the processed data ``meta`` describes was."""
    processed = independent_split(shapes, meta["classes"], root, meta["image_size"], meta.get("resize", "stretch"))
    return predict_split(model, family, processed, "test", preprocess_input, batch_size)


def report(results: dict[str, tuple[Predictions, np.ndarray | None]]) -> None:
    """The table of scores (ratios: accuracy, mean IoU, IoU >= 0.5 over (a)'s), then accuracy by noise sigma."""
    (own, _) = next(iter(results.values()))
    baseline = score(own)
    print(f"\n{'':<28}{'images':>7}{'accuracy':>10}{'mean IoU':>10}{'IoU>=0.5':>10}{'centred':>10}   ratios to (a)")
    for i, (name, (preds, _)) in enumerate(results.items()):
        print(format_row(name, preds, None if i == 0 else baseline))
    print("(centred: mean IoU of the best fixed box centred on the image, what ignoring the image gets)")
    print("\naccuracy by noise sigma (images)")
    for name, (preds, sigmas) in list(results.items())[1:]:
        per_image = sigmas[preds.image_ids - 1]
        cells = [f"{label:>5}: {score(preds, keep).accuracy:.3f} ({int(keep.sum())})"
                 for label, keep in sigma_bins(per_image)]
        print(f"{name:<28}" + "   ".join(cells))


if __name__ == "__main__":
    main()
