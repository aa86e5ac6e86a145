"""Swap map: the slots of a swap area, one row per 32 slots, 16 rows per cluster.

:func:`swap_cells` reads an area's ``swap_map``, swap table and zeromap (never changes them)
into per-slot states; :func:`draw_swap_map` draws the first clusters: a slot is free, the
header, held by page tables only (its folio was freed: the data is only on the device),
held by page tables and the swap cache, held by the swap cache alone, or a zero-filled
slot (the zeromap: nothing was written). Slots the swap cache holds are outlined by folio,
so a large folio in the swap cache shows as one box; each cluster is labelled with the
order it serves.

>>> from pyfolio import System
>>> m = System(ram="16M"); _ = m.swapon("4M", "block"); p, a = m.spawn_with_thp()
>>> p.madvise(a, 2 << 20, "pageout")
>>> c = swap_cells(m.swap_area)
>>> c.count("cache+pte"), c.count("header"), c.cluster_orders[:2]
(512, 1, (0, 9))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from pyfolio.include.linux.swap import SWAP_HAS_CACHE, SWAP_MAP_BAD, SWAPFILE_CLUSTER
from pyfolio.sim.errors import MmError
from pyfolio.sim.units import PMD_SIZE
from pyfolio.views._style import PAGE_WIDTH, WHITE, new_figure
from pyfolio.views.animate import stack
from pyfolio.views.region import RegionCells, draw_cells, region_cells

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from pyfolio.include.linux.swap import SwapInfoStruct
    from pyfolio.system import Process, System

__all__ = ["SLOT_STATES", "SLOT_COLORS", "SwapCells", "swap_cells", "draw_swap_map",
           "SwapFrame", "record_swap", "draw_swap_frame"]

#: slot states, in legend order
SLOT_STATES = ("free", "header", "pte", "cache+pte", "cache", "zero")
SLOT_LABELS = {"free": "free", "header": "header page",
               "pte": "swap PTEs only (data on the device)",
               "cache+pte": "swap PTEs + swap cache",
               "cache": "swap cache only (no swap PTE left)",
               "zero": "zero-filled (zeromap, no write)"}
SLOT_COLORS = {"free": WHITE, "header": to_rgb("#7f7f7f"), "pte": to_rgb("#c0392b"),
               "cache+pte": to_rgb("#e67e22"), "cache": to_rgb("#f5cba7"),
               "zero": to_rgb("#f2e394")}
_COLS, _ROWS = 32, SWAPFILE_CLUSTER // 32


@dataclass(frozen=True)
class SwapCells:
    """Per-slot states (indices into :data:`SLOT_STATES`) and swap-cache folio heads (-1)
    for the first ``len(state)`` slots of an area; the order each cluster serves."""

    kind: str
    state: np.ndarray
    folio: np.ndarray
    cluster_orders: tuple[int, ...]
    cluster_counts: tuple[int, ...]

    def count(self, state: str) -> int:
        return int(np.count_nonzero(self.state == SLOT_STATES.index(state)))


def swap_cells(si: SwapInfoStruct, clusters: int = 2) -> SwapCells:
    """Read the first ``clusters`` clusters of area ``si``."""
    n = min(si.max, clusters * SWAPFILE_CLUSTER)
    codes = si.swap_map[:n].astype(np.int64)
    count, cache = codes & ~SWAP_HAS_CACHE, (codes & SWAP_HAS_CACHE) != 0
    state = np.zeros(n, np.int8)
    state[(count > 0) & ~cache] = SLOT_STATES.index("pte")
    state[(count > 0) & cache] = SLOT_STATES.index("cache+pte")
    state[(count == 0) & cache] = SLOT_STATES.index("cache")
    state[si.zeromap[:n] & (codes != 0)] = SLOT_STATES.index("zero")
    state[codes == SWAP_MAP_BAD] = SLOT_STATES.index("header")
    k = min(clusters, len(si.cluster_info))
    return SwapCells(si.kind, state, si.swap_table[:n].copy(),
                     tuple(c.order for c in si.cluster_info[:k]),
                     tuple(c.count for c in si.cluster_info[:k]))


def draw_swap_map(c: SwapCells, *, title: str = "") -> Figure:
    """Draw :class:`SwapCells`: each cluster a 16 x 32 grid of slots, side by side."""
    ncl = len(c.cluster_orders)
    img = np.ones((_ROWS, (_COLS + 1) * ncl - 1, 3))
    for i, s in enumerate(c.state):
        cl, j = divmod(i, SWAPFILE_CLUSTER)
        r, col = divmod(j, _COLS)
        img[r, cl * (_COLS + 1) + col] = SLOT_COLORS[SLOT_STATES[s]]
    fig = new_figure(PAGE_WIDTH, 2.6)
    ax = fig.add_axes((0.01, 0.22, 0.98, 0.58))
    ax.imshow(img, interpolation="nearest", aspect="auto")
    ax.set_xlim(-1.0, img.shape[1])  # room for the outlines of the clusters
    ax.set_ylim(_ROWS, -1.0)
    for cl in range(ncl):  # a grid line round each cluster
        ax.add_patch(Rectangle((cl * (_COLS + 1) - 0.5, -0.5), _COLS, _ROWS, fill=False,
                               lw=1.0, ec="black"))
        ax.text(cl * (_COLS + 1) + _COLS / 2, -1.0,
                f"cluster {cl} (order {c.cluster_orders[cl]}, {c.cluster_counts[cl]} used)",
                ha="center", va="bottom", fontsize=7)
    heads = np.unique(c.folio[c.folio >= 0])
    for h in heads:  # outline each swap-cache folio's slots (one row span at a time)
        where = np.flatnonzero(c.folio == h)
        for i in where[np.r_[True, np.diff(where) != 1] | (where % _COLS == 0)]:
            run = 1
            while i + run in set(where.tolist()) and (i + run) % _COLS:
                run += 1
            cl, j = divmod(int(i), SWAPFILE_CLUSTER)
            r, col = divmod(j, _COLS)
            ax.add_patch(Rectangle((cl * (_COLS + 1) + col - 0.5, r - 0.5), run, 1,
                                   fill=False, lw=0.6, ec="#5b2c06"))
    ax.set_axis_off()
    present = sorted({int(s) for s in c.state})
    handles = [Patch(fc=SLOT_COLORS[SLOT_STATES[s]], ec="black", lw=0.5,
                     label=SLOT_LABELS[SLOT_STATES[s]]) for s in present]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), 3), fontsize=7, frameon=False)
    fig.suptitle(title or f"swap slots of the {c.kind} area", fontsize=9, x=0.01, ha="left")
    return fig


@dataclass(frozen=True, eq=False)
class SwapFrame:
    """One step of a swap scenario: the 2 MiB region and the area's slots after it, the
    counters that moved, and the error a step raised (if any)."""

    label: str
    cells: RegionCells
    slots: SwapCells | None
    moved: tuple[tuple[str, int], ...]
    error: str = ""


_MOVED = ("pswpout", "thp_swpout", "thp_swpout_fallback", "pswpin", "pgmajfault", "swap_ra",
          "swap_ra_hit", "swpout_zero", "thp_split_pmd", "thp_split_page")


def record_swap(system: System, proc: Process, addr: int,
                steps: Sequence[tuple[str, Callable[[], object]]]) -> list[SwapFrame]:
    """Run ``steps`` (label, callable) in order and read a :class:`SwapFrame` before the
    first and after each (reading changes nothing); a step that raises MmError is recorded
    with its message."""
    def frame(label: str, before: dict[str, int], err: str = "") -> SwapFrame:
        after = system.vmstat()
        si = system.swap_area
        return SwapFrame(label, region_cells(proc, addr, PMD_SIZE),
                         swap_cells(si) if si is not None else None,
                         tuple((k, after[k] - before[k]) for k in _MOVED
                               if after[k] != before[k]), err)

    out = [frame("start", system.vmstat())]
    for label, fn in steps:
        before = system.vmstat()
        try:
            fn()
        except MmError as e:
            out.append(frame(label, before, str(e)))
        else:
            out.append(frame(label, before))
    return out


def draw_swap_frame(f: SwapFrame) -> Figure:
    """A :class:`SwapFrame`: the region (titled with what moved) above the slots."""
    moved = ", ".join(f"{k} {v:+d}" for k, v in f.moved) or "no counter moved"
    region = draw_cells(f.cells, title=f"after {f.label}: {f.error or moved}")
    if f.slots is None:
        return region
    return stack(region, draw_swap_map(f.slots))
