"""The classifier's section of ``params.yaml`` (``train.classifier``). No TensorFlow here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from visionflow.config import PhaseConfig, TrainConfig


class ClassifierConfig(TrainConfig):
    pooling: Literal["avg", "max"] = "avg"  # Géron's head: global average pooling, then softmax
    top_k: int = Field(3, ge=1)  # the top-k accuracy reported, and how many classes predict lists
    # Shorter than the localizer's: one label per image is learned in fewer epochs than a box.
    finetune: PhaseConfig = PhaseConfig(epochs=4, learning_rate=0.001, warmup_epochs=1, schedule="cosine")
