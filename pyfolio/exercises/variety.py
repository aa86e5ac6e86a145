"""How much the seeds vary an exercise kind: distinct questions and the most common answer.

A class of 100 gets seeds that the instructor cannot choose by hand, so every kind must give
many different questions and spread its answers: a student who copies a neighbour's answer,
or writes the most common one, should be right only by chance. The book's bar, for seeds
1..100: at least :data:`MIN_QUESTIONS` distinct questions, and no single answer for more than
:data:`MAX_SHARE` of the seeds (tests/test_exercises_variety.py holds every kind to it)::

    >>> v = variety(4, "indices", range(1, 21))
    >>> v.questions, v.top_share
    (20, 0.05)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from pyfolio.exercises import CHAPTERS, kinds, make
from pyfolio.exercises.base import Answer

__all__ = ["Variety", "variety", "variety_table", "MIN_QUESTIONS", "MAX_SHARE", "SEEDS"]

#: the seeds the bar is measured over
SEEDS = range(1, 101)
#: at least this many distinct questions over :data:`SEEDS`
MIN_QUESTIONS = 50
#: no single answer for more than this share of :data:`SEEDS`
MAX_SHARE = 0.20


@dataclass(frozen=True, slots=True)
class Variety:
    """One kind's spread over a set of seeds."""

    chapter: int
    kind: str
    seeds: int
    questions: int  # distinct question texts
    answers: int  # distinct answers
    top_answer: Answer  # the most common answer
    top_count: int  # for how many seeds

    @property
    def top_share(self) -> float:
        return self.top_count / self.seeds

    @property
    def meets_bar(self) -> bool:
        return self.questions >= MIN_QUESTIONS and self.top_share <= MAX_SHARE


def variety(chapter: int, kind: str, seeds: Iterable[int] = SEEDS) -> Variety:
    """Make ``kind`` of ``chapter`` for every seed and count what varies."""
    questions: set[str] = set()
    answers: Counter[Answer] = Counter()
    n = 0
    for seed in seeds:
        ex = make(chapter, kind, seed)
        questions.add(ex.question())
        answers[ex.answer] += 1
        n += 1
    top, count = answers.most_common(1)[0]
    return Variety(chapter, kind, n, len(questions), len(answers), top, count)


def variety_table(seeds: Iterable[int] = SEEDS) -> str:
    """Every kind's spread as a Markdown table (``python -m pyfolio.exercises variety``)."""
    seeds = list(seeds)
    rows = ["| chapter | kind | distinct questions | distinct answers | most common answer "
            "| meets the bar |", "|---|---|---|---|---|---|"]
    for c in sorted(CHAPTERS):
        for k in kinds(c):
            v = variety(c, k, seeds)
            rows.append(f"| {c} | {k} | {v.questions} | {v.answers} | {v.top_share:.0%} "
                        f"| {'yes' if v.meets_bar else 'NO'} |")
    return "\n".join(rows)
