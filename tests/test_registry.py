import pytest

from visionflow.registry import Registry, RegistryError


def test_register_get_and_errors():
    reg = Registry("widgets")

    @reg.register("a")
    class A:
        pass

    assert reg.get("a") is A
    with pytest.raises(RegistryError, match="already registered"):
        reg.add("a", object)
    with pytest.raises(RegistryError, match="'b' is not in the widgets registry; valid: a"):
        reg.get("b")


def test_builtin_sources_and_backbones_are_registered():
    from visionflow.data.sources import SOURCES
    from visionflow.models.backbones import BACKBONES

    assert "synthetic" in SOURCES.names()
    assert {"xception", "resnet50", "mobilenet_v2"} <= set(BACKBONES.names())
