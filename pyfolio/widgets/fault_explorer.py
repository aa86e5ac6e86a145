"""Fault explorer: one anonymous fault under a chosen THP policy, advice, memory and mapping.

Each run is a fresh :class:`pyfolio.System`: the policy (``thp=``), optionally
``System.fragment``, one ``Process.mmap`` of 2 MiB (placed 2 MiB-aligned) or 3 MiB (only
page aligned), optionally ``madvise(MADV_HUGEPAGE)``, then one ``read`` or ``write`` at the
chosen offset (the fault path: ``handle_mm_fault()``). The widget shows the entry that maps
the address (``Process.lookup``), the THP fault counters (``System.vmstat``),
``AnonHugePages`` (``Process.smaps``), the trace events of the access and
:func:`pyfolio.views.region_strip` of the mapping.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.arch.x86.pgtable import Entry
from pyfolio.sim.errors import MmError
from pyfolio.sim.units import PAGE_SIZE, KiB, MiB
from pyfolio.system import Process, System
from pyfolio.views import region_strip
from pyfolio.widgets._common import App, Message, png

__all__ = ["fault_explorer", "FaultExplorer", "FAULT_COUNTERS"]

#: the vmstat counters the explorer shows
FAULT_COUNTERS = ("thp_fault_alloc", "thp_fault_fallback", "thp_zero_page_alloc")
_LENGTHS = {"2 MiB": 2 * MiB, "3 MiB": 3 * MiB}


class FaultExplorer(App):
    """The fault explorer app (see :func:`fault_explorer`)."""

    def __init__(self, ram: str = "64M") -> None:
        self.ram = ram
        self.policy = widgets.ToggleButtons(options=["always", "madvise", "never"],
                                            value="madvise", description="THP policy")
        self.advise = widgets.Checkbox(value=False, description="MADV_HUGEPAGE")
        self.fragmented = widgets.Checkbox(value=False, description="fragmented memory")
        self.length = widgets.ToggleButtons(options=list(_LENGTHS), value="2 MiB",
                                            description="mmap length")
        self.access = widgets.ToggleButtons(options=["read", "write"], value="write",
                                            description="access")
        # up to the end of the longer mapping: past a 2 MiB one the access is a SIGSEGV
        self.offset = widgets.IntSlider(value=0, min=0, max=(3 * MiB - PAGE_SIZE) // KiB,
                                        step=PAGE_SIZE // KiB, description="offset (KiB)",
                                        layout={"width": "70%"})
        self.run_button = widgets.Button(description="Run", button_style="primary")
        self.reset_button = widgets.Button(description="Reset")
        self.message = Message()
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.info = widgets.HTML()
        self.run_button.on_click(lambda _: self.run())
        self.reset_button.on_click(lambda _: self.reset())
        super().__init__([
            widgets.HBox([self.policy, self.advise]),
            widgets.HBox([self.length, self.fragmented]),
            widgets.HBox([self.access, self.offset]),
            widgets.HBox([self.run_button, self.reset_button]),
            self.message, self.image, self.info])
        self.reset()

    # -- model -----------------------------------------------------------------------------
    def reset(self) -> None:
        """The default controls, and the mapping before any access."""
        self.policy.value, self.advise.value, self.fragmented.value = "madvise", False, False
        self.length.value, self.access.value, self.offset.value = "2 MiB", "write", 0
        self.system, self.proc, self.addr, self.size = self._setup()
        self.events: list[str] = []
        self.message.ok("nothing touched yet: choose the conditions and press Run")
        self.redraw()

    def _setup(self) -> tuple[System, Process, int, int]:
        """A fresh machine and process with the mapping the controls describe."""
        system = System(ram=self.ram, thp=self.policy.value, seed=0)
        if self.fragmented.value:
            system.fragment()
        proc = system.spawn()
        size = _LENGTHS[self.length.value]
        addr = proc.mmap(size)
        if self.advise.value:
            proc.madvise(addr, size, "hugepage")
        return system, proc, addr, size

    def run(self) -> None:
        """Set up a fresh machine as the controls say and make the one access. A failed
        access (SIGSEGV past the mapping) is a message; the previous run stays shown."""
        system, proc, addr, size = self._setup()
        target = addr + self.offset.value * KiB
        mark = system.trace.mark()
        try:
            if self.access.value == "write":
                proc.write(target, 1)
            else:
                proc.read(target)
        except MmError as err:
            self.message.error(f"{self.access.value} at +{self.offset.value} KiB: {err}")
            return
        self.system, self.proc, self.addr, self.size = system, proc, addr, size
        self.events = list(dict.fromkeys(
            ev.name for ev in system.trace.since(mark)
            if ev.name not in ("mm_page_alloc", "mm_page_free")))
        e = self.entry()
        self.message.ok(f"{self.access.value} at +{self.offset.value} KiB ({target:#x}): "
                        f"mapped by a {e.level.upper()} entry, {e.kind}")
        self.redraw()

    # -- view ------------------------------------------------------------------------------
    @property
    def target(self) -> int:
        """The address of the access the controls describe."""
        return self.addr + self.offset.value * KiB

    def entry(self) -> Entry:
        """The entry that maps the accessed address (level "pmd"/"pte", kind)."""
        return self.proc.lookup(self.target)

    def counters(self) -> dict[str, int]:
        """The THP fault counters of the last run, and AnonHugePages (kB) of the mapping."""
        v = self.system.vmstat()
        out = {k: v[k] for k in FAULT_COUNTERS}
        out["AnonHugePages"] = sum(d["AnonHugePages"] for d in self.proc.smaps())
        return out

    def static_figure(self) -> Figure:
        """The mapping as a region strip (thick frame: one PMD leaf), for print."""
        aligned = "2 MiB-aligned" if self.addr % (2 * MiB) == 0 else "not 2 MiB-aligned"
        return region_strip(self.proc, self.addr, self.size,
                            title=f"{self.size // MiB} MiB at {self.addr:#x} ({aligned}), "
                                  f"policy {self.system.thp}")

    def redraw(self) -> None:
        self.image.value = png(self.static_figure())
        rows = [(k, f"{v} kB" if k == "AnonHugePages" else v)
                for k, v in self.counters().items()]
        rows.append(("events", " \u2192 ".join(self.events) or "(none)"))
        self.info.value = "<table>" + "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows) + "</table>"


def fault_explorer(ram: str = "64M") -> FaultExplorer:
    """A widget: choose the THP policy, MADV_HUGEPAGE, fragmented memory, a 2 MiB
    (aligned) or 3 MiB (unaligned) mapping, a read or a write and its offset; Run makes
    that one access on a fresh machine and shows the entry that maps the address, the
    counters thp_fault_alloc / thp_fault_fallback / thp_zero_page_alloc, AnonHugePages and
    the mapping's region strip. ``.static_figure()`` gives the strip for print."""
    return FaultExplorer(ram)
