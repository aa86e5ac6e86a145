"""Rmap graph: which processes, addresses and page-table levels map a folio.

Built from :func:`pyfolio.mm.rmap.rmap_walk`; runs of consecutive PTEs in one VMA are merged
into one node so a PTE-mapped 2 MiB folio is one node per process, not 512.
"""

from __future__ import annotations

import networkx as nx
from matplotlib.figure import Figure

from pyfolio.include.linux.mm import Folio
from pyfolio.mm.rmap import rmap_walk
from pyfolio.sim.units import PAGE_SIZE
from pyfolio.views._style import (
    PAGE_WIDTH,
    STATE_COLORS,
    TITLE_LINE,
    ink_on,
    new_figure,
    wrap_title,
)

__all__ = ["rmap_graph", "draw_rmap"]


def rmap_graph(folio: Folio, *, migration: bool = False) -> nx.Graph:
    """Nodes: "folio" (``pfn``, ``order``), one "mm N" node per address space (``mm_id``),
    and one mapping node per run of entries (``level`` "pmd"/"pte", ``kind``, ``address``,
    ``nr`` entries, ``first_pfn``). Edges join folio - mapping - mm."""
    g = nx.Graph()
    g.add_node("folio", pfn=folio.pfn, order=folio.order, role="folio")
    runs: list[list] = []
    for mp in rmap_walk(folio, migration=migration):
        last = runs[-1] if runs else None
        if (last and mp.level == "pte" == last[0].level and last[0].vma is mp.vma
                and mp.kind == last[0].kind
                and mp.address == last[-1].address + PAGE_SIZE and mp.pfn == last[-1].pfn + 1):
            last.append(mp)
        else:
            runs.append([mp])
    for run in runs:
        mp = run[0]
        mm = f"mm {mp.mm.id}"
        node = f"{mp.level} {mp.address:#x} mm {mp.mm.id}"
        g.add_node(mm, mm_id=mp.mm.id, role="mm")
        g.add_node(node, role="mapping", level=mp.level, kind=mp.kind, address=mp.address,
                   nr=len(run), first_pfn=mp.pfn, mm_id=mp.mm.id)
        g.add_edge("folio", node)
        g.add_edge(node, mm)
    return g


def draw_rmap(folio: Folio, *, title: str | None = None) -> Figure:
    """The rmap graph in three columns: the folio, its mappings, the address spaces."""
    g = rmap_graph(folio)
    maps = sorted((n for n, d in g.nodes(data=True) if d["role"] == "mapping"),
                  key=lambda n: (g.nodes[n]["mm_id"], g.nodes[n]["address"]))
    mms = sorted((n for n, d in g.nodes(data=True) if d["role"] == "mm"),
                 key=lambda n: g.nodes[n]["mm_id"])
    rows = max(len(maps), len(mms), 1)
    title = wrap_title(title or f"who maps folio {folio.pfn:#x} (rmap_walk)")
    top = 0.4 + TITLE_LINE * title.count("\n")
    height = top + 0.15 + 0.45 * rows
    fig = new_figure(PAGE_WIDTH, height)
    ax = fig.add_axes((0.01, 0.01, 0.98, 1 - top / height))
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.7, rows - 0.3)
    ax.set_axis_off()

    def ys(n: int) -> list[float]:
        return [rows - 1 - (i + 0.5) * rows / n + 0.5 for i in range(n)]

    pos = {"folio": (1.2, (rows - 1) / 2)}
    pos.update({n: (5.0, y) for n, y in zip(maps, ys(len(maps)), strict=True)})
    pos.update({n: (8.8, y) for n, y in zip(mms, ys(len(mms)), strict=True)})
    for u, v in g.edges:
        (x0, y0), (x1, y1) = pos[u], pos[v]
        ax.plot([x0, x1], [y0, y1], color="#888888", lw=1, zorder=0)
    box = dict(boxstyle="round,pad=0.3", ec="black", lw=0.8)
    f = g.nodes["folio"]
    ax.text(*pos["folio"], f"folio {f['pfn']:#x}\norder {f['order']}", ha="center",
            va="center", fontsize=8, bbox={**box, "fc": (0.93, 0.93, 0.97)})
    for n in maps:
        d = g.nodes[n]
        what = "PMD (whole folio)" if d["level"] == "pmd" else \
            f"{d['nr']} PTE{'s' if d['nr'] > 1 else ''}"
        col = STATE_COLORS["pmd" if d["level"] == "pmd" else "pte"]
        if d["kind"] in ("device_private", "migration"):
            col, what = STATE_COLORS[d["kind"]], f"{what} ({d['kind']})"
        ax.text(*pos[n], f"{what} at {d['address']:#x}", ha="center", va="center",
                fontsize=7.5, color=ink_on(col), bbox={**box, "fc": col})
    for n in mms:
        ax.text(*pos[n], n, ha="center", va="center", fontsize=8,
                bbox={**box, "fc": (0.85, 1.0, 0.88)})
    if not maps:
        ax.text(5.0, (rows - 1) / 2, "not mapped", ha="center", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9, x=0.01, ha="left", y=1 - 0.05 / height, va="top")
    return fig
