"""pyfolio.exercises.grading and the `grade` CLI: per-student seeds, graded feedback that
never states the expected values, rejected rows, exit statuses."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pyfolio.exercises import make
from pyfolio.exercises.__main__ import main, render
from pyfolio.exercises.base import fmt
from pyfolio.exercises.grading import (
    GRADED_SEED_BASE,
    OUTPUT_COLUMNS,
    SECRET_ENV,
    grade_main,
    graded_check,
    seed_for,
)

SECRET = "correct horse battery staple"


def typed(ex: object, wrong: int | None = None) -> str:
    """The answer as a student types it; field ``wrong`` changed."""
    from pyfolio.exercises.base import Exercise

    assert isinstance(ex, Exercise)
    values = list(ex.answer)
    if wrong is not None:
        v = values[wrong]
        values[wrong] = (not v) if isinstance(v, bool) else v + 1 if isinstance(v, int) else "x"
    return ", ".join(fmt(v, f) for f, v in zip(ex.fields, values, strict=True))


def test_seed_for_depends_on_the_student_and_the_secret_only() -> None:
    a = seed_for("alice", SECRET)
    assert a == seed_for("  ALICE ", SECRET) and a >= GRADED_SEED_BASE
    assert len({a, seed_for("bob", SECRET), seed_for("alice", SECRET + "!")}) == 3
    with pytest.raises(ValueError, match="no secret"):
        seed_for("alice", "")
    with pytest.raises(ValueError, match="empty student"):
        seed_for(" ", SECRET)


def test_graded_feedback_names_wrong_parts_but_never_the_values() -> None:
    ex = make(7, "counts", seed_for("carol", SECRET))
    assert graded_check(ex, typed(ex)) == (True, "Right.")
    ok, why = graded_check(ex, typed(ex, wrong=1))
    assert not ok and why == "Wrong: mapcount. Right: refcount, entire mapcount."
    assert all(str(v) not in why for v in ex.answer)
    assert graded_check(ex, "1 2") == (False, "Expected 3 values (refcount, mapcount, entire "
                                              "mapcount), got 2.")
    assert graded_check(ex, "")[1].startswith("No answer")


def test_the_instructor_reproduces_a_students_questions() -> None:
    seed = seed_for("dave", SECRET)
    assert main(["3", "--student", "Dave", "--secret", SECRET, "-c"]) == 0
    assert render(3, seed, solve=True)  # the same text as -s with the seed


def test_the_practice_seed_on_a_page_is_not_the_graded_seed() -> None:
    """What a student sees: a practice seed (< GRADED_SEED_BASE) or no seed at all."""
    seeds = {seed_for(f"student{i}", SECRET) for i in range(200)}
    assert len(seeds) == 200 and min(seeds) >= GRADED_SEED_BASE


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.fixture
def _run(monkeypatch: pytest.MonkeyPatch) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``python -m pyfolio.exercises grade ARGS`` (in this process), the secret in the
    environment or not."""
    def run(args: list[str], env_secret: str | None = None) -> subprocess.CompletedProcess[str]:
        monkeypatch.delenv(SECRET_ENV, raising=False)
        if env_secret is not None:
            monkeypatch.setenv(SECRET_ENV, env_secret)
        out, err = io.StringIO(), io.StringIO()
        code = grade_main(args, out, err)
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())
    return run


def test_grade_runs_as_a_module(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pyfolio.exercises", "grade",
                           str(tmp_path / "none.csv")], capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin", SECRET_ENV: "s"})
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_batch_grader_grades_good_rows_and_rejects_bad_ones(
        tmp_path: Path, _run: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    ann = make(2, "alloc", seed_for("ann", SECRET))
    ben = make(4, "indices", seed_for("ben", SECRET))
    answers = _write(tmp_path / "answers.csv", [
        ["student", "chapter", "kind", "answer"],
        ["ann", "2", "alloc", typed(ann)],                    # 2: right
        ["ben", "4", "indices", typed(ben, wrong=0)],         # 3: wrong
        ["ann", "2", "alloc", typed(ann)],                    # 4: duplicate
        ["eve", "2", "alloc", "1, 2"],                        # 5: not on the roster
        ["ben", "4", "nope", "1"],                            # 6: unknown kind
        ["ben", "four", "indices", "1"],                      # 7: chapter not a number
        ["ben", "4"],                                         # 8: too few fields
        ["ann", "99", "alloc", "1"],                          # 9: unknown chapter
    ])
    roster = _write(tmp_path / "roster.csv", [["id", "first_name"], ["ann", "A"], ["Ben", "B"]])
    out = tmp_path / "scores.csv"
    done = _run([str(answers), "--roster", str(roster), "-o", str(out)], env_secret=SECRET)
    assert done.returncode == 1, done.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == list(OUTPUT_COLUMNS) and len(rows) == 8
    verdicts = [(r["student"], r["verdict"], r["score"]) for r in rows]
    assert verdicts[:2] == [("ann", "right", "1"), ("ben", "wrong", "0")]
    assert rows[1]["feedback"] == "Wrong: pgd index. Right: pud index, pmd index, pte index, " \
                                  "offset."
    assert [r["verdict"] for r in rows[2:]] == ["rejected"] * 6
    reasons = [r["feedback"] for r in rows[2:]]
    for n, (reason, want) in enumerate(zip(reasons, [
            "duplicate: row 2", "'eve' is not on the roster", "no exercise kind 'nope'",
            "chapter 'four' is not a number", "malformed row", "no exercises for chapter 99"],
            strict=True), 4):
        assert want in reason and f"answers.csv:{n}: rejected: {reason}" in done.stderr


def test_batch_grader_exit_statuses(
        tmp_path: Path, _run: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    cat = make(3, "index", seed_for("cat", SECRET))
    good = _write(tmp_path / "good.csv", [["student", "chapter", "kind", "answer"],
                                          ["cat", "3", "index", typed(cat)]])
    done = _run([str(good), "--secret", SECRET])
    assert done.returncode == 0 and done.stdout.splitlines()[1].startswith("cat,3,index,right")
    assert _run([str(good)]).returncode == 2  # no secret anywhere
    assert _run([str(tmp_path / "missing.csv"), "--secret", SECRET]).returncode == 2
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    done = _run([str(empty), "--secret", SECRET])
    assert done.returncode == 2 and "expected a header" in done.stderr
    _write(empty, [["who", "what"], ["cat", "1"]])
    done = _run([str(empty), "--secret", SECRET])
    assert done.returncode == 2 and "lacks student, chapter, kind, answer" in done.stderr


