"""Driver explorer: use a device the way its driver does, on one process's 2 MiB THP.

The model operations are the device facade (:class:`pyfolio.device.Device`): the mirror
commands of lib/test_hmm.c built on hmm_range_fault() (``read_range``, ``write_range``,
``snapshot``), exclusive access for an atomic (``make_exclusive``, ``check_exclusive``:
make_device_exclusive()), migration (``migrate_to_device``) and eviction on unload
(``release``: migrate_device_range()); and the process facade for the CPU's side (``read``,
``write``). The picture is :func:`pyfolio.views.draw_cells` of the 2 MiB: what the CPU page
tables hold; the info line says what the device's own page table holds.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.device import Device
from pyfolio.lib.dmirror import DPT_XA_TAG_ATOMIC, DPT_XA_TAG_WRITE
from pyfolio.sim.units import PAGE_SIZE, MiB
from pyfolio.system import Process, System
from pyfolio.views import draw_cells, region_cells
from pyfolio.widgets._common import App, Message, png

__all__ = ["driver_explorer", "DriverExplorer", "mirror_counts"]


def mirror_counts(dev: Device, p: Process) -> dict[str, int]:
    """What ``dev``'s own page table holds for ``p``: entries by tag ("read", "write",
    "atomic"), as lib/test_hmm.c tags them (untagged, DPT_XA_TAG_WRITE,
    DPT_XA_TAG_ATOMIC)."""
    out = {"read": 0, "write": 0, "atomic": 0}
    names = {0: "read", DPT_XA_TAG_WRITE: "write", DPT_XA_TAG_ATOMIC: "atomic"}
    for (mm_id, _), (_, tag) in dev.driver.pt.items():
        if mm_id == p.mm.id:
            out[names[tag]] += 1
    return out


class DriverExplorer(App):
    """The driver explorer app (see :func:`driver_explorer`)."""

    def __init__(self, ram: str = "64M", device: str = "16M") -> None:
        self.ram, self.device_size = ram, device
        self.first = widgets.IntSlider(value=0, min=0, max=511, description="first page")
        self.count = widgets.IntSlider(value=16, min=1, max=64, description="pages")
        self.buttons = {name: widgets.Button(description=label) for name, label in (
            ("read", "Device read"), ("write", "Device write"), ("snapshot", "Snapshot"),
            ("exclusive", "Make exclusive"), ("check", "Still exclusive?"),
            ("cpu_read", "CPU read"), ("cpu_write", "CPU write"),
            ("migrate", "Migrate to device"), ("release", "Release device"),
            ("reset", "Reset"))}
        for name, button in self.buttons.items():
            button.on_click(lambda _, n=name: getattr(self, n)())
        self.buttons["reset"].button_style = "warning"
        self.message = Message()
        self.info = widgets.HTML()
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        b = self.buttons
        super().__init__([
            widgets.HBox([self.first, self.count]),
            widgets.HBox([b["read"], b["write"], b["snapshot"]]),
            widgets.HBox([b["exclusive"], b["check"], b["cpu_read"], b["cpu_write"]]),
            widgets.HBox([b["migrate"], b["release"], b["reset"]]),
            self.message, self.info, self.image])
        self.reset()

    # -- model -----------------------------------------------------------------------------
    def reset(self) -> None:
        """A fresh machine with a dmirror device and a process that wrote one PMD-mapped
        THP at ``self.addr`` (page ``i`` holds ``i``)."""
        self.system = System(ram=self.ram, thp="madvise", seed=0)
        self.dev = self.system.add_device("dmirror0", memory=self.device_size)
        self.proc, self.addr = self.system.spawn_with_thp()
        for i in range(512):
            self.proc.write(self.addr + i * PAGE_SIZE, i)
        self.message.ok("a PMD-mapped THP in RAM, page i holding i; the device mirrors "
                        "nothing yet")
        self.redraw()

    @property
    def start(self) -> int:
        """The address of the chosen first page."""
        return self.addr + self.first.value * PAGE_SIZE

    def _act(self, what: str, fn: Callable[[], str]) -> None:
        self.message.report(what, fn)
        self.redraw()

    def _counted(self) -> str:
        return f"cpages {self.dev.cpages}, faults {self.dev.faults}"

    def read(self) -> None:
        """HMM_DMIRROR_READ of the chosen pages."""
        def go() -> str:
            got = self.dev.read_range(self.proc, self.start, self.count.value)
            return f"read {_short(got)}; {self._counted()}"
        self._act("Device read", go)

    def write(self) -> None:
        """HMM_DMIRROR_WRITE of the chosen pages: page i gets 1000 + i."""
        def go() -> str:
            self.dev.write_range(self.proc, self.start,
                                 [1000 + self.first.value + j for j in range(self.count.value)])
            return f"wrote 1000 + page number; {self._counted()}"
        self._act("Device write", go)

    def snapshot(self) -> None:
        """HMM_DMIRROR_SNAPSHOT of the chosen pages: the bytes in hex."""
        def go() -> str:
            got = self.dev.snapshot(self.proc, self.start, self.count.value)
            return f"{_short([f'{b:#04x}' for b in got])}; nothing faulted in"
        self._act("Snapshot", go)

    def exclusive(self) -> None:
        """HMM_DMIRROR_EXCLUSIVE of the chosen pages."""
        def go() -> str:
            got = self.dev.make_exclusive(self.proc, self.start, self.count.value)
            return f"read {_short(got)}; cpages {self.dev.cpages}"
        self._act("Make exclusive", go)

    def check(self) -> None:
        """HMM_DMIRROR_CHECK_EXCLUSIVE of the chosen pages."""
        def go() -> str:
            ret = self.dev.check_exclusive(self.proc, self.start, self.count.value)
            return ("0: the device holds none of these pages atomically" if ret == 0 else
                    "-EPERM: the device still holds some page atomically")
        self._act("Check exclusive", go)

    def cpu_read(self) -> None:
        """The CPU reads the first chosen page."""
        def go() -> str:
            v = self.proc.read(self.start)
            return f"page {self.first.value} holds {v}; now {_entry(self.proc, self.start)}"
        self._act("CPU read", go)

    def cpu_write(self) -> None:
        """The CPU writes 7 into the first chosen page."""
        def go() -> str:
            self.proc.write(self.start, 7)
            return f"page {self.first.value} holds 7; now {_entry(self.proc, self.start)}"
        self._act("CPU write", go)

    def migrate(self) -> None:
        """HMM_DMIRROR_MIGRATE_TO_DEV of the chosen pages."""
        def go() -> str:
            res = self.dev.migrate_to_device(self.proc, self.start,
                                             self.count.value * PAGE_SIZE)
            return f"{res.migrated} of {len(res)} pages migrated"
        self._act("Migrate to device", go)

    def release(self) -> None:
        """HMM_DMIRROR_RELEASE: the driver unloads; all device memory comes back."""
        self._act("Release device", lambda: f"{self.dev.release()} pages evicted to RAM")

    # -- view ------------------------------------------------------------------------------
    def static_figure(self) -> Figure:
        """The 2 MiB as the CPU page tables hold it, for print."""
        return draw_cells(region_cells(self.proc, self.addr, 2 * MiB),
                          title=f"2 MiB at {self.addr:#x}: the CPU page tables")

    def redraw(self) -> None:
        c = mirror_counts(self.dev, self.proc)
        self.info.value = html.escape(
            f"device page table: {c['read']} read-only, {c['write']} writable, "
            f"{c['atomic']} atomic entries")
        self.image.value = png(self.static_figure())


def _short(values: list[int] | list[str]) -> str:
    """At most 8 values, then how many more."""
    head = ", ".join(map(str, values[:8]))
    return f"[{head}{f', ... {len(values) - 8} more' if len(values) > 8 else ''}]"


def _entry(p: Process, addr: int) -> str:
    e = p.lookup(addr)
    return f"{e.level.upper()} {e.kind.replace('_', '-')}"


def driver_explorer(ram: str = "64M", device: str = "16M") -> DriverExplorer:
    """A widget: a THP in RAM and a dmirror device. Read, write and snapshot chosen pages
    through the device (hmm_range_fault()), take them for atomic access, touch them from
    the CPU, migrate them to the device and evict them by releasing the device; the
    picture shows the CPU page tables, the info line the device's own page table.
    ``.static_figure()`` gives the picture for print."""
    return DriverExplorer(ram, device)
