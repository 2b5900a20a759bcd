"""Every source, ingested for real into the raw COCO layout from data the test creates."""

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionflow.config import ConfigError, parse_config
from visionflow.data.coco_layout import load_raw_dataset, write_raw_dataset
from visionflow.data.sources import build_source
from visionflow.data.tfds_source import tfds_box_to_coco
from visionflow.errors import DataError


def save_jpeg(path: Path, w: int, h: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def tree_digest(root: Path) -> str:
    digest = hashlib.md5()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return digest.hexdigest()


def ingest(name: str, options: dict, out: Path):
    write_raw_dataset(build_source(name, options), out, progress=False)
    return load_raw_dataset(out)


def test_coco_folder(tmp_path):
    src = tmp_path / "coco"
    save_jpeg(src / "a.jpg", 40, 30)
    save_jpeg(src / "b.jpg", 20, 20, 1)
    (src / "annotations.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.jpg"}, {"id": 9, "file_name": "b.jpg"}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "ant"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2, 10, 5], "iscrowd": 0},
                        {"id": 2, "image_id": 9, "category_id": 1, "bbox": [0, 0, 4, 4], "iscrowd": 1}]}))
    before = tree_digest(src)
    raw = ingest("coco", {"path": str(src)}, tmp_path / "raw")
    assert tree_digest(src) == before  # the user's files are never modified
    assert raw.category_names == ["ant", "cat"]
    assert [(i["width"], i["height"]) for i in raw.images] == [(40, 30), (20, 20)]
    anns = [a for img in raw.images for a in raw.annotations_by_image[img["id"]]]
    assert [a["bbox"] for a in anns] == [[1, 2, 10, 5], [0, 0, 4, 4]]
    assert [a["iscrowd"] for a in anns] == [0, 1]


def voc_xml(file_name: str, objects: list[tuple]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for n, d, x1, y1, x2, y2 in objects)
    return f"<annotation><filename>{file_name}</filename>{objs}</annotation>"


def test_voc_folder_keeps_difficult_and_converts_inclusive_corners(tmp_path):
    root = tmp_path / "VOC2007"
    (root / "Annotations").mkdir(parents=True)
    save_jpeg(root / "JPEGImages/000001.jpg", 50, 40)
    save_jpeg(root / "JPEGImages/000002.jpg", 50, 40, 1)
    (root / "Annotations/000001.xml").write_text(voc_xml("000001.jpg", [("dog", 0, 1, 1, 10, 20), ("cat", 1, 5, 6, 7, 8)]))
    (root / "Annotations/000002.xml").write_text(voc_xml("000002.jpg", [("dog", 0, 11, 11, 30, 30)]))
    (root / "ImageSets/Main").mkdir(parents=True)
    (root / "ImageSets/Main/train.txt").write_text("000002\n")
    raw = ingest("voc", {"path": str(root)}, tmp_path / "raw")
    assert raw.category_names == ["cat", "dog"]
    first = raw.annotations_by_image[raw.images[0]["id"]]
    assert first[0]["bbox"] == [0.0, 0.0, 10.0, 20.0]  # pixels 1..10 inclusive: 10 wide
    assert first[1].get("difficult") == 1 and "difficult" not in first[0]
    only_train = ingest("voc", {"path": str(root), "image_set": "train"}, tmp_path / "raw2")
    assert [i["file_name"] for i in only_train.images] == ["images/000002.jpg"]


def test_voc_bad_xml_names_the_file(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations/broken.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match="broken.xml: not a valid VOC annotation"):
        build_source("voc", {"path": str(tmp_path)})


def test_image_folder_gives_labels_only(tmp_path):
    for cls, n in (("roses", 2), ("daisy", 3)):
        for i in range(n):
            save_jpeg(tmp_path / "flowers" / cls / f"{i}.jpg", 16, 12, i)
    (tmp_path / "flowers/daisy/notes.txt").write_text("not an image")
    raw = ingest("image_folder", {"path": str(tmp_path / "flowers")}, tmp_path / "raw")
    assert raw.category_names == ["daisy", "roses"]
    assert len(raw.images) == 5
    anns = [a for img in raw.images for a in raw.annotations_by_image[img["id"]]]
    assert all("bbox" not in a for a in anns)
    assert sorted(raw.primary_label(i["id"]) for i in raw.images) == [0, 0, 0, 1, 1]


def test_tfds_box_conversion_by_hand():
    assert tfds_box_to_coco(np.array([0.1, 0.2, 0.5, 0.6]), width=200, height=100) == pytest.approx((40, 10, 80, 40))


def test_tfds_classification_under_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        raw = ingest("tfds", {"name": "tf_flowers", "split": "train", "download": False}, tmp_path / "raw")
    assert raw.category_names == ["dandelion", "daisy", "tulips", "sunflowers", "roses"]
    assert len(raw.images) == 6
    assert all(len(raw.annotations_by_image[i["id"]]) == 1 for i in raw.images)


def test_tfds_detection_under_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=3):
        raw = ingest("tfds", {"name": "voc/2007", "split": "train", "download": False}, tmp_path / "raw")
    assert raw.category_names[:3] == ["aeroplane", "bicycle", "bird"]
    anns = [a for img in raw.images for a in raw.annotations_by_image[img["id"]]]
    assert anns and all(len(a["bbox"]) == 4 and a["bbox"][2] >= 0 and a["bbox"][3] >= 0 for a in anns)
    for img in raw.images:
        for a in raw.annotations_by_image[img["id"]]:
            x, y, w, h = a["bbox"]
            assert x + w <= img["width"] + 1e-6 and y + h <= img["height"] + 1e-6


def test_missing_source_path_is_a_config_error():
    with pytest.raises(ConfigError, match="ingest.voc.path: .*has no Annotations"):
        parse_config({"ingest": {"source": "voc", "voc": {"path": "/no/such/voc"}}})
    with pytest.raises(ConfigError, match="ingest.image_folder.path: /nowhere is not an existing folder"):
        parse_config({"ingest": {"source": "image_folder", "image_folder": {"path": "/nowhere"}}})


def test_a_plugin_source_registers_through_an_entry_point(tmp_path):
    site = tmp_path / "site"
    (site / "vf_plugin").mkdir(parents=True)
    (site / "vf_plugin/__init__.py").write_text(textwrap.dedent('''
        from pydantic import BaseModel
        import numpy as np
        from visionflow.data.sources import Sample, SourceObject

        class Checkerboard:
            class Options(BaseModel):
                count: int = 2
            def __init__(self, options):
                self.options = options
            def categories(self):
                return ["board"]
            def __len__(self):
                return self.options.count
            def samples(self):
                for i in range(self.options.count):
                    img = (np.indices((8, 8)).sum(0) % 2 * 255).astype("uint8")[..., None].repeat(3, -1)
                    yield Sample(f"images/{i}.jpg", img, [SourceObject("board", (0, 0, 8, 8))])
    '''))
    dist = site / "vf_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vf-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[visionflow.sources]\ncheckerboard = vf_plugin:Checkerboard\n")
    script = textwrap.dedent(f'''
        from visionflow.config import parse_config
        from visionflow.data.sources import build_source
        from visionflow.data.coco_layout import write_raw_dataset
        cfg = parse_config({{"ingest": {{"source": "checkerboard", "checkerboard": {{"count": 3}}}}}})
        print(write_raw_dataset(build_source("checkerboard", cfg.ingest.source_options()), {str(tmp_path / "raw")!r},
                                progress=False))
    ''')
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "num_written=3" in proc.stdout
    assert len(load_raw_dataset(tmp_path / "raw").images) == 3
