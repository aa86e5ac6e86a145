"""Page-table tree: the walk of one address, PGD -> PUD -> PMD -> (PTE table ->) folio, as a
networkx graph and as a figure with the address decoded into its 9/9/9/9/12 index bits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from pyfolio.arch.x86.pgtable import decode_entry, pgd_index, pmd_index, pte_index, pud_index, walk
from pyfolio.include.linux.mm import page_folio
from pyfolio.sim.units import PAGE_SIZE
from pyfolio.views._style import (
    MIN_FONT,
    PAGE_WIDTH,
    STATE_COLORS,
    TITLE_LINE,
    ink_on,
    new_figure,
    wrap_title,
)

if TYPE_CHECKING:
    from pyfolio.system import Process

__all__ = ["pagetable_graph", "draw_pagetable", "address_fields", "LEVELS"]

LEVELS = ("pgd", "pud", "pmd", "pte")
#: (name, high bit, low bit) of a 48-bit virtual address under 4-level paging
_FIELDS = (("PGD index", 47, 39), ("PUD index", 38, 30), ("PMD index", 29, 21),
           ("PTE index", 20, 12), ("offset", 11, 0))


def address_fields(addr: int) -> list[tuple[str, int, int, int]]:
    """``(name, high bit, low bit, value)`` for the four table indices and the page offset.

    >>> [v for *_, v in address_fields(0x7f0000201123)]
    [254, 0, 1, 1, 291]
    """
    vals = (pgd_index(addr), pud_index(addr), pmd_index(addr), pte_index(addr),
            addr & (PAGE_SIZE - 1))
    return [(n, hi, lo, v) for (n, hi, lo), v in zip(_FIELDS, vals, strict=True)]


def pagetable_graph(p: Process, addr: int) -> nx.DiGraph:
    """The tables the walk of ``addr`` passes and what it ends at, as a directed graph.

    Nodes "pgd", "pud", "pmd", "pte" (only when the PMD points at a PTE table) carry
    ``pfn`` (the table page), ``index`` (the slot used) and ``entry`` (the raw entry in it,
    decoded as ``kind``); a final node "folio" (present, migration or device-private entry)
    carries ``pfn``, ``head`` and ``order``. Edges are labelled with the slot index.
    """
    w = walk(p.m, p.mm.pgd, addr)
    g = nx.DiGraph(addr=addr, leaf=w.level)
    prev = None
    for level, pfn, idx in w.tables:
        raw = int(p.m.pgtables[pfn][idx])
        g.add_node(level, pfn=pfn, index=idx, entry=raw, kind=decode_entry(raw, level).kind)
        if prev is not None:
            g.add_edge(prev, level, index=g.nodes[prev]["index"])
        prev = level
    e = decode_entry(w.raw, w.level)
    if e.pfn >= 0 and prev is not None:
        off = (addr >> 12) & 511 if w.level == "pmd" else 0
        f = page_folio(p.m, e.pfn + off)
        g.add_node("folio", pfn=e.pfn + off, head=f.pfn, order=f.order, kind=e.kind)
        g.add_edge(prev, "folio", index=g.nodes[prev]["index"])
    return g


_NODE_LABEL = {"pgd": "PGD", "pud": "PUD", "pmd": "PMD", "pte": "PTE table"}


def draw_pagetable(p: Process, addr: int, *, title: str | None = None) -> Figure:
    """The walk of ``addr`` as boxes (one per table, the slot used and the entry in it) over
    the address bar split into PGD/PUD/PMD/PTE indices and page offset."""
    g = pagetable_graph(p, addr)
    nodes = [n for n in (*LEVELS, "folio") if n in g]
    title = wrap_title(title or f"page-table walk of {addr:#x} (pid {p.pid}): ends at a "
                       f"{'PMD leaf' if g.graph['leaf'] == 'pmd' and 'pte' not in g else 'PTE'}")
    height = 3.1 + TITLE_LINE * title.count("\n")
    fig = new_figure(PAGE_WIDTH, height)
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.37 / height))
    ax.set_xlim(0, 10)
    ax.set_ylim(0.4, 5.4)
    ax.set_axis_off()
    _address_bar(ax, addr, g.graph["leaf"] == "pmd" and "folio" in g)
    for i, n in enumerate(nodes):
        x, d = 0.3 + i * 1.95, g.nodes[n]
        if n == "folio":
            text = f"folio {d['head']:#x}\norder {d['order']}\npage {d['pfn']:#x}\n({d['kind']})"
            color = STATE_COLORS["device_private" if d["kind"] == "device_private" else
                                 "migration" if d["kind"] == "migration" else "pte"]
        else:
            e = decode_entry(d["entry"], n)
            leaf = e.kind not in ("table", "none")
            text = (f"{_NODE_LABEL[n]}\ntable {d['pfn']:#x}\n[{d['index']}] = {e.kind}"
                    + ("\nleaf: maps 2 MiB" if n == "pmd" and leaf else ""))
            color = STATE_COLORS["pmd"] if leaf and n == "pmd" else (0.93, 0.93, 0.97)
        ax.add_patch(FancyBboxPatch((x, 0.6), 1.55, 2.2, boxstyle="round,pad=0.05", fc=color,
                                    ec="black", lw=1.0))
        ax.text(x + 0.78, 1.7, text, ha="center", va="center", fontsize=7.5,
                color=ink_on(tuple(color)))
        if i:
            ax.annotate("", (x, 1.7), (x - 0.4, 1.7),
                        arrowprops=dict(arrowstyle="->", lw=1.2))
    fig.suptitle(title, fontsize=9, x=0.01, ha="left", y=1 - 0.05 / height, va="top")
    return fig


def _address_bar(ax: object, addr: int, pmd_leaf: bool) -> None:
    """The bits 47..0 of ``addr`` as labelled fields; under a PMD leaf bits 20..12 pick the
    page inside the 2 MiB folio instead of a PTE."""
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    colors = ((0.85, 0.9, 1.0), (0.85, 1.0, 0.88), (1.0, 0.93, 0.8), (0.95, 0.85, 1.0),
              (0.92, 0.92, 0.92))
    w = 9.4 / 48
    for (name, hi, lo, val), col in zip(address_fields(addr), colors, strict=True):
        x0 = 0.3 + (47 - hi) * w
        ax.add_patch(FancyBboxPatch((x0, 3.4), (hi - lo + 1) * w, 0.9, boxstyle="square,pad=0",
                                    fc=col, ec="black", lw=0.8))
        bits = format((addr >> lo) & ((1 << (hi - lo + 1)) - 1), f"0{hi - lo + 1}b")
        ax.text(x0 + (hi - lo + 1) * w / 2, 3.85, bits, ha="center", va="center",
                fontsize=MIN_FONT, family="monospace")
        if pmd_leaf and name == "PTE index":
            name = "page in 2 MiB"
        ax.text(x0 + (hi - lo + 1) * w / 2, 4.75, f"{name} ({hi}..{lo})\n= {val}",
                ha="center", va="center", fontsize=MIN_FONT)
