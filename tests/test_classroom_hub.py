"""A class on a real JupyterHub (localhost only): five students get their own instance of
chapter 2's nbgrader assignment, run it in their own kernels with some wrong answers, and
nbgrader's autograde gives each exactly the grade the checker gives.

Needs JupyterHub, nbgrader and configurable-http-proxy (``make classroom`` installs them;
``make test`` runs it first): skipped, with the reason, where one cannot be installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pyfolio.exercises import make
from pyfolio.exercises.assignments import write_instances, write_source
from pyfolio.exercises.base import fmt
from pyfolio.exercises.grading import SECRET_ENV, seed_for
from pyfolio.exercises.hub import HubClient, collect, deliver

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "classroom"))
from localhub import LocalHub, missing  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("classroom-hub")]

CHAPTER, ASSIGNMENT = 2, "ch02"
STUDENTS = [f"student{i}" for i in range(1, 6)]
SECRET = "hub-test-secret"


def typed_answer(student: int, j: int, kind: str) -> str:
    """What student ``student`` types for the ``j``-th kind: right, a wrong value (when
    (student + j) % 3 == 0), or for student5's first question too few values."""
    ex = make(CHAPTER, kind, seed_for(STUDENTS[student], SECRET))
    values = list(ex.answer)
    if student == 4 and j == 0:
        return "1"
    if (student + j) % 3 == 0:
        values[-1] = values[-1] + 1
    return ", ".join(fmt(v, f) for f, v in zip(ex.fields, values, strict=True))


def answer_cells(nb: dict[str, Any]) -> list[tuple[int, str]]:
    """(cell index, kind) of each autograded answer cell."""
    return [(i, c["metadata"]["nbgrader"]["grade_id"].removeprefix("answer_"))
            for i, c in enumerate(nb["cells"])
            if c["metadata"].get("nbgrader", {}).get("solution")]


def nbgrader(course: Path, *args: str, secret: bool = False) -> None:
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    if secret:
        env[SECRET_ENV] = SECRET
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args],
                          cwd=course, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def student_works(client: HubClient, n: int) -> None:
    """Student n opens the delivered notebook, types the answers, runs every cell in their
    own kernel and saves."""
    s, path = STUDENTS[n], f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
    nb = client.get_notebook(s, path)
    text = json.dumps(nb)
    assert "BEGIN HIDDEN TESTS" not in text and "grade(" not in text  # nbgrader removed them
    assert str(seed_for(s, SECRET)) not in text  # the page never shows the seed
    for j, (i, kind) in enumerate(answer_cells(nb)):
        nb["cells"][i]["source"] = f'ANSWER = "{typed_answer(n, j, kind)}"'
    ran = client.run_notebook(s, path, nb)
    checks = [c for c in ran["cells"] if "check_shape(" in "".join(c["source"])]
    assert len(checks) == 3
    for j, cell in enumerate(checks):
        said = json.dumps(cell["outputs"])
        if n == 4 and j == 0:
            assert "Expected 2 values" in said  # the visible test catches the shape only
        else:
            assert "right number of values" in said and '"error"' not in said, said


@pytest.mark.skipif(missing() is not None, reason=f"classroom hub: {missing()}")
def test_a_class_on_jupyterhub_is_graded_as_the_checker_says(tmp_path: Path) -> None:
    course = tmp_path / "course"
    write_source(CHAPTER, course)
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    write_instances(CHAPTER, course, STUDENTS, SECRET)

    with LocalHub(tmp_path / "hub") as hub:
        client = HubClient(hub.url, hub.token)
        client.create_users(STUDENTS)
        client.start_servers(STUDENTS)
        assert len(deliver(client, course, ASSIGNMENT, STUDENTS)) == 5
        with ThreadPoolExecutor(len(STUDENTS)) as pool:
            list(pool.map(lambda n: student_works(client, n), range(len(STUDENTS))))
        submitted = collect(client, course, ASSIGNMENT, STUDENTS)
        client.stop_servers(STUDENTS)
        proc = hub.proc
    assert proc is not None and proc.poll() is not None  # the hub (and its group) stopped
    assert len(submitted) == 5

    nbgrader(course, "autograde", ASSIGNMENT, "--create", secret=True)
    nbgrader(course, "generate_feedback", ASSIGNMENT)

    from nbgrader.api import Gradebook

    kinds = [k for _, k in answer_cells(json.loads(submitted[0].read_text()))]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for n, s in enumerate(STUDENTS):
            scores = {g.name: g.score for g in gb.find_submission_notebook(
                ASSIGNMENT, ASSIGNMENT, s).grades}
            for j, kind in enumerate(kinds):
                ex = make(CHAPTER, kind, seed_for(s, SECRET))
                right = ex.check(typed_answer(n, j, kind))[0]
                assert scores[f"grade_{kind}"] == (1.0 if right else 0.0), (s, kind)
    wrong = [(n, j) for n in range(5) for j in range(3) if (n + j) % 3 == 0 or (n, j) == (4, 0)]
    assert 0 < len(wrong) < 15  # some wrong, some right
    for s in STUDENTS:
        html = (course / "feedback" / s / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
        assert "grade_merge" in html or "Question 1" in html
