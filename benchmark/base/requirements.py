"""What a plugin may declare in ``requires``, and the kinds of defense: the one table of names,
the labels the leaderboard shows for them and what each means.

A defense receives only what it declared (:class:`benchmark.plugins.contexts.DefenseContext`);
the registry refuses a name that is not here, and a defense that declares nothing at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One asset a plugin may declare. name: as written in ``requires``. label: the leaderboard's
    short badge. meaning: what it grants (the page's tooltip; None: "declared requirement"). declared_by: the plugin kind that
    may declare it (``attack`` or ``defense``). only: where set, the defense kinds allowed to."""

    name: str
    label: str
    meaning: str | None
    declared_by: str = "defense"
    only: tuple[str, ...] | None = None


REQUIREMENTS: tuple[Requirement, ...] = (  # in the leaderboard's badge order
    Requirement("clean_data", "clean", "the defender's clean training subset"),
    Requirement("clean_dev", "dev", "a clean dev split"),
    Requirement("pretrained_weights", "pre-trained", "the victim's pre-trained (un-fine-tuned) weights"),
    Requirement("target_label", "target", "the attack's target label"),
    # the poisoned training set, without poison flags. Its badge is its name and its tooltip the
    # generic one, as the published input-data page shows them (a new label re-renders that page).
    Requirement("poisoned_train", "poisoned_train", None, only=("data_filtering", "robust_training")),
    Requirement("clean_model", "clean model", "a copy of the scenario's clean reference model", declared_by="attack"),
)
BY_NAME = {r.name: r for r in REQUIREMENTS}
DEFENSE_REQUIREMENTS = frozenset(r.name for r in REQUIREMENTS if r.declared_by == "defense")
ATTACK_REQUIREMENTS = frozenset(r.name for r in REQUIREMENTS if r.declared_by == "attack")

# The records' ``defense_kind`` and the label the leaderboard's sections and rankings show.
DEFENSE_KINDS = {"purification": "model purification", "input_detection": "input detection",
                 "data_filtering": "training-data filtering", "robust_training": "robust training"}


def requirement_label(name: str) -> str:
    """The leaderboard's badge for ``name`` (the name itself when it is not a known requirement)."""
    return BY_NAME[name].label if name in BY_NAME else name


def requirement_meaning(name: str) -> str:
    """What ``name`` grants, as the leaderboard page's tooltip says it."""
    meaning = BY_NAME[name].meaning if name in BY_NAME else None
    return meaning or "declared requirement"


def badge_order(name: str) -> int:
    """``name``'s place in the leaderboard's badge order (unknown names last)."""
    return [r.name for r in REQUIREMENTS].index(name) if name in BY_NAME else len(REQUIREMENTS)


def requirements_text(requires: Iterable[str]) -> str:
    """``requires`` as the tables write it: the names joined, or ``nothing``."""
    return ", ".join(requires) or "nothing"


def kind_label(kind: str) -> str:
    """The leaderboard's label for a record's ``defense_kind``."""
    return DEFENSE_KINDS.get(kind, kind)
