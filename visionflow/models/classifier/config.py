"""The classifier's section of ``params.yaml`` (``train.classifier``). No TensorFlow here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from visionflow.config import PhaseConfig, TrainConfig


class ClassifierConfig(TrainConfig):
    # avg: Géron's head, global average pooling then softmax; max16: the maxima of the 1/16 and 1/32 maps,
    # concatenated (a small object is a cell or two of the 1/16 map: val accuracy 0.90 against 0.86 for max at 2+12)
    pooling: Literal["avg", "max", "max16"] = "max16"
    top_k: int = Field(3, ge=1)  # the top-k accuracy reported, and how many classes predict lists
    # The frozen features of the offline backbone do not separate whole images (a linear probe: 0.38 of them,
    # 0.86 of crops), so the fine-tune does the work: val accuracy 0.73, 0.86, 0.905 after 4, 12, 20 epochs (max).
    finetune: PhaseConfig = PhaseConfig(epochs=20, learning_rate=0.001, warmup_epochs=1, schedule="cosine")
