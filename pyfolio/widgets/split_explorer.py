"""THP split explorer: split a PMD-sized folio uniformly or non-uniformly, with pins.

The model operation is :func:`pyfolio.mm.huge_memory_split.split_mapped_folio` (what debugfs
split_huge_pages does); pins go through the facade (``Process.pin``/``unpin``). The widget
only wires controls to them and redraws :func:`pyfolio.views.folio_strip`.
"""

from __future__ import annotations

import html
from collections import Counter

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.sim.errors import MmError
from pyfolio.sim.units import PAGE_SIZE, MiB
from pyfolio.system import System
from pyfolio.views import folio_counts, folio_strip
from pyfolio.views.folio_strip import frame_cells, legend_entries, legend_html
from pyfolio.widgets._common import App, Message, png

__all__ = ["split_explorer", "SplitExplorer"]


class SplitExplorer(App):
    """The split explorer app (see :func:`split_explorer`)."""

    def __init__(self, ram: str = "64M") -> None:
        self.ram = ram
        self.kind = widgets.ToggleButtons(options=["uniform", "non-uniform"], value="uniform",
                                          description="split")
        self.new_order = widgets.IntSlider(value=0, min=0, max=8, description="new order")
        self.at = widgets.IntSlider(value=0, min=0, max=511, description="at page")
        self.pin_page = widgets.IntText(value=0, description="page", layout={"width": "160px"})
        self.pin_button = widgets.Button(description="Pin")
        self.unpin_button = widgets.Button(description="Unpin")
        self.split_button = widgets.Button(description="Split", button_style="primary")
        self.reset_button = widgets.Button(description="Reset")
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.legend = widgets.HTML()  # the strip's key as HTML: drawing it costs ~45 ms a click
        self.counts = widgets.HTML()
        self.message = Message()
        self.pin_button.on_click(lambda _: self._pin(True))
        self.unpin_button.on_click(lambda _: self._pin(False))
        self.split_button.on_click(lambda _: self.split())
        self.reset_button.on_click(lambda _: self.reset())
        super().__init__([
            widgets.HBox([self.kind, self.new_order]),
            widgets.HBox([self.at, self.pin_page, self.pin_button, self.unpin_button]),
            widgets.HBox([self.split_button, self.reset_button]),
            self.message, self.image, self.legend, self.counts])
        self.reset()

    # -- model -----------------------------------------------------------------------------
    def reset(self) -> None:
        """A fresh machine: one process with a PMD-mapped THP at ``self.addr``."""
        self.system = System(ram=self.ram, thp="madvise", seed=0)
        self.proc = self.system.spawn()
        self.addr = self.proc.mmap(2 * MiB)
        self.proc.madvise(self.addr, 2 * MiB, "hugepage")
        self.proc.touch(self.addr, 2 * MiB)
        pfn = self.proc.pfn_at(self.addr)
        assert pfn is not None
        self.base = pfn
        self.pins: Counter[int] = Counter()
        self.message.ok("a PMD-mapped order-9 folio; choose a split and press Split")
        self.redraw()

    def split(self) -> None:
        """Split the folio holding page ``at`` as the controls say."""
        page = self.at.value
        folio = self.proc.folio_at(self.addr + page * PAGE_SIZE)
        if folio is None:
            self.message.error("no folio mapped at that page")
            return
        uniform, old_order = self.kind.value == "uniform", folio.order
        from pyfolio.mm.huge_memory_split import split_mapped_folio

        try:
            split_mapped_folio(self.system.machine, folio.pfn, self.new_order.value,
                               uniform=uniform, at=self.base + page - folio.pfn)
        except MmError as e:
            self.message.error(f"split failed: {e}")
        else:
            self.message.ok(f"{self.kind.value} split of the order-{old_order} folio "
                            f"{folio.pfn:#x} to order {self.new_order.value}: done")
        self.redraw()

    def _pin(self, pin: bool) -> None:
        page = self.pin_page.value % 512
        try:
            (self.proc.pin if pin else self.proc.unpin)(self.addr + page * PAGE_SIZE, PAGE_SIZE)
        except MmError as e:
            self.message.error(str(e))
        else:
            self.pins[page] += 1 if pin else -1
            self.message.ok(f"{'pinned' if pin else 'unpinned'} page {self.pin_page.value}")
        self.redraw()

    # -- view ------------------------------------------------------------------------------
    def static_figure(self, legend: bool = True) -> Figure:
        """The folio strip of the 512 frames, as in the widget (for print, with its key)."""
        return folio_strip(self.system, range(self.base, self.base + 512), legend=legend,
                           title=f"the 512 frames of the THP (pins: {sum(self.pins.values())})")

    def redraw(self) -> None:
        self.image.value = png(self.static_figure(legend=False))
        cells = frame_cells(self.system.machine, range(self.base, self.base + 512))
        self.legend.value = legend_html(legend_entries(cells))
        f = self.proc.folio_at(self.addr + self.at.value * PAGE_SIZE)
        if f is None:
            self.counts.value = ""
            return
        c = folio_counts(f)
        rows = [("folio (holding page 'at')", f"{c.pfn:#x}, order {c.order}"),
                ("refcount", c.refcount), ("folio_mapcount", c.mapcount),
                ("entire mapcount", c.entire_mapcount),
                ("expected refcount", c.expected_refcount), ("pincount", c.pincount),
                ("thp_split_page / _failed", f"{self.system.vmstat()['thp_split_page']} / "
                                             f"{self.system.vmstat()['thp_split_page_failed']}")]
        self.counts.value = "<table>" + "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{v}</td></tr>"
            for k, v in rows) + "</table>"


def split_explorer(ram: str = "64M") -> SplitExplorer:
    """A widget: split a PMD-mapped THP (uniform or non-uniform, new order, page to split
    at), pin and unpin pages, see the folio strip, the counts and the errno of a failure.
    ``.static_figure()`` gives the folio strip as a Figure for print."""
    return SplitExplorer(ram)
