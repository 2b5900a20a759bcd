"""The localizer's section of ``params.yaml`` (``train.localizer``) and its head registries.

No TensorFlow here: the config checker reads it. Heads are registered by name as
``"module:function"`` and loaded only when a model is built.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, field_validator, model_validator

from visionflow.config import PhaseConfig, Section, TrainConfig
from visionflow.registry import Registry, RegistryError

_HEADS = "visionflow.models.localizer.heads"
CLASS_HEADS: Registry = Registry("class_heads", lazy={
    "avg": f"{_HEADS}:avg_class_head", "max": f"{_HEADS}:max_class_head",
    "attention": f"{_HEADS}:attention_class_head"})
BOX_HEADS: Registry = Registry("box_heads", lazy={
    "pooled": f"{_HEADS}:pooled_box_head", "flatten": f"{_HEADS}:flatten_box_head",
    "attention": f"{_HEADS}:attention_box_head"})
BOX_HEADS_WITHOUT_WHERE = ("pooled", "flatten")  # built-in box heads that do not say where the object is


class LossWeights(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    class_: float = Field(0.8, ge=0, alias="class")
    box: float = Field(0.2, ge=0)


class LocalizerConfig(TrainConfig):
    # photographs and textures among the shapes: unseen images (benchmarks/unseen_shapes.py) need them, and the
    # 18 more epochs they take (README: "Data the model has not seen")
    dataset: str = "shapes_mixed"
    finetune: PhaseConfig = PhaseConfig(epochs=40, learning_rate=0.001, warmup_epochs=2, schedule="cosine")
    class_head: str = "attention"  # avg (Géron) | max | attention (read where the box head looks)
    box_head: str = "attention"  # pooled (Géron) | flatten | attention (soft argmax over the 1/16 map)
    # the share of the class loss's gradient that reaches the backbone layers the box head reads too
    # (those up to the 1/16 map; 1: plain multi-task training)
    class_gradient: float = Field(0.003, ge=0, le=1)
    flip_average: bool = True  # the saved model averages its predictions on the image and its mirror
    loss_weights: LossWeights = LossWeights()

    @field_validator("class_head")
    @classmethod
    def _known_class_head(cls, name: str) -> str:
        return _check(CLASS_HEADS, name)

    @field_validator("box_head")
    @classmethod
    def _known_box_head(cls, name: str) -> str:
        return _check(BOX_HEADS, name)

    @model_validator(mode="after")
    def _attention_reads_where(self) -> "LocalizerConfig":
        if self.class_head == "attention" and self.box_head in BOX_HEADS_WITHOUT_WHERE:
            raise ValueError(f"class_head attention needs a box head that says where to look, not {self.box_head}")
        return self

    @model_validator(mode="after")
    def _the_object_stays_in_view(self) -> "LocalizerConfig":
        if not self.augment.keep_boxes_whole:  # a crop could drop the one object, leaving nothing to learn
            raise ValueError("augment.keep_boxes_whole must be true: the localizer learns one object per image")
        return self


def _check(registry: Registry, name: str) -> str:
    try:
        registry.check(name)
    except RegistryError as e:
        raise ValueError(str(e)) from None
    return name
