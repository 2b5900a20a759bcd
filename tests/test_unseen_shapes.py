"""The independent shape generator, and a localizer trained on the project's shapes scored on its shapes."""

from pathlib import Path

import numpy as np
import pytest

from benchmarks.unseen_shapes import centred_box_iou, predict_independent, predict_split, score
from tests.independent_shapes import CLASSES, Options, background, draw_image, generate, rng
from visionflow.models.backbones import BackboneSpec
from visionflow.models.pixels import with_pixel_input

# --- the generator ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gradient", "photo"])
def test_each_box_is_the_tight_box_of_the_pixels_the_shape_changed(kind):
    """Without noise and strokes, the pixels that differ from the bare background are the shape's, outline included."""
    options = Options(background=kind, noise_sigma=(0, 0), clutter=(0, 0), seed=3)
    outlined = 0
    for index in range(24):
        drawn = draw_image(index, options)
        bare = np.asarray(background(rng(options.seed, index), kind, options.image_size))
        ys, xs = np.nonzero(np.any(drawn.image != bare, axis=-1))
        np.testing.assert_array_equal(drawn.boxes_xyxy[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        outlined += len(np.unique(drawn.image[drawn.masks[0]], axis=0)) > 1
    assert outlined > 0  # some shapes had an outline, and it counts as the shape's


def test_images_are_a_pure_function_of_seed_and_index():
    options = Options(seed=7, background="photo")
    first, again = generate(6, options), generate(3, options, start=3)
    np.testing.assert_array_equal(first.images[3:], again.images)
    np.testing.assert_array_equal(first.boxes_xyxy[3:], again.boxes_xyxy)
    np.testing.assert_array_equal(first.labels[3:], again.labels)
    other = generate(6, Options(seed=8, background="photo"))
    assert not np.array_equal(first.images, other.images)


def test_every_class_appears_and_sizes_and_places_stay_in_range():
    shapes = generate(150, Options(seed=1, image_size=96, shape_size=(12, 40)))
    assert shapes.images.shape == (150, 96, 96, 3) and shapes.images.dtype == np.uint8
    assert np.bincount(shapes.labels, minlength=len(CLASSES)).min() >= 15
    sides = shapes.boxes_xyxy[:, 2:] - shapes.boxes_xyxy[:, :2]
    assert sides.max(1).min() >= 12 - 1 and sides.max(1).max() <= 40 + 2  # drawn pixels round the outline
    assert shapes.boxes_xyxy.min() >= 1 and shapes.boxes_xyxy.max() <= 96 - 1
    diamonds = sides[shapes.labels == CLASSES.index("diamond")]
    ratios = diamonds[:, 0] / diamonds[:, 1]
    assert 0.55 <= ratios.min() < 0.7 and 0.9 < ratios.max() <= 1.05  # width / height runs 0.6..1.0


def test_noise_sigma_is_drawn_from_its_range_and_is_the_noise_added():
    sigmas = generate(100, Options(seed=2, noise_sigma=(2, 18))).noise_sigmas
    assert sigmas.min() >= 2 and sigmas.max() <= 18 and sigmas.min() < 5 and sigmas.max() > 15
    # The same draws but the sigma: the difference is the noise (away from 0 and 255, where it is clipped).
    clean, noisy = (draw_image(4, Options(seed=2, noise_sigma=(s, s))).image.astype(float) for s in (0, 10))
    inside = (clean > 40) & (clean < 215)
    assert np.std((noisy - clean)[inside]) == pytest.approx(10, rel=0.1)


def test_several_shapes_per_image_come_as_lists_of_boxes_apart_from_each_other():
    shapes = generate(10, Options(seed=5, shapes_per_image=(2, 4), shape_size=(14, 36)))
    assert isinstance(shapes.labels, list) and len(shapes.boxes_xyxy) == 10
    for labels, boxes in zip(shapes.labels, shapes.boxes_xyxy):
        assert 2 <= len(labels) == len(boxes) <= 4
        for i in range(len(boxes)):
            for j in range(i):
                a, b = boxes[i], boxes[j]
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]  # no two boxes overlap


# --- a tiny localizer trained on the project's shapes, scored on these --------------------------------------------

SIZE = 48  # the model's input; the project's shapes from their default minimum, 14 px, to the 48 that fit
INDEPENDENT_SIZES = (14.0, 44.0)  # the same range (the independent generator keeps 2 px from every edge)
NUM_IMAGES = 2000  # 1,500 to train on (with 960, training accuracy ran well ahead of the test split's)
EPOCHS = 15  # 750 steps: from scratch, the classes only start to come after some 300
WIDTHS = (16, 24, 32, 48, 64)  # the small backbone's stages
INDEPENDENT_IMAGES = 400  # per background kind
SEED = 0


def small_backbone(input_shape, include_top=False, weights=None):
    """Stride-2 stages of 3x3 convolutions, GroupNorm and ReLU; the 1/16 map is ``relu3_1``.

    GroupNorm, not BatchNorm: the localizer runs its backbone in inference mode, where a
    from-scratch BatchNorm would never learn its statistics, and plain convolutions this deep
    did not learn the classes at all in the steps this test can afford.
    """
    import keras

    x = inputs = keras.Input(input_shape)
    for i, width in enumerate(WIDTHS):
        for j, stride in enumerate((2, 1) if i < len(WIDTHS) - 1 else (2,)):
            x = keras.layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False,
                                    kernel_initializer="he_normal", name=f"conv{i}_{j}")(x)
            x = keras.layers.GroupNormalization(groups=8, name=f"gn{i}_{j}")(x)
            x = keras.layers.ReLU(name=f"relu{i}_{j}")(x)
    return keras.Model(inputs, x, name="small")


SMALL = BackboneSpec(f"{__name__}:small_backbone", "keras.applications.mobilenet_v2", "relu3_1")


def project_data(root: Path, photo_dir: str) -> Path:
    """raw -> split -> processed with the project's functions; the source at its defaults but the size."""
    from visionflow.config import PreprocessConfig, SplitConfig
    from visionflow.data.coco_layout import load_raw_dataset, write_raw_dataset
    from visionflow.data.preprocess import write_processed
    from visionflow.data.split import split_raw_dataset
    from visionflow.data.synthetic import SyntheticOptions, SyntheticShapes

    options = SyntheticOptions(num_images=NUM_IMAGES, image_size=SIZE, max_object_size=SIZE, photo_dir=photo_dir)
    write_raw_dataset(SyntheticShapes(options), root / "raw", progress=False)
    raw = load_raw_dataset(root / "raw")
    splits, _ = split_raw_dataset(raw, SplitConfig())
    write_processed(raw, splits, root / "processed", PreprocessConfig(image_size=SIZE, num_shards=2))
    return root / "processed"


def whole_batches(num_examples: int, largest: int = 32) -> int:
    """A batch size that divides the split: a last, smaller batch makes XLA compile the augmentation
    a second time (~15 s of CPU here)."""
    return next((b for b in range(largest, largest // 2, -1) if num_examples % b == 0), largest)


def train_localizer(processed: Path, root: Path, seed: int = SEED):
    """The localizer family on ``SMALL``, trained by the project's trainer; returns (saved and reloaded model, family).

    Its defaults (heads, class gradient, augmentation) but the schedule: one phase at 2e-3, cosine, since
    freezing a random backbone teaches nothing and each phase compiles the augmentation anew (~15 s of CPU).
    """
    import keras

    from visionflow.data.pipeline import model_dataset, steps_per_epoch
    from visionflow.data.tfrecords import read_meta
    from visionflow.models.localizer.config import LocalizerConfig
    from visionflow.models.localizer.family import Localizer
    from visionflow.training import train_two_phase

    meta = read_meta(processed)
    num_train = meta["num_examples"]["train"]
    config = LocalizerConfig(batch_size=whole_batches(num_train), frozen={"epochs": 0, "learning_rate": 2e-3},
                             finetune={"epochs": EPOCHS, "learning_rate": 2e-3, "schedule": "cosine"}, seed=seed)
    family = Localizer(config, meta["classes"])
    keras.utils.set_random_seed(seed)
    net, backbone = family.build(SMALL, SIZE, 1.0, None)

    def train_from(epoch):
        return model_dataset(processed, "train", config.batch_size, SMALL.preprocess_input, family.targets,
                             training=True, augment=config.augment, seed=seed, start_epoch=epoch,
                             num_examples=num_train)

    train_two_phase(family, net, backbone, train_from, steps_per_epoch(num_train, config.batch_size), None,
                    root / "checkpoints", f"unseen-shapes-{seed}")
    with_pixel_input(family.inference_model(net), SMALL.preprocess_input).save(root / "model.keras")
    return keras.saving.load_model(root / "model.keras"), family


def scores(model, family, processed: Path, root: Path, seed: int = SEED) -> dict:
    """(a) the project's test split, (b) independent gradients, (c) independent photos: (Score, centred-box IoU)."""
    from visionflow.data.tfrecords import read_meta

    meta, preprocess = read_meta(processed), lambda x: x  # the saved model reads raw pixels
    found = {"own": predict_split(model, family, processed, "test", preprocess)}
    for i, kind in enumerate(("gradient", "photo")):
        options = Options(image_size=SIZE, shape_size=INDEPENDENT_SIZES, background=kind, seed=seed + i)
        shapes = generate(INDEPENDENT_IMAGES, options)
        found[kind] = predict_independent(model, family, preprocess, meta, shapes, root / kind)
    return {name: (score(p), centred_box_iou(p.true_boxes_xyxy_norm)) for name, p in found.items()}


@pytest.fixture(scope="module")
def found(tmp_path_factory, photo_dir) -> dict:
    """The scores of a tiny localizer trained on the project's shapes, once for the module."""
    root = tmp_path_factory.mktemp("unseen_shapes")
    processed = project_data(root, photo_dir)
    model, family = train_localizer(processed, root)
    return scores(model, family, processed, root)


# Per background kind: an accuracy floor (chance is 0.2), a margin of mean IoU over the best fixed box
# centred on the image, and accuracy as a share of the project's own test split's. See the test's docstring.
BOUNDS = {"gradient": (0.27, 0.05, 0.7), "photo": (0.24, -0.02, 0.5)}


@pytest.mark.e2e
@pytest.mark.parametrize("kind", sorted(BOUNDS))
def test_a_localizer_trained_on_the_projects_shapes_finds_independently_drawn_ones(found, kind):
    """A localizer that learned the shapes finds them whoever drew them; one that learned the generator does not.

    The model trains from scratch for about 90 s of CPU, so it is weak and varies from seed
    to seed; the bounds are loose, yet fail the collapse users reported (0.955 -> 0.63, 0.66x,
    on gradients; 0.34, 0.36x, on photographs). Measured with the source's defaults (the plain
    shapes) over five seeds (training, the independent images and, for four, the project's
    data), 400 independent images a kind, 200 of the project's (a seed gives the same figures
    on every run):

    - own test split: accuracy 0.37-0.45, mean IoU 0.64-0.70 (the centred box: 0.47-0.51);
    - gradients: accuracy 0.35-0.52, 0.89-1.39x the own split's; mean IoU 0.13-0.18 above
      the centred box's 0.52-0.56;
    - photos: accuracy 0.28-0.40, 0.71-1.05x the own split's; mean IoU 0.01-0.05 above the
      centred box's 0.53-0.56: the tiny model barely localizes on real photographs.

    Hence, on gradients, accuracy >= 0.27 (0.08 under the lowest, over three standard errors
    of 400 images), mean IoU >= the centred box's + 0.05 and accuracy >= 0.7x the own split's
    (which fails the 0.66x collapse); on photographs, where this model is weaker, accuracy
    >= 0.24, mean IoU no more than 0.02 under the centred box's and accuracy >= 0.5x.
    """
    own, (s, centred) = found["own"][0], found[kind]
    floor, iou_margin, share = BOUNDS[kind]
    summary = f"{kind}: {s}, centred box mean IoU {centred:.3f}; own test split: {own}"
    print(summary)
    assert s.accuracy >= floor, summary
    assert s.mean_iou >= centred + iou_margin, summary
    assert s.accuracy >= share * own.accuracy, summary
