"""nbgrader assignments made from the exercises: one per chapter, one instance per student.

The steps, all in an nbgrader course directory (book/instructor.md has the commands):

1. :func:`write_source` writes ``source/chNN/chNN.ipynb``: per exercise kind a question cell,
   an autograded answer cell (``ANSWER = ...`` between nbgrader's solution markers) and a
   grade cell (1 point) whose hidden test grades ``ANSWER``.
2. ``nbgrader generate_assignment chNN`` makes the release version: no solutions, no hidden
   tests, question cells still placeholders.
3. :func:`write_instances` fills the release's question cells for each student, with the
   student's seed :func:`~pyfolio.exercises.grading.seed_for` ``(student, secret)``, into
   ``instances/STUDENT/chNN/chNN.ipynb``: the notebook each student gets. It shows the
   questions, never the seed.
4. The submissions go to ``submitted/STUDENT/chNN/``; ``nbgrader autograde chNN`` runs them
   with $PYFOLIO_SECRET set: each hidden test calls :func:`grade`, which finds the student
   from nbgrader's directory layout and checks ``ANSWER`` with the graded checker (1 point
   right, 0 wrong; the feedback names the wrong parts, never the expected values), and
   ``nbgrader generate_feedback chNN`` renders it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyfolio.exercises import CHAPTERS, kinds, make
from pyfolio.exercises.base import fmt, parse_words
from pyfolio.exercises.grading import _student_id, graded_check, secret_from, seed_for

__all__ = ["assignment_id", "source_notebook", "write_source", "instance", "write_instances",
           "current_student", "check_shape", "grade", "solution_for", "STUDENT_ENV",
           "CODE_STUB"]

#: overrides which student the notebook grades or solves for (nbgrader's layout otherwise)
STUDENT_ENV = "PYFOLIO_STUDENT"
#: what nbgrader leaves in an answer cell (``c.ClearSolutions.code_stub`` in the course's
#: nbgrader_config.py, which :func:`write_source` writes when the course has none)
CODE_STUB = 'ANSWER = ""  # your answer between the quotes'
_CONFIG = f'''# nbgrader configuration written by `python -m pyfolio.exercises assignment`
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "splitting-folios"
# an answer cell in the release version: what the student replaces
c.ClearSolutions.code_stub = {{"python": {CODE_STUB!r}}}
'''


def assignment_id(chapter: int) -> str:
    """The nbgrader assignment (and notebook) name of a chapter: ``ch07``."""
    return f"ch{chapter:02d}"


def _cell(kind: str, source: str, nbgrader: dict[str, Any] | None = None,
          pyfolio: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if nbgrader is not None:
        meta["nbgrader"] = {"schema_version": 3, **nbgrader}
    if pyfolio is not None:
        meta["pyfolio"] = pyfolio
    cell: dict[str, Any] = {"cell_type": kind, "metadata": meta, "source": source}
    if kind == "code":
        cell |= {"execution_count": None, "outputs": []}
    return cell


def _question_placeholder(chapter: int, n: int, kind: str) -> str:
    return (f"**Question {n} ({kind})**\n\n*(Your own question appears here in the notebook "
            f"made for you.)*")


def source_notebook(chapter: int) -> dict[str, Any]:
    """The nbgrader source notebook of ``chapter``'s exercises (nbformat 4, as a dict)."""
    kinds(chapter)  # ValueError for a chapter without exercises
    cells = [_cell("markdown", (
        f"# Chapter {chapter}: graded exercises\n\n"
        f"Each question below was made for you: your classmates have the same kinds of "
        f"question with other numbers. Answer each one in the cell under it, replacing the "
        f"text between the quotes, e.g. `ANSWER = \"0x10, 2\"` (numbers in decimal or hex, "
        f"yes/no words as the question asks). The cell after it checks only that your answer "
        f"has the right number of values; it is graded after you submit. You may use the "
        f"book and the simulator, as in the chapter."))]
    for n, kind in enumerate(kinds(chapter), 1):
        cells.append(_cell("markdown", _question_placeholder(chapter, n, kind),
                           pyfolio={"chapter": chapter, "kind": kind}))
        cells.append(_cell("code", (
            "### BEGIN SOLUTION\n"
            "from pyfolio.exercises.assignments import solution_for\n"
            f"ANSWER = solution_for({chapter}, {kind!r})\n"
            "### END SOLUTION"), {"grade": False, "solution": True, "locked": False,
                                   "task": False, "grade_id": f"answer_{kind}"}))
        cells.append(_cell("code", (
            "from pyfolio.exercises.assignments import check_shape, grade\n\n"
            f"check_shape({chapter}, {kind!r}, ANSWER)\n"
            "### BEGIN HIDDEN TESTS\n"
            f"grade({chapter}, {kind!r}, ANSWER)\n"
            "### END HIDDEN TESTS"), {"grade": True, "solution": False, "locked": True,
                                      "task": False, "points": 1,
                                      "grade_id": f"grade_{kind}"}))
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}}}


def write_source(chapter: int, course: Path | str) -> Path:
    """Write ``course/source/chNN/chNN.ipynb`` (and ``course/nbgrader_config.py`` when the
    course has none); returns the notebook's path."""
    course = Path(course)
    aid = assignment_id(chapter)
    path = course / "source" / aid / f"{aid}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(source_notebook(chapter), indent=1) + "\n")
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(_CONFIG)
    return path


def instance(release: dict[str, Any], student: str, secret: str) -> dict[str, Any]:
    """A copy of the release notebook with ``student``'s questions in its question cells
    (the question text only: the seed is not shown)."""
    seed = seed_for(student, secret)
    nb = json.loads(json.dumps(release))
    n = 0
    for cell in nb["cells"]:
        where = cell.get("metadata", {}).get("pyfolio")
        if cell["cell_type"] != "markdown" or not where:
            continue
        n += 1
        ex = make(int(where["chapter"]), str(where["kind"]), seed)
        cell["source"] = (f"**Question {n} ({ex.kind}): {ex.title}**\n\n```text\n"
                          f"{ex.question()}\n```")
    if not n:
        raise ValueError("the notebook has no question cells (is it an assignment made by "
                         "`python -m pyfolio.exercises assignment`?)")
    return nb


def write_instances(chapter: int, course: Path | str, students: Iterable[str],
                    secret: str) -> list[Path]:
    """Fill ``course/release/chNN/chNN.ipynb`` (made by ``nbgrader generate_assignment``) for
    each student into ``course/instances/STUDENT/chNN/chNN.ipynb``; returns the paths."""
    course = Path(course)
    aid = assignment_id(chapter)
    release_path = course / "release" / aid / f"{aid}.ipynb"
    if not release_path.exists():
        raise ValueError(f"{release_path} does not exist: run `nbgrader generate_assignment "
                         f"{aid}` in {course} first")
    release = json.loads(release_path.read_text())
    out = []
    for student in students:
        path = course / "instances" / _student_id(student) / aid / f"{aid}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(instance(release, student, secret), indent=1) + "\n")
        out.append(path)
    return out


def current_student() -> str:
    """Whose notebook this kernel runs: $PYFOLIO_STUDENT, else, under ``nbgrader
    autograde`` (which runs each submission in ``autograded/STUDENT/ASSIGNMENT/``), the
    STUDENT of the working directory. ValueError otherwise."""
    if os.environ.get(STUDENT_ENV):
        return _student_id(os.environ[STUDENT_ENV])
    cwd = Path.cwd()
    if os.environ.get("NBGRADER_EXECUTION") == "autograde" and cwd.parent.parent.name == \
            "autograded":
        return cwd.parent.name
    raise ValueError(f"cannot tell which student this is: set {STUDENT_ENV}, or run under "
                     f"`nbgrader autograde` (working directory autograded/STUDENT/ASSIGNMENT)")


def check_shape(chapter: int, kind: str, answer: Any) -> None:
    """The visible test: AssertionError unless ``answer`` has as many values as the kind's
    answer. Says nothing about right or wrong."""
    fields = CHAPTERS[chapter].KINDS[kind].fields
    got = len(parse_words(answer)) if answer is not None else 0
    if got != len(fields):
        raise AssertionError(f"Expected {len(fields)} values ({', '.join(fields)}), got {got}.")
    print("The answer has the right number of values; it is graded after you submit.")


def grade(chapter: int, kind: str, answer: Any) -> None:
    """The hidden test: AssertionError with the graded feedback unless ``answer`` is right
    for the current student (needs $PYFOLIO_SECRET)."""
    ex = make(chapter, kind, seed_for(current_student(), secret_from(None)))
    right, feedback = graded_check(ex, answer)
    if not right:
        raise AssertionError(feedback)
    print(feedback)


def solution_for(chapter: int, kind: str) -> str:
    """The current student's answer as it would be typed (the source notebook's solution;
    needs $PYFOLIO_SECRET)."""
    ex = make(chapter, kind, seed_for(current_student(), secret_from(None)))
    return ", ".join(fmt(v, f) for f, v in zip(ex.fields, ex.answer, strict=True))
