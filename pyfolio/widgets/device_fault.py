"""Device fault explorer: migrate a THP to device-private memory, then touch it from the CPU.

The model operations are the device facade (:class:`pyfolio.device.Device`:
``migrate_to_device(p, addr, length, design)``, ``fail_large_alloc``) and the process facade
(``read``/``write`` fault a device-private entry back to RAM through
pgmap->ops->migrate_to_ram()). With large-page support the range moves as one device THP
under one device-private PMD; without it the source THP is split on the way (the fallback
designs: "a" = v7's ``unmapped`` flag, "b" = ``folio_split_unmapped()``).
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.sim.units import PAGE_SIZE, MiB
from pyfolio.system import System
from pyfolio.views import draw_cells, region_cells
from pyfolio.widgets._common import App, Message, png

__all__ = ["device_fault_explorer", "DeviceFaultExplorer"]


class DeviceFaultExplorer(App):
    """The device fault explorer app (see :func:`device_fault_explorer`)."""

    def __init__(self, ram: str = "64M", device: str = "64M") -> None:
        self.ram, self.device_size = ram, device
        self.large = widgets.Checkbox(value=True, description="device has 2 MiB pages")
        self.design = widgets.ToggleButtons(options=[("a: unmapped flag", "a"),
                                                     ("b: folio_split_unmapped", "b")],
                                            value="b", description="fallback",
                                            style={"button_width": "auto"})
        self.migrate_button = widgets.Button(description="Migrate to device",
                                             button_style="primary")
        self.page = widgets.IntSlider(value=0, min=0, max=511, description="page")
        self.read_button = widgets.Button(description="CPU read")
        self.write_button = widgets.Button(description="CPU write")
        self.reset_button = widgets.Button(description="Reset")
        self.message = Message()
        self.events = widgets.HTML()
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.migrate_button.on_click(lambda _: self.migrate())
        self.read_button.on_click(lambda _: self.touch(False))
        self.write_button.on_click(lambda _: self.touch(True))
        self.reset_button.on_click(lambda _: self.reset())
        super().__init__([widgets.HBox([self.large, self.design]),
                          widgets.HBox([self.migrate_button, self.reset_button]),
                          widgets.HBox([self.page, self.read_button, self.write_button]),
                          self.message, self.image, self.events])
        self.reset()

    def reset(self) -> None:
        """A fresh machine with device memory and one PMD-mapped THP at ``self.addr``."""
        self.system = System(ram=self.ram, thp="madvise", seed=0, device=self.device_size)
        self.proc = self.system.spawn()
        self.addr = self.proc.mmap(2 * MiB)
        self.proc.madvise(self.addr, 2 * MiB, "hugepage")
        self.proc.touch(self.addr, 2 * MiB)
        self.message.ok("a PMD-mapped THP in RAM; press Migrate to device")
        self.events.value = ""
        self.redraw()

    def _act(self, what: str, fn: Callable[[], str]) -> None:
        mark = self.system.trace.mark()
        self.message.report(what, fn)
        names = [e.name for e in self.system.trace.since(mark)
                 if e.name not in ("mm_page_alloc", "mm_page_free")]
        self.events.value = "events: " + " &rarr; ".join(dict.fromkeys(names))
        self.redraw()

    def migrate(self) -> None:
        """Migrate the whole 2 MiB range to the device with the chosen support and design."""
        def go() -> str:
            dev = self.system.device
            dev.fail_large_alloc = not self.large.value
            res = dev.migrate_to_device(self.proc, self.addr, 2 * MiB, design=self.design.value)
            e = self.proc.lookup(self.addr)
            moved, there = sum(r.migrated for r in res), self.on_device()
            now = (f"{there} of 512 pages on the device; entry at the start: "
                   f"{e.level.upper()} {e.kind}")
            if not moved and there == 512:
                return f"nothing left to migrate: {now}"
            return f"{moved} page(s) migrated by this call; {now}"
        self._act("migrate_to_device", go)

    def on_device(self) -> int:
        """How many of the range's 512 pages are mapped by device-private entries."""
        return sum(self.proc.lookup(self.addr + i * PAGE_SIZE).kind == "device_private"
                   for i in range(512))

    def touch(self, write: bool) -> None:
        """A CPU access to the chosen page (faults it back to RAM if it is on the device)."""
        addr = self.addr + self.page.value * PAGE_SIZE

        def go() -> str:
            if write:
                self.proc.write(addr, 0xC0FFEE)
            else:
                self.proc.read(addr)
            e = self.proc.lookup(addr)
            return f"page {self.page.value} now: {e.level.upper()} {e.kind}"
        self._act("CPU write" if write else "CPU read", go)

    def static_figure(self) -> Figure:
        """The 2 MiB range by state (device-private entries in purple), for print."""
        return draw_cells(region_cells(self.proc, self.addr, 2 * MiB),
                          title=f"2 MiB at {self.addr:#x}: RAM and device-private pages")

    def redraw(self) -> None:
        self.image.value = png(self.static_figure())


def device_fault_explorer(ram: str = "64M", device: str = "64M") -> DeviceFaultExplorer:
    """A widget: migrate a 2 MiB THP to device-private memory (with or without 2 MiB device
    pages, fallback design a or b), then read or write pages from the CPU and watch the
    device-private entries, the faults back to RAM and the split fallback.
    ``.static_figure()`` gives the region picture for print."""
    return DeviceFaultExplorer(ram, device)
