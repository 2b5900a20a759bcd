"""Each model family's config model (its ``train.<family>`` section), found without loading its model code.

The config checker reads only these, so checking ``params.yaml`` imports no Keras. A
plug-in family, registered once in the ``visionflow.families`` entry-point group (which
:data:`visionflow.models.family.FAMILIES` reads too), is asked for its ``Config``; a
built-in family is listed both here and in ``FAMILIES``.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from visionflow.registry import RegistryError, load_object

BUILTIN = {"localizer": "visionflow.models.localizer.config:LocalizerConfig",
           "classifier": "visionflow.models.classifier.config:ClassifierConfig",
           "detector": "visionflow.models.detector.config:DetectorConfig"}
GROUP = "visionflow.families"


def family_names() -> list[str]:
    return sorted({*BUILTIN, *(ep.name for ep in entry_points(group=GROUP))})


def family_config_class(name: str) -> type:
    if name in BUILTIN:
        return load_object(BUILTIN[name])
    for ep in entry_points(group=GROUP, name=name):
        return ep.load().Config
    raise RegistryError(f"{name!r} is not in the families registry; valid: {', '.join(family_names())}")
