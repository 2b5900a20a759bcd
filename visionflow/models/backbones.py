"""Backbones by name: ``keras.applications`` models with their own ``preprocess_input``.

A :class:`BackboneSpec` builds the headless model and knows its preprocessing, so
the pipeline and the model can never disagree on it. Other packages add backbones
through the ``visionflow.backbones`` entry-point group.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Callable

import keras

from visionflow.registry import Registry


@dataclass(frozen=True)
class BackboneSpec:
    """``constructor`` is ``module:attr`` of a ``keras.applications``-style model builder."""

    constructor: str
    preprocess_module: str  # a module whose ``preprocess_input`` this backbone expects
    # The last map at 1/16 of the input resolution, for finer heads: a layer's name, for its
    # output, or "name:input" for that layer's input. Nothing after it may read anything
    # before it, so the backbone splits there (see :meth:`split`).
    stride16_layer: str
    min_size: int = 32
    takes_width: bool = False  # whether ``alpha`` (width multiplier) is accepted

    def _resolve(self, dotted: str):
        module, _, attr = dotted.partition(":")
        return getattr(import_module(module), attr)

    def build(self, image_size: int, weights: str | None = None, width: float = 1.0):
        """The headless backbone for square ``image_size`` inputs (features, no pooling)."""
        kwargs = {"input_shape": (image_size, image_size, 3), "include_top": False, "weights": weights}
        if self.takes_width:
            kwargs["alpha"] = width
        elif width != 1.0:
            raise ValueError(f"{self.constructor} has no width multiplier; set backbone.width to 1.0")
        return self._resolve(self.constructor)(**kwargs)

    def stride16_map(self, backbone):
        """The KerasTensor of ``backbone``'s 1/16 map."""
        name, _, which = self.stride16_layer.partition(":")
        layer = backbone.get_layer(name)
        return layer.input if which == "input" else layer.output

    def split(self, backbone):
        """``(trunk, top)``: image -> 1/16 map, and 1/16 map -> the backbone's output, sharing its layers."""
        fine = self.stride16_map(backbone)
        trunk = keras.Model(backbone.input, fine, name=f"{backbone.name}_to_16")
        try:
            top = keras.Model(fine, backbone.output, name=f"{backbone.name}_16_to_32")
        except ValueError as e:
            raise ValueError(f"{self.constructor}: layers after {self.stride16_layer!r} also read earlier maps, "
                             f"so the backbone cannot split there ({e})") from None
        return trunk, top

    @property
    def preprocess_input(self) -> Callable:
        return import_module(self.preprocess_module).preprocess_input


BACKBONES: Registry[BackboneSpec] = Registry("backbones")

BACKBONES.add("xception", BackboneSpec("keras.applications:Xception", "keras.applications.xception",
                                       "block13_sepconv1_act:input", min_size=71))
BACKBONES.add("resnet50", BackboneSpec("keras.applications:ResNet50", "keras.applications.resnet50",
                                       "conv4_block6_out"))
BACKBONES.add("resnet50_v2", BackboneSpec("keras.applications:ResNet50V2", "keras.applications.resnet_v2",
                                          "conv4_block5_out"))
BACKBONES.add("mobilenet_v2", BackboneSpec("keras.applications:MobileNetV2", "keras.applications.mobilenet_v2",
                                           "block_13_expand_relu", takes_width=True))
BACKBONES.add("efficientnet_b0", BackboneSpec("keras.applications:EfficientNetB0", "keras.applications.efficientnet",
                                              "block6a_expand_activation"))
