"""The header every plugin class shares: ``name``, ``version`` and ``Params`` (``requires`` is
declared per kind: :mod:`benchmark.plugins.attack`, :mod:`benchmark.plugins.defense`)."""

from __future__ import annotations

from typing import Any, ClassVar

from .params import NoParams


class Plugin:
    """Common header of attacks and defenses; subclasses set the class attributes."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    Params: ClassVar[type] = NoParams
    # ``requires`` (a frozenset of benchmark.base.requirements names) has no default on the defense
    # classes: a defense declares it, even when empty, and the registry refuses one that does not.

    def __init__(self, params: Any = None):
        self.params = params if params is not None else self.Params()

