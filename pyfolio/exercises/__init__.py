"""Classroom exercises: seeded questions with checkers, in the spirit of OSTEP's homework.

A seed makes a scenario; the simulator runs it and computes the answer; the reader predicts
it, ``check(answer)`` says right or wrong and why, and ``solution()`` shows the worked steps.
The book and the terminal use the same generators::

    >>> from pyfolio.exercises import make
    >>> ex = make(4, "indices", seed=3)
    >>> ex.check(ex.answer)[0], ex.check("0 0 0 0 0")[0]
    (True, False)

From a shell: ``python -m pyfolio.exercises 4 -s 3 -c`` (see ``__main__``).

For a graded class a student's seed is :func:`seed_for` ``(student, secret)``
(:mod:`pyfolio.exercises.grading`): the same questions for the same student every time, and
no way to compute them without the instructor's secret.
"""

from __future__ import annotations

from types import ModuleType

from pyfolio.exercises import (
    ch02_page_frames,
    ch03_folios,
    ch04_page_tables,
    ch05_faults_and_thp,
    ch06_counting_references,
    ch07_pmd_to_ptes,
    ch08_splitting_a_folio,
    ch09_device_private_memory,
    ch10_migrating_a_thp,
    ch11_no_huge_page_on_the_device,
    ch12_code_review_lab,
    ch13_large_folios_in_the_page_cache,
    ch14_swapping_large_folios,
    ch15_the_device_as_a_driver_sees_it,
)
from pyfolio.exercises.base import Exercise

__all__ = ["Exercise", "CHAPTERS", "kinds", "make", "exercises", "seed_for"]

#: chapter number -> the module holding its exercise kinds (``KINDS``: kind -> class)
CHAPTERS: dict[int, ModuleType] = {
    2: ch02_page_frames,
    3: ch03_folios,
    4: ch04_page_tables,
    5: ch05_faults_and_thp,
    6: ch06_counting_references,
    7: ch07_pmd_to_ptes,
    8: ch08_splitting_a_folio,
    9: ch09_device_private_memory,
    10: ch10_migrating_a_thp,
    11: ch11_no_huge_page_on_the_device,
    12: ch12_code_review_lab,
    13: ch13_large_folios_in_the_page_cache,
    14: ch14_swapping_large_folios,
    15: ch15_the_device_as_a_driver_sees_it,
}


def kinds(chapter: int) -> list[str]:
    """The exercise kinds of a chapter, in the order the CLI prints them."""
    if chapter not in CHAPTERS:
        raise ValueError(f"no exercises for chapter {chapter}; chapters: {sorted(CHAPTERS)}")
    return list(CHAPTERS[chapter].KINDS)


def make(chapter: int, kind: str, seed: int) -> Exercise:
    """One exercise of ``kind`` from ``chapter``, made from ``seed``."""
    table = CHAPTERS[chapter].KINDS if chapter in CHAPTERS else {}
    if kind not in table:
        raise ValueError(f"chapter {chapter} has no exercise kind {kind!r}; "
                         f"kinds: {', '.join(kinds(chapter))}")
    cls: type[Exercise] = table[kind]
    return cls(seed)


def exercises(chapter: int, seed: int) -> list[Exercise]:
    """One exercise of every kind of ``chapter``, all from ``seed``."""
    return [make(chapter, k, seed) for k in kinds(chapter)]


# after make(): grading uses it
from pyfolio.exercises.grading import seed_for  # noqa: E402
