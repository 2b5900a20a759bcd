"""Validation before ingest: every kind of bad record, with on_error fail and skip."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionflow.data.coco_layout import load_raw_dataset, write_raw_dataset
from visionflow.data.sources import build_source
from visionflow.errors import DataError


def image(path: Path, mode="RGB", size=(32, 24), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(0).integers(0, 255, (size[1], size[0], len(mode) if mode != "L" else 1), np.uint8)
    Image.fromarray(arr.squeeze() if mode == "L" else arr, mode).save(path, format=fmt)


def messy_coco(root: Path) -> dict:
    image(root / "ok.jpg")
    image(root / "gray.jpg", "L")
    image(root / "cmyk.jpg", "CMYK")
    image(root / "alpha.png", "RGBA", fmt="PNG")
    image(root / "stray.jpg")  # present but never referenced
    image(root / "big.jpg")  # never referenced either
    (root / "truncated.jpg").write_bytes((root / "big.jpg").read_bytes()[:200])
    (root / "garbage.jpg").write_bytes(b"not an image at all")
    imgs = ["ok.jpg", "gray.jpg", "cmyk.jpg", "alpha.png", "truncated.jpg", "garbage.jpg", "missing.jpg", "ok.jpg",
            "nanbox.jpg", "empty.jpg", "outside.jpg", "unknowncat.jpg", "clip.jpg"]
    for name in ("nanbox.jpg", "empty.jpg", "outside.jpg", "unknowncat.jpg", "clip.jpg"):
        image(root / name)
    images = [{"id": i + 1, "file_name": n} for i, n in enumerate(imgs)]
    images[7]["id"] = 1  # duplicate id and file name
    ann = lambda i, img, bbox, cat=1: {"id": i, "image_id": img, "category_id": cat, "bbox": bbox}  # noqa: E731
    annotations = [ann(1, 1, [1, 1, 5, 5]), ann(2, 9, [float("nan"), 1, 5, 5]), ann(3, 10, [1, 1, 0, 5]),
                   ann(4, 11, [100, 100, 5, 5]), ann(5, 12, [1, 1, 5, 5], cat=99), ann(6, 13, [-3, 20, 10, 10]),
                   ann(7, 555, [1, 1, 2, 2])]
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return coco


def digest(root: Path) -> str:
    return hashlib.md5(b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())).hexdigest()


def test_fail_mode_stops_before_writing_and_names_a_record(tmp_path):
    src = tmp_path / "src"
    messy_coco(src)
    with pytest.raises(DataError, match=r"problems in 13 records \(first: .*set ingest.on_error: skip"):
        write_raw_dataset(build_source("coco", {"path": str(src)}), tmp_path / "raw", on_error="fail", progress=False)
    assert not (tmp_path / "raw").exists()


def test_skip_mode_writes_good_records_and_reports_every_problem(tmp_path):
    src = tmp_path / "src"
    messy_coco(src)
    before = digest(src)
    report = write_raw_dataset(build_source("coco", {"path": str(src)}), tmp_path / "raw", on_error="skip",
                               progress=False)
    assert digest(src) == before  # the user's files are never modified
    counts = json.loads((tmp_path / "raw/validation.json").read_text())["counts"]
    assert counts == {"box_clipped": 1, "box_empty": 1, "box_not_finite": 1, "box_outside_image": 1,
                      "corrupt_image": 2, "duplicate_file_name": 1, "duplicate_image_id": 1,
                      "image_converted_to_rgb": 3, "image_not_referenced": 2, "missing_image": 1, "unknown_category": 1, "unknown_image_id": 1}
    raw = load_raw_dataset(tmp_path / "raw")
    assert sorted(i["file_name"] for i in raw.images) == [
        "images/alpha.png", "images/clip.jpg", "images/cmyk.jpg", "images/gray.jpg", "images/ok.jpg"]
    assert report.num_written == 5 and report.num_records == 13
    for img in raw.images:
        with Image.open(raw.root / img["file_name"]) as im:
            assert im.mode == "RGB"
    clip = next(i for i in raw.images if i["file_name"] == "images/clip.jpg")
    assert raw.annotations_by_image[clip["id"]][0]["bbox"] == [0.0, 20.0, 7.0, 4.0]  # clipped to 32x24
    summary = (tmp_path / "raw/validation.txt").read_text()
    assert "13 records read, 5 written" in summary and "missing.jpg" in summary


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src/annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DataError, match="the dataset is empty"):
        write_raw_dataset(build_source("coco", {"path": str(tmp_path / "src")}), tmp_path / "raw", progress=False)


def test_a_failed_ingest_keeps_the_previous_dataset(tmp_path):
    src = tmp_path / "src"
    messy_coco(src)
    write_raw_dataset(build_source("coco", {"path": str(src)}), tmp_path / "raw", on_error="skip", progress=False)
    before = digest(tmp_path / "raw")
    with pytest.raises(DataError):
        write_raw_dataset(build_source("coco", {"path": str(src)}), tmp_path / "raw", on_error="fail", progress=False)
    assert digest(tmp_path / "raw") == before
