"""The plugin registry: built-ins from ``registry.toml``, third-party plugins from entry points.

Both paths end in :meth:`Registry.add`. Built-in classes are imported lazily, on first use; a
plugin that fails to import is remembered with its error, reported by ``bdbench list``, and
breaks only the runs that ask for it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pluggy

from . import datasets as builtin_datasets
from . import hookspecs
from .data import DatasetSpec
from .errors import PluginError, UsageError, did_you_mean
from .plugin import ATTACK_REQUIREMENTS, DEFENSE_REQUIREMENTS, Attack, Defense

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "bdbench"
KINDS = {"attack": Attack, "defense": Defense}


def registry_path() -> Path:
    """``registry.toml`` at the project root (beside the ``benchmark`` package)."""
    return Path(__file__).resolve().parent.parent / "registry.toml"


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
    allowed = DEFENSE_REQUIREMENTS if kind == "defense" else ATTACK_REQUIREMENTS
    unknown = set(cls.requires) - allowed
    if unknown:
        raise PluginError(f"{kind} plugin {name!r} requires unknown assets {sorted(unknown)}; known: {sorted(allowed)}")


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
        """Register a hook-implementing module and collect what its hooks provide."""
        self.pm.register(module, name=source)
        self.pm.check_pending()
        caller = self.pm.subset_hook_caller  # only this module's hooks, so sources stay exact
        others = [p for p in self.pm.get_plugins() if p is not module]
        for kind, hook in (("attack", "bdbench_attacks"), ("defense", "bdbench_defenses")):
            for classes in caller(hook, others)():
                for cls in classes or []:
                    self.add(kind, getattr(cls, "name", repr(cls)), source, lambda cls=cls: cls)
        for specs in caller("bdbench_datasets", others)():
            for spec in specs or []:
                if spec.name in self.datasets:
                    raise PluginError(f"data set {spec.name!r} is defined twice (again by {source})")
                self.datasets[spec.name] = spec

    def load_builtins(self, path: Path | None = None) -> None:
        table = read_registry_toml(path)
        for kind, section in (("attack", "attacks"), ("defense", "defenses")):
            for name, target in table.get(section, {}).items():
                self.add(kind, name, f"builtin:{target}", _import_target(target))
        self.add_plugin_module(builtin_datasets, "builtin:benchmark.datasets")

    def load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            source = f"entry-point:{ep.dist.name if ep.dist else '?'}:{ep.value}"
            try:
                module = ep.load()
            except Exception as exc:
                message = f"{source}: failed to import ({type(exc).__name__}: {exc})"
                log.warning("bdbench plugin %s", message)
                self.broken.append(message)
                continue
            self.add_plugin_module(module, source)

    # -- lookup
    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self.entries if k == kind)

    def get(self, kind: str, name: str) -> type:
        key = (kind, name)
        if key not in self.entries:
            extra = f" Plugins that failed to import: {'; '.join(self.broken)}." if self.broken else ""
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
