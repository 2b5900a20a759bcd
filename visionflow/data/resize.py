"""Fit an image to the model's square input: stretch it, or letterbox it (keep the aspect ratio, pad with gray).

The ``window`` is the part of the model input that holds the image, as normalised
xyxy (x_min, y_min, x_max, y_max divided by the input side): (0, 0, 1, 1) when
stretched. A box normalised to the original image moves into the model input with
:func:`boxes_to_window`, and a box predicted in the model input moves back with
:func:`boxes_from_window`. Plain numpy and PIL; no TensorFlow.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESIZE_MODES = ("stretch", "letterbox")
PAD_VALUE = 128  # gray, the middle of 0..255: near zero once a backbone centres its inputs
FULL_WINDOW = (0.0, 0.0, 1.0, 1.0)


def check_resize_mode(mode: str) -> None:
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; valid: {', '.join(RESIZE_MODES)}")


def letterbox_placement(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """Pixel ``(x0, y0, w, h)`` of a ``width`` x ``height`` image scaled so its longer side is
    ``size`` and centred on a ``size`` square (the offsets round down)."""
    scale = size / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return (size - w) // 2, (size - h) // 2, w, h


def letterbox_window(width: int, height: int, size: int) -> np.ndarray:
    """(4,) normalised xyxy window that a letterboxed ``width`` x ``height`` image fills in a ``size`` square.

    Computed from the whole-pixel placement, so it matches the pixels exactly:
    a 200x100 image at 64 px gives (0, 0.25, 1, 0.75).
    """
    x0, y0, w, h = letterbox_placement(width, height, size)
    return np.array([x0, y0, x0 + w, y0 + h], np.float64) / size


def resize_image(image: Image.Image, size: int, mode: str = "stretch") -> tuple[Image.Image, np.ndarray]:
    """The ``size`` x ``size`` model input (bilinear) and its (4,) normalised xyxy window.

    ``stretch`` scales each side to ``size`` (window (0, 0, 1, 1)); ``letterbox``
    scales the longer side to ``size``, keeps the aspect ratio and centres the
    image on a gray (``PAD_VALUE``) canvas.
    """
    check_resize_mode(mode)
    if mode == "stretch":
        return image.resize((size, size), Image.Resampling.BILINEAR), np.array(FULL_WINDOW)
    x0, y0, w, h = letterbox_placement(*image.size, size)
    canvas = Image.new(image.mode, (size, size), (PAD_VALUE,) * len(image.getbands()))
    canvas.paste(image.resize((w, h), Image.Resampling.BILINEAR), (x0, y0))
    return canvas, letterbox_window(*image.size, size)


def _scale_and_offset(window) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = np.asarray(window, np.float64)
    return np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0]), np.array([x0, y0, x0, y0])


def boxes_to_window(boxes_xyxy_norm, window) -> np.ndarray:
    """Boxes normalised xyxy to the original image (..., 4) -> normalised xyxy in the model input (..., 4).

    ``window`` is the (4,) normalised xyxy region of the model input that holds the image.
    """
    scale, offset = _scale_and_offset(window)
    return np.asarray(boxes_xyxy_norm, np.float64) * scale + offset


def boxes_from_window(boxes_xyxy_norm, window) -> np.ndarray:
    """Boxes normalised xyxy in the model input (..., 4) -> normalised xyxy to the original image (..., 4).

    Undoes :func:`boxes_to_window`, e.g. to place a letterboxed model's predictions on the
    original image. Parts of a box over the padding fall outside 0..1; clip if needed.
    """
    scale, offset = _scale_and_offset(window)
    return (np.asarray(boxes_xyxy_norm, np.float64) - offset) / scale
