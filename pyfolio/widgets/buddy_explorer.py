"""Buddy allocator explorer: allocate and free blocks on a small machine, see the free lists.

The model operations are :func:`pyfolio.mm.page_alloc.alloc_pages` and
:func:`pyfolio.mm.page_alloc.__free_pages` (the buddy split and merge), and the facade's
``System.fragment``/``defragment``; the views are :func:`pyfolio.views.folio_strip` (every
frame of the machine, free buddy blocks outlined) and :func:`pyfolio.mm.page_alloc.buddyinfo`
(the free blocks per order, as ``/proc/buddyinfo`` prints them).
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.mm.page_alloc import __free_pages, alloc_pages, buddyinfo, nr_free_pages
from pyfolio.sim.errors import MmError
from pyfolio.sim.units import MAX_PAGE_ORDER, PAGE_SIZE, MiB
from pyfolio.system import System
from pyfolio.views import folio_strip
from pyfolio.views.folio_strip import frame_cells, legend_entries, legend_html
from pyfolio.widgets._common import App, Message, png

__all__ = ["buddy_explorer", "BuddyExplorer"]

_free_block = __free_pages  # a module-level name: no class-private mangling inside methods


class BuddyExplorer(App):
    """The buddy allocator explorer app (see :func:`buddy_explorer`)."""

    def __init__(self, ram: str = "4M") -> None:
        self.ram = ram
        self.order = widgets.IntSlider(value=0, min=0, max=MAX_PAGE_ORDER, description="order")
        self.alloc_button = widgets.Button(description="Allocate", button_style="primary")
        self.block = widgets.Dropdown(options=[], description="block",
                                      layout={"width": "260px"})
        self.free_button = widgets.Button(description="Free")
        self.fragment_button = widgets.Button(description="Fragment")
        self.defragment_button = widgets.Button(description="Defragment")
        self.reset_button = widgets.Button(description="Reset")
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.legend = widgets.HTML()
        self.info = widgets.HTML()
        self.message = Message()
        self.alloc_button.on_click(lambda _: self.allocate())
        self.free_button.on_click(lambda _: self.free())
        self.fragment_button.on_click(lambda _: self.fragment())
        self.defragment_button.on_click(lambda _: self.defragment())
        self.reset_button.on_click(lambda _: self.reset())
        super().__init__([
            widgets.HBox([self.order, self.alloc_button]),
            widgets.HBox([self.block, self.free_button]),
            widgets.HBox([self.fragment_button, self.defragment_button, self.reset_button]),
            self.message, self.image, self.legend, self.info])
        self.reset()

    # -- model -----------------------------------------------------------------------------
    def reset(self) -> None:
        """A fresh machine: every frame free but frame 0 (the zero page)."""
        self.system = System(ram=self.ram, thp="never", seed=0)
        #: the blocks this widget allocated, (head PFN, order), oldest first
        self.blocks: list[tuple[int, int]] = []
        self._set_blocks()
        mib = self.system.machine.nr_ram * PAGE_SIZE // MiB
        self.message.ok(f"a {mib} MiB machine after boot; choose an order and press Allocate")
        self.redraw()

    def allocate(self) -> None:
        """alloc_pages() of the chosen order; -ENOMEM (nothing changes) when no block fits."""
        order = self.order.value
        try:
            pfn = alloc_pages(self.system.machine, order)
        except MmError as e:
            self.message.error(f"alloc_pages(order {order}) failed: {e}")
            return
        self.system.machine.mem.extra_refs[pfn] += 1  # held by this widget (check() knows)
        self.blocks.append((pfn, order))
        self._set_blocks()
        self.message.ok(f"alloc_pages(order {order}) = PFN {pfn:#x} "
                        f"(frames {pfn:#x}..{pfn + (1 << order) - 1:#x})")
        self.redraw()

    def free(self) -> None:
        """__free_pages() of the chosen block (by default the last one allocated)."""
        if self.block.value is None:
            self.message.error("no block to free: allocate one first")
            return
        pfn, order = self.block.value
        mark = self.system.trace.mark()
        mem = self.system.machine.mem
        mem.extra_refs[pfn] -= 1
        try:
            _free_block(self.system.machine, pfn, order)
        except MmError as e:
            mem.extra_refs[pfn] += 1
            self.message.error(f"__free_pages({pfn:#x}, order {order}) failed: {e}")
            return
        self.blocks.remove((pfn, order))
        self._set_blocks()
        freed = [e for e in self.system.trace.since(mark) if e.name == "mm_page_free"][-1]
        merged = (f"merged with its buddies into a free block of order {freed.arg('order')} "
                  f"at {freed.arg('pfn'):#x}" if freed.arg("order") > order
                  else "its buddy is not free: no merge")
        self.message.ok(f"__free_pages({pfn:#x}, order {order}): {merged}")
        self.redraw()

    def fragment(self) -> None:
        """Hold one frame in the middle of every 2 MiB block (System.fragment)."""
        held = self.system.fragment()
        self.message.ok(f"fragment: {held} more frames held, one per 2 MiB block"
                        if held else "fragment: every 2 MiB block already has a held frame "
                        "(or its middle frame is in use)")
        self.redraw()

    def defragment(self) -> None:
        """Give the frames Fragment took back (System.defragment)."""
        n = self.system.defragment()
        self.message.ok(f"defragment: {n} frames given back" if n
                        else "defragment: no frames were held")
        self.redraw()

    def _set_blocks(self) -> None:
        opts = [(f"{pfn:#x}, order {o}", (pfn, o)) for pfn, o in reversed(self.blocks)]
        self.block.options = opts
        self.block.value = opts[0][1] if opts else None

    # -- view ------------------------------------------------------------------------------
    def buddyinfo(self) -> list[int]:
        """Free blocks per order, order 0 first (/proc/buddyinfo)."""
        return buddyinfo(self.system.machine)

    def static_figure(self, legend: bool = True) -> Figure:
        """Every frame of the machine as a folio strip, buddyinfo in the title (for print)."""
        m = self.system.machine
        return folio_strip(self.system, range(0, m.nr_ram), legend=legend,
                           title=f"the {m.nr_ram} frames; buddyinfo (order 0..."
                                 f"{MAX_PAGE_ORDER}): {' '.join(map(str, self.buddyinfo()))}")

    def redraw(self) -> None:
        m = self.system.machine
        self.image.value = png(self.static_figure(legend=False))
        self.legend.value = legend_html(legend_entries(frame_cells(m, range(0, m.nr_ram))))
        info = self.buddyinfo()
        head = "".join(f"<th>{o}</th>" for o in range(len(info)))
        row = "".join(f"<td style='text-align:center'>{n}</td>" for n in info)
        self.info.value = (
            "<table><tr><th style='text-align:left'>order</th>" + head + "</tr>"
            "<tr><th style='text-align:left'>free blocks</th>" + row + "</tr></table>"
            + html.escape(f"free frames: {nr_free_pages(m)} of {m.nr_ram}"))


def buddy_explorer(ram: str = "4M") -> BuddyExplorer:
    """A widget: allocate a block of a chosen order from the buddy allocator of a small
    machine, free a chosen block (by default the last), fragment and defragment memory; see
    every frame (free buddy blocks outlined) and the free blocks per order as
    ``/proc/buddyinfo`` shows them. An allocation no free block can serve is -ENOMEM: a
    message, and nothing changes. ``.static_figure()`` gives the strip for print."""
    return BuddyExplorer(ram)
