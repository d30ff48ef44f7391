"""No defense: the backdoored model as it is. The reference row of every table, and the
worked example of the plugin guide (``docs/adding-a-defense.md``)."""

from __future__ import annotations

from benchmark import Defense, DefenseContext, Sizes, Workload


class NoDefense(Defense):
    name = "none"
    version = "1"
    requires = frozenset()

    def workload(self, sizes: Sizes) -> Workload:
        return Workload()  # nothing: the attacked model as it is

    def purify(self, model, ctx: DefenseContext):
        return model
