"""The ``demo-reviews`` data set: seeded, generated movie reviews whose label needs the sentence's structure.

It is the quick suite's data, so that ``bdbench run`` shows a readable picture offline: a task a
bag of words does not solve (contrast, concession, negation, mixed verdicts over several aspects),
on which a fine-tuned MiniLM stays below perfect clean accuracy and the defenses separate. It is
still generated text, not a benchmark: the published figures are on SST-2 and IMDb.

A review is one of six shapes (shares in :data:`SHAPES`); the label is the polarity the shape
says carries the verdict:

- ``plain``: one aspect and one opinion ("the pacing is rather sluggish throughout.");
- ``negated``: an opinion of the other polarity, negated ("the score is far from memorable.");
- ``contrast``: "A is x, but B is y": the clause after *but* carries the label;
- ``concession``: "Although A is x, B is y": the main clause carries the label;
- ``majority``: three aspects, two of the label's polarity and one of the other, in random order;
- ``verdict``: two aspects of the other polarity, then an overall verdict that carries the label;
- ``mixed``: one aspect of each polarity in random order and no verdict: the text does not decide
  the label (it is the sample's, drawn like every other), as in the undecidable reviews of real
  sentiment data. This caps clean accuracy near 95% (half of a tenth of the test set is lost to
  chance), so the clean and defended models do not all tie at 1.000.

Opinion words are shared across shapes, and mild words ("decent", "uneven") sit beside strong
ones, so every word appears in reviews of both labels.
"""

from __future__ import annotations

import random

from .examples import Dataset, Example

ASPECTS = [
    "the plot", "the acting", "the script", "the soundtrack", "the ending", "the cast", "the dialogue",
    "the cinematography", "the pacing", "the humor", "the second half", "the opening", "the lead",
    "the editing", "the score", "the set design", "the villain", "the premise", "the direction", "the effects",
]
FILM = ["the film", "the movie", "this picture", "the whole thing", "the film as a whole"]
OPINIONS = {  # label -> opinion words, strong and mild
    1: ["wonderful", "moving", "brilliant", "charming", "gripping", "delightful", "funny", "clever",
        "touching", "superb", "engaging", "inventive", "memorable", "decent", "solid", "likeable",
        "competent", "pleasant", "sharp", "assured"],
    0: ["dull", "boring", "clumsy", "tedious", "awful", "predictable", "lifeless", "bland", "messy",
        "forgettable", "shallow", "irritating", "pointless", "flat", "uneven", "sluggish", "thin",
        "muddled", "overlong", "stiff"],
}
INTENSIFIERS = ["", "", "", "really ", "truly ", "quite ", "rather ", "somewhat ", "a little ", "mostly "]
NEGATIONS = ["is not", "is never", "is far from", "is hardly", "is not exactly", "never feels"]
VERDICTS = {
    1: ["I would still recommend it", "it is worth seeing anyway", "I enjoyed it all the same",
        "it won me over in the end", "it is a good film despite that"],
    0: ["I cannot recommend it", "it is not worth the ticket", "I was bored all the same",
        "it never comes together", "it is a weak film despite that"],
}
DETAILS = ["", "", "", " throughout", " from start to finish", " for most of its running time",
           " in every scene", " by any standard", " on a second viewing", " for a film of this kind"]
SHAPES = (("plain", 0.15), ("negated", 0.15), ("contrast", 0.2), ("concession", 0.15), ("majority", 0.15),
          ("verdict", 0.1), ("mixed", 0.1))


def _opinion(rng: random.Random, polarity: int) -> str:
    return f"{rng.choice(INTENSIFIERS)}{rng.choice(OPINIONS[polarity])}"


def _clause(rng: random.Random, subject: str, polarity: int) -> str:
    return f"{subject} is {_opinion(rng, polarity)}"


def _review(rng: random.Random, label: int) -> str:
    other = 1 - label
    aspects = rng.sample(ASPECTS, 3)
    shape = rng.choices([s for s, _ in SHAPES], weights=[w for _, w in SHAPES])[0]
    if shape == "plain":
        text = _clause(rng, rng.choice(aspects + FILM), label) + rng.choice(DETAILS)
    elif shape == "negated":
        text = f"{rng.choice(aspects + FILM)} {rng.choice(NEGATIONS)} {rng.choice(OPINIONS[other])}{rng.choice(DETAILS)}"
    elif shape == "contrast":
        text = f"{_clause(rng, aspects[0], other)}, but {_clause(rng, rng.choice([aspects[1]] + FILM), label)}"
    elif shape == "concession":
        text = f"although {_clause(rng, aspects[0], other)}, {_clause(rng, rng.choice([aspects[1]] + FILM), label)}"
    elif shape == "majority":
        clauses = [_clause(rng, aspects[0], label), _clause(rng, aspects[1], label), _clause(rng, aspects[2], other)]
        rng.shuffle(clauses)
        text = f"{clauses[0]}, {clauses[1]} and {clauses[2]}"
    elif shape == "mixed":
        first, second = rng.sample([label, other], 2)
        text = f"{_clause(rng, aspects[0], first)} and {_clause(rng, aspects[1], second)}"
    else:  # verdict
        text = f"{_clause(rng, aspects[0], other)} and {_clause(rng, aspects[1], other)}; {rng.choice(VERDICTS[label])}"
    return text[0].upper() + text[1:] + "."


def make_reviews(seed: int = 0, n_train: int = 3000, n_dev: int = 400, n_test: int = 1000) -> Dataset:
    """The ``demo-reviews`` data set; the same ``seed`` gives the same reviews (labels alternate)."""
    rng = random.Random(f"bdbench-reviews-{seed}")

    def split(n: int) -> tuple[Example, ...]:
        return tuple(Example(_review(rng, i % 2), i % 2) for i in range(n))

    return Dataset("demo-reviews", split(n_train), split(n_dev), split(n_test), 2, "generated:demo-reviews")
