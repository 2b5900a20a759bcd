import numpy as np
import pytest
from pydantic import ValidationError

from visionflow.data.synthetic import CLASSES, SyntheticOptions, SyntheticShapes, render


def test_same_seed_same_images_other_seed_other_images():
    opts = SyntheticOptions(num_images=5, seed=7)
    for i in range(5):
        a, b = render(i, opts), render(i, opts)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        assert a.labels == b.labels
    other = render(0, SyntheticOptions(num_images=5, seed=8))
    assert not np.array_equal(other.image, render(0, opts).image)


@pytest.mark.parametrize("index", range(40))
def test_single_object_box_is_tight_to_drawn_pixels(index):
    r = render(index, SyntheticOptions())
    assert r.image.shape == (128, 128, 3) and r.image.dtype == np.uint8
    assert len(r.labels) == 1
    changed = np.any(r.image != r.background, axis=-1)
    ys, xs = np.nonzero(changed)
    np.testing.assert_array_equal(r.boxes_xyxy[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    w, h = r.boxes_xyxy[0, 2:] - r.boxes_xyxy[0, :2]
    assert 4 <= max(w, h) <= 64 + 2


@pytest.mark.parametrize("index", range(15))
def test_multi_object_boxes_bound_their_visible_pixels(index):
    opts = SyntheticOptions(min_objects=2, max_objects=6, max_overlap_iou=0.3)
    r = render(index, opts)
    assert 1 <= len(r.labels) <= 6
    changed = np.any(r.image != r.background, axis=-1)
    union = np.zeros_like(changed)
    for box, mask in zip(r.boxes_xyxy.astype(int), r.visible_masks):
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        union |= mask
    np.testing.assert_array_equal(changed, union)


def test_classes_are_balanced_enough_to_stratify():
    opts = SyntheticOptions(num_images=400)
    counts = np.bincount([render(i, opts).labels[0] for i in range(400)], minlength=len(CLASSES))
    assert counts.min() >= 50


def test_contrast_varies_and_includes_low():
    opts = SyntheticOptions(num_images=200)
    contrasts = []
    for i in range(200):
        r = render(i, opts)
        m = r.visible_masks[0]
        contrasts.append(np.abs(r.image[m].mean(0) - r.background[m].mean(0)).max())
    assert min(contrasts) < 45 and max(contrasts) > 90


def test_source_yields_coco_boxes():
    src = SyntheticShapes(SyntheticOptions(num_images=3))
    samples = list(src.samples())
    assert len(samples) == len(src) == 3
    assert src.categories() == list(CLASSES)
    x, y, w, h = samples[0].objects[0].bbox_xywh
    r = render(0, src.options)
    np.testing.assert_array_equal([x, y, x + w, y + h], r.boxes_xyxy[0])


def test_options_validation():
    with pytest.raises(ValidationError, match="min_objects must be <= max_objects"):
        SyntheticOptions(min_objects=3, max_objects=2)
    with pytest.raises(ValidationError, match="max_object_size must be <= image_size"):
        SyntheticOptions(image_size=32, max_object_size=64)
    with pytest.raises(ValidationError, match="noise_std: the range"):
        SyntheticOptions(noise_std=(5, 1))
