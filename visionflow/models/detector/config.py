"""The detector's section of ``params.yaml`` (``train.detector``). No TensorFlow here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from visionflow.config import PhaseConfig, Section, TrainConfig
from visionflow.data.augment_config import AugmentConfig

Share = Annotated[float, Field(gt=0, le=1)]


class DetectorNms(Section):
    """The saved model's decoding: score threshold and top-k per class first, then one class-aware NMS."""

    iou_threshold: Share = 0.6  # Géron's
    score_threshold: float = Field(0.001, ge=0, lt=1)  # low, so that mAP sees the whole PR curve
    pre_nms_top_k: int = Field(200, ge=1)  # the best candidates of each class that go into NMS
    max_per_class: int = Field(100, ge=1)
    max_detections: int = Field(100, ge=1)  # per image (COCO scores at most 100)


class DetectorLossWeights(Section):
    box: float = Field(1.0, ge=0)  # 1 - CIoU over the assigned predictions
    objectness: float = Field(1.0, ge=0)  # binary cross-entropy over every cell and anchor
    class_: float = Field(0.5, ge=0, alias="class")  # cross-entropy over the assigned predictions


class DetectorConfig(TrainConfig):
    dataset: str = "scenes"
    # 1 - 8 objects an image: longer than the one-object families, and boxes need the fine-tuning.
    frozen: PhaseConfig = PhaseConfig(epochs=3, learning_rate=0.003)
    finetune: PhaseConfig = PhaseConfig(epochs=40, learning_rate=0.001, warmup_epochs=1, schedule="cosine")
    augment: AugmentConfig = AugmentConfig(keep_boxes_whole=False)  # crops may cut boxes: many objects an image
    neck_channels: int = Field(64, ge=8)  # the feature pyramid's width at every stride
    anchors_per_scale: int = Field(3, ge=1)  # the dataset's k-means anchors, smallest to the 1/8 map
    match_threshold: Share = 0.25  # an anchor takes a box when their shapes' IoU reaches this (the best always does)
    ignore_threshold: Share = 0.5  # no objectness loss where a prediction already overlaps a box this much
    objectness_balance: tuple[float, float, float] = (4.0, 1.0, 0.4)  # per stride 8, 16, 32 (YOLOv5's)
    objectness_target: Literal["one", "iou"] = "iou"  # a positive's: 1 (YOLOv3) or its box's IoU (YOLOv5)
    loss_weights: DetectorLossWeights = DetectorLossWeights()
    input_sizes: tuple[int, ...] = (96, 128, 160)  # multi-scale training: a size drawn from these (empty: the data's)...
    size_every: int = Field(10, ge=1)  # ...every this many batches
    max_boxes: int = Field(32, ge=1)  # boxes per image the loss sees; the rest are dropped
    nms: DetectorNms = DetectorNms()

    @field_validator("input_sizes")
    @classmethod
    def _sizes_divide_by_32(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        bad = [size for size in sizes if size % 32 or size < 32]
        if bad:
            raise ValueError(f"each must be a multiple of 32 (the coarsest map's stride), got {bad}")
        return sizes

    def data_problem(self, data, min_size: int) -> tuple[str, str] | None:
        """Sizes the backbone takes, around the dataset's own; as many anchors as the heads have."""
        needed = 3 * self.anchors_per_scale
        if data.anchors.num_anchors != needed:
            return ("anchors_per_scale", f"3 strides x {self.anchors_per_scale} anchors need {needed}, but dataset "
                    f"{data.name} makes {data.anchors.num_anchors} (datasets.{data.name}.anchors.num_anchors)")
        if self.input_sizes and min(self.input_sizes) < min_size:
            return "input_sizes", f"the backbone needs at least {min_size} px, got {min(self.input_sizes)}"
        size = data.preprocess.image_size
        if self.input_sizes and not min(self.input_sizes) <= size <= max(self.input_sizes):
            return ("input_sizes", f"must reach from below to above dataset {data.name}'s image_size {size} "
                    f"(it is evaluated and served there), got {list(self.input_sizes)}")
        return None
