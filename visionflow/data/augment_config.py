"""The ranges and probabilities of training augmentation (``train.<family>.augment`` in ``params.yaml``).

No TensorFlow here: the config checker loads this module. :mod:`visionflow.data.augment`
does the work. The defaults are the augmentation the localizer has always trained with:
each image is flipped with probability 1/2, then a random crop that keeps every box
whole (1/3), a zoom-out by up to 1.3 (1/3) or neither, then colour jitter; and then,
each with its own chance, the corruptions of a camera and its file: a Gaussian blur
(0.2), Gaussian noise (0.3) and JPEG re-encoding (0.3).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

Probability = Annotated[float, Field(ge=0, le=1)]
AreaFraction = Annotated[float, Field(gt=0, le=1)]
AspectRatio = Annotated[float, Field(ge=0.05, le=20)]
Gain = Annotated[float, Field(ge=0, le=4)]
BlurSigma = Annotated[float, Field(ge=0, le=8)]  # pixels; the blur's kernel reaches 3 x the largest
NoiseStd = Annotated[float, Field(ge=0, le=128)]  # in 0..255 units
JpegQuality = Annotated[float, Field(ge=1, le=100)]  # libjpeg's scale (an integer there: rounded)


class AugmentConfig(BaseModel):
    """Ranges are ``[low, high]``; a crop's aspect ratio is its width over its height, in pixels.

    ``crop_scale`` and ``crop_aspect`` bound the crop window; ``None`` leaves it unbounded
    (the defaults: a box-keeping crop as the localizer always had, each edge uniform
    between the boxes and the image's edge). A box-keeping crop (``keep_boxes_whole``)
    meets the bounds where its boxes allow, and is that unbounded crop where they do not.
    Without ``keep_boxes_whole``, a crop lies anywhere in the image; a box it cuts is
    clipped to it, and dropped (with its label) once less than ``min_visible`` of its
    area remains in view.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True  # false: train on the images as they are
    flip: Probability = 0.5  # horizontal
    crop: Probability = 1 / 3  # a crop and a zoom-out exclude each other: crop + zoom_out <= 1
    crop_scale: tuple[AreaFraction, AreaFraction] | None = None  # the window's share of the image's area
    crop_aspect: tuple[AspectRatio, AspectRatio] | None = None
    keep_boxes_whole: bool = True
    min_visible: Probability = 0.25
    zoom_out: Probability = 1 / 3  # shrink the image onto a gray canvas (scale jitter)
    zoom_out_max: float = Field(1.3, ge=1, le=4)  # the canvas's side over the image's, at most
    brightness: float = Field(25.0, ge=0, le=255)  # added, +-
    contrast: tuple[Gain, Gain] = (0.75, 1.25)
    saturation: tuple[Gain, Gain] = (0.75, 1.25)
    blur: Probability = 0.2  # a Gaussian blur...
    blur_sigma: tuple[BlurSigma, BlurSigma] = (0.3, 1.5)  # ...of a sigma (pixels) uniform in this range
    noise: Probability = 0.3  # Gaussian noise...
    noise_std: tuple[NoiseStd, NoiseStd] = (2.0, 20.0)  # ...of a sigma (0..255) uniform in this range
    jpeg: Probability = 0.3  # a JPEG round trip...
    jpeg_quality: tuple[JpegQuality, JpegQuality] = (30.0, 95.0)  # ...at a quality uniform in this range

    @model_validator(mode="after")
    def _consistent(self) -> "AugmentConfig":
        for name in ("crop_scale", "crop_aspect", "contrast", "saturation", "blur_sigma", "noise_std", "jpeg_quality"):
            pair = getattr(self, name)
            if pair is not None and pair[0] > pair[1]:
                raise ValueError(f"{name}: low {pair[0]:g} is above high {pair[1]:g}")
        if self.crop + self.zoom_out > 1 + 1e-9:
            raise ValueError(f"crop + zoom_out is the chance of either, at most 1; got {self.crop + self.zoom_out:g}")
        return self

    @property
    def jitters_colour(self) -> bool:
        return self.enabled and (self.brightness > 0 or self.contrast != (1.0, 1.0) or self.saturation != (1.0, 1.0))

    @property
    def blurs(self) -> bool:
        return self.enabled and self.blur > 0 and self.blur_sigma[1] > 0

    @property
    def adds_noise(self) -> bool:
        return self.enabled and self.noise > 0 and self.noise_std[1] > 0

    @property
    def compresses(self) -> bool:
        return self.enabled and self.jpeg > 0

    @property
    def moves_pixels(self) -> bool:
        return self.enabled and (self.flip > 0 or self.crop > 0 or (self.zoom_out > 0 and self.zoom_out_max > 1))
