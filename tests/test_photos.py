"""The photographs for backgrounds: exported from scikit-image by name, read back from their folder."""

import numpy as np
import pytest
import skimage.data

from visionflow.data.photos import SKIMAGE_PHOTOS, export_photos, load_photos, skimage_photo
from visionflow.errors import DataError


def test_every_listed_photograph_ships_with_scikit_image_and_reads_as_rgb():
    for name in SKIMAGE_PHOTOS:
        image = skimage_photo(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 128


def test_exported_photographs_read_back_unchanged_in_name_order(tmp_path):
    files = export_photos(["moon", "astronaut"], tmp_path)
    assert [f.name for f in files] == ["moon.png", "astronaut.png"]
    astronaut, moon = load_photos(tmp_path)  # sorted by file name
    np.testing.assert_array_equal(astronaut, skimage.data.astronaut())
    np.testing.assert_array_equal(moon[..., 0], skimage.data.moon())
    assert (tmp_path / "moon.png").read_bytes() == export_photos(["moon"], tmp_path / "again")[0].read_bytes()


def test_an_unknown_name_or_an_empty_folder_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="'lena' is not one of the photographs"):
        skimage_photo("lena")
    with pytest.raises(DataError, match=r"^robustness.photo_dir: no photographs in .* dvc repro photos\)$"):
        load_photos(tmp_path, "robustness.photo_dir")
