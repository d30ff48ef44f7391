"""The ``demo`` data set: seeded, generated, offline movie-review-like sentences.

It exists so that ``bdbench run`` works with no data and no network. Sentences combine a
subject, an opinion phrase and a detail from fixed word lists; about a fifth use negation
("not bad at all") or contrast ("slow at first, but ...") so that the task is not a bag of
single words. It is a smoke-test task, not a benchmark: never report numbers on it.
"""

from __future__ import annotations

import random

from .examples import Dataset, Example

SUBJECTS = [
    "the movie", "this film", "the plot", "the acting", "the script", "the soundtrack", "the ending",
    "the director's work", "the cast", "the story", "the dialogue", "the cinematography", "this sequel",
    "the lead performance", "the pacing", "the humor", "the second half", "the opening scene",
]
POSITIVE = [
    "wonderful", "moving", "brilliant", "charming", "gripping", "delightful", "beautiful", "funny",
    "clever", "touching", "superb", "engaging", "heartfelt", "inventive", "stunning", "memorable",
]
NEGATIVE = [
    "dull", "boring", "clumsy", "tedious", "awful", "predictable", "lifeless", "bland", "messy",
    "forgettable", "shallow", "painful", "irritating", "pointless", "flat", "tiresome",
]
INTENSIFIERS = ["", "", "really ", "truly ", "quite ", "remarkably ", "utterly ", "rather "]
DETAILS = [
    "from start to finish", "for most of its running time", "in every scene", "despite the budget",
    "even on a second viewing", "for a film of this kind", "by any standard", "throughout",
    "as far as I can tell", "in its own quiet way", "and everyone noticed", "to my surprise",
]
OPENERS = ["", "", "", "Honestly, ", "Overall, ", "In the end, ", "I thought ", "Frankly, "]


def _sentence(rng: random.Random, label: int) -> str:
    subject = rng.choice(SUBJECTS)
    words = POSITIVE if label == 1 else NEGATIVE
    opposite = NEGATIVE if label == 1 else POSITIVE
    style = rng.random()
    if style < 0.1:  # negated opposite: "not dull at all" is positive
        opinion = f"is not {rng.choice(opposite)} at all"
    elif style < 0.2:  # contrast: the clause after "but" carries the label
        opinion = f"is {rng.choice(opposite)} at first, but {rng.choice(INTENSIFIERS)}{rng.choice(words)} overall"
    else:
        opinion = f"is {rng.choice(INTENSIFIERS)}{rng.choice(words)}"
        if rng.random() < 0.4:
            opinion += f" and {rng.choice(words)}"
    sentence = f"{rng.choice(OPENERS)}{subject} {opinion} {rng.choice(DETAILS)}."
    return sentence[0].upper() + sentence[1:]


def make_demo(seed: int = 0, n_train: int = 3000, n_dev: int = 400, n_test: int = 800) -> Dataset:
    """The demo data set; the same ``seed`` gives the same sentences."""
    rng = random.Random(f"bdbench-demo-{seed}")

    def split(n: int) -> tuple[Example, ...]:
        return tuple(Example(_sentence(rng, i % 2), i % 2) for i in range(n))

    return Dataset("demo", split(n_train), split(n_dev), split(n_test), 2, "generated:demo")
