"""The ingest protects the data: no write outside the output folder, no source file touched,
and every planted problem reported with its kind and record."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionflow.data import validation
from visionflow.data.coco_layout import _save_image, load_raw_dataset, write_raw_dataset
from visionflow.data.sources import Sample, build_source
from visionflow.data.validation import Problem, ValidationReport, file_name_problems
from visionflow.errors import DataError


def image(path: Path, mode: str = "RGB", size: tuple[int, int] = (32, 24), seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": 1, "RGB": 3}[mode]
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], channels), np.uint8)
    Image.fromarray(arr.squeeze() if mode == "L" else arr, mode).save(path, format="JPEG")


def snapshot(root: Path, leave_out: Path | None = None) -> dict[str, str]:
    """Every file and folder under ``root`` (hidden ones too) -> its md5, or "dir"."""
    found = {}
    for p in sorted(root.rglob("*")):
        if leave_out is not None and (p == leave_out or p.is_relative_to(leave_out)):
            continue
        found[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.md5(p.read_bytes()).hexdigest()
    return found


def coco(root: Path, images: list[dict], images_dir: str = ".") -> dict:
    """A COCO folder at ``root``; ``images`` are COCO image entries, ids given or numbered."""
    images = [{"id": i + 1} | img for i, img in enumerate(images)]
    annotations = [{"id": img["id"], "image_id": img["id"], "category_id": 1, "bbox": [1, 1, 5, 5]} for img in images]
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
    return {"path": str(root), "images_dir": images_dir}


def ingest(options: dict, out: Path, on_error: str) -> ValidationReport:
    return write_raw_dataset(build_source("coco", options), out, on_error=on_error, progress=False)


def kinds_of(problems: list[dict] | list[Problem]) -> set[tuple[str, str]]:
    return {(p["kind"], p["record"]) if isinstance(p, dict) else (p.kind, p.record) for p in problems}


UNSAFE_NAMES = ["../../evil3.jpg", "sub/../../../evil3.jpg", "..", "", "sub/", "a//b.jpg", "./ok2.jpg",
                "..\\..\\evil3.jpg", "sub\\..\\..\\evil3.jpg", "C:/evil3.jpg", "evil\n3.jpg", "/ABSOLUTE/evil3.jpg"]


def escaping_folder(tmp_path: Path, name: str) -> tuple[dict, Path]:
    """data/coco holds ok.jpg and one record named ``name``; the ingest writes data/raw."""
    src = tmp_path / "data/coco"
    image(src / "ok.jpg")
    image(tmp_path / "evil3.jpg", seed=3)  # what ../../evil3.jpg reads; unchecked, it was copied to data/evil3.jpg
    image(tmp_path / "outside/evil3.jpg", seed=4)
    name = name.replace("/ABSOLUTE", str(tmp_path / "outside"))
    return coco(src, [{"file_name": "ok.jpg"}, {"file_name": name}]), tmp_path / "data/raw"


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_skip_mode_lists_an_unsafe_name_and_writes_only_inside_the_out_dir(tmp_path, name):
    options, out = escaping_folder(tmp_path, name)
    before = snapshot(tmp_path)
    report = ingest(options, out, "skip")
    assert snapshot(tmp_path, leave_out=out) == before  # nothing new outside data/raw, no source file changed
    listed = json.loads((out / "validation.json").read_text())["problems"]
    bad_name = json.loads((tmp_path / "data/coco/annotations.json").read_text())["images"][1]["file_name"]
    assert ("unsafe_file_name", f"images/{bad_name}") in kinds_of(listed)
    assert [i["file_name"] for i in load_raw_dataset(out).images] == ["images/ok.jpg"]
    assert report.num_written == 1 and set(snapshot(out)) == {
        "annotations.json", "validation.json", "validation.txt", "images", "images/ok.jpg"}


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_fail_mode_writes_nothing_for_an_unsafe_name(tmp_path, name):
    options, out = escaping_folder(tmp_path, name)
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=r"^1 problems in 2 records \(first: unsafe_file_name: images/") as err:
        ingest(options, out, "fail")
    assert "\n" not in str(err.value)
    assert snapshot(tmp_path) == before


def test_a_name_resolving_onto_its_own_source_never_overwrites_it(tmp_path):
    """The reviewer's case: a grayscale image (converted, so re-encoded) named back onto itself."""
    src = tmp_path / "data/coco"
    image(src / "images/ok.jpg")
    image(src / "images/gray.jpg", "L")
    name = "../../coco/images/gray.jpg"  # data/.raw.tmp-<pid>/images/<name> == data/coco/images/<name>
    options = coco(src, [{"file_name": "ok.jpg"}, {"file_name": name}], images_dir="images")
    out = tmp_path / "data/raw"
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match="unsafe_file_name: images/../../coco/images/gray.jpg"):
        ingest(options, out, "fail")
    assert snapshot(tmp_path) == before
    report = ingest(options, out, "skip")
    assert snapshot(tmp_path, leave_out=out) == before
    assert ("unsafe_file_name", f"images/{name}") in kinds_of(report.problems)
    with Image.open(src / "images/gray.jpg") as im:
        assert im.mode == "L"


def test_the_writer_refuses_an_escaping_name_that_validation_missed(tmp_path, monkeypatch):
    options, out = escaping_folder(tmp_path, "../../evil3.jpg")
    monkeypatch.setattr(validation, "file_name_problems", lambda name: [])  # validation misses it
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=r"images/\.\./\.\./evil3\.jpg: refusing to write .*outside the output folder"):
        ingest(options, out, "skip")
    assert snapshot(tmp_path) == before


def test_the_writer_refuses_to_write_over_its_source(tmp_path):
    source = tmp_path / "out/images/a.jpg"
    image(source, "L")
    before = snapshot(tmp_path)
    pixels = np.zeros((24, 32, 3), np.uint8)
    with pytest.raises(DataError, match="images/a.jpg: refusing to write over its own source file"):
        _save_image(Sample("images/a.jpg", source), Sample("images/a.jpg", pixels), True, tmp_path / "out")
    assert snapshot(tmp_path) == before


def test_the_writer_never_replaces_a_file(tmp_path):
    image(tmp_path / "out/images/a.jpg")
    before = snapshot(tmp_path)
    pixels = np.zeros((24, 32, 3), np.uint8)
    with pytest.raises(DataError, match="images/a.jpg: refusing to write .*another record already wrote it"):
        _save_image(Sample("images/a.jpg", pixels), Sample("images/a.jpg", pixels), False, tmp_path / "out")
    assert snapshot(tmp_path) == before


def test_duplicate_file_name_and_duplicate_image_id_are_both_reported(tmp_path):
    src = tmp_path / "data/coco"
    image(src / "a.jpg")
    image(src / "b.jpg", seed=1)
    options = coco(src, [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"},
                         {"id": 1, "file_name": "a.jpg"}])
    out = tmp_path / "data/raw"
    report = ingest(options, out, "skip")
    assert kinds_of(report.bad()) == {("duplicate_file_name", "images/a.jpg"), ("duplicate_image_id", "images/a.jpg")}
    assert "image id 1 appears twice" in next(p.detail for p in report.bad() if p.kind == "duplicate_image_id")
    assert [i["file_name"] for i in load_raw_dataset(out).images] == ["images/a.jpg", "images/b.jpg"]


def test_a_declared_size_that_differs_from_the_image_is_a_bad_record(tmp_path):
    src = tmp_path / "data/coco"
    for name in ("right.jpg", "wrong.jpg", "undeclared.jpg"):
        image(src / name)  # all 32x24
    options = coco(src, [{"file_name": "right.jpg", "width": 32, "height": 24},
                         {"file_name": "wrong.jpg", "width": 64, "height": 24}, {"file_name": "undeclared.jpg"}])
    out = tmp_path / "data/raw"
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=r"first: size_mismatch: images/wrong.jpg: declared 64x24 .* is 32x24"):
        ingest(options, out, "fail")
    assert snapshot(tmp_path) == before
    report = ingest(options, out, "skip")
    assert kinds_of(report.bad()) == {("size_mismatch", "images/wrong.jpg")}
    listed = json.loads((out / "validation.json").read_text())
    assert listed["counts"] == {"size_mismatch": 1}
    assert [(i["file_name"], i["width"]) for i in load_raw_dataset(out).images] == [
        ("images/right.jpg", 32), ("images/undeclared.jpg", 32)]


def test_every_planted_problem_of_the_review_is_reported(tmp_path):
    src = tmp_path / "data/coco"
    image(src / "images/ok.jpg")
    image(src / "images/gray.jpg", "L")
    image(src / "images/sized.jpg")
    image(tmp_path / "data/evil3.jpg", seed=3)
    options = coco(src, [{"id": 1, "file_name": "ok.jpg"}, {"id": 2, "file_name": "../../../evil3.jpg"},
                         {"id": 3, "file_name": "../../coco/images/gray.jpg"}, {"id": 1, "file_name": "ok.jpg"},
                         {"id": 4, "file_name": "sized.jpg", "width": 24, "height": 32}], images_dir="images")
    out = tmp_path / "data/raw"
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=r"^5 problems in 5 records"):
        ingest(options, out, "fail")
    assert snapshot(tmp_path) == before
    ingest(options, out, "skip")
    assert snapshot(tmp_path, leave_out=out) == before
    listed = json.loads((out / "validation.json").read_text())
    assert kinds_of(listed["problems"]) == {
        ("unsafe_file_name", "images/../../../evil3.jpg"), ("unsafe_file_name", "images/../../coco/images/gray.jpg"),
        ("duplicate_file_name", "images/ok.jpg"), ("duplicate_image_id", "images/ok.jpg"),
        ("size_mismatch", "images/sized.jpg")}
    summary = (out / "validation.txt").read_text().splitlines()
    assert summary[0] == "5 records read, 1 written"
    assert "  - unsafe_file_name: images/../../coco/images/gray.jpg: the name has a '.' or '..' part, so it could " \
           "lead a write outside the raw layout or over another file" in summary


def test_a_coco_image_without_a_file_name_is_reported_not_a_crash(tmp_path):
    src = tmp_path / "data/coco"
    image(src / "ok.jpg")
    options = coco(src, [{"file_name": "ok.jpg"}, {"id": 9}])
    report = ingest(options, tmp_path / "data/raw", "skip")
    assert kinds_of(report.bad()) == {("file_name_missing", "images/<image id 9>")}
    assert "image id 9 in" in report.bad()[0].detail and report.num_written == 1


def voc(root: Path, records: list[tuple[str, str]]) -> dict:
    """A VOC root with one annotation per (file name, <size> XML or "")."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    for i, (name, size) in enumerate(records):
        box = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
        (root / f"Annotations/{i:06d}.xml").write_text(
            f"<annotation><filename>{name}</filename>{size}<object><name>dog</name>{box}</object></annotation>")
    return {"path": str(root)}


def test_voc_unsafe_name_and_size_mismatch_are_reported(tmp_path):
    root = tmp_path / "data/voc"
    image(root / "JPEGImages/ok.jpg")
    image(root / "JPEGImages/sized.jpg")
    image(tmp_path / "data/evil3.jpg", seed=3)
    size = "<size><width>{}</width><height>24</height><depth>3</depth></size>"
    options = voc(root, [("ok.jpg", size.format(32)), ("sized.jpg", size.format(40)), ("../../evil3.jpg", "")])
    out = tmp_path / "data/raw"
    before = snapshot(tmp_path)
    report = write_raw_dataset(build_source("voc", options), out, on_error="skip", progress=False)
    assert snapshot(tmp_path, leave_out=out) == before
    assert kinds_of(report.bad()) == {("size_mismatch", "images/sized.jpg"),
                                      ("unsafe_file_name", "images/../../evil3.jpg")}
    assert [i["file_name"] for i in load_raw_dataset(out).images] == ["images/ok.jpg"]


def test_image_folder_backslash_name_is_reported(tmp_path):
    image(tmp_path / "flowers/roses/ok.jpg")
    image(tmp_path / "flowers/roses/..\\..\\evil.jpg")  # one file on POSIX; a way out on Windows
    out = tmp_path / "raw"
    report = write_raw_dataset(build_source("image_folder", {"path": str(tmp_path / "flowers")}), out,
                               on_error="skip", progress=False)
    assert kinds_of(report.bad()) == {("unsafe_file_name", "images/roses/..\\..\\evil.jpg")}
    assert [i["file_name"] for i in load_raw_dataset(out).images] == ["images/roses/ok.jpg"]


def test_a_source_inside_the_output_folder_is_refused(tmp_path):
    src = tmp_path / "coco"
    image(src / "a.jpg")
    ingest(coco(src, [{"file_name": "a.jpg"}]), tmp_path / "raw", "skip")
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=r"raw/images/a.jpg: this source file lies inside the output folder"):
        ingest({"path": str(tmp_path / "raw")}, tmp_path / "raw", "skip")  # re-ingesting raw would delete it
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name, unsafe", [
    ("images/a.jpg", False), ("images/roses/a b.jpg", False), ("images/ä.jpg", False), ("images/..a.jpg", False),
    ("images/a..jpg", False), ("images/.hidden.jpg", False),
    ("", True), ("/", True), ("/etc/passwd", True), ("images//etc/passwd", True), ("images/", True),
    ("images/../a.jpg", True), ("images/./a.jpg", True), ("..", True), ("images\\a.jpg", True),
    ("C:/a.jpg", True), ("c:a.jpg", True), ("images/a\x00.jpg", True), ("images/a\n.jpg", True),
])
def test_file_name_check(name, unsafe):
    problems = file_name_problems(name)
    assert [p.kind for p in problems] == (["unsafe_file_name"] if unsafe else [])
    assert all(p.record == name and "\n" not in p.line() for p in problems)


def test_a_problem_is_always_one_line():
    report = ValidationReport(2, 1, [Problem("unsafe_file_name", "images/a\nb.jpg", "bad\rname")])
    assert report.summary().splitlines()[-1] == "  - unsafe_file_name: images/a\\nb.jpg: bad\\rname"
