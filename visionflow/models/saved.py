"""Loading a saved ``.keras`` model: the project's own serialisable layers registered first.

A saved model holds visionflow layers where Keras has none (the chapter's residual
units, the detector's decoder with NMS); Keras finds them only once their modules have
registered them. A plug-in family registers its own when its module is imported.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

SERIALIZABLE_MODULES = ("visionflow.models.resnet", "visionflow.models.detector.decode")


def load_saved_model(path: str | Path):
    import keras

    for module in SERIALIZABLE_MODULES:
        import_module(module)
    return keras.saving.load_model(path)
