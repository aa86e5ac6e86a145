"""Folio strip: physical frames as cells, coloured by the order of the folio that holds
them, with head marks, folio boundaries, free frames and page-table pages.

Pass a folio, a list of folios, or a machine (``System`` or ``Machine``) and a PFN range.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.artist import Artist
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from pyfolio.include.linux.mm import Folio
from pyfolio.sim.memmap import NO_HEAD, PGTY, ZONE_DEVICE
from pyfolio.views._style import (
    MIN_FONT,
    PAGE_WIDTH,
    TITLE_LINE,
    ink_on,
    new_figure,
    order_color,
    wrap_title,
)

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine
    from pyfolio.system import System

__all__ = ["FrameCells", "frame_cells", "folio_strip", "draw_frames",
           "legend_entries", "legend_html",
           "FREE_COLOR", "TABLE_COLOR", "MARK_COLOR"]

FREE_COLOR = (0.96, 0.96, 0.96)
TABLE_COLOR = (0.35, 0.35, 0.35)
MARK_COLOR = (0.85, 0.1, 0.1)  # frames a caller marks (e.g. pinned pages): a red cross
_COLS = 32
#: inches: row labels on the left, the title on top, one legend line, the legend's width
_LEFT, _TOP, _LINE, _KEY_W = 0.62, 0.42, 0.2, 1.9


@dataclass(frozen=True)
class FrameCells:
    """Per-frame arrays for PFNs ``start .. start + len(kind) - 1``: ``kind`` is "folio",
    "free", "table" or "device"(-private, free); ``head`` the folio head, ``order`` its order,
    ``mapcount`` the page's own mapcount (``_mapcount + 1``); ``free_head``/``free_order``
    the buddy block a free frame is in (its head PFN and order, -1 if not free)."""

    start: int
    kind: tuple[str, ...]
    head: np.ndarray
    order: np.ndarray
    mapcount: np.ndarray
    free_head: np.ndarray | None = None
    free_order: np.ndarray | None = None


def frame_cells(m: Machine, pfns: range) -> FrameCells:
    """Read (never change) what each frame of ``pfns`` holds."""
    mem, idx = m.mem, np.arange(pfns.start, pfns.stop)
    ch = mem.compound_head[idx]
    head = np.where(ch == NO_HEAD, idx, ch)
    order = mem.order[head].astype(np.int64)
    ptype = mem.page_type[idx]
    free = ptype == PGTY.buddy
    # a free frame inside a buddy block: its block head is not tracked per page
    kinds = np.where(free, "free", np.where(ptype == PGTY.table, "table", "folio")).astype(object)
    # refcount 0 and no flags: free; a frozen folio (refcount 0 mid-split) keeps its flags
    unused = ((ptype == PGTY.none) & (mem._refcount[head] == 0) & (mem.flags[head] == 0)
              & (mem.flags[idx] == 0))
    kinds[unused & (mem.zone[idx] == ZONE_DEVICE)] = "device"
    kinds[unused & (mem.zone[idx] != ZONE_DEVICE)] = "free"
    order[kinds != "folio"] = -1
    fh, fo = _free_blocks(m, pfns)
    return FrameCells(pfns.start, tuple(kinds), head, order, mem._mapcount[idx] + 1, fh, fo)


def _free_blocks(m: Machine, pfns: range) -> tuple[np.ndarray, np.ndarray]:
    """For each frame of ``pfns``: the head PFN and order of the free buddy block holding
    it (-1, -1 if none). A buddy block head has page_type buddy and its order set."""
    mem, n = m.mem, len(pfns)
    fh, fo = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    heads = [pfns.start + int(i) for i in np.flatnonzero(mem.page_type[pfns.start:pfns.stop]
                                                         == PGTY.buddy)]
    for o in range(11):  # a block that starts before the range
        h = pfns.start & ~((1 << o) - 1)
        if h < pfns.start and mem.page_type[h] == PGTY.buddy and int(mem.order[h]) == o:
            heads.insert(0, h)
            break
    for h in heads:
        o = int(mem.order[h])
        lo, hi = max(h, pfns.start) - pfns.start, min(h + (1 << o), pfns.stop) - pfns.start
        fh[lo:hi], fo[lo:hi] = h, o
    return fh, fo


def _target(x: Folio | Sequence[Folio] | System | Machine,
            pfns: range | None) -> tuple[Machine, range]:
    if isinstance(x, Folio):
        return x.m, pfns or range(x.pfn, x.pfn + x.nr_pages)
    if isinstance(x, Sequence):
        lo = min(f.pfn for f in x)
        return x[0].m, pfns or range(lo, max(f.pfn + f.nr_pages for f in x))
    m: Machine = x.machine if hasattr(x, "machine") else x
    if pfns is None:
        raise TypeError("folio_strip(machine, pfns): give the PFN range to draw")
    return m, pfns


def folio_strip(x: Folio | Sequence[Folio] | System | Machine, pfns: range | None = None, *,
                title: str | None = None, legend: bool = True, marks: Sequence[int] = (),
                marks_label: str = "marked") -> Figure:
    """Frames as a grid of 32 per row: colour = order of the holding folio, a dot on each
    head page, a black line at every folio boundary; free frames light grey, page-table
    pages dark grey. Up to 64 frames also show each page's mapcount. ``legend=False``
    leaves the key out (a widget shows :func:`legend_entries` as HTML beside it). ``marks``:
    PFNs to cross in red, named ``marks_label`` in the key (e.g. pinned pages)."""
    m, rng = _target(x, pfns)
    return draw_frames(frame_cells(m, rng), title=title, legend=legend, marks=marks,
                       marks_label=marks_label)


def legend_entries(c: FrameCells) -> list[tuple[tuple[float, float, float], str]]:
    """The key of a folio strip: (colour, label) per folio order present, free, table."""
    n = len(c.kind)
    kind = np.array(c.kind)
    heads = np.flatnonzero((kind == "folio") & (c.head == np.arange(c.start, c.start + n)))
    orders = sorted({int(o) for o in c.order if o >= 0})
    def folios(k: int) -> str:
        return f"{k} folio" + ("" if k == 1 else "s")

    out = [(order_color(o), f"order {o} ({folios(int((c.order[heads] == o).sum()))})")
           for o in orders]
    out += [(col, lbl) for k, col, lbl in
            (("free", FREE_COLOR, "free (outline: buddy block"
              + (",\no<n>: its order)" if n <= 64 else ")")),
             ("table", TABLE_COLOR, "page table"),
             ("device", FREE_COLOR, "device-private, free (the driver's)"))
            if k in c.kind]
    return out


def legend_html(entries: list[tuple[tuple[float, float, float], str]]) -> str:
    """:func:`legend_entries` as an HTML line of colour swatches."""
    def swatch(col: tuple[float, float, float]) -> str:
        r, g, b = (int(255 * v) for v in col)
        return (f"<span style='display:inline-block;width:0.9em;height:0.9em;"
                f"background:rgb({r},{g},{b});border:1px solid black;"
                f"vertical-align:middle'></span>")
    return " ".join(f"<span style='margin-right:1em'>{swatch(col)} {html.escape(lbl)}</span>"
                    for col, lbl in entries)


def draw_frames(c: FrameCells, *, title: str | None = None, legend: bool = True,
                marks: Sequence[int] = (), marks_label: str = "marked") -> Figure:
    """Draw :class:`FrameCells` (from :func:`frame_cells` or a recorded frame) as
    :func:`folio_strip` does: 32 frames a row, sized for the page (a cell is at most 0.19
    inch, the whole grid at most 4 inches tall); the key goes to the right when there is
    room, else under the grid."""
    n = len(c.kind)
    rng = range(c.start, c.start + n)
    rows = -(-n // _COLS)
    cols = min(n, _COLS)
    kind = np.array(c.kind)
    rgb = np.ones((rows * cols, 3))
    rgb[:n] = FREE_COLOR
    rgb[:n][kind == "table"] = TABLE_COLOR
    pal = np.array([order_color(o) for o in range(11)])
    rgb[:n][kind == "folio"] = pal[np.clip(c.order[kind == "folio"], 0, 10)]
    entries = legend_entries(c) if legend else []
    marked = np.array([p - rng.start for p in marks if p in rng], dtype=np.int64)
    n_keys = len(entries) + (1 if legend and len(marked) else 0)
    right = bool(n_keys) and _COLS * min(0.19, 4.0 / rows) + _LEFT + _KEY_W <= PAGE_WIDTH
    cell = min(0.19, 4.0 / rows, (PAGE_WIDTH - _LEFT - (_KEY_W if right else 0.1)) / _COLS)
    gw, gh = cols * cell, rows * cell
    below = 0.0 if right or not n_keys else _LINE * -(-n_keys // 2) + 0.15
    width = _LEFT + gw + (_KEY_W if right else 0.1)
    title = wrap_title(title or f"frames {rng.start:#x}..{rng.stop - 1:#x} (dot: head page"
                       f"{', number: page mapcount' if n <= 64 else ''})", width - _LEFT)
    height = _TOP + TITLE_LINE * title.count("\n") + gh + below + 0.08
    fig = new_figure(width, height)
    ax = fig.add_axes((_LEFT / width, (below + 0.04) / height, gw / width, gh / height))
    ax.imshow(rgb.reshape(rows, cols, 3), interpolation="nearest", aspect="auto")
    heads = np.flatnonzero((kind == "folio") & (c.head == np.arange(rng.start, rng.stop)))
    ax.plot(heads % cols, heads // cols, "o", ms=3, mfc="white",
            mec="black", mew=0.5, ls="none")
    free_head = c.free_head if c.free_head is not None else np.full(n, -1)
    owner = np.where(kind == "folio", c.head,
                     np.where(free_head >= 0, -2 - free_head, -(1 << 40) - np.arange(n)))
    segs = _boundaries(owner, cols)
    ax.add_collection(LineCollection(segs, colors="black", linewidths=1.2))
    if len(marked):
        ax.plot(marked % cols, marked // cols, "x", ms=6, mew=1.8, color=MARK_COLOR, ls="none")
    if n <= 64:
        for i in range(n):
            if c.kind[i] == "folio":
                ax.text(i % cols, i // cols, str(int(c.mapcount[i])), ha="center", va="center",
                        fontsize=MIN_FONT, color=ink_on(tuple(rgb[i])))
            elif c.free_order is not None and rng.start + i == free_head[i]:
                ax.text(i % cols, i // cols, f"o{int(c.free_order[i])}", ha="center",
                        va="center", fontsize=MIN_FONT, color="#444444")
    ax.set_axis_off()
    for r in range(0, rows, max(1, rows // 8)):
        ax.text(-0.8, r, f"{rng.start + r * cols:#x}", ha="right", va="center",
                fontsize=MIN_FONT)
    if n_keys:
        handles: list[Artist] = [Patch(fc=col, ec="black", lw=0.5, label=lbl)
                                 for col, lbl in entries]
        if len(marked):
            handles.append(Line2D([], [], marker="x", ms=6, mew=1.8, color=MARK_COLOR,
                                  ls="none", label=marks_label))
        if right:
            fig.legend(handles=handles, loc="center left", frameon=False, fontsize=7.5,
                       bbox_to_anchor=((_LEFT + gw + 0.15) / width, (below + gh / 2) / height))
        else:
            fig.legend(handles=handles, loc="lower left", ncol=2, frameon=False, fontsize=7.5,
                       bbox_to_anchor=(_LEFT / width, 0.0), borderaxespad=0.1)
    fig.suptitle(title, fontsize=9, x=_LEFT / width, ha="left", y=1 - 0.06 / height,
                 va="top")
    return fig


def _boundaries(owner: np.ndarray, cols: int) -> list[list[tuple[float, float]]]:
    """Segments between grid cells whose ``owner`` differs (left and upper neighbours)."""
    i = np.arange(1, len(owner))
    x = i % cols
    left = i[(x > 0) & (owner[1:] != owner[:-1])]
    up = i[i >= cols]
    up = up[owner[up] != owner[up - cols]]
    segs = [[(k % cols - 0.5, k // cols - 0.5), (k % cols - 0.5, k // cols + 0.5)] for k in left]
    segs += [[(k % cols - 0.5, k // cols - 0.5), (k % cols + 0.5, k // cols - 0.5)] for k in up]
    return segs
