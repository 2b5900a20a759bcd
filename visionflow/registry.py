"""Named registries for the pluggable parts: sources, backbones, heads, model families.

Other packages extend a registry through the Python entry-point group
``visionflow.<kind>`` (for example ``visionflow.sources``); an entry point's name
is the name used in ``params.yaml`` and its object is what gets registered.

Names are known before anything is imported: built-in entries may be given lazily as
``"module:attr"`` and entry points are listed by name, so checking a config that names
a backbone or a head loads neither TensorFlow nor the plug-in.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0])


def load_object(target: str):
    """``"package.module:attr"`` -> the object."""
    module, _, attr = target.partition(":")
    return getattr(import_module(module), attr)


class Registry(Generic[T]):
    """A name -> object map with entry-point discovery.

    A duplicate name raises, and an unknown name raises listing the valid ones.
    """

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (), lazy: dict[str, str] | None = None):
        """``builtin_modules`` register this package's own entries when first needed;
        ``lazy`` maps names to ``"module:attr"`` loaded only when that name is got."""
        self.kind = kind
        self.builtin_modules = builtin_modules
        self.group = f"visionflow.{kind}"
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = dict(lazy or {})
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._items or name in self._lazy:
            raise RegistryError(f"{self.kind}: {name!r} is already registered")
        self._items[name] = obj

    def _load_builtins(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for module in self.builtin_modules:
            import_module(module)
        for ep in entry_points(group=self.group):
            if ep.name not in self._items and ep.name not in self._lazy:
                self._lazy[ep.name] = ep.value

    def get(self, name: str) -> T:
        if name not in self._items and name not in self._lazy:
            self._load_builtins()
        if name in self._lazy:
            self._items[name] = load_object(self._lazy.pop(name))
        try:
            return self._items[name]
        except KeyError:
            raise RegistryError(
                f"{name!r} is not in the {self.kind} registry; valid: {', '.join(self.names())}"
            ) from None

    def check(self, name: str) -> None:
        """Raise :class:`RegistryError` for an unknown name, without loading anything behind it."""
        if name not in self:
            raise RegistryError(f"{name!r} is not in the {self.kind} registry; valid: {', '.join(self.names())}")

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._items or name in self._lazy

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted({*self._items, *self._lazy})

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
