import dataclasses
from typing import Literal

import pytest

from benchmark.errors import UsageError
from benchmark.params import describe_params, params_to_dict, resolve_params


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
