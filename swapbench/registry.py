"""Registries: the single place where a name in a recipe becomes an object.

Each registry knows the modules that hold its built-in entries and imports them the first time it
is asked for anything, so registration never depends on someone remembering an import. Third-party
packages add entries through the ``swapbench.plugins`` entry-point group: every entry point in that
group is loaded (a module is imported; a callable is called with no arguments) before the first
lookup in any registry.

    from swapbench.registry import ENCODERS

    @ENCODERS.register("my_encoder", description="...")
    class MyEncoder(nn.Module): ...
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from swapbench.errors import UserError, did_you_mean

log = logging.getLogger(__name__)

PLUGIN_GROUP = "swapbench.plugins"


class UnknownNameError(UserError, KeyError):
    """A recipe or command named something that no registry entry has."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    description: str


class Registry:
    """Maps names to classes or functions of one kind (encoder, loss, metric, ...)."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = ()):
        self.kind = kind
        self._builtin_modules = builtin_modules
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        self._lock = threading.RLock()

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, *, description: str | None = None) -> Callable[[Any], Any]:
        """Decorator that registers a class or function under ``name``."""

        def decorator(obj: Any) -> Any:
            self.add(name, obj, description=description)
            return obj

        return decorator

    def add(self, name: str, obj: Any, *, description: str | None = None) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} registry: name must be a non-empty string, got {name!r}")
        old = self._entries.get(name)
        if old is not None and _qualname(old.obj) != _qualname(obj):
            raise ValueError(
                f"{self.kind} '{name}' is already registered by {_qualname(old.obj)}; "
                f"pick another name for {_qualname(obj)}"
            )
        if description is None:
            doc = inspect.getdoc(obj) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        self._entries[name] = Entry(name, obj, description)

    # -- lookup -------------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)
            load_plugins()

    def get(self, name: str) -> Any:
        self._ensure_loaded()
        try:
            return self._entries[name].obj
        except KeyError:
            known = sorted(self._entries)
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, known)}; "
                f"known {self.kind}s: {', '.join(known) or '(none)'}"
            ) from None

    def build(self, name: str, /, **kwargs: Any) -> Any:
        """Look ``name`` up and call it with ``kwargs``."""
        return self.get(name)(**kwargs)

    def describe(self, name: str) -> str:
        self.get(name)
        return self._entries[name].description

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


_plugins_loaded = False
_plugins_lock = threading.RLock()


def load_plugins(force: bool = False) -> list[str]:
    """Load every ``swapbench.plugins`` entry point once; returns the names loaded.

    A plugin that fails to import is reported with a warning that names it, and the rest of the
    suite keeps working.
    """
    global _plugins_loaded
    with _plugins_lock:
        if _plugins_loaded and not force:
            return []
        _plugins_loaded = True
        loaded = []
        for ep in entry_points(group=PLUGIN_GROUP):
            try:
                obj = ep.load()
                if callable(obj) and not inspect.ismodule(obj):
                    obj()
                loaded.append(ep.name)
            except Exception as exc:  # a broken plugin must not take the suite down
                log.warning("swapbench plugin '%s' (%s) failed to load: %s", ep.name, ep.value, exc)
        return loaded


DATASETS = Registry("dataset", ("swapbench.data.photos", "swapbench.data.synthetic", "swapbench.data.folder",
                               "swapbench.data.lmdb_images"))
ENCODERS = Registry("encoder", ("swapbench.models.encoder", "swapbench.models.timm_encoder"))
GENERATORS = Registry("generator", ("swapbench.models.generator",))
DISCRIMINATORS = Registry(
    "discriminator", ("swapbench.models.discriminator", "swapbench.models.cooccur")
)
LOSSES = Registry("loss", ("swapbench.losses",))
METRICS = Registry(
    "metric", ("swapbench.metrics.reconstruction", "swapbench.metrics.swap_realism", "swapbench.metrics.ground_truth",
               "swapbench.metrics.sample_realism", "swapbench.metrics.disentanglement")
)
OPTIMIZERS = Registry("optimizer", ("swapbench.optim",))
TRAINERS = Registry("trainer", ("swapbench.trainer",))
INVERSIONS = Registry("inversion", ("swapbench.inversion",))

ALL_REGISTRIES = {
    r.kind: r for r in (DATASETS, ENCODERS, GENERATORS, DISCRIMINATORS, LOSSES, METRICS, OPTIMIZERS, TRAINERS,
                        INVERSIONS)
}
