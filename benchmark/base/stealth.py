"""Stealthiness figures of an attack's poisoned text against its source text, as the stealthy
attacks' papers report them without a model: how many poisoned texts differ from their source,
and how large the edit is in words.

The edit size of a pair is the number of words inserted, deleted or replaced in
:class:`difflib.SequenceMatcher`'s alignment of the two word sequences (whitespace words,
lower-cased): a valid edit script, so at least the word-level Levenshtein distance and equal to
it for an attack that only inserts words (BadNets, AddSent, EP, SOS). Perplexity, the third
figure OpenBackdoor reports, needs a causal language model and is not computed here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


def edit_words(source: str, poisoned: str) -> int:
    """Words inserted, deleted or replaced to turn ``source`` into ``poisoned`` (module docstring)."""
    a, b = source.lower().split(), poisoned.lower().split()
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal")


def stealth_figures(pairs: Iterable[tuple[str, str]]) -> dict:
    """``pairs``: (source, poisoned) texts. ``pairs``: their count; ``changed_share``: share whose
    poisoned text differs from the source (as a string); ``edit_words_mean``: mean edit size in
    words; ``edit_share_mean``: mean edit size over the source's word count. NaN when no pairs."""
    count = changed = 0
    edits = shares = 0.0
    for source, poisoned in pairs:
        count += 1
        changed += source != poisoned
        size = edit_words(source, poisoned)
        edits += size
        shares += size / max(1, len(source.split()))
    if not count:
        return {"pairs": 0, "changed_share": math.nan, "edit_words_mean": math.nan, "edit_share_mean": math.nan}
    return {"pairs": count, "changed_share": changed / count, "edit_words_mean": edits / count,
            "edit_share_mean": shares / count}
