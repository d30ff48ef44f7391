"""The plugin registry: built-ins from ``registry.toml``, third-party plugins from entry points.

Both paths end in :meth:`Registry.add`. Built-in classes are imported lazily, on first use; a
plugin that fails to import is remembered with its error, reported by ``bdbench list``, and
breaks only the runs that ask for it.

A third-party plugin that misbehaves while it loads (its module fails to import, a hook raises,
it reuses a name that is already taken, or its hooks do not match the specs) is reported with a
warning naming the distribution, the entry point and the hook, disabled as a whole, and the
rest goes on. An entry point that provides no hook at all (``name = "pkg.module:Class"``
instead of a module with ``@hookimpl def bdbench_defenses()``) is reported the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import importlib.resources
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pluggy

from ..base.errors import PluginError, UsageError, did_you_mean
from ..base.requirements import ATTACK_REQUIREMENTS, DEFENSE_REQUIREMENTS
from ..data import builtin as builtin_datasets
from ..data.examples import DatasetSpec
from . import hookspecs
from .attack import Attack
from .defense import Defense, declares_requires

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "bdbench"
KINDS = {"attack": Attack, "defense": Defense}
PROVIDER_HOOKS = (("attack", "bdbench_attacks"), ("defense", "bdbench_defenses"))


def installed_entry_points() -> list:
    """The installed entry points of the ``bdbench`` group."""
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def registry_path() -> Path:
    """The ``registry.toml`` the ``benchmark`` package carries (``benchmark/registry.toml``, a link
    to the repository's top-level file in a checkout, a copy of it in an installed wheel): found
    through the package, never through the working folder."""
    return Path(str(importlib.resources.files("benchmark") / "registry.toml"))


def read_registry_toml(path: Path | None = None) -> dict:
    path = path or registry_path()
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"{path}: registry file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: {exc}") from None


@dataclasses.dataclass
class Entry:
    """One registered plugin: its kind, name, where it came from and how to load it."""

    kind: str
    name: str
    source: str  # "builtin:module:Class" or "entry-point:dist:module"
    loader: Callable[[], type]
    _cls: type | None = None
    error: str | None = None

    def load(self) -> type:
        if self._cls is None and self.error is None:
            try:
                self._cls = self.loader()
                validate_plugin_class(self.kind, self.name, self._cls)
            except PluginError as exc:
                self.error = str(exc)
            except Exception:  # an import error of any kind: remembered, re-raised on use
                self.error = traceback.format_exc(limit=3)
        if self.error is not None:
            raise PluginError(f"{self.kind} plugin {self.name!r} ({self.source}) is unavailable: {self.error}")
        return self._cls  # type: ignore[return-value]


def validate_plugin_class(kind: str, name: str, cls: type) -> None:
    base = KINDS[kind]
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"{kind} plugin {name!r}: {cls!r} is not a subclass of {base.__name__}")
    if cls.name != name:
        raise PluginError(f"{kind} plugin registered as {name!r} declares name = {cls.name!r}")
    if not dataclasses.is_dataclass(cls.Params):
        raise PluginError(f"{kind} plugin {name!r}: Params must be a dataclass")
    if kind == "defense" and not declares_requires(cls):
        raise PluginError(f"defense plugin {name!r} ({cls.__qualname__}) does not declare requires: state what it "
                          f"needs, e.g. requires = frozenset({{'clean_data'}}), or frozenset() for nothing; known "
                          f"assets: {sorted(DEFENSE_REQUIREMENTS)}")
    allowed = DEFENSE_REQUIREMENTS if kind == "defense" else ATTACK_REQUIREMENTS
    unknown = set(cls.requires) - allowed
    if unknown:
        raise PluginError(f"{kind} plugin {name!r} requires unknown assets {sorted(unknown)}; known: {sorted(allowed)}")


def class_path(cls: type) -> str:
    """``module:QualifiedName`` of a plugin class, which :func:`import_class` reads back."""
    return f"{cls.__module__}:{cls.__qualname__}"


def import_class(path: str) -> type:
    """The class at ``module:QualifiedName`` (imports the module)."""
    module_name, _, qualname = path.partition(":")
    target = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target  # type: ignore[return-value]


def _import_target(target: str) -> Callable[[], type]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UsageError(f"registry.toml: {target!r} should read 'module:Class'")
    return lambda: getattr(importlib.import_module(module_name), attr)


class Registry:
    """All attacks, defenses and data sets known to this process."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], Entry] = {}
        self.datasets: dict[str, DatasetSpec] = {}
        self.broken: list[str] = []  # entry points that failed to import
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)

    # -- registration: the one call both paths use
    def add(self, kind: str, name: str, source: str, loader: Callable[[], type]) -> None:
        key = (kind, name)
        if key in self.entries:
            raise PluginError(f"{kind} {name!r} is defined twice: {self.entries[key].source} and {source}")
        self.entries[key] = Entry(kind, name, source, loader)

    def add_plugin_module(self, module, source: str) -> None:
        """Register a hook-implementing module and collect what its hooks provide. On any
        failure nothing of the module stays registered and a :class:`PluginError` says which
        hook failed and how."""
        try:
            self.pm.register(module, name=source)
            self.pm.check_pending()
        except Exception as exc:  # pluggy's PluginValidationError, a name registered twice, ...
            with contextlib.suppress(Exception):
                self.pm.unregister(module)
            raise PluginError(f"{source}: not a valid bdbench plugin ({type(exc).__name__}: {exc})") from None
        if not self.pm.get_hookcallers(module):
            self.pm.unregister(module)
            raise PluginError(f"{source}: provides nothing: {module!r} implements no bdbench hook. The entry point "
                              "should name a module holding '@hookimpl def bdbench_defenses(): return [MyDefense]' "
                              "(or bdbench_attacks, bdbench_datasets, bdbench_record)")
        caller = self.pm.subset_hook_caller  # only this module's hooks, so sources stay exact
        others = [p for p in self.pm.get_plugins() if p is not module]
        added: list[tuple[str, str]] = []
        datasets: list[str] = []
        hook = ""
        try:
            for kind, hook in PROVIDER_HOOKS:
                for classes in caller(hook, others)():
                    for cls in classes or []:
                        name = getattr(cls, "name", repr(cls))
                        self.add(kind, name, source, lambda cls=cls: cls)
                        added.append((kind, name))
            hook = "bdbench_datasets"
            for specs in caller(hook, others)():
                for spec in specs or []:
                    if spec.name in self.datasets:
                        raise PluginError(f"data set {spec.name!r} is defined twice (again by {source})")
                    self.datasets[spec.name] = spec
                    datasets.append(spec.name)
        except Exception as exc:
            for key in added:
                del self.entries[key]
            for name in datasets:
                del self.datasets[name]
            self.pm.unregister(module)
            detail = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            raise PluginError(f"{source}: hook {hook} failed: {detail}") from None

    def load_builtins(self, path: Path | None = None) -> None:
        table = read_registry_toml(path)
        for kind, section in (("attack", "attacks"), ("defense", "defenses")):
            for name, target in table.get(section, {}).items():
                self.add(kind, name, f"builtin:{target}", _import_target(target))
        self.add_plugin_module(builtin_datasets, "builtin:benchmark.data.builtin")

    def load_entry_points(self) -> None:
        """Load every installed plugin; one that fails is reported, disabled, and skipped."""
        for ep in installed_entry_points():
            dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
            source = f"entry-point:{dist}:{ep.value}"
            where = f"entry point {ep.name} = {ep.value!r} of distribution {dist}"
            try:
                module = ep.load()
            except Exception as exc:
                self._disable(f"{source}: failed to import ({type(exc).__name__}: {exc})", where)
                continue
            try:
                self.add_plugin_module(module, source)
            except PluginError as exc:
                self._disable(str(exc), where)

    def _disable(self, message: str, where: str) -> None:
        log.warning("bdbench plugin disabled (%s): %s", where, message)
        self.broken.append(message)

    # -- lookup
    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self.entries if k == kind)

    def get(self, kind: str, name: str) -> type:
        key = (kind, name)
        if key not in self.entries:
            extra = f" Plugins that failed to load: {'; '.join(self.broken)}." if self.broken else ""
            raise UsageError(f"unknown {kind} {name!r}." + did_you_mean(name, self.names(kind)) + extra)
        return self.entries[key].load()

    def dataset(self, name: str) -> DatasetSpec:
        if name not in self.datasets:
            raise UsageError(f"unknown data set {name!r}." + did_you_mean(name, self.datasets))
        return self.datasets[name]

    def notify_record(self, record: dict) -> None:
        try:
            self.pm.hook.bdbench_record(record=record)
        except Exception:  # reporters never break a run
            log.exception("a bdbench_record hook failed")


_DEFAULT: Registry | None = None


def default_registry(refresh: bool = False) -> Registry:
    """The process-wide registry: built-ins, then entry points."""
    global _DEFAULT
    if _DEFAULT is None or refresh:
        registry = Registry()
        registry.load_builtins()
        registry.load_entry_points()
        _DEFAULT = registry
    return _DEFAULT
