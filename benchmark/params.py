"""Typed plugin hyperparameters.

A plugin declares its hyperparameters as a frozen dataclass ``Params`` nested in its class:
each field has a type, a default, and a trailing comment giving its meaning or source. That
dataclass is the only place defaults live. Overrides come from ``registry.toml`` suites and
from ``--set plugin.param=value`` on the command line, in that order, and are checked here:
unknown keys and values of the wrong type raise :class:`UsageError` naming plugin and key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from .errors import UsageError, did_you_mean


@dataclasses.dataclass(frozen=True)
class NoParams:
    """For plugins without hyperparameters."""


def param_fields(params_cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(params_cls))


def _field_types(params_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(params_cls)


def type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "{" + "|".join(repr(a) for a in get_args(tp)) + "}"
    if origin in (tuple,):
        args = get_args(tp)
        return f"tuple[{type_name(args[0])}, ...]" if args else "tuple"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (a string from the command line, or a TOML value) to ``tp``."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(f"{where}: cannot read {value!r} as {type_name(tp)}")
    if origin is Literal:
        allowed = get_args(tp)
        for option in allowed:
            if value == option or (isinstance(value, str) and str(option) == value):
                return option
        raise UsageError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in allowed)}")
    if origin is tuple:
        (item_tp, *_rest) = get_args(tp) or (str,)
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise UsageError(f"{where}: expected a comma-separated list, got {value!r}")
        return tuple(coerce(item, item_tp, where) for item in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise UsageError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise UsageError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value))
        except ValueError:
            raise UsageError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise UsageError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, str):
            return value
        raise UsageError(f"{where}: expected a string, got {value!r}")
    raise UsageError(f"{where}: unsupported parameter type {type_name(tp)}")


def resolve_params(plugin_name: str, params_cls: type, overrides: Mapping[str, Any]):
    """Build a frozen ``params_cls`` from its defaults and ``overrides`` (checked)."""
    hints = _field_types(params_cls)
    known = {f.name for f in dataclasses.fields(params_cls)}
    values = {}
    for key, raw in overrides.items():
        if key not in known:
            raise UsageError(f"plugin {plugin_name!r} has no parameter {key!r}." + did_you_mean(key, known))
        values[key] = coerce(raw, hints[key], f"{plugin_name}.{key}")
    return params_cls(**values)


def params_to_dict(params) -> dict[str, Any]:
    """JSON-ready view of a params instance (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def describe_params(params_cls: type) -> list[tuple[str, str, Any]]:
    """(name, type, default) for each hyperparameter, for ``bdbench list``."""
    hints = _field_types(params_cls)
    rows = []
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f.name, type_name(hints[f.name]), default))
    return rows
