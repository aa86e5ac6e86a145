"""PMD -> PTE remap viewer: pick a trigger and watch the PMD entry become a PTE table.

Each trigger runs once, as the kernel runs it, and is recorded from inside
(:func:`~pyfolio.views.record_events`): the state right after its split_huge_pmd event (what
mprotect/munmap reach through vma_adjust_trans_huge(), MADV_DONTNEED through
zap_pmd_range() and a COW write through do_huge_pmd_wp_page()'s fallback), then the end of
the operation. Before the split frame, :func:`pmd_remap_frames` adds frames that reveal the
512 new entries in PTE order, as __split_huge_pmd_locked() fills the table (the entries
shown are the ones the split wrote; only their order of appearance is staged).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from pyfolio.sim.units import KiB, MiB
from pyfolio.system import Process, System
from pyfolio.views import Snapshot, before_after, draw_cells, record, record_events
from pyfolio.views._style import STATES
from pyfolio.widgets._common import App, Message, png

__all__ = ["TRIGGERS", "pmd_remap_frames", "pmd_remap_viewer", "PmdRemapViewer"]

#: trigger name -> (what it does, the operation after the PMD split)
TRIGGERS: dict[str, str] = {
    "mprotect one page": "mprotect(addr + 4 KiB, 4 KiB, PROT_READ)",
    "munmap part": "munmap(addr + 1 MiB, 1 MiB)",
    "MADV_DONTNEED part": "madvise(addr, 64 KiB, MADV_DONTNEED)",
    "COW after fork": "fork(), then the parent writes addr + 8 KiB",
}


def _op(trigger: str, p: Process, a: int) -> Callable[[], object]:
    return {"mprotect one page": lambda: p.mprotect(a + 4 * KiB, 4 * KiB, "r"),
            "munmap part": lambda: p.munmap(a + 1 * MiB, 1 * MiB),
            "MADV_DONTNEED part": lambda: p.madvise(a, 64 * KiB, "dontneed"),
            "COW after fork": lambda: p.write(a + 8 * KiB, 7)}[trigger]


def pmd_remap_frames(trigger: str, *, fill_steps: int = 8,
                     seed: int = 0) -> tuple[System, Process, int, list[Snapshot]]:
    """Run ``trigger`` on a fresh PMD-mapped THP and return the frames to step through:
    the start (and fork() for the COW trigger), the PTE table being filled, the state
    right after the split inside the trigger, and the trigger's end."""
    m = System(ram="64M", thp="madvise", seed=seed)
    p, a = m.spawn_with_thp()
    frames = record(m, [("fork()", p.fork)], proc=p, addr=a) \
        if trigger == "COW after fork" else []
    inside = record_events(m, _op(trigger, p, a), ["split_huge_pmd"], proc=p, addr=a)
    what = TRIGGERS[trigger].split("then ")[-1]  # the operation that splits
    inside[-2] = replace(inside[-2], label=f"split_huge_pmd(), in: {what}")
    inside[-1] = replace(inside[-1], label=f"{what}: done")
    frames = frames + inside[1:] if frames else inside
    k = len(frames) - 2  # the frame right after the split
    frames = frames[:k] + _fill(frames[k], fill_steps) + frames[k:]
    return m, p, a, [replace(f, step=i) for i, f in enumerate(frames)]


def _fill(after: Snapshot, n: int) -> list[Snapshot]:
    """Frames showing the first i*512/n entries of the new PTE table written."""
    assert after.cells is not None
    out = []
    none = STATES.index("none")
    for i in range(n):
        k = i * 512 // n
        state = after.cells.state.copy()
        state[k:512] = none
        cells = replace(after.cells, state=state, pfn=np.where(np.arange(len(state)) < k,
                                                               after.cells.pfn, -1),
                        pmd_kind=("table",) + after.cells.pmd_kind[1:])
        out.append(replace(after, label=f"__split_huge_pmd_locked(): {k} of 512 PTEs written",
                           cells=cells, events=()))
    return out


class PmdRemapViewer(App):
    """The remap viewer app (see :func:`pmd_remap_viewer`)."""

    def __init__(self, trigger: str = "mprotect one page") -> None:
        self.trigger = widgets.Dropdown(options=list(TRIGGERS), value=trigger,
                                        description="trigger")
        self.run_button = widgets.Button(description="Run", button_style="primary")
        self.reset_button = widgets.Button(description="Reset")
        self.step = widgets.IntSlider(value=0, min=0, max=0, description="step")
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.message = Message()
        self.events = widgets.HTML()
        self.run_button.on_click(lambda _: self.run())
        self.reset_button.on_click(lambda _: self.run())
        self.step.observe(lambda _: self.redraw(), names="value")
        # a new trigger is recorded at once: the frames and the message always belong to the
        # trigger the dropdown shows (Run records it again on a fresh machine)
        self.trigger.observe(lambda _: self.run(), names="value")
        super().__init__([widgets.HBox([self.trigger, self.run_button, self.reset_button]),
                          self.step, self.message, self.image, self.events])
        self.run()

    def run(self) -> None:
        """Record the chosen trigger on a fresh machine; show its first frame."""
        self.recorded = self.trigger.value
        self.system, self.proc, self.addr, self.frames = pmd_remap_frames(self.recorded)
        self._pngs: dict[int, bytes] = {}  # step -> its picture, drawn on the first visit
        self.step.max = len(self.frames) - 1
        if self.step.value == 0:
            self.redraw()
        self.step.value = 0

    @property
    def frame(self) -> Snapshot:
        return self.frames[self.step.value]

    def figure(self, frame: Snapshot) -> Figure:
        assert frame.cells is not None
        return draw_cells(frame.cells, title=frame.label)

    def static_figure(self) -> Figure:
        """Before (PMD leaf) and after (the trigger done on PTEs), for print."""
        return before_after(self.frames[0], self.frames[-1], self.figure)

    def redraw(self) -> None:
        f = self.frame
        if self.step.value not in self._pngs:
            self._pngs[self.step.value] = png(self.figure(f))
        self.image.value = self._pngs[self.step.value]
        if f.error:
            self.message.error(f.error)
        else:
            self.message.ok(f"PMD entry: {f.pmd_kind}; {self.recorded}: "
                            f"{TRIGGERS[self.recorded]}")
        self.events.value = "<br>".join(f"<code>{e}</code>" for e in f.events
                                        if e.name != "mm_page_alloc")[:4000]


def pmd_remap_viewer(trigger: str = "mprotect one page") -> PmdRemapViewer:
    """A widget: choose a trigger (mprotect a page, munmap part, MADV_DONTNEED part, COW
    after fork), press Run, and step through the PMD becoming a PTE table entry by entry.
    ``.static_figure()`` gives the before/after still."""
    return PmdRemapViewer(trigger)
