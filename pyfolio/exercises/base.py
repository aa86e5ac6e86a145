"""The shape every exercise shares: a seed makes a scenario, the simulator computes the answer.

An :class:`Exercise` is built from a seed (``random.Random`` seeded with a string that names
the chapter, the kind and the seed, so the same seed always gives the same question on every
machine and Python version). Subclasses set up a scenario in ``setup()`` and compute the right
answer by *running the simulator*, never by a formula of their own.

Checking is separate from presenting, so the notebook widget, the terminal and a batch grader
share it: :func:`parse_words` splits what the reader wrote, :func:`same` compares one word with
one expected value in the notations the book uses (hex or decimal; ``-EAGAIN``, ``EAGAIN`` or
``11``; yes/no), and :meth:`Exercise.check` returns a :class:`Verdict`: one :class:`Part` per
answer field, right or wrong, and :meth:`Verdict.feedback` as text. Feedback never states an
expected value (the worked answer is :meth:`Exercise.solution`); ``graded=True`` also leaves
out the hint.

    >>> from pyfolio.exercises import make
    >>> ex = next(e for s in range(200) if (e := make(8, "errno", s)).answer[0] == "EAGAIN")
    >>> n = ex.answer[1]
    >>> [ex.check(f"{a}, {n}").right for a in ("-EAGAIN", "EAGAIN", "11", "-11", "EINVAL")]
    [True, True, True, True, False]
    >>> v = ex.check(f"0, {n:#x}")
    >>> v.right, v.score, [p.right for p in v.parts]
    (False, 0.5, [False, True])
    >>> v.feedback(graded=True) == f"Wrong: {ex.fields[0]}. Right: {ex.fields[1]}."
    True
"""

from __future__ import annotations

import errno as _errno
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Exercise", "Question", "Answer", "Part", "Verdict", "parse_words", "same", "fmt"]

#: A worked answer: a tuple of ints, bools and short strings (an errno as its name, "EAGAIN").
Answer = tuple[Any, ...]

_TRUE = {"true", "yes", "y", "1", "set", "on"}
_FALSE = {"false", "no", "n", "0", "clear", "off"}
#: errno name -> number, as the kernel's include/uapi/asm-generic/errno*.h (Python's errno on Linux)
_ERRNO = {name: num for num, name in _errno.errorcode.items()}


def parse_words(answer: Any) -> list[str]:
    """The reader's answer as a list of words, as written (:func:`same` ignores case).

    >>> parse_words("0x10, 2; (Yes) -EAGAIN")
    ['0x10', '2', 'Yes', '-EAGAIN']
    >>> parse_words((512, True, "PMD"))
    ['512', 'true', 'PMD']
    """
    if isinstance(answer, str):
        return [w for w in re.split(r"[\s,;()\[\]]+", answer.strip()) if w]
    if isinstance(answer, (list, tuple)):
        return [w for a in answer for w in parse_words(a)]
    return [str(answer).lower() if isinstance(answer, bool) else str(answer)]


def _int(word: str) -> int | None:
    """A whole number written in hex (0x...), octal/binary with their prefix, or decimal
    (leading zeros allowed); None if it is not one."""
    for base in (0, 10):
        try:
            return int(word, base)
        except ValueError:
            pass
    return None


def _errno_number(word: str) -> int | None:
    """``-EAGAIN``, ``EAGAIN``, ``11`` or ``-11`` as the positive errno (None if neither)."""
    bare = word.upper().lstrip("-")
    if bare in _ERRNO:
        return _ERRNO[bare]
    n = _int(word)
    return abs(n) if n is not None else None


def same(expected: Any, word: str) -> bool:
    """Whether the reader's ``word`` says ``expected``.

    A bool takes yes/no, true/false, 1/0, set/clear; an int takes hex (``0x...``) or decimal;
    an errno name (``"EAGAIN"``) takes ``-EAGAIN``, ``EAGAIN``, ``11`` or ``-11``; other text is
    compared ignoring case, with ``-`` and ``_`` alike.

    >>> same(512, "0x200"), same(True, "yes"), same("EAGAIN", "-11"), same("0", "0x0")
    (True, True, True, True)
    >>> same("device_private", "Device-Private"), same(9, "nine"), same("EINVAL", "-EAGAIN")
    (True, False, False)
    """
    word = word.strip().lower()
    if isinstance(expected, bool):
        return word in (_TRUE if expected else _FALSE)
    if isinstance(expected, int):
        return _int(word) == expected
    text = str(expected)
    if text.upper() in _ERRNO:
        return _errno_number(word) == _ERRNO[text.upper()]
    if _int(text) is not None:  # a number kept as text, e.g. "0" for success beside "EINVAL"
        return _int(word) == _int(text)
    return word.replace("_", "-") == text.lower().replace("_", "-")


def fmt(value: Any, name: str = "") -> str:
    """One answer field as the solution prints it (PFNs and addresses in hex)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and any(w in name for w in ("pfn", "address", "offset")):
        return hex(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class Part:
    """One field of an answer: its name, what the reader wrote, and whether it is right."""

    field: str
    given: str
    right: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of checking one answer.

    ``parts`` has one :class:`Part` per field when the answer could be compared; otherwise it
    is empty and ``problem`` says why (no answer, wrong number of values). ``hint`` is the
    exercise's rule of thumb and ``explained`` the simulator's last step (shown only when the
    answer is right). For old call sites a verdict also unpacks as ``(right, feedback())``.
    """

    parts: tuple[Part, ...]
    problem: str = ""
    hint: str = ""
    explained: str = ""

    @property
    def right(self) -> bool:
        """Every part right (an answer that could not be compared is not right)."""
        return bool(self.parts) and all(p.right for p in self.parts)

    @property
    def score(self) -> float:
        """The fraction of parts right, 0.0 when the answer could not be compared."""
        return sum(p.right for p in self.parts) / len(self.parts) if self.parts else 0.0

    def feedback(self, graded: bool = False) -> str:
        """What the reader is told: which parts are right and which wrong, never the expected
        values. Practice mode (``graded=False``) adds what was said, how many parts are right
        and the hint, or the simulator's explanation when the answer is right; graded mode
        (what :func:`pyfolio.exercises.grading.graded_check` and nbgrader report) says only
        which parts are wrong and which right."""
        if not self.parts:
            return self.problem
        if self.right:
            return "Right." if graded or not self.explained else f"Right. {self.explained}"
        wrong = [p for p in self.parts if not p.right]
        ok = [p for p in self.parts if p.right]
        if graded:
            text = "Wrong: " + ", ".join(p.field for p in wrong) + "."
        else:
            text = "Wrong: " + ", ".join(f"{p.field} (you said {p.given})" for p in wrong) + "."
        if ok:
            text += " Right: " + ", ".join(p.field for p in ok) + "."
        if not graded:
            text += f" ({len(ok)} of {len(self.parts)} right)"
            if self.hint:
                text += f" Hint: {self.hint}"
        return text

    def __bool__(self) -> bool:
        return self.right

    def __iter__(self) -> Iterator[Any]:
        yield self.right
        yield self.feedback()

    def __getitem__(self, i: int) -> Any:
        return (self.right, self.feedback())[i]

    def __str__(self) -> str:
        return self.feedback()


class Exercise:
    """A seeded question with a checker and a worked solution.

    Subclasses set ``chapter``, ``kind``, ``fields`` (the names of the answer's parts, in
    order) and implement ``setup()`` (build the scenario with ``self.rng``, run it, and
    store ``self.answer`` and the worked steps in ``self.steps``) and ``question()``.
    """

    chapter: int
    kind: str
    title: str
    fields: Sequence[str]

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

    def check(self, answer: Any) -> Verdict:
        """Compare ``answer`` (a string of words, or a tuple) with the simulator's, field by
        field."""
        words = parse_words(answer) if answer is not None else []
        if not words:
            return Verdict((), problem=f"No answer yet. {self.answer_format()}.")
        if len(words) != len(self.answer):
            return Verdict((), problem=(
                f"Expected {len(self.answer)} values ({', '.join(self.fields)}), "
                f"got {len(words)}."))
        parts = tuple(Part(name, got, same(exp, got))
                      for name, exp, got in zip(self.fields, self.answer, words, strict=True))
        return Verdict(parts, hint=self.hint(), explained=self.steps[-1] if self.steps else "")

    def hint(self) -> str:
        """One line that points at the rule (subclasses say more)."""
        return "See the solution for the steps."

    def solution(self) -> str:
        """The worked answer: the steps the simulator took, then the answer."""
        ans = ", ".join(f"{n} = {fmt(v, n)}" for n, v in zip(self.fields, self.answer, strict=True))
        return "\n".join([*self.steps, f"Answer: {ans}"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"


class Question(Exercise):
    """A one-off question whose answer the chapter has measured (no seed, no scenario of its
    own): e.g. what the recorded kernel said. It checks and solves like any exercise.

    >>> q = Question(13, "Predict the child", "How many kB of AnonHugePages?", ("kB",), (0,),
    ...              ["The kernel recorded 0 kB."])
    >>> q.check("0").right, q.check("2048").right, q.solution().splitlines()[-1]
    (True, False, 'Answer: kB = 0')
    """

    kind = "question"

    def __init__(self, chapter: int, title: str, text: str, fields: Sequence[str],
                 answer: Answer, steps: Sequence[str] = (), hint: str = "") -> None:
        self.chapter, self.title, self.text, self.fields = chapter, title, text, tuple(fields)
        self._given, self._steps, self._hint = tuple(answer), list(steps), hint
        super().__init__(seed=0)

    def setup(self) -> None:
        self.answer, self.steps = self._given, list(self._steps)

    def question(self) -> str:
        return f"{self.text} {self.answer_format()}."

    def hint(self) -> str:
        return self._hint or super().hint()
