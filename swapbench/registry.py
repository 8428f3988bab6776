"""Registries: the single place where a name in a recipe becomes an object.

Each registry knows the package that holds its built-in entries and imports every module of it the
first time it is asked for anything, so registration never depends on someone remembering an import
(nor on a list of modules kept by hand: a new module in the package registers by being there). Third-party
packages add entries through the ``swapbench.plugins`` entry-point group: every entry point in that
group is loaded (a module is imported; a callable is called with no arguments) before the first
lookup in any registry.

    from swapbench.registry import ENCODERS

    @ENCODERS.register("my_encoder", description="...")
    class MyEncoder(nn.Module): ...

A component with settings of its own registers them as a pydantic class (``settings=``): recipes then
carry a section of that name, validated by the class (see :class:`SettingsSection`). Metrics record which
way is better and what a model needs for them (:class:`MetricRegistry`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

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
    section: str | None = None  # the recipe section holding this component's own settings
    reads: tuple[str, ...] = ()  # further recipe sections it reads, which other components read too
    info: Mapping[str, Any] = field(default_factory=dict)  # what a kind records besides (a metric's direction)

    @property
    def sections(self) -> tuple[str, ...]:
        """Every recipe section this component reads: its own, then the ones in ``reads``."""
        return ((self.section,) if self.section is not None else ()) + self.reads


@dataclass
class SettingsSection:
    """A recipe section declared by registered components: its key, the pydantic class that validates
    it, and the components that read it (``"trainer 'stylegan2'"``)."""

    key: str
    settings: type[BaseModel]
    owners: list[str] = field(default_factory=list)


# recipe section key -> its declaration; filled by registration (see Registry.register's ``settings``)
SECTIONS: dict[str, SettingsSection] = {}


class Registry:
    """Maps names to classes or functions of one kind (encoder, loss, metric, ...)."""

    def __init__(self, kind: str, packages: tuple[str, ...] = ()):
        """``packages``: the packages (or single modules) that hold the built-in entries; every module in
        them, subpackages included, is imported before the first lookup."""
        self.kind = kind
        self._packages = packages
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        self._lock = threading.RLock()

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, *, description: str | None = None, settings: type[BaseModel] | None = None,
                 section: str | None = None, reads: Mapping[str, type[BaseModel]] | None = None,
                 check: Callable[[Any], None] | None = None, **info: Any) -> Callable[[Any], Any]:
        """Decorator that registers a class or function under ``name``.

        ``settings``: a pydantic model of the component's own settings. Recipes then carry a section
        ``section`` (default: ``name``) validated by it, and :meth:`build_from` passes its fields to the
        constructor (those its signature names). Components that read the same settings name the same
        section and class. ``reads``: further sections the component reads, by key (e.g. the trainers'
        shared ``{"loss": LossConfig}``), declared in the same way. ``check``: a function of the whole
        recipe that raises ValueError for settings that cannot go together (a trainer's: the cross-checks
        of its model family, which every recipe of that family passes, image sizes included: a family
        without one needs a power-of-two data.resolution; see :func:`swapbench.recipe.family_check`).
        ``info``: what this kind records besides (see :attr:`Entry.info`).
        """

        def decorator(obj: Any) -> Any:
            self.add(name, obj, description=description, settings=settings, section=section, reads=reads,
                     check=check, **info)
            return obj

        return decorator

    def add(self, name: str, obj: Any, *, description: str | None = None, settings: type[BaseModel] | None = None,
            section: str | None = None, reads: Mapping[str, type[BaseModel]] | None = None,
            check: Callable[[Any], None] | None = None, **info: Any) -> None:
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
        if settings is not None:
            section = section or name
            _declare_section(section, settings, f"{self.kind} '{name}'")
        elif section is not None:
            raise ValueError(f"{self.kind} '{name}': section '{section}' given without its settings class")
        for key, read in (reads or {}).items():
            _declare_section(key, read, f"{self.kind} '{name}'")
        if check is not None:
            if not callable(check):
                raise ValueError(f"{self.kind} '{name}': check must be a function of the recipe, got {check!r}")
            info["check"] = check
        self._entries[name] = Entry(name, obj, description, section if settings is not None else None,
                                    tuple(reads or ()), dict(info))

    def remove(self, name: str) -> None:
        """Take ``name`` out again (tests and interactive sessions; its settings section stays declared
        while another component reads it)."""
        entry = self._entries.pop(name, None)
        if entry is None:
            return
        for key in entry.sections:
            declared = SECTIONS[key]
            declared.owners.remove(f"{self.kind} '{name}'")
            if not declared.owners:
                del SECTIONS[key]

    # -- lookup -------------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for package in self._packages:
                _import_all(package)
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

    def entry(self, name: str) -> Entry:
        """The registration of ``name`` (unknown names fail as in :meth:`get`)."""
        self.get(name)
        return self._entries[name]

    def build(self, name: str, /, **kwargs: Any) -> Any:
        """Look ``name`` up and call it with ``kwargs``."""
        return self.get(name)(**kwargs)

    def build_from(self, name: str, available: Mapping[str, Any],
                   sections: Mapping[str, BaseModel] | None = None) -> Any:
        """Call the entry ``name`` with the settings it names: those in ``available`` and, when it declares
        a settings section, that section's fields (taken from ``sections``, e.g. ``recipe.sections()``).

        A constructor that takes ``**kwargs`` receives everything. Every parameter must be a setting: a
        required one that no setting provides is a user error naming it, and so is an optional one (a
        misspelt name would otherwise keep its default without a word).
        """
        entry = self.entry(name)
        available = dict(available)
        if entry.section is not None:
            own = (sections or {}).get(entry.section)
            if own is None:  # not given: the section's defaults
                own = SECTIONS[entry.section].settings()
            shadowed = sorted(set(available) & set(type(own).model_fields))
            if shadowed:
                raise ValueError(f"{self.kind} '{name}': section '{entry.section}' repeats the setting(s) "
                                 f"{', '.join(shadowed)}; rename them in its settings class")
            available.update(own.model_dump())
        params = inspect.signature(entry.obj).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return entry.obj(**available)
        named = [k for k, p in params.items()
                 if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
        missing = [k for k in named if k not in available and params[k].default is inspect.Parameter.empty]
        if missing:
            raise UserError(f"{self.kind} '{name}' needs settings the recipe does not provide: {', '.join(missing)}")
        unknown = [k for k in named if k not in available]
        if unknown:
            raise UserError(f"{self.kind} '{name}' has parameter(s) {', '.join(unknown)} that no setting provides "
                            f"(known: {', '.join(sorted(available))}); name them after a setting, or declare them "
                            f"in the settings class it registers with")
        return entry.obj(**{k: available[k] for k in named})

    def describe(self, name: str) -> str:
        return self.entry(name).description

    def details(self, name: str) -> str:
        """What else the registration of ``name`` says, in words (e.g. its settings section)."""
        keys = self.entry(name).sections
        return f"settings: {', '.join(f'{key}.*' for key in keys)}" if keys else ""

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


def _import_all(name: str) -> None:
    """Import the module ``name`` and, if it is a package, every module inside it."""
    module = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(module, "__path__", ()), name + "."):
        importlib.import_module(info.name)


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _declare_section(key: str, settings: Any, owner: str) -> None:
    if not (isinstance(settings, type) and issubclass(settings, BaseModel)):
        raise ValueError(f"{owner}: settings must be a pydantic model class, got {settings!r}")
    declared = SECTIONS.get(key)
    if declared is None:
        SECTIONS[key] = SettingsSection(key, settings, [owner])
    elif _qualname(declared.settings) != _qualname(settings):
        raise ValueError(f"{owner}: recipe section '{key}' is already declared by {', '.join(declared.owners)} "
                         f"with {_qualname(declared.settings)}; name another section")
    elif owner not in declared.owners:
        declared.owners.append(owner)


def settings_sections() -> dict[str, SettingsSection]:
    """Every recipe section that a registered component declares (all registries loaded first)."""
    for registry in ALL_REGISTRIES.values():
        registry.names()
    return dict(SECTIONS)


class MetricRegistry(Registry):
    """Scores. Each records at registration which way is better (``direction``: 'down' when lower is,
    'up' when higher is), what a model must be able to do for it to apply (``needs``: methods such as
    'reconstruct', 'swap', 'encode', 'sample'), which of the model's outputs it scores (``scores``: see
    :data:`OUTPUTS`), its group (``group``: see :data:`GROUPS`), the controls it is scored on besides every
    control of its output (``controls``, e.g. 'code_midpoint') and a one-line description; tables,
    leaderboards and the evaluator read them from here.

        @METRICS.register("recon_l1", direction="down", needs=("reconstruct",), scores="reconstructions",
                          group="reconstruction", description="...")
        def recon_l1(ctx) -> dict[str, float]: ...

    ``scores`` decides the controls: a score of the swaps is computed again for every swap control (copy A,
    copy B, the blend, ...) on a context whose swaps, and everything derived from them, are the control's
    own. Left out, it follows ``needs``: 'swap' -> 'swaps', 'reconstruct' -> 'reconstructions', 'sample' ->
    'samples'.
    """

    DIRECTIONS = ("down", "up")
    # the model outputs a score can judge; controls replace the swaps or the reconstructions
    OUTPUTS = {"swaps": "swap", "reconstructions": "reconstruct", "samples": "sample"}  # output -> the method making it
    GROUPS = {
        "reconstruction": "how close G(E(x)) is to x",
        "realism": "how real the swaps look; alone it rewards copying, so tables show it with a texture and a "
                   "structure score (and the controls)",
        "texture": "how much of B's texture a swap carries",
        "structure": "how much of A's structure a swap keeps",
        "truth": "the swap against the true swap of data with known factors",
        "truth_parts": "the parts of the true swap a model can get right, each against the renderer's truth",
        "manifold": "the swaps' precision, recall, density and coverage against the held-out reference",
        "samples": "a generator's samples",
    }

    def register(self, name: str, *, direction: str, needs: tuple[str, ...] | str = (),  # type: ignore[override]
                 scores: str | None = None, group: str | None = None, controls: tuple[str, ...] = (),
                 description: str | None = None) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            self.add(name, obj, description=description, direction=direction, needs=needs, scores=scores,
                     group=group, controls=controls)
            return obj

        return decorator

    def add(self, name: str, obj: Any, *, description: str | None = None, direction: str = "",  # type: ignore[override]
            needs: tuple[str, ...] | str = (), scores: str | None = None, group: str | None = None,
            controls: tuple[str, ...] | str = (), **info: Any) -> None:
        if direction not in self.DIRECTIONS:
            raise ValueError(f"metric '{name}': direction must be 'down' (lower is better) or 'up' (higher is "
                             f"better), got {direction!r}")
        needs = (needs,) if isinstance(needs, str) else tuple(needs)
        if scores is None:
            scores = next((output for output, method in self.OUTPUTS.items() if method in needs), None)
        elif scores not in self.OUTPUTS:
            raise ValueError(f"metric '{name}': scores must name the output it judges ({', '.join(self.OUTPUTS)}), "
                             f"got {scores!r}")
        if group is not None and group not in self.GROUPS:
            raise ValueError(f"metric '{name}': unknown group {group!r}; groups are {', '.join(self.GROUPS)}")
        controls = (controls,) if isinstance(controls, str) else tuple(controls)
        super().add(name, obj, description=description, direction=direction, needs=needs, scores=scores,
                    group=group, controls=controls, **info)

    def direction(self, name: str) -> str | None:
        """'down' or 'up' for a registered metric; None for any other name (a control's or an interval's
        column, a timing)."""
        self._ensure_loaded()
        entry = self._entries.get(name)
        return entry.info["direction"] if entry is not None else None

    def needs(self, name: str) -> tuple[str, ...]:
        """The methods a model must have for metric ``name`` to apply to it."""
        return self.entry(name).info["needs"]

    def scores(self, name: str) -> str | None:
        """The model output metric ``name`` judges ('swaps', 'reconstructions', 'samples'), whose controls it
        is scored on too; None for a score of none of them."""
        return self.entry(name).info["scores"]

    def group(self, name: str) -> str | None:
        """The group of metric ``name`` (see :data:`GROUPS`), or None; None also for a name that is no metric."""
        self._ensure_loaded()
        entry = self._entries.get(name)
        return entry.info["group"] if entry is not None else None

    def in_group(self, group: str) -> list[str]:
        """The metrics of ``group``, by name."""
        return [n for n in self.names() if self._entries[n].info["group"] == group]

    def controls(self, name: str) -> tuple[str, ...]:
        """The controls metric ``name`` is scored on besides every control of its output."""
        return self.entry(name).info["controls"]

    def applies_to(self, name: str, model: Any) -> bool:
        return all(hasattr(model, method) for method in self.needs(name))

    def details(self, name: str) -> str:
        better = "lower" if self.direction(name) == "down" else "higher"
        needs, group, scores = self.needs(name), self.group(name), self.scores(name)
        return (f"{better} is better" + (f"; group {group}" if group else "")
                + (f"; scores the {scores} (and their controls)" if scores in ("swaps", "reconstructions") else "")
                + (f"; needs a model that can {', '.join(needs)}" if needs else ""))


class ModelRegistry(Registry):
    """Model families (``model.family``): how to build a family's scored network from a recipe (the
    network that is evaluated, published and loaded from a checkpoint) and its key in a checkpoint
    (``checkpoint_key``), and the recipe that builds an untrained model of it (``fresh_recipe``, default: the
    family's name; ``swapbench bench`` times methods on one when no run is given). Evaluation, publishing and
    the bench build models from here, without the training loop; the family's trainer (:data:`TRAINERS`)
    registers under the same name.

        @MODELS.register("my_family", checkpoint_key="autoencoder", description="...")
        def build_my_model(recipe) -> nn.Module: ...
    """

    def register(self, name: str, *, checkpoint_key: str,  # type: ignore[override]
                 description: str | None = None, fresh_recipe: str | None = None) -> Callable[[Any], Any]:
        def decorator(obj: Any) -> Any:
            self.add(name, obj, description=description, checkpoint_key=checkpoint_key,
                     fresh_recipe=fresh_recipe or name)
            return obj

        return decorator

    def add(self, name: str, obj: Any, *, description: str | None = None, checkpoint_key: str = "",  # type: ignore[override]
            **info: Any) -> None:
        if not checkpoint_key or not isinstance(checkpoint_key, str):
            raise ValueError(f"model family '{name}': checkpoint_key must name the scored network's key in its "
                             f"checkpoints, got {checkpoint_key!r}")
        super().add(name, obj, description=description, checkpoint_key=checkpoint_key, **info)

    def checkpoint_key(self, name: str) -> str:
        """The key of family ``name``'s scored network in a checkpoint (besides ``ema``, its average)."""
        return self.entry(name).info["checkpoint_key"]

    def fresh_recipe(self, name: str) -> str:
        """The recipe (name or file) of an untrained model of family ``name``."""
        return self.entry(name).info.get("fresh_recipe") or name

    def details(self, name: str) -> str:
        return f"checkpoint key: {self.checkpoint_key(name)}; untrained: recipe {self.fresh_recipe(name)}"


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


DATASETS = Registry("dataset", ("swapbench.data",))
ENCODERS = Registry("encoder", ("swapbench.models",))
GENERATORS = Registry("generator", ("swapbench.models",))
DISCRIMINATORS = Registry("discriminator", ("swapbench.models",))
LOSSES = Registry("loss", ("swapbench.training",))
METRICS = MetricRegistry("metric", ("swapbench.evaluation.metrics",))
OPTIMIZERS = Registry("optimizer", ("swapbench.training",))
MODELS = ModelRegistry("model", ("swapbench.models",))
TRAINERS = Registry("trainer", ("swapbench.training",))
INVERSIONS = Registry("inversion", ("swapbench.inversion",))
SWAPS = Registry("swap_method", ("swapbench.swaps",))

ALL_REGISTRIES = {
    r.kind: r for r in (DATASETS, ENCODERS, GENERATORS, DISCRIMINATORS, LOSSES, METRICS, OPTIMIZERS, MODELS,
                        TRAINERS, INVERSIONS, SWAPS)
}
