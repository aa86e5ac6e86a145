"""Graded exercises for a class: per-student seeds from a secret, graded feedback, batch grading.

A practice question shows its seed, and ``python -m pyfolio.exercises CH -s SEED -c`` solves
it: that is what practice is for. A graded question must not be solvable that way, so a
student's seed is :func:`seed_for` ``(student, secret)``: an HMAC of the student id under the
instructor's secret. The student's page shows the question text only, never the seed; without
the secret nobody can compute the seed from the student id, and a seed printed on a practice
page (below :data:`GRADED_SEED_BASE`) is never a graded one. The instructor, who holds the
secret, reproduces any student's questions and worked answers (``--student ID``).

The batch grader reads ``student,chapter,kind,answer`` rows and writes
``student,chapter,kind,verdict,score,feedback`` rows; its feedback names the parts that are
wrong, never the expected values::

    >>> seed = seed_for("alice", "s3cret")
    >>> seed >= GRADED_SEED_BASE, seed == seed_for(" Alice ", "s3cret")
    (True, True)
    >>> from pyfolio.exercises import make
    >>> ex = make(4, "indices", seed)
    >>> graded_check(ex, ex.answer)
    (True, 'Right.')
    >>> graded_check(ex, (*ex.answer[:4], ex.answer[4] + 1))
    (False, 'Wrong: offset. Right: pgd index, pud index, pmd index, pte index.')
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pyfolio.exercises import make
from pyfolio.exercises.base import Exercise

__all__ = ["seed_for", "secret_from", "graded_check", "Graded", "grade_rows", "read_roster",
           "grade_main", "GRADED_SEED_BASE", "SECRET_ENV", "INPUT_COLUMNS", "OUTPUT_COLUMNS"]

#: graded seeds are at least this; seeds printed on practice pages stay below it
GRADED_SEED_BASE = 1_000_000
#: the environment variable the secret is read from when ``--secret`` is not given
SECRET_ENV = "PYFOLIO_SECRET"
INPUT_COLUMNS = ("student", "chapter", "kind", "answer")
OUTPUT_COLUMNS = ("student", "chapter", "kind", "verdict", "score", "feedback")


def _student_id(student: str) -> str:
    """Student ids as JupyterHub normalises user names: stripped, lower case."""
    return student.strip().lower()


def seed_for(student: str, secret: str) -> int:
    """The seed of ``student``'s graded questions: HMAC-SHA256 of the student id (stripped,
    lower case, as JupyterHub normalises user names) under ``secret``, as a number from
    GRADED_SEED_BASE on. The same for every chapter and kind (each kind seeds its own
    generator with its name), so one seed per student is the whole key."""
    if not secret:
        raise ValueError(f"no secret: pass --secret or set {SECRET_ENV}")
    if not _student_id(student):
        raise ValueError("empty student id")
    mac = hmac.new(secret.encode(), _student_id(student).encode(), hashlib.sha256).digest()
    return GRADED_SEED_BASE + int.from_bytes(mac[:6], "big")


def secret_from(given: str | None) -> str:
    """The instructor's secret: ``given``, else $PYFOLIO_SECRET; ValueError if neither."""
    secret = given if given is not None else os.environ.get(SECRET_ENV, "")
    if not secret:
        raise ValueError(f"no secret: pass --secret or set {SECRET_ENV}")
    return secret


def graded_check(ex: Exercise, answer: Any) -> tuple[bool, str]:
    """(right, feedback) as in a graded quiz: which parts are wrong and which right, never
    the expected values (:meth:`~pyfolio.exercises.base.Verdict.feedback` with
    ``graded=True``)."""
    v = ex.check(answer)
    return v.right, v.feedback(graded=True)


@dataclass(frozen=True, slots=True)
class Graded:
    """One output row. ``verdict``: right, wrong or rejected (``feedback`` says why)."""

    row: int  # line number in the input file (the header is line 1)
    student: str
    chapter: str
    kind: str
    verdict: str
    score: str
    feedback: str

    def as_row(self) -> list[str]:
        return [self.student, self.chapter, self.kind, self.verdict, self.score, self.feedback]


def read_roster(text: str) -> set[str]:
    """Student ids from a roster CSV: its ``student`` column, or ``id`` (nbgrader's student
    import format). ValueError if it has neither."""
    reader = csv.DictReader(io.StringIO(text))
    column = next((c for c in ("student", "id") if c in (reader.fieldnames or [])), None)
    if column is None:
        raise ValueError(f"the roster has no 'student' or 'id' column (header: "
                         f"{','.join(reader.fieldnames or []) or 'none'})")
    return {_student_id(r[column]) for r in reader if r.get(column, "").strip()}


def _reject(n: int, raw: dict[str, Any], why: str) -> Graded:
    def get(k: str) -> str:
        v = raw.get(k)
        return v.strip() if isinstance(v, str) else ""

    return Graded(n, get("student"), get("chapter"), get("kind"), "rejected", "", why)


def _grade_one(n: int, raw: dict[str, Any], secret: str, roster: set[str] | None,
               seen: dict[tuple[str, int, str], int]) -> Graded:
    if None in raw or any(raw.get(c) is None for c in INPUT_COLUMNS):
        return _reject(n, raw, f"malformed row: expected {len(INPUT_COLUMNS)} fields "
                               f"({','.join(INPUT_COLUMNS)})")
    student, chapter, kind = (_student_id(raw["student"]), raw["chapter"].strip(),
                              raw["kind"].strip())
    if not student:
        return _reject(n, raw, "malformed row: empty student")
    if roster is not None and student not in roster:
        return _reject(n, raw, f"student {student!r} is not on the roster")
    try:
        ch = int(chapter)
    except ValueError:
        return _reject(n, raw, f"malformed row: chapter {chapter!r} is not a number")
    key = (student, ch, kind)
    if key in seen:
        return _reject(n, raw, f"duplicate: row {seen[key]} already answers this question")
    try:
        ex = make(ch, kind, seed_for(student, secret))
    except ValueError as e:
        return _reject(n, raw, str(e))
    seen[key] = n
    right, feedback = graded_check(ex, raw["answer"])
    return Graded(n, student, chapter, kind, "right" if right else "wrong",
                  "1" if right else "0", feedback)


def grade_rows(rows: Iterable[dict[str, Any]], secret: str,
               roster: set[str] | None = None) -> list[Graded]:
    """Grade answer rows (dicts with INPUT_COLUMNS, as csv.DictReader gives them; the first
    is line 2 of the file). A bad row is rejected with the reason; the others are graded."""
    seen: dict[tuple[str, int, str], int] = {}
    return [_grade_one(n, raw, secret, roster, seen) for n, raw in enumerate(rows, 2)]


def _read_answers(path: str) -> list[dict[str, Any]]:
    """The answer rows of ``path``; ValueError when the file is unusable."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames
    if not header:
        raise ValueError(f"{path} is empty: expected a header {','.join(INPUT_COLUMNS)}")
    missing = [c for c in INPUT_COLUMNS if c not in [h.strip() for h in header]]
    if missing:
        raise ValueError(f"{path}: the header {','.join(header)} lacks "
                         f"{', '.join(missing)} (expected {','.join(INPUT_COLUMNS)})")
    reader.fieldnames = [h.strip() for h in header]
    return list(reader)


def grade_main(argv: Sequence[str], stdout: TextIO | None = None,
               stderr: TextIO | None = None) -> int:
    """``python -m pyfolio.exercises grade answers.csv [--secret S] [--roster R] [-o OUT]``.

    Exit status: 0 every row graded, 1 some rows rejected (listed on stderr), 2 the input
    is unusable (no file, no header, no secret, unreadable roster)."""
    import argparse

    out, err = stdout or sys.stdout, stderr or sys.stderr
    ap = argparse.ArgumentParser(
        prog="python -m pyfolio.exercises grade",
        description="Grade answers.csv (student,chapter,kind,answer) with each student's "
                    f"seed, seed_for(student, secret). The secret: --secret or ${SECRET_ENV}.")
    ap.add_argument("answers", help="CSV with the columns " + ",".join(INPUT_COLUMNS))
    ap.add_argument("--secret", help=f"the instructor's secret (default: ${SECRET_ENV})")
    ap.add_argument("--roster", help="CSV of the class (a 'student' or 'id' column); "
                                     "rows of anyone else are rejected")
    ap.add_argument("-o", "--output", help="write the scores here (default: stdout)")
    args = ap.parse_args(argv)
    try:
        secret = secret_from(args.secret)
        rows = _read_answers(args.answers)
        roster = read_roster(Path(args.roster).read_text()) if args.roster else None
    except (ValueError, OSError) as e:
        print(f"grade: {e}", file=err)
        return 2
    graded = grade_rows(rows, secret, roster)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(OUTPUT_COLUMNS)
    w.writerows(g.as_row() for g in graded)
    if args.output:
        Path(args.output).write_text(buf.getvalue())
    else:
        out.write(buf.getvalue())
        out.flush()  # the scores before the messages when both go to one terminal or pipe
    rejected = [g for g in graded if g.verdict == "rejected"]
    for g in rejected:
        print(f"grade: {args.answers}:{g.row}: rejected: {g.feedback}", file=err)
    right = sum(g.verdict == "right" for g in graded)
    print(f"grade: {len(graded) - len(rejected)} row(s) graded ({right} right), "
          f"{len(rejected)} rejected", file=err)
    return 1 if rejected else 0
