"""Every exercise kind varies enough over seeds 1..100 for a class of 100: at least 50
distinct questions, and no single answer for more than 20% of the seeds."""

from __future__ import annotations

import pytest

from pyfolio.exercises import CHAPTERS, kinds
from pyfolio.exercises.variety import MAX_SHARE, MIN_QUESTIONS, SEEDS, variety

KINDS = [(c, k) for c in sorted(CHAPTERS) for k in kinds(c)]


@pytest.mark.slow
@pytest.mark.parametrize(("chapter", "kind"), KINDS, ids=[f"ch{c:02d}-{k}" for c, k in KINDS])
def test_kind_varies_over_a_class_of_seeds(chapter: int, kind: str) -> None:
    v = variety(chapter, kind, SEEDS)
    assert v.seeds == 100
    assert v.questions >= MIN_QUESTIONS, f"only {v.questions} distinct questions"
    assert v.top_share <= MAX_SHARE, (f"answer {v.top_answer} for {v.top_count} of "
                                      f"{v.seeds} seeds")


def test_the_measure_counts_repeats() -> None:
    """The same seed five times: one question, one answer, for every seed."""
    v = variety(2, "merge", [3] * 5)
    assert (v.seeds, v.questions, v.answers, v.top_count, v.top_share) == (5, 1, 1, 5, 1.0)
    assert not v.meets_bar
