"""Records from a tiny raw dataset the test writes: detection data in step, stretch and letterbox,
byte-identical re-writes, and damaged shards reported in one line."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from visionflow.data.coco_layout import load_raw_dataset
from visionflow.data.resize import boxes_from_window, boxes_to_window, letterbox_window, resize_image
from visionflow.data.tfrecords import parse_example, split_files, verify_shards, write_meta, write_split_shards
from visionflow.errors import DataError

BLUE, RED = (0, 0, 255), (255, 0, 0)
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 7, "name": "bird"}]  # bird is class 2
IMAGES = [{"id": 1, "file_name": "wide.png", "width": 200, "height": 100},
          {"id": 2, "file_name": "square.jpg", "width": 64, "height": 64},
          {"id": 3, "file_name": "tall.png", "width": 50, "height": 80}]
ANNOTATIONS = [
    {"image_id": 1, "category_id": 1, "bbox": [20, 10, 60, 40], "iscrowd": 0},  # drawn in red
    {"image_id": 1, "category_id": 2, "iscrowd": 0},  # label only
    {"image_id": 1, "category_id": 7, "bbox": [100, 50, 100, 50], "iscrowd": 1},
    {"image_id": 1, "category_id": 2, "bbox": [150, 0, 40, 20], "iscrowd": 0, "difficult": 1},
    {"image_id": 2, "category_id": 7, "bbox": [8, 8, 32, 16], "iscrowd": 0},
    {"image_id": 3, "category_id": 1, "iscrowd": 0},  # label only, as an image folder writes them
]
WIDE_BOXES = [[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 1.0, 1.0], [0.75, 0.0, 0.95, 0.2]]  # normalised xyxy
IDS = [1, 2, 3]
SIZE = 64


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    for img in IMAGES:
        pixels = np.zeros((img["height"], img["width"], 3), np.uint8) + np.uint8(BLUE)
        if img["id"] == 1:
            pixels[10:50, 20:80] = RED
        Image.fromarray(pixels).save(root / img["file_name"])
    anns = [{"id": i + 1, **a} for i, a in enumerate(ANNOTATIONS)]
    (root / "annotations.json").write_text(json.dumps({"images": IMAGES, "annotations": anns,
                                                       "categories": CATEGORIES}))
    return load_raw_dataset(root)


def write(raw, out, resize="stretch", num_shards=2):
    out.mkdir()
    write_split_shards(raw, IDS, "train", out, SIZE, num_shards, resize=resize)
    return out


def read(out) -> dict[int, dict]:
    ds = tf.data.TFRecordDataset(split_files(out, "train")).map(parse_example)
    return {int(ex["image_id"]): {k: v.numpy() for k, v in ex.items()} for ex in ds}


def test_boxes_labels_iscrowd_difficult_stay_in_step_and_image_labels_hold_every_annotation(raw, tmp_path):
    ex = read(write(raw, tmp_path / "out"))
    wide, square, tall = ex[1], ex[2], ex[3]
    np.testing.assert_allclose(wide["boxes"], WIDE_BOXES, atol=1e-6)
    assert wide["labels"].tolist() == [0, 2, 1]
    assert wide["iscrowd"].tolist() == [0, 1, 0]
    assert wide["difficult"].tolist() == [0, 0, 1]
    assert wide["image_labels"].tolist() == [0, 1, 2, 1]
    np.testing.assert_allclose(square["boxes"], [[0.125, 0.125, 0.625, 0.375]], atol=1e-6)
    assert square["labels"].tolist() == square["image_labels"].tolist() == [2]
    assert tall["boxes"].shape == (0, 4) and tall["labels"].shape == tall["iscrowd"].shape == (0,)
    assert tall["image_labels"].tolist() == [0]


def test_parsed_dtypes_and_shapes(raw, tmp_path):
    wide = read(write(raw, tmp_path / "out"))[1]
    dtypes = {k: (v.dtype, v.shape) for k, v in wide.items()}
    assert dtypes == {"image": (np.uint8, (SIZE, SIZE, 3)), "image_id": (np.int64, ()),
                      "original_size": (np.int64, (2,)), "window": (np.float32, (4,)), "boxes": (np.float32, (3, 4)),
                      "labels": (np.int64, (3,)), "iscrowd": (np.int64, (3,)), "difficult": (np.int64, (3,)),
                      "image_labels": (np.int64, (4,))}


def test_stretch_keeps_the_normalised_boxes_and_a_full_window(raw, tmp_path):
    wide = read(write(raw, tmp_path / "out", "stretch"))[1]
    np.testing.assert_allclose(wide["boxes"], WIDE_BOXES, atol=1e-6)
    assert wide["window"].tolist() == [0, 0, 1, 1]
    assert wide["original_size"].tolist() == [200, 100]


def test_letterbox_squeezes_boxes_into_the_window_and_boxes_from_window_undoes_it(raw, tmp_path):
    ex = read(write(raw, tmp_path / "out", "letterbox"))
    wide, tall = ex[1], ex[3]
    assert wide["window"].tolist() == [0, 0.25, 1, 0.75]  # 200x100 -> 64x32, 16 rows of padding above and below
    np.testing.assert_allclose(wide["boxes"], [[0.1, 0.3, 0.4, 0.5], [0.5, 0.5, 1.0, 0.75], [0.75, 0.25, 0.95, 0.35]],
                               atol=1e-6)
    np.testing.assert_allclose(boxes_from_window(wide["boxes"], wide["window"]), WIDE_BOXES, atol=1e-6)
    np.testing.assert_allclose(tall["window"], [0.1875, 0, 0.8125, 1])  # 50x80 -> 40x64 at x 12..52
    assert wide["original_size"].tolist() == [200, 100]


def test_letterbox_pads_with_gray_outside_the_window(raw, tmp_path):
    image = read(write(raw, tmp_path / "out", "letterbox"))[1]["image"].astype(int)
    # rows 0..15 and 48..63 are padding; the row beside the image takes some of its colour, as the
    # JPEG decoder upsamples the half-resolution chroma across the border
    padding = np.concatenate([image[:15], image[49:]])
    assert np.abs(padding - 128).max() <= 1
    assert np.all(image[17:47, 40:, 2] > 200)  # the blue image inside


@pytest.mark.parametrize("resize, red_pixels_xyxy", [("stretch", (6.4, 6.4, 25.6, 32)),
                                                     ("letterbox", (6.4, 19.2, 25.6, 32))])
def test_boxes_stay_on_their_pixels(raw, tmp_path, resize, red_pixels_xyxy):
    wide = read(write(raw, tmp_path / "out", resize))[1]
    red = (wide["image"][..., 0] > 128) & (wide["image"][..., 2] < 128)
    ys, xs = np.nonzero(red)
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], red_pixels_xyxy, atol=1.5)
    np.testing.assert_allclose(wide["boxes"][0] * SIZE, red_pixels_xyxy, atol=1e-4)


@pytest.mark.parametrize("width, height, window", [(200, 100, (0, 0.25, 1, 0.75)), (100, 200, (0.25, 0, 0.75, 1)),
                                                   (50, 50, (0, 0, 1, 1)), (300, 100, (0, 21 / 64, 1, 42 / 64))])
def test_letterbox_window(width, height, window):
    np.testing.assert_allclose(letterbox_window(width, height, 64), window)
    image, got = resize_image(Image.new("RGB", (width, height)), 64, "letterbox")
    assert image.size == (64, 64) and np.allclose(got, window)


def test_boxes_from_window_undoes_boxes_to_window():
    boxes = np.random.default_rng(0).uniform(0, 1, (5, 2, 4))
    window = (0.1875, 0.0, 0.8125, 1.0)
    np.testing.assert_allclose(boxes_from_window(boxes_to_window(boxes, window), window), boxes, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(boxes_to_window(boxes, (0, 0, 1, 1)), boxes)


def test_an_unknown_resize_mode_raises_before_writing(raw, tmp_path):
    with pytest.raises(ValueError, match="'pad'.*stretch, letterbox"):
        write(raw, tmp_path / "out", "pad")
    assert not list((tmp_path / "out").iterdir())


def test_annotations_disagreeing_with_the_image_size_name_the_file(raw, tmp_path):
    raw.images[0]["width"] = 201
    with pytest.raises(DataError, match=r"wide\.png: the image is 200x100 but annotations.json says 201x100"):
        write(raw, tmp_path / "out")


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_shards_written_twice_are_byte_identical(raw, tmp_path, resize):
    first, second = write(raw, tmp_path / "a", resize), write(raw, tmp_path / "b", resize)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) == ["train-00000-of-00002.tfrecord",
                                                                  "train-00001-of-00002.tfrecord"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_records_are_serialised_canonically(raw, tmp_path):
    """Within one process even unordered serialisation repeats itself; across processes its map
    order changes, so every record must already be in the deterministic (sorted) form."""
    for record in tf.data.TFRecordDataset(split_files(write(raw, tmp_path / "out"), "train")):
        record = record.numpy()
        assert record == tf.train.Example.FromString(record).SerializeToString(deterministic=True)


def truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, shard", [(truncate, 0), (flip_a_byte, 1)])
def test_a_damaged_shard_is_named_in_one_line_with_the_dvc_checkout_hint(raw, tmp_path, damage, shard):
    out = write(raw, tmp_path / "out")
    path = out / f"train-{shard:05d}-of-00002.tfrecord"
    damage(path)
    with pytest.raises(DataError) as info:
        split_files(out, "train")
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert re.search(r"(truncated|corrupted) record at \d+", message) and f"run `dvc checkout {out.as_posix()}`" in message


def test_a_missing_shard_or_a_record_count_other_than_the_meta_is_reported(raw, tmp_path):
    out = write(raw, tmp_path / "out")
    write_meta(out, {"num_examples": {"train": 4}})
    with pytest.raises(DataError, match="3 records in the shards, 4 in dataset.json; run `dvc checkout"):
        split_files(out, "train")
    (out / "train-00001-of-00002.tfrecord").unlink()
    with pytest.raises(DataError, match="train-00001-of-00002.tfrecord: no such shard"):
        split_files(out, "train")


def test_intact_shards_pass_the_check(raw, tmp_path):
    out = write(raw, tmp_path / "out")
    write_meta(out, {"num_examples": {"train": 3}})
    files = split_files(out, "train")
    assert [f.rsplit("/", 1)[1] for f in files] == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert verify_shards(files) == 3

