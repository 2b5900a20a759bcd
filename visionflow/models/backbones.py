"""Backbones by name: ``keras.applications`` models with their own ``preprocess_input``.

A :class:`BackboneSpec` builds the headless model and knows its preprocessing, so
the pipeline and the model can never disagree on it. Other packages add backbones
through the ``visionflow.backbones`` entry-point group.

Importing this module imports neither Keras nor TensorFlow: the config check reads
names and ``min_size`` from the registry, and only building a model needs Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Callable

from visionflow.registry import Registry, load_object

if TYPE_CHECKING:
    import keras

STRIDES = (8, 16, 32)  # the feature maps a backbone offers: its last maps at 1/8, 1/16 and 1/32


@dataclass(frozen=True)
class BackboneSpec:
    """``constructor`` is ``module:attr`` of a ``keras.applications``-style model builder.

    A feature map is named by a layer's name, for its output, or "name:input" for that
    layer's input (when the map comes from an unnamed layer such as an ``Add``). The
    map at 1/32 is always the backbone's output.
    """

    constructor: str
    preprocess_module: str  # a module whose ``preprocess_input`` this backbone expects
    # The last map at 1/16 of the input resolution, for finer heads. Nothing after it may
    # read anything before it, so the backbone splits there (see :meth:`split`).
    stride16_layer: str
    min_size: int = 32
    takes_width: bool = False  # whether ``alpha`` (width multiplier) is accepted
    stride8_layer: str | None = None  # the last map at 1/8, for detection heads; None: not offered
    imagenet_weights: bool = True  # whether ``weights="imagenet"`` can be downloaded for it

    def build(self, image_size: int | None, weights: str | None = None, width: float = 1.0) -> keras.Model:
        """The headless backbone (features, no pooling) for square ``image_size`` inputs.

        ``image_size=None`` leaves height and width open, so a fully convolutional head can
        run at any size; its weights are the same as those of a fixed-size build.
        """
        kwargs = {"input_shape": (image_size, image_size, 3), "include_top": False, "weights": weights}
        if self.takes_width:
            kwargs["alpha"] = width
        elif width != 1.0:
            raise ValueError(f"{self.constructor} has no width multiplier; set backbone.width to 1.0")
        return load_object(self.constructor)(**kwargs)

    @property
    def strides(self) -> tuple[int, ...]:
        """The strides whose maps :meth:`feature_maps` can return."""
        return STRIDES if self.stride8_layer else STRIDES[1:]

    def feature_map(self, backbone: keras.Model, stride: int) -> keras.KerasTensor:
        """The KerasTensor of ``backbone``'s last map at 1/``stride``."""
        if stride == 32:
            return backbone.output
        where = {8: self.stride8_layer, 16: self.stride16_layer}.get(stride)
        if where is None:
            raise ValueError(f"{self.constructor} names no map at stride {stride}; it has {self.strides}")
        name, _, which = where.partition(":")
        layer = backbone.get_layer(name)
        return layer.input if which == "input" else layer.output

    def feature_maps(self, backbone: keras.Model, strides: tuple[int, ...] = STRIDES) -> dict[int, keras.KerasTensor]:
        """``{stride: KerasTensor}`` of ``backbone``'s maps at 1/8, 1/16 and 1/32 (by default)."""
        return {stride: self.feature_map(backbone, stride) for stride in strides}

    def feature_model(self, backbone: keras.Model, strides: tuple[int, ...] = STRIDES) -> keras.Model:
        """image -> ``{stride: map}``, sharing ``backbone``'s layers and weights."""
        import keras

        return keras.Model(backbone.input, self.feature_maps(backbone, strides), name=f"{backbone.name}_features")

    def stride16_map(self, backbone: keras.Model) -> keras.KerasTensor:
        """The KerasTensor of ``backbone``'s 1/16 map."""
        return self.feature_map(backbone, 16)

    def split(self, backbone: keras.Model) -> tuple[keras.Model, keras.Model]:
        """``(trunk, top)``: image -> 1/16 map, and 1/16 map -> the backbone's output, sharing its layers."""
        import keras

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

# Each map is the last one before a stride-2 step: the input of the block that strides.
BACKBONES.add("xception", BackboneSpec("keras.applications:Xception", "keras.applications.xception",
                                       "block13_sepconv1_act:input", min_size=71,
                                       stride8_layer="block4_sepconv1_act:input"))
BACKBONES.add("resnet50", BackboneSpec("keras.applications:ResNet50", "keras.applications.resnet50",
                                       "conv4_block6_out", stride8_layer="conv3_block4_out"))
# ResNet V2 strides in the last block of a stage, so each stage's last map is one block earlier.
BACKBONES.add("resnet50_v2", BackboneSpec("keras.applications:ResNet50V2", "keras.applications.resnet_v2",
                                          "conv4_block5_out", stride8_layer="conv3_block3_out"))
BACKBONES.add("mobilenet_v2", BackboneSpec("keras.applications:MobileNetV2", "keras.applications.mobilenet_v2",
                                           "block_13_expand_relu", takes_width=True,
                                           stride8_layer="block_6_expand_relu"))
BACKBONES.add("efficientnet_b0", BackboneSpec("keras.applications:EfficientNetB0", "keras.applications.efficientnet",
                                              "block6a_expand_activation", stride8_layer="block4a_expand_activation"))
# Géron's ResNet-34 (chapter 14), with no pretrained weights; each map is a stage's last unit.
BACKBONES.add("resnet34", BackboneSpec("visionflow.models.resnet:ResNet34", "visionflow.models.resnet",
                                       "stage3_unit6", stride8_layer="stage2_unit4", imagenet_weights=False))
BACKBONES.add("se_resnet34", BackboneSpec("visionflow.models.resnet:SEResNet34", "visionflow.models.resnet",
                                          "stage3_unit6", stride8_layer="stage2_unit4", imagenet_weights=False))
