"""Design review widget: toggle the split-fallback design and step through its events.

Both designs run the same scenario (:func:`pyfolio.reading.review.fallback_scenario`: THPs
migrated to a device without large pages). The toggle picks the design whose call
stack is drawn at the chosen step; the table under the figure shows what a reviewer
compares: the machine state's fingerprint (equal for both designs), the pages that
reached the device, and how many branches on ``unmapped`` the reader of that design's
entry point must hold in mind.

:func:`file_design_review` is the same for the book's exercise on *file-backed* folios
(:mod:`pyfolio.reading.file_designs`): pick a case and one of three designs ((a) as posted,
(a) with the book's fix, (b) with the book's second entry point); the table shows each
design's result, what debug_vm finds after it, whether the states agree, and the
conditions in the shared ``__folio_split()`` path under each.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.reading.file_designs import (
    CASES,
    DESIGN_TITLES,
    FILE_DESIGNS,
    file_design_steps,
    file_split_scenario,
    shared_path_counts,
)
from pyfolio.reading.review import (
    DESIGNS,
    ENTRY,
    DesignStep,
    design_steps,
    fallback_scenario,
    reader_load,
    state_digest,
)
from pyfolio.views.design_steps import draw_design_step
from pyfolio.widgets._common import App, Message, png

__all__ = ["design_review", "DesignReview", "file_design_review", "FileDesignReview"]


class DesignReview(App):
    """The design review app (see :func:`design_review`)."""

    def __init__(self, seed: int = 0, thps: int = 1) -> None:
        self.seed, self.thps = seed, thps
        self.design = widgets.ToggleButtons(options=list(DESIGNS), value=DESIGNS[0],
                                            description="design")
        self.step = widgets.IntSlider(value=2, min=1, max=1, description="step")
        self.both = widgets.Checkbox(value=False, description="show both")
        self.reset_button = widgets.Button(description="Reset")
        self.message = Message()
        self.table = widgets.HTML()
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        for w in (self.design, self.step, self.both):
            w.observe(lambda _: self.redraw(), names="value")
        self.reset_button.on_click(lambda _: self.reset())
        super().__init__([widgets.HBox([self.design, self.reset_button]),
                          widgets.HBox([self.step, self.both]), self.message, self.image,
                          self.table])
        self.reset()

    def reset(self) -> None:
        """Run the scenario once per design and go back to step 2 (the freeze)."""
        self.runs = {d: fallback_scenario(d, self.seed, thps=self.thps, small_pages=0)
                     for d in DESIGNS}
        self.steps = design_steps(*self.runs.values())
        self._pngs: dict[tuple[int, str, bool], bytes] = {}
        self.step.max = len(self.steps)
        self.step.value = min(2, len(self.steps))
        self.message.ok(f"{self.thps} THP(s) migrated to a device without 2 MiB pages, "
                        f"once per design")
        self.redraw()

    def _rows(self) -> str:
        d = self.design.value
        run, load = self.runs[d], reader_load(ENTRY[d], "unmapped")
        other = [x for x in DESIGNS if x != d][0]
        same = state_digest(run.system) == state_digest(self.runs[other].system)
        rows = [("state fingerprint", f"{state_digest(run.system)} "
                 f"({'same as' if same else 'DIFFERENT from'} {other})"),
                ("pages on the device", str(sum(r.migrated for r in run.results))),
                (f"reader of {ENTRY[d]}() reads", ", ".join(f"{f}()" for f in load.functions)),
                ("branches there / on unmapped", f"{len(load.branches)} / {len(load.on_flag)}")]
        return "<table>" + "".join(f"<tr><td><b>{html.escape(k)}</b></td>"
                                   f"<td><code>{html.escape(v)}</code></td></tr>"
                                   for k, v in rows) + "</table>"

    def static_figure(self) -> Figure:
        """The call stack at the current step (one design, or both side by side)."""
        step = self.steps[self.step.value - 1]
        return draw_design_step(step, None if self.both.value else [self.design.value])

    def redraw(self) -> None:
        # a picture per (step, design, both): drawn on the first visit, then reused (a stack
        # figure takes 150-300 ms to draw; revisiting a step should not)
        key = (self.step.value, self.design.value, self.both.value)
        if key not in self._pngs:
            self._pngs[key] = png(self.static_figure())
        self.image.value = self._pngs[key]
        self.table.value = self._rows()


def design_review(seed: int = 0, thps: int = 1) -> DesignReview:
    """A widget: pick a split-fallback design and a step; see which functions the
    fallback passes through, and that the resulting state is the same for both designs.
    ``.static_figure()`` gives the current picture for print."""
    return DesignReview(seed, thps)


class FileDesignReview(widgets.VBox):
    """The book's file-backed design exercise as an app (see :func:`file_design_review`)."""

    def __init__(self, case: str = "memfd-eof", seed: int = 0) -> None:
        self.seed = seed
        self.case = widgets.Dropdown(options=list(CASES), value=case, description="case")
        self.design = widgets.ToggleButtons(options=list(FILE_DESIGNS), value=FILE_DESIGNS[2],
                                            description="design")
        self.step = widgets.IntSlider(value=1, min=1, max=1, description="step")
        self.all = widgets.Checkbox(value=False, description="show all designs")
        self.message = Message()
        self.table = widgets.HTML()
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.case.observe(lambda _: self.reset(), names="value")
        for w in (self.design, self.step, self.all):
            w.observe(lambda _: self.redraw(), names="value")
        super().__init__([self.case, self.design, widgets.HBox([self.step, self.all]),
                          self.message, self.image, self.table])
        self.counts = {c.design: c for c in shared_path_counts()}
        self.reset()

    def reset(self) -> None:
        """Run the chosen case once per design."""
        self.runs = {d: file_split_scenario(d, self.case.value, self.seed) for d in FILE_DESIGNS}
        try:
            self.steps = file_design_steps(*self.runs.values())
            self.stepped = list(FILE_DESIGNS)
        except ValueError:  # (a) as posted counted a failure: step through the other two
            self.stepped = list(FILE_DESIGNS[1:])
            self.steps = file_design_steps(*(self.runs[d] for d in self.stepped))
        self.step.max = max(1, len(self.steps))
        self.step.value = 1
        self.message.ok(f"{CASES[self.case.value]}: split to order 0 by the book's caller, "
                        f"once per design")
        self.redraw()

    def _rows(self) -> str:
        d = self.design.value
        run, count = self.runs[d], self.counts[d]
        same = [o for o in FILE_DESIGNS if o != d and self.runs[o].digest == run.digest]
        rows = [("design", DESIGN_TITLES[d]), ("split returned", str(run.ret)),
                ("page cache after", f"{len(run.after)} folio(s), orders "
                 f"{sorted({o for _, o in run.after})}"),
                ("debug_vm after", "; ".join(f"{v.kind}: {v.detail}" for v in run.violations)
                 or "clean"),
                ("state fingerprint", f"{run.digest} (same as: {', '.join(same) or 'none'})"),
                ("conditions in __folio_split()'s body", f"{len(count.shared)} "
                 f"({count.added:+d} against no flag, {count.for_files:+d} for files), "
                 f"{len(count.on_flag)} on unmapped")]
        if count.entry:
            rows.append((f"conditions in {count.entry}()", str(len(count.own))))
        return "<table>" + "".join(f"<tr><td><b>{html.escape(k)}</b></td>"
                                   f"<td><code>{html.escape(v)}</code></td></tr>"
                                   for k, v in rows) + "</table>"

    def static_figure(self) -> Figure:
        """The call stack at the current step (the chosen design, or all stepped ones)."""
        d = self.design.value
        step = self.steps[self.step.value - 1] if self.steps else DesignStep(
            f"no events: the split returned {self.runs[d].ret} before the freeze", "(none)",
            tuple((x, ()) for x in self.stepped))
        shown = self.stepped if self.all.value else [d if d in self.stepped else
                                                     self.stepped[0]]
        return draw_design_step(step, shown)

    def redraw(self) -> None:
        self.image.value = png(self.static_figure())
        self.table.value = self._rows()


def file_design_review(case: str = "memfd-eof", seed: int = 0) -> FileDesignReview:
    """A widget for the book's exercise: split an unmapped page-cache folio under each
    design of chapter 12 (with what each needs for file folios); compare results, debug_vm
    findings, states and the conditions each adds to the shared path. ``.static_figure()``
    gives the current picture for print."""
    return FileDesignReview(case, seed)
