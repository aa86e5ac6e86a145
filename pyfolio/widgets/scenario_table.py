"""Scenario table: pick a kernel-lab scenario and read the simulator and the kernel side by
side, step by step (:func:`pyfolio.kernel_lab.compare.side_by_side`, as an HTML table).

An ``ipywidgets.HTML`` holds the table, so the page renders it as a table, also as a static
snapshot (a Markdown table inside a widget would print as pipes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
from markdown_it import MarkdownIt

from pyfolio.kernel_lab import SCENARIOS
from pyfolio.kernel_lab.compare import side_by_side

__all__ = ["ScenarioTable", "scenario_table", "markdown_html"]

_MD = MarkdownIt("commonmark").enable("table")


def markdown_html(text: str) -> str:
    """Markdown (with GitHub tables) as HTML."""
    return str(_MD.render(text))


class ScenarioTable(widgets.VBox):
    """A dropdown of scenarios over the side-by-side table of the chosen one."""

    def __init__(self, sims: Mapping[str, Any], kers: Mapping[str, Any],
                 value: str | None = None) -> None:
        names = [n for n in kers if n in sims]
        if not names:
            raise ValueError("no scenario has both simulator and kernel observations")
        if value is not None and value not in names:
            raise ValueError(f"scenario {value!r} is not one of {', '.join(names)}")
        self.sims, self.kers = sims, kers
        self.pick = widgets.Dropdown(options=names, value=value or names[0],
                                     description="scenario")
        self.table = widgets.HTML()
        self.pick.observe(lambda _: self.redraw(), names="value")
        super().__init__([self.pick, self.table])
        self.redraw()

    def redraw(self) -> None:
        name = self.pick.value
        self.table.value = markdown_html(side_by_side(SCENARIOS[name], self.sims[name],
                                                      self.kers[name]))


def scenario_table(sims: Mapping[str, Any], kers: Mapping[str, Any],
                   value: str | None = None) -> ScenarioTable:
    """A widget: choose a scenario, see its steps on the simulator and the kernel."""
    return ScenarioTable(sims, kers, value)
