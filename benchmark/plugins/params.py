"""Typed plugin hyperparameters.

A plugin declares its hyperparameters as a frozen dataclass ``Params`` nested in its class:
each field has a type, a default, and a trailing comment giving its meaning or source. That
dataclass is the only place defaults live. Overrides come from ``registry.toml`` suites and
from ``--set plugin.param=value`` on the command line, in that order, and are checked here:
unknown keys and values of the wrong type raise :class:`UsageError` naming plugin and key.

A field may also declare the values it accepts, with :func:`hparam` (or the same keys in
``dataclasses.field(metadata=...)``)::

    poison_rate: float = hparam(0.1, range="[0, 1]")  # share of the training set
    triggers: tuple[str, ...] = hparam(("cf", "mn"), nonempty=True)  # candidate trigger words
    unit: str = hparam("word", choices=("word", "wordpiece"))

``range`` is an interval: ``[`` and ``]`` include the bound, ``(`` and ``)`` exclude it, an
empty bound is unbounded (``"[1, )"``: at least 1); for a tuple it applies to every item.
``choices`` lists the allowed values; ``nonempty`` refuses an empty tuple or string.
``keyed_when_set`` marks a field added after results were published: it enters cache keys
(:func:`params_identity`) only when it differs from its default, so every earlier key holds. ``None``
(where the type allows it) always passes. NaN is never a valid number. :func:`resolve_params`
checks every field, so ``bdbench validate`` and ``bdbench run`` refuse the same values before
any training.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from ..base.errors import UsageError, did_you_mean


@dataclasses.dataclass(frozen=True)
class NoParams:
    """For plugins without hyperparameters."""


def hparam(default: Any, *, range: str | None = None, choices: tuple | None = None,  # noqa: A002
          nonempty: bool = False, keyed_when_set: bool = False) -> Any:
    """A hyperparameter field with its default and the values it accepts (module docstring)."""
    metadata: dict[str, Any] = {}
    if range is not None:
        Interval.parse(range)  # a malformed range fails when the class is defined
        metadata["range"] = range
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if nonempty:
        metadata["nonempty"] = True
    if keyed_when_set:
        metadata["keyed_when_set"] = True
    return dataclasses.field(default=default, metadata=metadata)


_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,]*?)\s*,\s*([^,]*?)\s*([\])])\s*$")


@dataclasses.dataclass(frozen=True)
class Interval:
    """A range of numbers such as ``(0, 1]``: closed or open at each end, possibly unbounded."""

    low: float | None
    high: float | None
    low_closed: bool = True
    high_closed: bool = True

    @classmethod
    def parse(cls, text: str) -> Interval:
        match = _INTERVAL.match(text)
        if not match:
            raise ValueError(f"range {text!r}: expected an interval such as '[0, 1]', '(0, 1]' or '[1, )'")
        opening, low, high, closing = match.groups()

        def bound(raw: str) -> float | None:
            if raw in ("", "inf", "-inf", "+inf"):
                return None
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"range {text!r}: {raw!r} is not a number") from None

        return cls(bound(low), bound(high), opening == "[", closing == "]")

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low and not self.low_closed)):
            return False
        if self.high is not None and (value > self.high or (value == self.high and not self.high_closed)):
            return False
        return True

    def __str__(self) -> str:
        low = "" if self.low is None else show_number(self.low)
        high = "" if self.high is None else show_number(self.high)
        return f"{'[' if self.low_closed else '('}{low}, {high}{']' if self.high_closed else ')'}"

    def describe(self) -> str:
        """Words for error messages: 'at least 1', 'in (0, 1]', ..."""
        if self.high is None and self.low is not None:
            return f"{'at least' if self.low_closed else 'more than'} {show_number(self.low)}"
        if self.low is None and self.high is not None:
            return f"{'at most' if self.high_closed else 'less than'} {show_number(self.high)}"
        return f"in {self}"


def show_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def check_value(value: Any, metadata: Mapping[str, Any], where: str) -> None:
    """Raise :class:`UsageError` (naming ``where``) when ``value`` breaks a field's declared
    ``range``, ``choices`` or ``nonempty`` (see the module docstring)."""
    if value is None:
        return
    if metadata.get("nonempty") and isinstance(value, tuple | str) and not (
            value.strip() if isinstance(value, str) else value):
        raise UsageError(f"{where}: must not be empty")
    items = value if isinstance(value, tuple) else (value,)
    choices = metadata.get("choices")
    if choices is not None:
        for item in items:
            if item not in choices:
                raise UsageError(f"{where}: {item!r} is not one of {', '.join(repr(c) for c in choices)}")
    if metadata.get("range") is not None:
        interval = Interval.parse(metadata["range"])
        for item in items:
            if isinstance(item, int | float) and not isinstance(item, bool) and item not in interval:
                raise UsageError(f"{where}: expected a value {interval.describe()}, got {item!r}")


def check_params(plugin_name: str, params) -> None:
    """Check every field of a params instance against its declared constraints."""
    for f in dataclasses.fields(params):
        check_value(getattr(params, f.name), f.metadata, f"{plugin_name}.{f.name}")


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
            number = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where}: expected a number, got {value!r}") from None
        if math.isnan(number):
            raise UsageError(f"{where}: expected a number, got {value!r}")
        return number
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
    params = params_cls(**values)
    check_params(plugin_name, params)
    return params


def params_to_dict(params) -> dict[str, Any]:
    """JSON-ready view of a params instance (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def params_identity(params) -> dict[str, Any]:
    """:func:`params_to_dict` as cache keys see it: ``keyed_when_set`` fields (module docstring)
    only where they differ from their defaults."""
    out = params_to_dict(params)
    for f in dataclasses.fields(params):
        if f.metadata.get("keyed_when_set") and getattr(params, f.name) == f.default:
            del out[f.name]
    return out


def describe_params(params_cls: type) -> list[tuple[str, str, Any]]:
    """(name, type, default) for each hyperparameter, for ``bdbench list``."""
    hints = _field_types(params_cls)
    rows = []
    for f in dataclasses.fields(params_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f.name, type_name(hints[f.name]), default))
    return rows
