"""An answer box for an exercise: type an answer, press Enter or Check, read which parts are right.

Exercise-specific, so it lives with the exercises (the general widgets are in
``pyfolio.widgets``). The widget shows the question and an empty box, never the answer: the
worked solution appears only when the reader presses "Show solution", and in graded mode
(:func:`graded_mode`: the environment variable ``PYFOLIO_GRADED=1``, which ``make lab
GRADED=1`` sets for the whole lab) there is no such button and the checker says only which
parts are right or wrong (:meth:`~pyfolio.exercises.base.Verdict.feedback`).

For the static page, :func:`solution_details` gives the solution as a collapsed "Solution"
block (the lab's working copy of a chapter leaves those cells out).
"""

from __future__ import annotations

import html
import os
from typing import Any

import ipywidgets as widgets
from IPython.display import HTML

from pyfolio.exercises.base import Exercise, Verdict

__all__ = ["GRADED_ENV", "graded_mode", "question_html", "solution_details", "exercise_widget",
           "ExerciseWidget"]

#: the environment variable that switches every exercise of a lab to graded mode
GRADED_ENV = "PYFOLIO_GRADED"


def graded_mode() -> bool:
    """Whether the lab runs graded: ``PYFOLIO_GRADED`` set to anything but "", "0" or "no"."""
    return os.environ.get(GRADED_ENV, "").strip().lower() not in ("", "0", "no", "false")


def question_html(ex: Exercise) -> str:
    """The question as HTML (kind, seed and text), for static pages and the widget."""
    seeded = "" if ex.kind == "question" else f" <small>(kind {ex.kind!r}, seed {ex.seed})</small>"
    return (f"<div class='pyfolio-exercise' style='border:1px solid #ccc;padding:6px'>"
            f"<b>{html.escape(ex.title)}</b>{seeded}"
            f"<pre style='white-space:pre-wrap'>{html.escape(ex.question())}</pre></div>")


def _solution_pre(ex: Exercise) -> str:
    return f"<pre style='white-space:pre-wrap'>{html.escape(ex.solution())}</pre>"


def solution_details(ex: Exercise) -> HTML:
    """The worked solution in a collapsed ``<details>`` block labelled "Solution" (for the
    static page); in graded mode only a note that solutions are hidden."""
    if graded_mode():
        return HTML("<p><i>Solutions are hidden in graded mode.</i></p>")
    return HTML(f"<details class='pyfolio-solution'><summary>Solution</summary>"
                f"{_solution_pre(ex)}</details>")


class ExerciseWidget(widgets.VBox):
    """The answer box of one exercise (see :func:`exercise_widget`)."""

    def __init__(self, ex: Exercise, graded: bool | None = None) -> None:
        self.exercise = ex
        self.graded = graded_mode() if graded is None else graded
        self.box = widgets.Text(placeholder=", ".join(ex.fields), layout={"width": "70%"},
                                description="answer")
        self.check_button = widgets.Button(description="Check", button_style="primary")
        self.verdict = widgets.HTML(
            "<i>Type your answer, then press Enter or Check"
            + (" (graded: you are told which parts are right, not the answer)."
               if self.graded else ".") + "</i>")
        self.solution = widgets.HTML()
        self.box.on_msg(self._on_msg)  # Enter in the box sends {"event": "submit"}
        self.check_button.on_click(lambda _: self.check())
        row: list[widgets.Widget] = [self.box, self.check_button]
        self.solution_button: widgets.ToggleButton | None = None
        if not self.graded:
            self.solution_button = widgets.ToggleButton(value=False, description="Show solution")
            self.solution_button.observe(self._toggle_solution, names="value")
            row.append(self.solution_button)
        super().__init__([widgets.HTML(question_html(ex)), widgets.HBox(row), self.verdict,
                          self.solution])

    def _on_msg(self, _: Any, content: dict[str, Any], buffers: Any) -> None:
        if content.get("event") == "submit":
            self.check()

    def check(self) -> Verdict:
        """Check the box's answer and show the feedback (graded or practice)."""
        v = self.exercise.check(self.box.value)
        colour = "#1a6b1a" if v.right else "#b00020"
        self.verdict.value = (f"<span style='color:{colour}'>"
                              f"{html.escape(v.feedback(graded=self.graded))}</span>")
        return v

    def _toggle_solution(self, change: dict[str, Any]) -> None:
        shown = bool(change["new"])
        assert self.solution_button is not None
        self.solution_button.description = "Hide solution" if shown else "Show solution"
        self.solution.value = f"<b>Solution</b>{_solution_pre(self.exercise)}" if shown else ""


def exercise_widget(ex: Exercise, graded: bool | None = None) -> ExerciseWidget:
    """An ipywidgets box: the question, a text field (Enter checks), a Check button, the
    verdict, and (except in graded mode) a "Show solution" toggle."""
    return ExerciseWidget(ex, graded)
