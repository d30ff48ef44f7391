"""Resolving a run's plugins once: each configured attack and defense becomes a
:class:`ResolvedPlugin` (its class and its checked, frozen ``Params``) that travels on the cell.

Parameter values come from the plugin's ``Params`` defaults, the suite's values
(:class:`PluginSpec`'s ``overrides``) and ``--set plugin.param=value``
(:attr:`benchmark.harness.cells.HarnessConfig.overrides`), in that order (:mod:`benchmark.plugins.params`).
:func:`resolve_plugin` merges them and coerces them once, before any compute
(:func:`benchmark.harness.cells.resolve_cells` calls it once per configured plugin of a run); from
there on a value has one shape, the field of the ``Params`` instance that the plugin receives, and
the merged raw values stay on the cell for its identity (:func:`benchmark.harness.cells.cell_identity`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..base.errors import PluginError
from .params import params_identity, resolve_params
from .registry import Registry


@dataclasses.dataclass(frozen=True)
class PluginSpec:
    """One configured plugin in a suite: ``label`` is its row name on the leaderboard;
    ``overrides`` are the suite's parameter values for it, as written."""

    name: str
    label: str
    overrides: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class ResolvedPlugin:
    """A configured plugin, resolved: what a cell carries in place of its :class:`PluginSpec`.

    name, label: as configured. overrides: the values set for it, the suite's then ``--set``'s,
    as given (strings from the command line, TOML values from a suite); they enter the cell id.
    cls, params: the plugin class and its checked ``Params`` instance. error: why the plugin is
    unavailable (it failed to import) instead of ``cls`` and ``params``; such a plugin fails only
    the cells that use it, with this message.
    """

    name: str
    label: str
    overrides: tuple[tuple[str, Any], ...] = ()
    cls: type | None = None
    params: Any = None
    error: str | None = None

    def plugin_class(self) -> type:
        """The plugin class; :class:`PluginError` with the import failure when it is unavailable."""
        if self.cls is None:
            raise PluginError(self.error or f"plugin {self.name!r} was not resolved")
        return self.cls

    def create(self):
        """A fresh instance of the plugin with its resolved parameters."""
        return self.plugin_class()(self.params)

    def params_dict(self) -> dict[str, Any]:
        """The resolved parameters as the record writes them (tuples as lists; ``keyed_when_set``
        fields only where set, so records look as they did before those fields existed)."""
        return params_identity(self.params)


def resolve_plugin(registry: Registry, kind: str, spec: PluginSpec,
                   extra: Mapping[str, Any] | None = None) -> ResolvedPlugin:
    """``spec`` of ``kind`` (attack or defense) with ``extra`` (its ``--set`` values) applied.
    An unknown name or a bad value raises :class:`~benchmark.base.errors.UsageError`; a plugin that
    fails to import is resolved with its ``error`` (it fails its own cells)."""
    merged = {**dict(spec.overrides), **(extra or {})}
    overrides = tuple(sorted(merged.items(), key=lambda item: item[0]))
    try:
        cls = registry.get(kind, spec.name)
    except PluginError as exc:
        return ResolvedPlugin(spec.name, spec.label, overrides, error=str(exc))
    return ResolvedPlugin(spec.name, spec.label, overrides, cls, resolve_params(spec.name, cls.Params, merged))
