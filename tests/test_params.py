import dataclasses
from typing import Literal

import pytest

from benchmark.base.errors import UsageError
from benchmark.plugins.params import Interval, describe_params, hparam, params_to_dict, resolve_params


@dataclasses.dataclass(frozen=True)
class P:
    rate: float = 0.1
    n: int = 3
    flag: bool = False
    words: tuple[str, ...] = ("cf", "mn")
    mode: Literal["dirty", "clean"] = "dirty"
    lr: float | None = None


def test_defaults_and_string_overrides_are_coerced():
    p = resolve_params("x", P, {"rate": "0.25", "n": "5", "flag": "true", "words": "a,b,c", "mode": "clean",
                                "lr": "1e-4"})
    assert p == P(0.25, 5, True, ("a", "b", "c"), "clean", 1e-4)
    assert resolve_params("x", P, {"lr": "none"}).lr is None
    assert params_to_dict(p)["words"] == ["a", "b", "c"]


@pytest.mark.parametrize("overrides, message", [
    ({"rat": "0.2"}, "has no parameter 'rat'. Did you mean 'rate'"),
    ({"n": "three"}, "x.n: expected an integer"),
    ({"flag": "maybe"}, "x.flag: expected true or false"),
    ({"mode": "half"}, "x.mode: 'half' is not one of"),
    ({"rate": "fast"}, "x.rate: expected a number"),
])
def test_bad_overrides_name_plugin_and_key(overrides, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_params("x", P, overrides)


def test_describe_lists_types_and_defaults():
    rows = {name: (tp, default) for name, tp, default in describe_params(P)}
    assert rows["mode"] == ("{'dirty'|'clean'}", "dirty")
    assert rows["lr"] == ("float | None", None)


@dataclasses.dataclass(frozen=True)
class Ranged:
    rate: float = hparam(0.1, range="[0, 1]")
    epochs: int | None = hparam(None, range="[1, )")
    lr: float = hparam(1e-3, range="(0, )")
    words: tuple[str, ...] = hparam(("cf",), nonempty=True)
    grid: tuple[float, ...] = hparam((0.1, 0.5), range="[0, 1]")
    unit: str = hparam("word", choices=("word", "wordpiece"))


@pytest.mark.parametrize("overrides, message", [
    ({"rate": "1.5"}, "x.rate: expected a value in [0, 1], got 1.5"),
    ({"rate": "-0.1"}, "x.rate: expected a value in [0, 1], got -0.1"),
    ({"rate": "nan"}, "x.rate: expected a number, got 'nan'"),
    ({"epochs": "0"}, "x.epochs: expected a value at least 1, got 0"),
    ({"lr": "0"}, "x.lr: expected a value more than 0, got 0.0"),
    ({"words": ""}, "x.words: must not be empty"),
    ({"grid": "0.2,1.2"}, "x.grid: expected a value in [0, 1], got 1.2"),
    ({"unit": "char"}, "x.unit: 'char' is not one of 'word', 'wordpiece'"),
])
def test_declared_ranges_are_checked(overrides, message):
    with pytest.raises(UsageError) as info:
        resolve_params("x", Ranged, overrides)
    assert str(info.value) == message


def test_values_inside_their_ranges_pass():
    p = resolve_params("x", Ranged, {"rate": "0", "epochs": "none", "grid": "0,1", "unit": "wordpiece"})
    assert (p.rate, p.epochs, p.grid, p.unit) == (0.0, None, (0.0, 1.0), "wordpiece")
    assert describe_params(Ranged)[0] == ("rate", "float", 0.1)


@pytest.mark.parametrize("text, inside, outside", [
    ("[0, 1]", [0, 0.5, 1], [-0.01, 1.01, float("nan")]),
    ("(0, 1]", [1e-9, 1], [0, 2]),
    ("[1, )", [1, 10**9], [0, -1]),
    ("( , 0)", [-5], [0, 1]),
])
def test_intervals(text, inside, outside):
    interval = Interval.parse(text)
    assert all(v in interval for v in inside) and not any(v in interval for v in outside)


def test_a_malformed_range_fails_when_the_class_is_defined():
    with pytest.raises(ValueError, match="expected an interval"):
        hparam(1, range="0..1")


def test_builtin_plugins_declare_ranges():
    from attacks.badnets import BadNets
    from defenses.mbtsad import MBTSAD

    with pytest.raises(UsageError, match=r"badnets.poison_rate: expected a value in \[0, 1\]"):
        resolve_params("badnets", BadNets.Params, {"poison_rate": "1.5"})
    with pytest.raises(UsageError, match="mbtsad.data_share: expected a value in"):
        resolve_params("mbtsad", MBTSAD.Params, {"data_share": "0"})
