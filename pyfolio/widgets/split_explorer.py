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

from pyfolio.include.linux.mm import Folio
from pyfolio.sim.errors import MmError
from pyfolio.sim.units import PAGE_SIZE, MiB
from pyfolio.system import System
from pyfolio.views import folio_counts, folio_strip
from pyfolio.views.folio_strip import MARK_COLOR, frame_cells, legend_entries, legend_html
from pyfolio.views.frames import FolioCounts
from pyfolio.widgets._common import App, Message, png

__all__ = ["split_explorer", "SplitExplorer", "split_failure"]


class SplitExplorer(App):
    """The split explorer app (see :func:`split_explorer`)."""

    def __init__(self, ram: str = "64M") -> None:
        self.ram = ram
        self.kind = widgets.ToggleButtons(options=["uniform", "non-uniform"], value="uniform",
                                          description="split")
        self.new_order = widgets.IntSlider(value=0, min=0, max=8, description="new order")
        self.at = widgets.IntSlider(value=0, min=0, max=511, description="at page")
        self.pin_page = widgets.Text(value="0", placeholder="0..511", description="pin page",
                                     layout={"width": "180px"})
        self.pin_button = widgets.Button(description="Pin")
        self.unpin_button = widgets.Button(description="Unpin")
        self.split_button = widgets.Button(description="Split", button_style="primary")
        self.reset_button = widgets.Button(description="Reset")
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.legend = widgets.HTML()  # the strip's key as HTML: drawing it costs ~45 ms a click
        self.counts = widgets.HTML()
        self.message = Message()
        self.pin_page.on_msg(self._on_submit)  # Enter in the box pins
        self.at.observe(lambda _: self._show_counts(), names="value")
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
        uniform, old_order, new_order = self.kind.value == "uniform", folio.order, \
            self.new_order.value
        before = folio_counts(folio)
        from pyfolio.mm.huge_memory_split import split_mapped_folio

        try:
            split_mapped_folio(self.system.machine, folio.pfn, new_order,
                               uniform=uniform, at=self.base + page - folio.pfn)
        except MmError as e:
            self.message.error(f"split failed: -{e.errname}: "
                               f"{split_failure(before, new_order, uniform, e.errname)}")
        else:
            self.message.ok(f"{self.kind.value} split of the order-{old_order} folio "
                            f"{folio.pfn:#x} to order {new_order}: done")
        self.redraw()

    def _on_submit(self, _: object, content: dict[str, object], buffers: object) -> None:
        if content.get("event") == "submit":
            self._pin(True)

    def _pin(self, pin: bool) -> None:
        """Pin (or unpin) the page typed in the box: a whole number 0..511, else a message
        and no change."""
        page = self.message.number_in(self.pin_page.value, 0, 512, "a page number",
                                      "the THP's pages", decimal=True)
        if page is None:
            if not self.pin_page.value.strip():
                self.message.error("type the page to pin: a whole number from 0 to 511")
            return
        try:
            (self.proc.pin if pin else self.proc.unpin)(self.addr + page * PAGE_SIZE, PAGE_SIZE)
        except MmError as e:
            self.message.error(f"{'pin' if pin else 'unpin'} of page {page} failed: {e}")
        else:
            self.pins[page] += 1 if pin else -1
            self.pins = +self.pins  # drop pages no longer pinned
            self.message.ok(f"{'pinned' if pin else 'unpinned'} page {page}: the folio holding "
                            f"it now has pincount "
                            f"{folio_counts(self._folio_of(page)).pincount}")
        self.redraw()

    def _folio_of(self, page: int) -> Folio:
        f = self.proc.folio_at(self.addr + page * PAGE_SIZE)
        assert f is not None
        return f

    # -- view ------------------------------------------------------------------------------
    def static_figure(self, legend: bool = True) -> Figure:
        """The folio strip of the 512 frames, as in the widget (for print, with its key);
        pinned pages are marked."""
        pinned = [self.base + p for p in self.pins]
        return folio_strip(self.system, range(self.base, self.base + 512), legend=legend,
                           marks=pinned, marks_label="pinned page",
                           title=f"the 512 frames of the THP (pins: {sum(self.pins.values())})")

    def redraw(self) -> None:
        self.image.value = png(self.static_figure(legend=False))
        cells = frame_cells(self.system.machine, range(self.base, self.base + 512))
        entries = legend_entries(cells)
        if self.pins:
            entries.append((MARK_COLOR, f"pinned page (x): {', '.join(map(str, self.pins))}"))
        self.legend.value = legend_html(entries)
        self._show_counts()

    def _show_counts(self) -> None:
        """The counts of the folio holding page ``at`` (follows the slider)."""
        page = self.at.value
        f = self.proc.folio_at(self.addr + page * PAGE_SIZE)
        if f is None:
            self.counts.value = f"<i>page {page}: no folio mapped</i>"
            return
        c = folio_counts(f)
        rows = [(f"folio holding page {page}", f"{c.pfn:#x}, order {c.order}"),
                ("refcount", c.refcount), ("folio_mapcount", c.mapcount),
                ("entire mapcount", c.entire_mapcount),
                ("expected refcount", c.expected_refcount), ("pincount", c.pincount),
                ("thp_split_page / _failed", f"{self.system.vmstat()['thp_split_page']} / "
                                             f"{self.system.vmstat()['thp_split_page_failed']}")]
        self.counts.value = "<table>" + "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{v}</td></tr>"
            for k, v in rows) + "</table>"


def split_failure(before: FolioCounts, new_order: int, uniform: bool, errname: str) -> str:
    """Why ``__folio_split()`` refused, in the kernel's terms, from the folio's counts before
    the split (the checks of mm/huge_memory.c:__folio_split(), in its order; anon folios).

    >>> from pyfolio.views.frames import FolioCounts
    >>> c = FolioCounts(0x200, 9, 2, 1, 1, 1, 1, True, ())
    >>> split_failure(c, 1, True, "EINVAL")
    'order 1 is not allowed for an anonymous folio (anon folios skip order 1)'
    >>> print(split_failure(c, 0, False, "EAGAIN"))
    refcount 3 > expected 2 (mapcount 1 + the splitter's own reference): a pin holds it
    """
    if errname == "EINVAL":
        if new_order >= before.order:
            return (f"new order {new_order} is not below the folio's order {before.order}")
        if new_order == 1:
            return "order 1 is not allowed for an anonymous folio (anon folios skip order 1)"
        return f"{'uniform' if uniform else 'non-uniform'} split to order {new_order} refused"
    if errname == "EAGAIN":
        refs, expected = before.refcount + 1, before.mapcount + 1
        who = "a pin holds it" if before.pincount else "someone else holds a reference"
        return (f"refcount {refs} > expected {expected} (mapcount {before.mapcount} + the "
                f"splitter's own reference): {who}")
    if errname == "EBUSY":
        return ("the folio is not mapped (no anon_vma to walk) or is the huge zero folio "
                "or under writeback")
    return "the split was refused"


def split_explorer(ram: str = "64M") -> SplitExplorer:
    """A widget: split a PMD-mapped THP (uniform or non-uniform, new order, page to split
    at), pin and unpin pages, see the folio strip, the counts and the errno of a failure.
    ``.static_figure()`` gives the folio strip as a Figure for print."""
    return SplitExplorer(ram)
