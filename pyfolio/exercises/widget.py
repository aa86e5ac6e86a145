"""An answer box for an exercise: type an answer, press Check, read right or wrong and why.

Exercise-specific, so it lives with the exercises (the general widgets are in
``pyfolio.widgets``). On a static page the widget shows the question and an empty box;
``question_html`` is the same text as plain HTML, the static fallback.
"""

from __future__ import annotations

import html
from typing import Any

from pyfolio.exercises.base import Exercise

__all__ = ["exercise_widget", "question_html"]


def question_html(ex: Exercise) -> str:
    """The question as HTML (kind, seed and text), for static pages and the widget."""
    return (f"<div style='background:white;border:1px solid #ccc;padding:6px'>"
            f"<b>{html.escape(ex.title)}</b> <small>(kind {ex.kind!r}, seed {ex.seed})</small>"
            f"<pre style='white-space:pre-wrap'>{html.escape(ex.question())}</pre></div>")


def exercise_widget(ex: Exercise) -> Any:
    """An ipywidgets box: the question, a text field, a Check button and the verdict."""
    import ipywidgets as widgets

    box = widgets.Text(placeholder="your answer, e.g. 1, 2, yes", layout={"width": "60%"})
    button = widgets.Button(description="Check")
    verdict = widgets.HTML("<i>Type an answer and press Check (live in <code>make lab</code>).</i>")

    def on_check(_: Any) -> None:
        ok, why = ex.check(box.value)
        colour = "green" if ok else "firebrick"
        verdict.value = f"<span style='color:{colour}'>{html.escape(why)}</span>"

    button.on_click(on_check)
    return widgets.VBox([widgets.HTML(question_html(ex)), widgets.HBox([box, button]), verdict])
