"""Folio inspector: pick a page of a process (or any PFN), see the folio that holds it.

The model is only read: the facade's ``Process.pfn_at``/``System.folio``, the folio API
(:func:`pyfolio.include.linux.mm.folio_page_idx`), ``System.kpageflags``/``kpagecount`` (what
``/proc/kpageflags`` and ``/proc/kpagecount`` print) and :func:`pyfolio.views.folio_counts`;
the picture is :func:`pyfolio.views.folio_strip` of the 512 frames around the page, with the
folio outlined in red and the page marked. The process maps one THP, a second THP split
non-uniformly to order 0 at page 3 (``System.split``, as debugfs split_huge_pages does), and
sixteen 4 KiB pages.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pyfolio.fs.proc.page import KPF
from pyfolio.include.linux.mm import Folio, folio_page_idx
from pyfolio.sim.units import PAGE_SIZE, KiB, MiB
from pyfolio.system import System
from pyfolio.views import folio_counts, folio_strip
from pyfolio.views.folio_strip import frame_cells, legend_entries, legend_html
from pyfolio.widgets._common import App, Message, png

__all__ = ["folio_inspector", "FolioInspector", "kpageflags_names"]

_BLOCK = 512  # frames in the strip: the 2 MiB-aligned block holding the page
_COLS = 32  # folio_strip draws 32 frames a row
_KPF_NAME = {bit: name for name, bit in KPF.items()}


def kpageflags_names(flags: int) -> list[str]:
    """The names of the KPF_* bits set in one /proc/kpageflags value, low bit first."""
    return [_KPF_NAME[b] for b in sorted(_KPF_NAME) if flags >> b & 1]


class FolioInspector(App):
    """The folio inspector app (see :func:`folio_inspector`)."""

    def __init__(self, ram: str = "16M") -> None:
        self.ram = ram
        self.mapping = widgets.ToggleButtons(options=["THP", "split THP", "4 KiB pages"],
                                             value="THP", description="mapping")
        self.page = widgets.IntSlider(value=0, min=0, max=511, description="page")
        self.pfn_box = widgets.Text(placeholder="0x200", description="or PFN",
                                    continuous_update=False, layout={"width": "16em"})
        self.reset_button = widgets.Button(description="Reset")
        self.message = Message()
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.legend = widgets.HTML()
        self.info = widgets.HTML()
        self.mapping.observe(lambda _: self._mapping_changed(), names="value")
        self.page.observe(lambda _: self._slid(), names="value")
        self.pfn_box.observe(lambda _: self.go_to_pfn(self.pfn_box.value), names="value")
        self.reset_button.on_click(lambda _: self.reset())
        super().__init__([widgets.HBox([self.mapping, self.reset_button]),
                          widgets.HBox([self.page, self.pfn_box]),
                          self.message, self.image, self.legend, self.info])
        self._build()
        self.reset()

    # -- model -----------------------------------------------------------------------------
    def _build(self) -> None:
        """The machine: one process mapping a THP, a split THP and 64 KiB of 4 KiB pages."""
        self.system = System(ram=self.ram, thp="madvise", seed=0)
        self.proc = p = self.system.spawn()
        self.starts: dict[str, int] = {}
        for name in ("THP", "split THP"):
            a = p.mmap(2 * MiB)
            p.madvise(a, 2 * MiB, "hugepage")
            p.touch(a, 2 * MiB)
            self.starts[name] = a
        head = p.pfn_at(self.starts["split THP"])
        assert head is not None
        self.system.split(head, 0, uniform=False, at=3)
        self.starts["4 KiB pages"] = c = p.mmap(64 * KiB)
        p.touch(c, 64 * KiB)
        self.pages = {"THP": 512, "split THP": 512, "4 KiB pages": 16}

    def reset(self) -> None:
        """Back to page 0 of the THP (the machine is only read, so it stays)."""
        self.pfn_box.value = ""
        if (self.mapping.value, self.page.value) == ("THP", 0):
            self._slid()
        self.mapping.value = "THP"
        self.page.value = 0

    def _mapping_changed(self) -> None:
        page = self.page.value
        self.page.max = self.pages[self.mapping.value] - 1
        if self.page.value == page:  # else the slider was clamped, and that redrew
            self._slid()

    def _slid(self) -> None:
        addr = self.starts[self.mapping.value] + self.page.value * PAGE_SIZE
        pfn = self.proc.pfn_at(addr)
        assert pfn is not None  # every page of the three mappings was written
        self.show(pfn, f"{self.mapping.value}, page {self.page.value} ({addr:#x})")

    def go_to_pfn(self, text: str) -> None:
        """Inspect a typed PFN (hex or decimal); a bad one is a message and changes nothing."""
        pfn = self.message.number_in(text, 0, self.system.machine.nr_ram, "a PFN", "RAM")
        if pfn is not None:
            self.show(pfn, f"PFN {pfn:#x}")

    # -- view ------------------------------------------------------------------------------
    def folio(self) -> Folio | None:
        """The folio holding the inspected page, None if the frame is free or a page table."""
        cells = frame_cells(self.system.machine, range(self.pfn, self.pfn + 1))
        return self.system.folio(self.pfn) if cells.kind[0] == "folio" else None

    def flags(self) -> list[str]:
        """The inspected page's /proc/kpageflags bits, by name."""
        return kpageflags_names(self.system.kpageflags([self.pfn])[0])

    def show(self, pfn: int, what: str) -> None:
        """Inspect frame ``pfn`` (``what`` says how it was chosen) and redraw."""
        self.pfn = pfn
        f = self.folio()
        if f is None:
            self.message.ok(f"{what}: frame {pfn:#x} holds no folio")
        else:
            self.message.ok(f"{what}: PFN {pfn:#x} is page {folio_page_idx(f, pfn)} of the "
                            f"order-{f.order} folio at {f.pfn:#x}")
        self.redraw()

    def static_figure(self, legend: bool = True) -> Figure:
        """The 512 frames around the page, the folio outlined in red, the page crossed."""
        lo = self.pfn - self.pfn % _BLOCK
        f = self.folio()
        what = f"the order-{f.order} folio at {f.pfn:#x}" if f else "no folio"
        fig = folio_strip(self.system, range(lo, lo + _BLOCK), legend=legend,
                          title=f"frames {lo:#x}..{lo + _BLOCK - 1:#x}: PFN {self.pfn:#x} "
                                f"(x) in {what} (red)")
        ax = fig.axes[0]
        if f is not None:
            i, n = f.pfn - lo, f.nr_pages  # aligned: inside one row, or whole rows
            w, h = (n, 1) if n <= _COLS else (_COLS, n // _COLS)
            ax.add_patch(Rectangle((i % _COLS - 0.5, i // _COLS - 0.5), w, h, fill=False,
                                   ec="red", lw=2.5))
        k = self.pfn - lo
        ax.plot([k % _COLS], [k // _COLS], "x", color="red", ms=7, mew=2)
        return fig

    def rows(self) -> list[tuple[str, object]]:
        """The table beside the strip: the folio's fields and the page's /proc bits."""
        f, pfn = self.folio(), self.pfn
        rows: list[tuple[str, object]] = [("PFN", f"{pfn:#x}")]
        if f is not None:
            c = folio_counts(f)
            rows += [("folio head PFN", f"{f.pfn:#x}"), ("order", c.order),
                     ("nr_pages", f.nr_pages),
                     ("page of the folio", f"{folio_page_idx(f, pfn)} of {f.nr_pages}"),
                     ("refcount", c.refcount), ("folio_mapcount", c.mapcount),
                     ("entire mapcount", c.entire_mapcount)]
        rows += [("/proc/kpagecount", self.system.kpagecount([pfn])[0]),
                 ("/proc/kpageflags", " ".join(self.flags()) or "(none)")]
        return rows

    def redraw(self) -> None:
        lo = self.pfn - self.pfn % _BLOCK
        self.image.value = png(self.static_figure(legend=False))
        cells = frame_cells(self.system.machine, range(lo, lo + _BLOCK))
        self.legend.value = legend_html(legend_entries(cells))
        self.info.value = "<table>" + "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td>{html.escape(str(v))}</td></tr>" for k, v in self.rows()) + "</table>"


def folio_inspector(ram: str = "16M") -> FolioInspector:
    """A widget: a process with a THP, a THP split non-uniformly to order 0 at page 3, and
    sixteen 4 KiB pages; pick a page of one of them (or type any PFN) and see its folio (head
    PFN, order, nr_pages, which page of the folio it is, refcount and mapcounts) and the
    page's /proc/kpageflags bits, with the 512 frames around it and the folio outlined.
    ``.static_figure()`` gives the strip for print."""
    return FolioInspector(ram)
