import numpy as np
import pytest
from pydantic import ValidationError

from visionflow.data.shapes import CLASSES
from visionflow.data.synthetic import SyntheticOptions, SyntheticShapes, render
from visionflow.errors import DataError

PLAIN = {"backgrounds": {"flat": 1, "gradient": 0, "texture": 0, "photo": 0}, "distractors": (0, 0),
         "clutter_strokes": (0, 0), "blur": 0, "noise_std": (0, 0), "jpeg_quality": (95, 95)}


# Domain randomisation over the whole range the source supports (the defaults are the plain shapes: PLAIN with noise 1-3).
RANDOMISED = {"backgrounds": {"flat": 0.1, "gradient": 0.2, "texture": 0.3, "photo": 0.4}, "distractors": (0, 3),
              "clutter_strokes": (0, 8), "blur": 0.3, "noise_std": (0, 25), "noise_skew": 2.0, "jpeg_quality": (30, 95),
              "min_contrast": 20, "outline": 0.3}


@pytest.fixture(scope="module")
def opts(photo_dir):
    return SyntheticOptions(num_images=200, photo_dir=photo_dir, **RANDOMISED)


@pytest.fixture(scope="module")
def renders(opts):
    return [render(i, opts) for i in range(200)]


def test_same_seed_same_images_other_seed_other_images(opts):
    for i in range(5):
        a, b = render(i, opts), render(i, opts)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        assert a.labels == b.labels
    other = render(0, opts.model_copy(update={"seed": 8}))
    assert not np.array_equal(other.image, render(0, opts).image)


def test_single_object_box_is_tight_to_drawn_pixels(renders):
    for r in renders[:40]:
        check_tight(r)


def check_tight(r):
    assert r.image.shape == (128, 128, 3) and r.image.dtype == np.uint8
    assert len(r.labels) == 1
    ys, xs = np.nonzero(np.any(r.scene != r.background, axis=-1))
    np.testing.assert_array_equal(r.boxes_xyxy[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    w, h = r.boxes_xyxy[0, 2:] - r.boxes_xyxy[0, :2]
    assert 4 <= max(w, h) <= 64 + 2


@pytest.mark.parametrize("index", range(10))
def test_multi_object_boxes_bound_their_visible_pixels(opts, index):
    r = render(index, opts.model_copy(update={"min_objects": 2, "max_objects": 6}))
    assert 1 <= len(r.labels) <= 6
    changed = np.any(r.scene != r.background, axis=-1)
    union = np.zeros_like(changed)
    for box, mask in zip(r.boxes_xyxy.astype(int), r.visible_masks):
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        union |= mask
    np.testing.assert_array_equal(changed, union)


def test_every_class_and_background_kind_occurs_often_enough(renders):
    counts = np.bincount([r.labels[0] for r in renders], minlength=len(CLASSES))
    assert counts.min() >= 25
    kinds = {k: sum(r.kind == k for r in renders) for k in ("flat", "gradient", "texture", "photo")}
    assert kinds["flat"] >= 8 and kinds["gradient"] >= 20 and kinds["texture"] >= 35 and kinds["photo"] >= 55, kinds


def test_randomised_images_cover_the_whole_range_of_noise_blur_and_jpeg(renders):
    cameras = [r.camera for r in renders]
    noise = [c.noise_sigma for c in cameras]
    quality = [c.jpeg_quality for c in cameras]
    assert min(noise) < 3 and max(noise) > 22
    assert min(quality) < 36 and max(quality) > 89
    assert 0.2 < np.mean([c.blur_sigma > 0 for c in cameras]) < 0.4


def test_contrast_varies_includes_low_and_stays_above_twice_the_noise(opts):
    low_seen, opts = False, opts.model_copy(update={"outline": 0.0})
    for i in range(120):
        r = render(i, opts)
        m = r.visible_masks[0]
        contrast = np.linalg.norm(r.scene[m].astype(float).mean(0) - r.background[m].astype(float).mean(0))
        assert contrast >= 2 * r.camera.noise_sigma - 1.5, (i, contrast, r.camera)
        low_seen |= contrast < 30
    assert low_seen


def test_noise_and_jpeg_strength_follow_the_options():
    plain = SyntheticOptions(**PLAIN)
    noisy = plain.model_copy(update={"noise_std": (20.0, 20.0)})
    coarse = plain.model_copy(update={"jpeg_quality": (30, 30)})
    residual = lambda o: np.std(render(3, o).image.astype(float) - render(3, o).scene)  # noqa: E731
    assert residual(plain) < 4  # JPEG at 95
    assert 12 < residual(noisy) < 21  # JPEG and clipping at 0 and 255 take some
    assert residual(coarse) > residual(plain)


def test_distractors_are_drawn_behind_and_carry_no_box():
    r = render(0, SyntheticOptions(**{**PLAIN, "distractors": (3, 3)}))
    assert len(r.labels) == len(r.boxes_xyxy) == 1
    assert len(np.unique(r.background.reshape(-1, 3), axis=0)) >= 3  # the flat colour and the distractors'


def test_the_defaults_are_plain_shapes_on_gradients_without_photos():
    r = render(0, SyntheticOptions())  # no photo_dir needed
    assert r.kind == "gradient" and 1 <= r.camera.noise_sigma <= 3 and r.camera.blur_sigma == 0


def test_source_yields_coco_boxes(opts):
    src = SyntheticShapes(opts.model_copy(update={"num_images": 3}))
    samples = list(src.samples())
    assert len(samples) == len(src) == 3
    assert src.categories() == list(CLASSES)
    x, y, w, h = samples[0].objects[0].bbox_xywh
    np.testing.assert_array_equal([x, y, x + w, y + h], render(0, src.options).boxes_xyxy[0])


def test_photo_backgrounds_without_photos_are_one_line_naming_the_key(tmp_path):
    with pytest.raises(DataError, match=r"^ingest.synthetic.photo_dir: no photographs in .*dvc repro photos"):
        SyntheticShapes(SyntheticOptions(photo_dir=str(tmp_path), **RANDOMISED))


def test_options_validation():
    with pytest.raises(ValidationError, match="min_objects must be <= max_objects"):
        SyntheticOptions(min_objects=3, max_objects=2)
    with pytest.raises(ValidationError, match="max_object_size must be <= image_size"):
        SyntheticOptions(image_size=32, max_object_size=64)
    with pytest.raises(ValidationError, match="noise_std: the range"):
        SyntheticOptions(noise_std=(5, 1))
    with pytest.raises(ValidationError, match="jpeg_quality: must lie in 1..100"):
        SyntheticOptions(jpeg_quality=(30, 101))
    with pytest.raises(ValidationError, match="photo backgrounds need photo_dir"):
        SyntheticOptions(photo_dir=None, backgrounds={"photo": 1.0})
