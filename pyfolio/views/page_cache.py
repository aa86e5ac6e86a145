"""Page-cache strip: a file's pages by index, coloured by the order of the page-cache folio
that holds each one; uncached pages (holes, or past the end of the file) are white.

:func:`page_cache_cells` reads (never changes) the file's page cache through the facade
(``Process.page_cache(fd)``, the xarray's entries) and the inode's size;
:func:`draw_page_cache` draws it 32 pages a row, a dot on each folio's first page and a
black line between folios, uncached pages past the file's end (EOF) in grey.
:func:`record_page_cache` runs operations one by one and keeps a picture of the page cache
after each, for :func:`pyfolio.views.animate`.
:func:`cache_notation` writes the same state as text, the notation of the book's research
notes: ``7 6 3 (hole:1) 0 1 2 4 5 8`` (folio orders in index order, ``AxN`` for N folios of
order A in a row, ``(hole:N)`` for N uncached pages).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pyfolio.sim.units import PAGE_SIZE
from pyfolio.views._style import (
    MIN_FONT,
    PAGE_WIDTH,
    TITLE_LINE,
    WHITE,
    new_figure,
    order_color,
    wrap_title,
)
from pyfolio.views.folio_strip import _boundaries, legend_html

if TYPE_CHECKING:
    from pyfolio.system import Process

__all__ = ["PageCacheCells", "page_cache_cells", "page_cache_strip", "draw_page_cache",
           "record_page_cache", "cache_notation", "cache_legend_entries", "cache_legend_html",
           "PAST_EOF_COLOR"]

PAST_EOF_COLOR = (0.82, 0.82, 0.82)
_COLS = 32
#: inches: row labels on the left, the title on top, one legend line
_LEFT, _TOP, _LINE = 0.55, 0.42, 0.2


@dataclass(frozen=True)
class PageCacheCells:
    """Pages ``0 .. npages - 1`` of one file: ``order[i]`` the order of the page-cache folio
    holding page ``i`` (-1: not cached), ``head[i]`` that folio's first index (-1), and
    ``eof`` the file's size in pages (rounded up). ``label`` names the picture (a player's
    caption)."""

    npages: int
    order: np.ndarray
    head: np.ndarray
    eof: int
    label: str = ""

    def folios(self) -> list[tuple[int, int]]:
        """(index, order) of every folio that starts inside the strip."""
        idx = np.flatnonzero((self.head == np.arange(self.npages)) & (self.order >= 0))
        return [(int(i), int(self.order[i])) for i in idx]


def page_cache_cells(p: Process, fd: int, npages: int = 512, label: str = "") -> PageCacheCells:
    """What the page cache of ``p``'s open file ``fd`` holds for pages ``0 .. npages - 1``."""
    order = np.full(npages, -1, np.int64)
    head = np.full(npages, -1, np.int64)
    for index, o in p.page_cache(fd):
        lo, hi = index, min(index + (1 << o), npages)
        if lo < npages:
            order[lo:hi], head[lo:hi] = o, index
    size = p.files[fd].f_inode.i_size
    return PageCacheCells(npages, order, head, -(-size // PAGE_SIZE), label)


def cache_notation(cache: Sequence[tuple[int, int]], npages: int) -> str:
    """Pages ``0 .. npages - 1`` of a page cache given as (index, order) pairs, in the
    notation of the research notes.

    >>> cache_notation([(0, 7), (128, 6), (192, 3), (201, 0), (202, 1), (204, 2), (208, 4),
    ...                 (224, 5), (256, 8)], 512)
    '7 6 3 (hole:1) 0 1 2 4 5 8'
    >>> cache_notation([(0, 0), (1, 0), (4, 2)], 10)
    '0x2 (hole:2) 2 (hole:2)'
    """
    at = dict(cache)
    items: list[str] = []
    i = 0
    while i < npages:
        if i in at:
            items.append(str(at[i]))
            i += 1 << at[i]
            continue
        j = i
        while j < npages and j not in at:
            j += 1
        items.append(f"(hole:{j - i})")
        i = j
    out: list[tuple[str, int]] = []
    for item in items:
        if out and out[-1][0] == item and not item.startswith("("):
            out[-1] = (item, out[-1][1] + 1)
        else:
            out.append((item, 1))
    return " ".join(f"{v}x{n}" if n > 1 else v for v, n in out)


def cache_legend_entries(c: PageCacheCells) -> list[tuple[tuple[float, float, float], str]]:
    """The key: (colour, label) per folio order present, then "not cached"."""
    counts: dict[int, int] = {}
    for _, o in c.folios():
        counts[o] = counts.get(o, 0) + 1
    out = [(order_color(o), f"order {o} ({n} folio{'' if n == 1 else 's'})")
           for o, n in sorted(counts.items())]
    beyond = np.arange(c.npages) >= c.eof
    if ((c.order < 0) & ~beyond).any():
        out.append((WHITE, "hole (not cached)"))
    if ((c.order < 0) & beyond).any():
        out.append((PAST_EOF_COLOR, f"past the end of the file (page {c.eof} on)"))
    return out


def cache_legend_html(c: PageCacheCells) -> str:
    """:func:`cache_legend_entries` as an HTML line (a widget shows it under the strip)."""
    return legend_html(cache_legend_entries(c))


def draw_page_cache(c: PageCacheCells, *, title: str | None = None,
                    legend: bool = True) -> Figure:
    """Draw :class:`PageCacheCells`: 32 pages a row, colour = the order of the folio holding
    the page (white: not cached), a dot on each folio's first page, a black line between
    folios; uncached pages past the end of the file are grey."""
    n = c.npages
    rows = -(-n // _COLS)
    cols = min(n, _COLS)
    rgb = np.ones((rows * cols, 3))
    pal = np.array([order_color(o) for o in range(11)])
    cached = c.order >= 0
    rgb[:n][~cached & (np.arange(n) >= c.eof)] = PAST_EOF_COLOR
    rgb[:n][cached] = pal[np.clip(c.order[cached], 0, 10)]
    entries = cache_legend_entries(c) if legend else []
    cell = min(0.19, 4.0 / rows, (PAGE_WIDTH - _LEFT - 0.1) / _COLS)
    gw, gh = cols * cell, rows * cell
    key_rows = -(-len(entries) // 3) if entries else 0
    below = _LINE * key_rows + 0.15 if key_rows else 0.0
    width = _LEFT + gw + 0.1
    title = wrap_title(title or c.label or "the file's page cache, page by page", width - _LEFT)
    height = _TOP + TITLE_LINE * title.count("\n") + gh + below + 0.08
    fig = new_figure(width, height)
    ax = fig.add_axes((_LEFT / width, (below + 0.04) / height, gw / width, gh / height))
    ax.imshow(rgb.reshape(rows, cols, 3), interpolation="nearest", aspect="auto")
    heads = np.flatnonzero(cached & (c.head == np.arange(n)))
    ax.plot(heads % cols, heads // cols, "o", ms=3, mfc="white", mec="black", mew=0.5,
            ls="none")
    segs = _boundaries(np.where(cached, c.head, -1), cols)  # holes: one owner, no lines
    ax.add_collection(LineCollection(segs, colors="black", linewidths=1.0))
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_axis_off()
    for r in range(0, rows, max(1, rows // 8)):
        ax.text(-0.8, r, str(r * cols), ha="right", va="center", fontsize=MIN_FONT)
    if entries:
        handles = [Patch(fc=col, ec="black", lw=0.5, label=lbl) for col, lbl in entries]
        fig.legend(handles=handles, loc="lower left", ncol=3, frameon=False, fontsize=7.5,
                   bbox_to_anchor=(_LEFT / width, 0.0), borderaxespad=0.1)
    fig.suptitle(title, fontsize=9, x=_LEFT / width, ha="left", y=1 - 0.06 / height,
                 va="top")
    return fig


def page_cache_strip(p: Process, fd: int, npages: int = 512, *, title: str | None = None,
                     legend: bool = True) -> Figure:
    """The page cache of ``p``'s file ``fd``, pages ``0 .. npages - 1``, as a figure
    (:func:`draw_page_cache` of :func:`page_cache_cells`)."""
    return draw_page_cache(page_cache_cells(p, fd, npages), title=title, legend=legend)


def record_page_cache(p: Process, fd: int, steps: Sequence[tuple[str, Callable[[], object]]],
                      npages: int = 512) -> list[PageCacheCells]:
    """Run ``steps`` ((label, operation) pairs) in order; the page cache before the first
    ("start") and after each, labelled with the step and the state in
    :func:`cache_notation`."""
    frames = [page_cache_cells(p, fd, npages, f"start: {cache_notation(p.page_cache(fd), npages)}")]
    for label, op in steps:
        op()
        frames.append(page_cache_cells(
            p, fd, npages, f"{label}: {cache_notation(p.page_cache(fd), npages)}"))
    return frames
