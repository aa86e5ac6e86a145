"""Refcount watcher: step a scenario one operation at a time with the count panel beside it.

SimPy-style: :meth:`RefcountWatcher.step` runs the next operation on the model and records a
frame, :meth:`RefcountWatcher.run` runs until a step number; the slider (and Back) only move
over frames already recorded, so going back never undoes the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.sim.errors import MmError
from pyfolio.sim.units import KiB, MiB
from pyfolio.system import Process, System
from pyfolio.views import Snapshot, Step, count_panel, count_timeline, snapshot
from pyfolio.widgets._common import App, Message, png

__all__ = ["Scenario", "fork_cow_scenario", "refcount_watcher", "RefcountWatcher"]


@dataclass
class Scenario:
    """A system, the steps to run on it, and what to watch (the folio mapped at ``addr`` in
    ``proc``, or the folio holding frame ``pfn``)."""

    system: System
    steps: Sequence[Step]
    proc: Process | None = None
    addr: int | None = None
    pfn: int | None = None


def fork_cow_scenario(pin_before_fork: bool = True) -> Scenario:
    """THP fault, a pin, fork, a COW write in the child, the child's exit, the unpin.

    With ``pin_before_fork=False`` the parent pins only after the child has exited (fork
    then shares the THP; with the pin first, fork copies instead: the folio may be pinned).
    """
    m = System(ram="64M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    kids: list[Process] = []
    pin: Step = ("parent pins a page", lambda: p.pin(a + 16 * KiB, 4 * KiB))
    life: list[Step] = [
        ("fork()", lambda: kids.append(p.fork())),
        ("child writes a page (COW)", lambda: kids[0].write(a + 8 * KiB, 1)),
        ("child exit()", lambda: kids[0].exit()),
    ]
    steps = [pin, *life] if pin_before_fork else [*life, pin]
    return Scenario(m, [("touch 2 MiB (THP fault)", lambda: p.touch(a, 2 * MiB)), *steps,
                        ("parent unpins", lambda: p.unpin(a + 16 * KiB, 4 * KiB))],
                    proc=p, addr=a)


class RefcountWatcher(App):
    """The refcount watcher app (see :func:`refcount_watcher`)."""

    def __init__(self, scenario: Callable[[], Scenario]) -> None:
        self.make = scenario
        self._hold = False  # True while run() steps: redraw once at the end
        self.step_button = widgets.Button(description="Step", button_style="primary")
        self.back_button = widgets.Button(description="Back")
        self.reset_button = widgets.Button(description="Reset")
        self.slider = widgets.IntSlider(value=0, min=0, max=0, description="frame")
        self.label = widgets.HTML()
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.message = Message()
        self.step_button.on_click(lambda _: self.step())
        self.back_button.on_click(lambda _: self.back())
        self.reset_button.on_click(lambda _: self.reset())
        self.slider.observe(lambda _: self.redraw(), names="value")
        super().__init__([widgets.HBox([self.step_button, self.back_button, self.reset_button,
                                        self.slider]), self.label, self.message, self.image])
        self.reset()

    # -- SimPy-style core ------------------------------------------------------------------
    def reset(self) -> None:
        """Rebuild the scenario from scratch; frame 0 is the state before any step."""
        self.scenario = self.make()
        self.frames = [self._snap(0, "start", 0, None)]
        #: frame index -> its count panel as PNG (a recorded frame never changes)
        self._pngs: dict[int, bytes] = {}
        self.slider.max = 0
        self.redraw()

    @property
    def done(self) -> bool:
        return len(self.frames) > len(self.scenario.steps)

    def step(self) -> Snapshot | None:
        """Run the next operation (or, if the slider is behind, move it forward)."""
        if self.slider.value < len(self.frames) - 1:
            self.slider.value += 1
            return self.frames[self.slider.value]
        if self.done:
            self.message.ok("the scenario is over (Reset to start again)")
            return None
        i = len(self.frames)
        label, fn = self.scenario.steps[i - 1]
        mark, error = self.scenario.system.trace.mark(), None
        try:
            fn()
        except MmError as e:
            error = str(e)
        self.frames.append(self._snap(i, label, mark, error))
        self.slider.max = i
        self.slider.value = i
        return self.frames[-1]

    def run(self, until: int | None = None) -> None:
        """Step until frame ``until`` exists (default: the end of the scenario)."""
        end = len(self.scenario.steps) if until is None else min(until, len(self.scenario.steps))
        self._hold = True
        try:
            while len(self.frames) <= end:
                self.slider.value = len(self.frames) - 1
                self.step()
        finally:
            self._hold = False
        self.redraw()

    def back(self) -> None:
        """Show the previous frame (the model is not rewound)."""
        self.slider.value = max(0, self.slider.value - 1)

    def _snap(self, i: int, label: str, mark: int, error: str | None) -> Snapshot:
        s = self.scenario
        return snapshot(s.system, i, label, s.system.trace.since(mark) if i else (), error,
                        proc=s.proc, addr=s.addr, pfn=s.pfn)

    # -- view ------------------------------------------------------------------------------
    @property
    def frame(self) -> Snapshot:
        return self.frames[self.slider.value]

    def static_figure(self) -> Figure:
        """The counts over every recorded frame (run the scenario first for the whole
        story), for print."""
        return count_timeline(self.frames)

    def redraw(self) -> None:
        if self._hold:
            return
        f = self.frame
        nxt = (self.scenario.steps[len(self.frames) - 1][0] if not self.done else "(end)")
        self.label.value = (f"<b>frame {self.slider.value}: {f.label}</b> &nbsp; why: "
                            f"{', '.join(f.why()) or '-'} &nbsp; <i>next step: {nxt}</i>")
        if f.error:
            self.message.error(f.error)
        else:
            self.message.ok("ok")
        i = self.slider.value
        if i not in self._pngs:
            self._pngs[i] = png(count_panel(f, title=f"after step {i}: {f.label}"))
        self.image.value = self._pngs[i]


def refcount_watcher(scenario: Callable[[], Scenario] | None = None) -> RefcountWatcher:
    """A widget stepping ``scenario()`` (a function building a :class:`Scenario`, called
    again on Reset; default :func:`fork_cow_scenario`) with the count panel beside it.
    Step runs the next operation, Back and the slider revisit recorded frames; ``.step()``
    and ``.run(until=)`` do the same from code; ``.static_figure()`` is the count timeline."""
    return RefcountWatcher(scenario or fork_cow_scenario)
