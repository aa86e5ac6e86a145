"""Page-cache explorer: punch a hole in, or truncate, a 2 MiB file held by one order-9
page-cache folio, and see the folios the split leaves.

The file is a memfd (shmem, written while ``shmem_enabled`` was ``always``) or an ext4 file
written in one 2 MiB ``pwrite()``, clean (``fsync()``-ed) or still dirty
(:func:`pyfolio.exercises.ch13_large_folios_in_the_page_cache.thp_file`). The operations are
the facade's ``Process.fallocate(fd, "punch_hole", ...)`` and ``Process.ftruncate(fd, ...)``
(fs/open.c -> mm/truncate.c:truncate_inode_partial_folio() -> try_folio_split()); the widget
only wires controls to them and redraws :func:`pyfolio.views.page_cache.page_cache_strip`.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.sim.errors import MmError
from pyfolio.sim.units import PAGE_SIZE
from pyfolio.views.page_cache import (
    cache_legend_html,
    cache_notation,
    page_cache_cells,
    page_cache_strip,
)
from pyfolio.widgets._common import App, Message, png

__all__ = ["page_cache_explorer", "PageCacheExplorer", "FILES", "OPERATIONS"]

#: the files the explorer offers: label -> the ``fs`` argument of thp_file()
FILES = {"memfd (shmem)": "shmem", "ext4, clean": "clean", "ext4, dirty": "dirty"}
OPERATIONS = ("punch hole", "truncate")
_NPAGES = 512


class PageCacheExplorer(App):
    """The page-cache explorer app (see :func:`page_cache_explorer`)."""

    def __init__(self, fs: str = "memfd (shmem)") -> None:
        if fs not in FILES:
            raise ValueError(f"fs {fs!r} is not one of {', '.join(FILES)}")
        self.fs = widgets.ToggleButtons(options=list(FILES), value=fs, description="file")
        self.op = widgets.ToggleButtons(options=list(OPERATIONS), value="punch hole",
                                        description="operation")
        self.page = widgets.Text(value="200", description="at page", placeholder="0..511",
                                 layout={"width": "180px"})
        self.length = widgets.Text(value="1", description="pages", placeholder="1..512",
                                   layout={"width": "180px"})
        self.apply_button = widgets.Button(description="Apply", button_style="primary")
        self.reset_button = widgets.Button(description="Reset")
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.legend = widgets.HTML()
        self.counts = widgets.HTML()
        self.message = Message()
        self.fs.observe(lambda _: self.reset(), names="value")
        self.op.observe(lambda _: self._explain(), names="value")
        self.apply_button.on_click(lambda _: self.apply())
        self.page.on_msg(self._on_submit)  # Enter in a box applies
        self.length.on_msg(self._on_submit)
        self.reset_button.on_click(lambda _: self.reset())
        super().__init__([
            self.fs, self.op,
            widgets.HBox([self.page, self.length, self.apply_button, self.reset_button]),
            self.message, self.image, self.legend, self.counts])
        self.reset()

    # -- model -----------------------------------------------------------------------------
    def reset(self) -> None:
        """A fresh machine and a fresh 2 MiB file of the chosen kind: one order-9 folio."""
        from pyfolio.exercises.ch13_large_folios_in_the_page_cache import thp_file

        self.system, self.proc, self.fd = thp_file(FILES[self.fs.value])
        self.history: list[str] = []
        self._explain()
        self.redraw()

    def _explain(self) -> None:
        if self.op.value == "punch hole":
            self.message.ok("punch hole: fallocate(PUNCH_HOLE) of 'pages' pages from page "
                            "'at page'; press Apply")
        else:
            self.message.ok("truncate: ftruncate() to 'at page' pages ('pages' is not used); "
                            "press Apply")

    def apply(self) -> None:
        """Punch or truncate as the controls say; a value out of range is a message and
        changes nothing."""
        size = -(-self.proc.files[self.fd].f_inode.i_size // PAGE_SIZE)
        if self.op.value == "punch hole":
            page = self.message.number_in(self.page.value, 0, _NPAGES, "a page number",
                                          "the file's 512 pages", decimal=True)
            if page is None:
                return self._missing(self.page.value, "at page", 0, _NPAGES - 1)
            n = self.message.number_in(self.length.value, 1, _NPAGES - page + 1,
                                       "a number of pages", f"1..{_NPAGES - page} pages "
                                       f"(the hole must end inside the 2 MiB)", decimal=True)
            if n is None:
                return self._missing(self.length.value, "pages", 1, _NPAGES - page)
            what = f"punch {n} page{'s' if n > 1 else ''} at page {page}"
            args: tuple[str, int, int] = ("punch_hole", page * PAGE_SIZE, n * PAGE_SIZE)
        else:
            page = self.message.number_in(self.page.value, 0, size + 1, "a size in pages",
                                          f"0..{size} pages (the file's size now; growing it "
                                          f"splits nothing)", decimal=True)
            if page is None:
                return self._missing(self.page.value, "at page", 0, size)
            what = f"truncate to {page} pages"
            args = ("truncate", page * PAGE_SIZE, 0)
        vm = self.system.vmstat()
        failed = vm["thp_split_page_failed"]
        try:
            if args[0] == "truncate":
                self.proc.ftruncate(self.fd, args[1])
            else:
                self.proc.fallocate(self.fd, *args)
        except MmError as e:
            self.message.error(f"{what}: -{e.errname}: {e}")
            return
        self.history.append(what)
        now = cache_notation(self.proc.page_cache(self.fd), _NPAGES)
        if self.system.vmstat()["thp_split_page_failed"] > failed:
            self.message.error(f"{what}: the split failed (a dirty ext4 folio keeps its "
                               f"buffers); the range was only zeroed: {now}")
        else:
            self.message.ok(f"{what}: {now}")
        self.redraw()

    def _on_submit(self, _: object, content: dict[str, object], buffers: object) -> None:
        if content.get("event") == "submit":
            self.apply()

    def _missing(self, text: str, box: str, lo: int, hi: int) -> None:
        if not text.strip():
            self.message.error(f"type a whole number from {lo} to {hi} in '{box}'")

    # -- view ------------------------------------------------------------------------------
    def static_figure(self, legend: bool = True) -> Figure:
        """The page-cache strip of the file's 512 pages, as in the widget (with its key)."""
        done = "; ".join(self.history) or "as written"
        return page_cache_strip(self.proc, self.fd, _NPAGES, legend=legend,
                                title=f"{self.fs.value} file, 2 MiB: {done}")

    def redraw(self) -> None:
        self.image.value = png(self.static_figure(legend=False))
        cells = page_cache_cells(self.proc, self.fd, _NPAGES)
        self.legend.value = cache_legend_html(cells)
        vm, st = self.system.vmstat(), self.system.mthp_stats("2048kB")
        folios = self.proc.page_cache(self.fd)
        rows = [("folios in the page cache", len(folios)),
                ("pages cached", sum(1 << o for _, o in folios)),
                ("thp_split_page / _failed", f"{vm['thp_split_page']} / "
                                             f"{vm['thp_split_page_failed']}"),
                ("hugepages-2048kB split / split_failed",
                 f"{st['split']} / {st['split_failed']}"),
                ("nr_shmem_hugepages / nr_file_hugepages",
                 f"{vm['nr_shmem_hugepages']} / {vm['nr_file_hugepages']}")]
        self.counts.value = "<table>" + "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{v}</td></tr>"
            for k, v in rows) + "</table>"


def page_cache_explorer(fs: str = "memfd (shmem)") -> PageCacheExplorer:
    """A widget: a 2 MiB file held by one order-9 page-cache folio (``fs``: one of
    :data:`FILES`); punch holes and truncate it, see the page cache as a strip of folios,
    the counters of the splits, and why a split failed. ``.static_figure()`` gives the
    strip as a Figure for print."""
    return PageCacheExplorer(fs)
