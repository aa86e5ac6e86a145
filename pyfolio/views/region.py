"""Region strip: the pages of a process's address range as cells, by folio and by state.

:func:`region_cells` reads the page tables once per 2 MiB (one walk to the PMD, then the
PTE table as one NumPy array) and returns per-page arrays; :func:`region_strip` draws them.
Up to 16 MiB every 4 KiB page is a cell (a 16 x 32 grid per 2 MiB, the grid aligned to the
PMD so a block is exactly what one PMD entry covers); beyond that each cell is one 2 MiB
block coloured by its most common state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.artist import Artist
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    PTE_PFN_MASK,
    decode_entry,
    walk,
)
from pyfolio.sim.memmap import NO_HEAD
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, PTRS_PER_TABLE
from pyfolio.views._style import (
    MIN_FONT,
    PAGE_WIDTH,
    STATE_COLORS,
    STATE_LABELS,
    STATES,
    TITLE_LINE,
    WHITE,
    new_figure,
    order_color,
    wrap_title,
)

if TYPE_CHECKING:
    from pyfolio.system import Process

__all__ = ["RegionCells", "region_cells", "region_strip", "draw_cells", "AGGREGATE_ABOVE"]

#: regions larger than this are drawn one cell per 2 MiB
AGGREGATE_ABOVE = 16 * 1024 * 1024
_ROWS, _COLS = 16, 32  # one 2 MiB block of 512 pages
_GAP = 3  # blank cell rows between rows of blocks (room for the blocks' labels)
_STATE_CODE = {s: i for i, s in enumerate(STATES)}


@dataclass(frozen=True)
class RegionCells:
    """Per-page arrays for ``[start, start + 2 MiB * nr_blocks)`` (PMD-aligned).

    ``state`` holds indices into :data:`STATES`; ``pfn`` the frame each page maps (-1 if
    none); ``head``/``order`` its folio's head PFN and order; ``pmd_kind`` the decoded kind
    of each block's PMD entry ("table" for a PTE table, "none", "huge", "zero", ...).
    ``inside`` marks the pages of the requested range.
    """

    start: int
    addr: int
    length: int
    state: np.ndarray
    pfn: np.ndarray
    head: np.ndarray
    order: np.ndarray
    pmd_kind: tuple[str, ...]
    inside: np.ndarray
    #: entries whose RW bit is clear (present read-only, or a read-only swap-format entry)
    readonly: np.ndarray

    def states(self) -> list[str]:
        """State names of the pages of the requested range."""
        return [STATES[i] for i in self.state[self.inside]]


def _block(p: Process, blk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """States, PFNs and read-only flags of the 512 pages of the 2 MiB block at ``blk``,
    and the PMD kind."""
    m, mm = p.m, p.mm
    state = np.full(PTRS_PER_TABLE, _STATE_CODE["none"], np.int8)
    pfn = np.full(PTRS_PER_TABLE, -1, np.int64)
    ro = np.zeros(PTRS_PER_TABLE, bool)
    w = walk(m, mm.pgd, blk)
    if w.level in ("pgd", "pud") or (w.level == "pmd" and w.raw == 0):
        return state, pfn, ro, "none"
    if w.level == "pmd":
        e = decode_entry(w.raw, "pmd")
        pfn[:] = e.pfn + np.arange(PTRS_PER_TABLE)
        zero = e.kind == "zero" or e.pfn == m.huge_zero_pfn
        state[:] = _STATE_CODE["zero" if zero else "pmd" if e.kind == "huge" else e.kind]
        ro[:] = not e.write
        return state, pfn, ro, "zero" if zero else e.kind
    raw = m.pgtables[w.tables[-1][1]]
    present = (raw & np.uint64(_PAGE_PRESENT | _PAGE_PROTNONE)) != 0  # pte_present()
    stored = np.where((raw & np.uint64(_PAGE_PRESENT)) != 0, raw, ~raw)  # PROT_NONE: inverted
    pfn[present] = ((stored[present] & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT))
    state[present] = _STATE_CODE["pte"]
    ro[present] = (raw[present] & np.uint64(_PAGE_RW)) == 0
    zero = present & (((raw & np.uint64(_PAGE_SPECIAL)) != 0) | (pfn == m.zero_pfn))
    state[zero] = _STATE_CODE["zero"]
    for i in np.flatnonzero(~present & (raw != 0)):
        e = decode_entry(int(raw[i]), "pte")
        state[i] = _STATE_CODE.get(e.kind, _STATE_CODE["none"])
        pfn[i], ro[i] = e.pfn, not e.write
    return state, pfn, ro, "table"


def region_cells(p: Process, addr: int, length: int) -> RegionCells:
    """Read (never change) what maps each page of ``[addr, addr + length)`` in ``p``."""
    start = addr & ~(PMD_SIZE - 1)
    nblk = max(1, -(-(addr + length - start) // PMD_SIZE))
    n = nblk * PTRS_PER_TABLE
    state = np.empty(n, np.int8)
    pfn = np.empty(n, np.int64)
    ro = np.empty(n, bool)
    kinds = []
    for b in range(nblk):
        s, f, r, k = _block(p, start + b * PMD_SIZE)
        blk = slice(b * 512, (b + 1) * 512)
        state[blk], pfn[blk], ro[blk] = s, f, r
        kinds.append(k)
    vaddr = start + np.arange(n, dtype=np.int64) * PAGE_SIZE
    for lo, hi in _holes(p, start, start + n * PAGE_SIZE):
        state[(vaddr >= lo) & (vaddr < hi)] = _STATE_CODE["novma"]
    mem = p.m.mem
    ok = (pfn >= 0) & (pfn < mem.nr)
    head = np.full(n, -1, np.int64)
    ch = mem.compound_head[pfn[ok]]
    head[ok] = np.where(ch == NO_HEAD, pfn[ok], ch)
    order = np.zeros(n, np.int8)
    order[ok] = mem.order[head[ok]]
    inside = (vaddr >= addr) & (vaddr < addr + length)
    return RegionCells(start, addr, length, state, pfn, head, order, tuple(kinds), inside,
                       ro & (state != _STATE_CODE["novma"]) & (state != _STATE_CODE["none"])
                       & (state != _STATE_CODE["swap"]))


def _holes(p: Process, lo: int, hi: int) -> list[tuple[int, int]]:
    """The parts of ``[lo, hi)`` no VMA covers."""
    holes, cur = [], lo
    for vma in p.mm.vmas_between(lo, hi):
        if vma.vm_end <= cur or vma.vm_start >= hi:
            continue
        if vma.vm_start > cur:
            holes.append((cur, vma.vm_start))
        cur = max(cur, vma.vm_end)
    if cur < hi:
        holes.append((cur, hi))
    return holes


def _page_colors(c: RegionCells) -> tuple[np.ndarray, dict[int, int]]:
    """RGB per page (mapped pages in their folio's order colour, others in their state's),
    and the order of each folio mapped (head PFN -> order), in order of appearance."""
    rgb = np.array([STATE_COLORS[s] for s in STATES])[c.state]
    mapped = np.isin(c.state, [_STATE_CODE["pmd"], _STATE_CODE["pte"]]) & (c.head >= 0)
    folios: dict[int, int] = {}
    for i in np.flatnonzero(mapped):
        folios.setdefault(int(c.head[i]), int(c.order[i]))
    pal = np.array([order_color(o) for o in range(11)])
    rgb[mapped] = pal[np.clip(c.order[mapped], 0, 10)]
    rgb[~c.inside] = WHITE
    return rgb, folios


def _folio_edges(c: RegionCells, b: int, r0: int, c0: int) -> list[list[tuple[float, float]]]:
    """Black segments between neighbouring pages of block ``b`` that different folios map
    (folios of the same order share a colour; the edges tell them apart)."""
    head = c.head[b * 512:(b + 1) * 512].reshape(_ROWS, _COLS)
    owner = np.where(head >= 0, head, -1)
    segs = []
    ys, xs = (v.tolist() for v in np.nonzero(owner[:, 1:] != owner[:, :-1]))
    for y, x in zip(ys, xs, strict=True):
        if owner[y, x] >= 0 or owner[y, x + 1] >= 0:
            segs.append([(c0 + x + 0.5, r0 + y - 0.5), (c0 + x + 0.5, r0 + y + 0.5)])
    ys, xs = (v.tolist() for v in np.nonzero(owner[1:, :] != owner[:-1, :]))
    for y, x in zip(ys, xs, strict=True):
        if owner[y, x] >= 0 or owner[y + 1, x] >= 0:
            segs.append([(c0 + x - 0.5, r0 + y + 0.5), (c0 + x + 0.5, r0 + y + 0.5)])
    return segs


def region_strip(p: Process, addr: int, length: int, *, title: str | None = None) -> Figure:
    """The pages of ``[addr, addr + length)`` of process ``p`` as a figure.

    Each 2 MiB block (what one PMD entry covers) is a 16 x 32 grid of 4 KiB pages, read
    left to right, top to bottom. Mapped pages take their folio's colour (one colour for
    all order-0 folios, a distinct colour per large folio, listed with its order); other
    pages take their state's colour (zero page, migration entry, device-private, not
    present, no VMA). A dot marks a folio's head page. A thick frame marks a block mapped
    by one PMD leaf, a thin frame a block mapped through a PTE table. Regions above
    :data:`AGGREGATE_ABOVE` are drawn one cell per 2 MiB, by the block's most common state.
    """
    c = region_cells(p, addr, length)
    return draw_cells(c, title=title or f"{length // 1024} KiB at {addr:#x} (pid {p.pid})")


def draw_cells(c: RegionCells, *, title: str = "") -> Figure:
    """Draw :class:`RegionCells` (from :func:`region_cells` or a recorded frame) as
    :func:`region_strip` does: blocks two (or, above 4 blocks, four) to a row across the
    page, the key under them."""
    if c.length > AGGREGATE_ABOVE:
        return _aggregated(c, title)
    nblk = len(c.pmd_kind)
    bcols = min(nblk, 2 if nblk <= 4 else 4)
    brows = -(-nblk // bcols)
    rgb, folios = _page_colors(c)
    img = np.ones(((_ROWS + _GAP) * brows - _GAP, (_COLS + 1) * bcols - 1, 3))
    grid: list[list[tuple[float, float]]] = []
    edges: list[list[tuple[float, float]]] = []
    cell = min(0.2, (PAGE_WIDTH - 0.2) / img.shape[1])
    top = _GAP - 0.5  # rows above the first blocks, for their labels
    gw, gh = img.shape[1] * cell, (img.shape[0] + top) * cell
    handles = _legend(c, folios)
    key_h = 0.2 * -(-len(handles) // 2) + 0.1
    title = wrap_title(title, gw + 0.1) if title else ""
    title_h = 0.2 + TITLE_LINE * title.count("\n") if title else 0.08
    width, height = gw + 0.2, title_h + gh + key_h + 0.1
    fig = new_figure(width, height)
    ax = fig.add_axes((0.1 / width, (key_h + 0.05) / height, gw / width, gh / height))
    for b in range(nblk):
        r0, c0 = (b // bcols) * (_ROWS + _GAP), (b % bcols) * (_COLS + 1)
        img[r0:r0 + _ROWS, c0:c0 + _COLS] = rgb[b * 512:(b + 1) * 512].reshape(_ROWS, _COLS, 3)
        leaf = c.pmd_kind[b] not in ("table", "none")
        ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), _COLS, _ROWS, fill=False,
                               lw=2.5 if leaf else 0.8, ec="black"))
        if c.pmd_kind[b] == "table":
            grid += [[(c0 - 0.5, r0 + y - 0.5), (c0 + _COLS - 0.5, r0 + y - 0.5)]
                     for y in range(1, _ROWS)]
            grid += [[(c0 + x - 0.5, r0 - 0.5), (c0 + x - 0.5, r0 + _ROWS - 0.5)]
                     for x in range(1, _COLS)]
        edges += _folio_edges(c, b, r0, c0)
        label = {"table": "PTE table", "none": "PMD none"}.get(c.pmd_kind[b], "PMD leaf")
        ax.text(c0 - 0.5, r0 - 0.9, f"{c.start + b * PMD_SIZE:#x}  {label}", fontsize=MIN_FONT,
                va="bottom")
    ax.imshow(img, interpolation="nearest", aspect="auto")
    ax.set_ylim(img.shape[0] - 0.45, -0.5 - top)  # a hair of margin: the frames' outer lines
    ax.set_xlim(-0.55, img.shape[1] - 0.45)
    ax.add_collection(LineCollection(grid, colors="white", linewidths=0.4))
    ax.add_collection(LineCollection(edges, colors="black", linewidths=1.0))
    def xy(pages: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, i = pages // 512, pages % 512
        return (b % bcols) * (_COLS + 1) + i % _COLS, (b // bcols) * (_ROWS + _GAP) + i // _COLS

    heads = np.flatnonzero((c.pfn == c.head) & (c.head >= 0) & c.inside)
    if len(heads):
        ax.plot(*xy(heads), "o", ms=3, mfc="black", mec="white", mew=0.5, ls="none")
    ros = np.flatnonzero(c.readonly & c.inside & (c.state != _STATE_CODE["zero"]))
    if len(ros):
        ax.plot(*xy(ros), "x", ms=3, mew=0.7, color="white", ls="none")
    ax.set_axis_off()
    fig.legend(handles=handles, loc="lower left", ncol=2, frameon=False, fontsize=7.5,
               bbox_to_anchor=(0.1 / width, 0.02 / height), borderaxespad=0.1)
    if title:
        fig.suptitle(title, fontsize=9, x=0.1 / width, ha="left", y=1 - 0.05 / height, va="top")
    return fig


def _legend(c: RegionCells, folios: dict[int, int]) -> list[Artist]:
    """The key of a region strip: folio orders mapped (with how many folios), other page
    states present, the two block frames, head dots and read-only crosses."""
    orders: dict[int, int] = {}
    for o in folios.values():
        orders[o] = orders.get(o, 0) + 1
    handles: list[Artist] = [
        Patch(fc=order_color(o), ec="black", lw=0.5,
              label=f"order {o} ({k} folio{'' if k == 1 else 's'})")
        for o, k in sorted(orders.items(), reverse=True)]
    present = sorted(set(int(s) for s in c.state[c.inside]))
    handles += [Patch(fc=STATE_COLORS[STATES[s]], ec="black", lw=0.5,
                      label=STATE_LABELS[STATES[s]])
                for s in present if STATES[s] not in ("pmd", "pte")]
    handles.append(Patch(fc="white", ec="black", lw=2.5, label="block mapped by a PMD leaf"))
    handles.append(Patch(fc="white", ec="black", lw=0.8, label="block mapped by a PTE table"))
    handles.append(Line2D([], [], marker="o", ls="none", mfc="black", mec="white",
                          label="folio head"))
    ros = c.readonly & c.inside & (c.state != _STATE_CODE["zero"])
    if ros.any():
        handles.append(Line2D([], [], marker="x", ls="none", color="black",
                              label="read-only entry (no RW bit)"))
    return handles


def _aggregated(c: RegionCells, title: str) -> Figure:
    nblk = len(c.pmd_kind)
    per = c.state.reshape(nblk, 512)
    counts = np.stack([(per == i).sum(axis=1) for i in range(len(STATES))], axis=1)
    major = counts.argmax(axis=1)
    rows = -(-nblk // _COLS)
    img = np.ones((rows, _COLS, 3))
    pal = np.array([STATE_COLORS[s] for s in STATES])
    img.reshape(-1, 3)[:nblk] = pal[major]
    cell = 0.13
    gw, gh = _COLS * cell, rows * cell
    width, height = PAGE_WIDTH, gh + 0.6
    fig = new_figure(width, height)
    ax = fig.add_axes((0.1 / width, 0.1 / height, gw / width, gh / height))
    ax.imshow(img, interpolation="nearest", aspect="auto")
    ax.set_xticks(np.arange(-0.5, _COLS, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
    ax.grid(which="minor", color="white", lw=0.3)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    handles = [Patch(fc=STATE_COLORS[STATES[s]], ec="black", lw=0.5,
                     label=f"{STATE_LABELS[STATES[s]]}: {int((major == s).sum())} x 2 MiB")
               for s in sorted(set(int(x) for x in major))]
    fig.legend(handles=handles, loc="center left", frameon=False, fontsize=7.5,
               bbox_to_anchor=((gw + 0.25) / width, (0.1 + gh / 2) / height))
    fig.suptitle(f"{title}, one cell per 2 MiB (most common state)", fontsize=9,
                 x=0.1 / width, ha="left", y=1 - 0.05 / height, va="top")
    return fig
