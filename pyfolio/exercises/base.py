"""The shape every exercise shares: a seed makes a scenario, the simulator computes the answer.

An :class:`Exercise` is built from a seed (``random.Random`` seeded with a string that names
the chapter, the kind and the seed, so the same seed always gives the same question on every
machine and Python version). Subclasses set up a scenario in ``setup()`` and compute the right
answer by *running the simulator*, never by a formula of their own. The reader's answer is
parsed by ``parse()`` (a tuple, a list, or a string of words separated by spaces or commas)
and compared with the simulator's.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = ["Exercise", "Answer", "parse_words", "fmt"]

#: A worked answer: a tuple of ints, bools and short strings.
Answer = tuple[Any, ...]

_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


def parse_words(answer: Any) -> list[str]:
    """The reader's answer as a list of lower-case words (numbers stay as written)."""
    if isinstance(answer, str):
        return [w for w in re.split(r"[\s,;()\[\]]+", answer.strip().lower()) if w]
    if isinstance(answer, (list, tuple)):
        return [w for a in answer for w in parse_words(a)]
    if isinstance(answer, bool):
        return [str(answer).lower()]
    return [str(answer).lower()]


def _same(expected: Any, word: str) -> bool:
    if isinstance(expected, bool):
        return word in (_TRUE if expected else _FALSE)
    if isinstance(expected, int):
        try:
            return int(word, 0) == expected
        except ValueError:
            return False
    return word == str(expected).lower()


def fmt(value: Any, name: str = "") -> str:
    """One answer field as the solution prints it (PFNs and addresses in hex)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and any(w in name for w in ("pfn", "address", "offset")):
        return hex(value)
    return str(value)


class Exercise:
    """A seeded question with a checker and a worked solution.

    Subclasses set ``chapter``, ``kind``, ``fields`` (the names of the answer's parts, in
    order) and implement ``setup()`` (build the scenario with ``self.rng``, run it, and
    store ``self.answer`` and the worked steps in ``self.steps``) and ``question()``.
    """

    chapter: ClassVar[int]
    kind: ClassVar[str]
    title: ClassVar[str]
    fields: ClassVar[Sequence[str]]

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(f"ch{self.chapter}:{self.kind}:{seed}")
        self.answer: Answer = ()
        self.steps: list[str] = []
        self.setup()

    def setup(self) -> None:
        raise NotImplementedError

    def question(self) -> str:
        raise NotImplementedError

    def answer_format(self) -> str:
        """How to write the answer: its fields, in order."""
        return "Answer with: " + ", ".join(self.fields)

    def check(self, answer: Any) -> tuple[bool, str]:
        """(right, why): compare ``answer`` with the simulator's, field by field."""
        words = parse_words(answer) if answer is not None else []
        if not words:
            return False, f"No answer yet. {self.answer_format()}."
        if len(words) != len(self.answer):
            return False, (f"Expected {len(self.answer)} values ({', '.join(self.fields)}), "
                           f"got {len(words)}.")
        wrong = [(name, exp, got) for name, exp, got in zip(self.fields, self.answer, words,
                                                            strict=True) if not _same(exp, got)]
        if not wrong:
            return True, "Right. " + self.steps[-1] if self.steps else "Right."
        name, exp, got = wrong[0]
        more = f" ({len(wrong) - 1} more wrong)" if len(wrong) > 1 else ""
        return False, f"Wrong {name}: you said {got}, the simulator says {fmt(exp, name)}{more}. " \
            + self.hint()

    def hint(self) -> str:
        """One line that points at the rule (subclasses say more)."""
        return "See the solution for the steps."

    def solution(self) -> str:
        """The worked answer: the steps the simulator took, then the answer."""
        ans = ", ".join(f"{n} = {fmt(v, n)}" for n, v in zip(self.fields, self.answer, strict=True))
        return "\n".join([*self.steps, f"Answer: {ans}"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"
