"""pyfolio.exercises: every seed makes a question whose checker accepts the simulator's
answer and rejects a wrong one; the CLI's output is pinned by golden files."""

from __future__ import annotations

import html
import subprocess
import sys
from pathlib import Path

import pytest

from pyfolio.exercises import CHAPTERS, exercises, kinds, make
from pyfolio.exercises.__main__ import main, render
from pyfolio.exercises.base import Exercise

GOLDEN = Path(__file__).parent / "golden"
#: (chapter, seed, solve) pinned by tests/golden/chNN-sSEED[-c].out, for every chapter that
#: has golden files (a chapter's author adds them when its exercises are stable)
GOLDEN_CASES = [(int(f.name[2:4]), int(f.stem.split("-")[1][1:]), f.stem.endswith("-c"))
                for f in sorted(GOLDEN.glob("ch*.out"))]


def _wrong(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return "nonsense"


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_every_seed_checks_its_own_answer_and_rejects_a_wrong_one(chapter: int) -> None:
    for seed in range(12):
        for ex in exercises(chapter, seed):
            assert ex.question() and ex.solution().startswith(ex.steps[0])
            ok, why = ex.check(ex.answer)
            assert ok, (ex, why)
            assert ex.check(" ".join(map(str, ex.answer)))[0], ex  # as a typed string
            for i in range(len(ex.answer)):
                bad = list(ex.answer)
                bad[i] = _wrong(bad[i])
                ok, why = ex.check(tuple(bad))
                assert not ok and why.startswith("Wrong"), (ex, i, why)


def test_at_least_three_kinds_per_chapter() -> None:
    assert all(len(kinds(c)) >= 3 for c in CHAPTERS)


def test_same_seed_same_question_and_answer() -> None:
    for c in CHAPTERS:
        for k in kinds(c):
            a, b = make(c, k, 5), make(c, k, 5)
            assert (a.question(), a.answer) == (b.question(), b.answer)


def test_seeds_differ() -> None:
    assert len({make(4, "indices", s).question() for s in range(10)}) == 10


def test_check_explains_missing_and_miscounted_answers() -> None:
    ex = make(4, "indices", 3)
    none = ex.check(None)
    assert (none.right, none.parts) == (False, ())
    assert str(none) == f"No answer yet. {ex.answer_format()}."
    ok, why = ex.check("1 2")
    assert not ok and "Expected 5 values" in why
    hexed = ", ".join(hex(v) for v in ex.answer)
    assert ex.check(hexed)[0]


def _errno_exercise(result: str) -> Exercise:
    """A chapter 8 "errno" exercise whose split returns ``result`` ("0", "EAGAIN", ...)."""
    return next(ex for s in range(500) if (ex := make(8, "errno", s)).answer[0] == result)


def test_checker_accepts_the_books_notations() -> None:
    """-EAGAIN, EAGAIN, 11 and -11 all say EAGAIN; 0 says success; hex or decimal for numbers;
    yes/no, true/false, set/clear for bits; - and _ alike in names."""
    failed = _errno_exercise("EAGAIN")
    n = failed.answer[1]
    for said in ("-EAGAIN", "EAGAIN", "eagain", "11", "-11", "0xb"):
        assert failed.check(f"{said}, {n}").right, said
    for said in ("0", "EINVAL", "-22", "EBUSY", "again"):
        assert not failed.check(f"{said}, {n}").right, said
    ok = _errno_exercise("0")
    assert ok.check(f"0 {hex(ok.answer[1])}").right and not ok.check(f"-EAGAIN {ok.answer[1]}")
    head = make(3, "head", 1)
    assert head.check(f"{head.answer[0]:#x} {head.answer[1]}").right
    assert head.check(f"{head.answer[0]} {head.answer[1]}").right
    bits = make(7, "bits", 1)  # a PFN, then four yes/no
    words = {True: ("yes", "true", "set", "1", "Yes"), False: ("no", "false", "clear", "0", "NO")}
    for i in range(5):
        said = [words[v][i] if isinstance(v, bool) else hex(v) for v in bits.answer]
        assert bits.check(" ".join(said)).right, said


def test_feedback_names_the_wrong_parts_and_never_the_expected_values() -> None:
    for c in CHAPTERS:
        for ex in exercises(c, 2):
            bad = tuple(_wrong(v) for v in ex.answer)
            v = ex.check(bad)
            assert not v.right and v.score == 0 and all(not p.right for p in v.parts)
            for graded in (False, True):
                text = v.feedback(graded=graded)
                assert all(p.field in text for p in v.parts), text
                assert ex.solution().splitlines()[-1] not in text
            graded_text = v.feedback(graded=True)
            assert "Hint" not in graded_text and "you said" not in graded_text
            half = ex.check(tuple(bad[:1]) + tuple(ex.answer[1:]))
            if len(ex.answer) > 1:
                assert half.score == (len(ex.answer) - 1) / len(ex.answer)
                assert f"({len(ex.answer) - 1} of {len(ex.answer)} right)" in half.feedback()
                assert " right)" not in half.feedback(True)


def test_unknown_chapter_or_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="no exercises for chapter 99"):
        kinds(99)
    with pytest.raises(ValueError, match="has no exercise kind 'nope'"):
        make(2, "nope", 0)


def _golden_name(chapter: int, seed: int, solve: bool) -> str:
    return f"ch{chapter:02d}-s{seed}{'-c' if solve else ''}.out"


@pytest.mark.parametrize(("chapter", "seed", "solve"), GOLDEN_CASES,
                         ids=[_golden_name(*c) for c in GOLDEN_CASES])
def test_cli_output_matches_golden(chapter: int, seed: int, solve: bool,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(chapter), "-s", str(seed)] + (["-c"] if solve else [])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out == (GOLDEN / _golden_name(chapter, seed, solve)).read_text()


def test_cli_echoes_its_arguments_and_accepts_long_options() -> None:
    text = render(3, 2, "head", True)
    assert text.splitlines()[:4] == ["ARG chapter 3", "ARG seed 2", "ARG kind head",
                                     "ARG solve True"]
    assert "Answer: head pfn = " in text


def test_cli_runs_as_a_module() -> None:
    done = subprocess.run([sys.executable, "-m", "pyfolio.exercises", "--chapter", "4",
                           "--seed", "3", "--solve", "-k", "indices"],
                          capture_output=True, text=True, check=True)
    assert done.stdout == render(4, 3, "indices", True) + "\n"


def test_cli_rejects_an_unknown_chapter(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["99"])
    assert "no exercises for chapter 99" in capsys.readouterr().err


def test_exercise_widget_hides_the_solution_until_asked_and_checks_on_enter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pyfolio.exercises.widget import GRADED_ENV, exercise_widget, solution_details

    monkeypatch.delenv(GRADED_ENV, raising=False)
    ex = _errno_exercise("EAGAIN")
    w = exercise_widget(ex)
    shown = " ".join(getattr(c, "value", "") for c in w.children)
    assert ex.question().split(".")[0] in shown and "Answer:" not in shown
    assert w.solution.value == "" and w.solution_button is not None
    n = ex.answer[1]
    w.box.value = f"-EAGAIN, {n}"
    w._on_msg(w.box, {"event": "submit"}, [])  # what the front end sends on Enter
    assert "Right" in w.verdict.value
    w.box.value = f"0, {n}"
    assert not w.check().right and f"Wrong: {html.escape(ex.fields[0])}" in w.verdict.value
    w.solution_button.value = True
    assert html.escape(f"Answer: {ex.fields[0]} = EAGAIN") in w.solution.value
    assert w.solution_button.description == "Hide solution"
    w.solution_button.value = False
    assert w.solution.value == ""
    assert "<summary>Solution</summary>" in solution_details(ex).data


def test_graded_mode_has_no_solution_and_names_only_the_wrong_parts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pyfolio.exercises.widget import GRADED_ENV, exercise_widget, solution_details

    monkeypatch.setenv(GRADED_ENV, "1")
    ex = make(4, "indices", 4)  # five numbers
    w = exercise_widget(ex)
    assert w.graded and w.solution_button is None
    assert all("Solution" not in getattr(c, "description", "") for c in w.children[1].children)
    w.box.value = " ".join(map(str, (ex.answer[0], *(v + 1 for v in ex.answer[1:]))))
    w.check()
    f = ex.fields
    assert f"Wrong: {', '.join(f[1:])}. Right: {f[0]}." in w.verdict.value
    assert "Hint" not in w.verdict.value and "you said" not in w.verdict.value
    assert "hidden in graded mode" in solution_details(ex).data
    assert ex.solution().splitlines()[-1] not in solution_details(ex).data
