"""Swap explorer: page a THP out to a swap file, a block device or zram, watch it go whole
or split, fault single pages back and see what comes back and from where. The THP is
anonymous memory or shared memory (a memfd, shmem_enabled=always), whose swap entries go
into the page cache instead of the page table.

The model operations are the facade's (``System.swapon``/``swapoff``/``reclaim``,
``Process.madvise(..., "pageout")``, ``read``/``write``); what a fault did is read from the
``do_swap_page`` trace event and the counters. The pictures are
:func:`pyfolio.views.region_strip` (the 2 MiB: swap entries in red) above
:func:`pyfolio.views.draw_swap_map` (the area's first two clusters).
"""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.sim.errors import MmError, SegmentationFault
from pyfolio.sim.units import PAGE_SIZE, MiB
from pyfolio.system import System
from pyfolio.views import draw_swap_map, region_strip, stack, swap_cells
from pyfolio.widgets._common import App, Message, png

__all__ = ["swap_explorer", "SwapExplorer", "COUNTERS"]

#: the counters the explorer shows, with the gauges
COUNTERS = ("pswpout", "thp_swpout", "thp_swpout_fallback", "pswpin", "pgmajfault",
            "swap_ra", "swap_ra_hit", "swpout_zero", "nr_swapcached")
_KINDS = [("swap file", "file"), ("loop block device", "block"), ("zram", "zram")]
_SOURCES = [("anonymous", "anon"), ("shmem (memfd)", "shmem")]


class SwapExplorer(App):
    """The swap explorer app (see :func:`swap_explorer`)."""

    def __init__(self, ram: str = "64M", swap: str = "64M") -> None:
        self.ram, self.swap = ram, swap
        self.kind = widgets.ToggleButtons(options=_KINDS, value="file", description="swap to")
        self.source = widgets.ToggleButtons(options=_SOURCES, value="anon",
                                            description="memory")
        self.mthp = widgets.Checkbox(value=False, description="64 KiB mTHP enabled")
        self.pageout_button = widgets.Button(description="MADV_PAGEOUT 2 MiB",
                                             button_style="primary")
        self.page = widgets.Text(value="0", description="page", layout={"width": "160px"})
        self.read_button = widgets.Button(description="Read page")
        self.write_button = widgets.Button(description="Write page")
        self.reclaim_button = widgets.Button(description="Reclaim 512 pages")
        self.swapoff_button = widgets.Button(description="swapoff")
        self.reset_button = widgets.Button(description="Reset")
        self.message = Message()
        self.counts = widgets.HTML()
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.pageout_button.on_click(lambda _: self.page_out())
        self.read_button.on_click(lambda _: self.touch(False))
        self.write_button.on_click(lambda _: self.touch(True))
        self.reclaim_button.on_click(lambda _: self.reclaim())
        self.swapoff_button.on_click(lambda _: self.swapoff())
        self.reset_button.on_click(lambda _: self.reset())
        self.page.on_msg(self._on_submit)  # Enter in the box reads the page
        self.kind.observe(lambda _: self.reset(), names="value")
        self.source.observe(lambda _: self.reset(), names="value")
        self.mthp.observe(lambda _: self._set_mthp(), names="value")
        super().__init__([
            widgets.HBox([self.kind, self.mthp]), self.source,
            widgets.HBox([self.pageout_button, self.reclaim_button, self.swapoff_button,
                          self.reset_button]),
            widgets.HBox([self.page, self.read_button, self.write_button]),
            self.message, self.image, self.counts])
        self.reset()

    # -- model -------------------------------------------------------------------------------
    def reset(self) -> None:
        """A fresh machine with a swap area of the chosen kind and one written THP."""
        self.system = System(ram=self.ram, thp="madvise", seed=0)
        self.system.swapon(self.swap, self.kind.value)
        self._set_mthp(quiet=True)
        if self.source.value == "shmem":
            self.system.set_shmem_thp("always")
            self.proc, _fd, self.addr = self.system.spawn_with_shmem_thp("explorer")
        else:
            self.proc, self.addr = self.system.spawn_with_thp()
        self.message.ok(f"a PMD-mapped {self.source.label} THP and a {self.swap} "
                        f"{self.kind.label}; press MADV_PAGEOUT")
        self.redraw()

    def _set_mthp(self, quiet: bool = False) -> None:
        self.system.set_mthp("64kB", "madvise" if self.mthp.value else "never")
        if not quiet:
            self.message.ok(f"hugepages-64kB/enabled = {self.system.mthp('64kB')} (decides "
                            "the size a direct zram swap-in reads)")

    def _act(self, what: str, fn: Callable[[], str]) -> None:
        before = self.system.vmstat()
        try:
            result = fn()
        except (MmError, SegmentationFault) as e:
            self.message.error(f"{what}: {e}")
        else:
            after = self.system.vmstat()
            moved = {k: after[k] - before[k] for k in COUNTERS[:-1] if after[k] != before[k]}
            tail = ", ".join(f"{k} {v:+d}" for k, v in moved.items())
            self.message.ok(f"{what}: {result}" + (f" ({tail})" if tail else ""))
        self.redraw()

    def page_out(self) -> None:
        """MADV_PAGEOUT of the whole 2 MiB."""
        def go() -> str:
            v0 = self.system.vmstat()
            self.proc.madvise(self.addr, 2 * MiB, "pageout")
            v1 = self.system.vmstat()
            if v1["thp_swpout"] > v0["thp_swpout"]:
                how = "whole: one 2048 KiB write"
            elif v1["thp_swpout_fallback"] > v0["thp_swpout_fallback"]:
                how = "split to order 0 first (no run of 512 slots)"
            elif v1["thp_split_page"] > v0["thp_split_page"]:
                how = ("split to order 0 first by shmem_writeout() (no run of 512 slots; "
                       "no fallback counted)")
            elif v1["pswpout"] == v0["pswpout"] and v1["swpout_zero"] == v0["swpout_zero"]:
                how = "nothing written"
            else:
                how = "order-0 pages"
            kept = v1["nr_swapcached"]
            return f"{how}; {kept} pages left in the swap cache"
        self._act("MADV_PAGEOUT", go)

    def _on_submit(self, _: object, content: dict[str, object], buffers: object) -> None:
        if content.get("event") == "submit":
            self.touch(False)

    def touch(self, write: bool) -> None:
        """A read or write of the chosen page: a swap-in if it is swapped out."""
        page = self.message.number_in(self.page.value, 0, 512, "a page number",
                                      "the THP's pages", decimal=True)
        if page is None:
            self.redraw()
            return
        addr = self.addr + page * PAGE_SIZE

        before_io = self._io()

        def go() -> str:
            mark = self.system.trace.mark()
            if write:
                self.proc.write(addr, 0xC0FFEE)
            else:
                self.proc.read(addr)
            events = self.system.trace.since(mark)
            f = self.proc.folio_at(addr)
            shm = [e for e in events if e.name == "shmem_swapin_folio"]
            if shm:
                read = self._io() > before_io
                src = ("read directly, skipping the swap cache" if not shm[0].arg("cached")
                       else "read from the device" if read else "from the swap cache (no I/O)")
                return (f"page {page}: {src}; back in the page cache at the swap entry's "
                        f"order {f.order if f else '?'}, its slots freed at once")
            ev = [e for e in events if e.name == "do_swap_page"]
            if not ev:
                return f"page {page} was mapped: no swap-in"
            e = ev[0]
            src = {"swapcache": "from the swap cache (no I/O)",
                   "device": "read from the device into the swap cache",
                   "direct": "read directly, skipping the swap cache"}[e.change("source")]
            return (f"page {page}: {src}; {e.change('nr_pages')} page(s) mapped, folio "
                    f"order {f.order if f else '?'}")
        self._act("write" if write else "read", go)

    def _io(self) -> int:
        """Pages read from the area so far (with I/O or from the zeromap)."""
        v = self.system.vmstat()
        return v["pswpin"] + v["swpin_zero"]

    def reclaim(self) -> None:
        """Reclaim 512 pages: the swap cache's clean folios go first (they sit at the tail
        of the inactive list), then the process's pages."""
        self._act("reclaim", lambda: f"{self.system.reclaim(512)} pages freed")

    def swapoff(self) -> None:
        """swapoff: every swapped-out page comes back."""
        def go() -> str:
            self.system.swapoff()
            f = self.proc.folio_at(self.addr)
            if f is None:
                return "everything back; page 0 is not mapped (shmem comes back into the " \
                       "page cache, unmapped)"
            return f"everything back; page 0's folio has order {f.order}"
        self._act("swapoff", go)

    # -- view --------------------------------------------------------------------------------
    def static_figure(self) -> Figure:
        """The 2 MiB range above the swap area's first two clusters (just the range once
        swap is off), for print."""
        region = region_strip(self.proc, self.addr, 2 * MiB,
                              title=f"the THP's 2 MiB (pid {self.proc.pid})")
        si = self.system.swap_area
        if si is None:
            return region
        return stack(region, draw_swap_map(swap_cells(si),
                                           title=f"slots of the {self.kind.label}"))

    def redraw(self) -> None:
        self.image.value = png(self.static_figure())
        v = self.system.vmstat()
        used = self.system.swaps()[0]["Used"] if self.system.swaps() else "swap off"
        rows = [(k, v[k]) for k in COUNTERS] + [
            ("/proc/swaps Used (kB)", used), ("VmSwap (kB)", self.proc.status()["VmSwap"]),
            ("smaps Swap (kB)", sum(d["Swap"] for d in self.proc.smaps()))]
        self.counts.value = "<table>" + "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{val}</td></tr>"
            for k, val in rows) + "</table>"


def swap_explorer(ram: str = "64M", swap: str = "64M") -> SwapExplorer:
    """A widget: page a THP (anonymous, or a memfd's) out to a swap file, a loop block
    device or zram (whole or split), read or write single pages back (from the swap
    cache, from the device with readahead, or directly from zram), reclaim, swapoff; with
    the region, the swap slots and the counters. ``.static_figure()`` gives its picture
    for print (the widget offers it as image/png too: the static page shows it)."""
    return SwapExplorer(ram, swap)
