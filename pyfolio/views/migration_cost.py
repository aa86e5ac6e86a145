"""Device migration views: the src/dst arrays of one migrate_vma, its steps, and the cost model.

- :func:`mpfn_str` / :func:`mpfn_table` - ``MIGRATE_PFN_*`` entries decoded, as a Markdown table
- :func:`migration_frames` / :func:`draw_step` - snapshots after each step of a driver's
  migrate_vma sequence (for :func:`pyfolio.views.animate`)
- :func:`migration_cost` / :func:`cost_sweep` - what moving a region to device-private
  memory and back costs: page-table entries written, TLB flushes, pages copied
- :func:`draw_costs` / :func:`cost_view` - those costs as the region grows, and for one size

The costs are the simulator's own counters (:attr:`pyfolio.sim.trace.Trace.costs`:
``pte_writes``, ``pmd_writes``, ``tlb_flushes``, ``pages_copied``), read before and after each
direction of a dmirror migration (``HMM_DMIRROR_MIGRATE_TO_DEV`` / ``_TO_SYS`` of
lib/test_hmm.c) on a fresh machine. The trace's event list is switched off while measuring
(the counters still count), which keeps a 16 MiB sweep to seconds. Nothing here changes a
machine it is given: the cost functions build their own.

>>> to_dev, to_sys = migration_cost("2M", "thp")
>>> to_dev.entries_written, to_dev.tlb_flushes, to_dev.pages_copied
(2, 1, 512)
>>> mpfn_str(0x48d01 | 0x2 | 0x8 | 0x10)
'PFN 0x1234, VALID|MIGRATE|WRITE|COMPOUND'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from pyfolio.mm.migrate_device import MIGRATE_PFN, MIGRATE_PFN_SHIFT, MIGRATE_PFN_VALID, MigrateVma
from pyfolio.sim.errors import EINVAL, MmError
from pyfolio.sim.units import PAGE_SIZE, PMD_SIZE, MiB, parse_size
from pyfolio.views._style import MIN_FONT, PAGE_WIDTH, new_figure
from pyfolio.views.frames import Snapshot, Step, snapshot
from pyfolio.views.region import draw_cells

if TYPE_CHECKING:
    from pyfolio.system import Process, System

__all__ = ["BACKINGS", "COST_FIELDS", "MigrationCost", "mpfn_str", "mpfn_table",
           "migration_frames", "draw_step", "migration_cost", "cost_sweep", "draw_costs",
           "cost_view"]

#: how the region is backed -> the madvise() advice that makes it so
BACKINGS = {"4k": "nohugepage", "thp": "hugepage"}
#: the three costs the figures show, with their axis labels
COST_FIELDS = {"entries_written": "page-table entries written",
               "tlb_flushes": "TLB flushes", "pages_copied": "pages copied"}
_DIRECTIONS = ("to device", "to system")


# -- src/dst entries ---------------------------------------------------------------------
def mpfn_str(mpfn: int) -> str:
    """One src/dst entry decoded: "PFN <pfn>, <flags>" (the PFN only if VALID), or ``0``.
    The PFN is the entry shifted right by ``MIGRATE_PFN_SHIFT``, not the raw value."""
    if not mpfn:
        return "0"
    names = "|".join(f.name for f in MIGRATE_PFN if mpfn & f and f.name)
    pfn = f"PFN {mpfn >> MIGRATE_PFN_SHIFT:#x}, " if mpfn & MIGRATE_PFN_VALID else ""
    return pfn + names


def mpfn_table(columns: dict[str, Sequence[int]], rows: Sequence[int], *, start: int = 0,
               page_size: int = 4096) -> str:
    """A Markdown table: one row per entry index in ``rows``, one column per named array
    (``{"src after setup": [...], "dst": [...]}``); a gap in ``rows`` becomes a "…" row.
    With ``start`` the virtual address of each entry is shown too."""
    head = "| i | address | " + " | ".join(columns) + " |"
    out = [head, "|" + "---|" * (len(columns) + 2)]
    prev = None
    for i in rows:
        if prev is not None and i > prev + 1:
            out.append("| … | | " + " | ".join("" for _ in columns) + " |")
        cells = " | ".join(mpfn_str(col[i]).replace("|", r"\|") for col in columns.values())
        out.append(f"| {i} | {start + i * page_size:#x} | {cells} |")
        prev = i
    return "\n".join(out)


# -- steps ---------------------------------------------------------------------------------
def _describe(p: Process, addr: int, args: MigrateVma) -> str:
    e = p.lookup(addr)
    src = mpfn_str(args.src[0]) if args.src else "-"
    dst = mpfn_str(args.dst[0]) if args.dst else "-"
    return f"{e.level.upper()} {e.kind}; src[0] {src}; dst[0] {dst}"


def migration_frames(m: System, p: Process, addr: int, args: MigrateVma,
                     steps: Sequence[Step], *, length: int = PMD_SIZE) -> list[Snapshot]:
    """Run the driver's ``steps`` (label, callable) of the migration ``args`` describes and
    take a snapshot of ``[addr, addr + length)`` before the first and after each; every
    label ends with the entry at ``addr`` and ``src[0]``/``dst[0]`` at that moment."""
    frames = [snapshot(m, 0, "start: " + _describe(p, addr, args), proc=p, addr=addr,
                       length=length)]
    for i, (label, fn) in enumerate(steps, 1):
        mark = m.trace.mark()
        fn()
        frames.append(snapshot(m, i, f"{label}: {_describe(p, addr, args)}",
                               m.trace.since(mark), proc=p, addr=addr, length=length))
    return frames


def draw_step(frame: Snapshot) -> Figure:
    """One migration step: the region strip with the step and the entries in the title."""
    assert frame.cells is not None
    label, _, state = frame.label.partition(": ")
    return draw_cells(frame.cells, title=f"{label}\n{state}")


# -- cost model ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MigrationCost:
    """The costs of one direction of one migration of ``size`` bytes."""

    size: int
    backing: str
    large_pages: bool
    direction: str
    pte_writes: int
    pmd_writes: int
    tlb_flushes: int
    pages_copied: int
    migrated: int

    @property
    def entries_written(self) -> int:
        """PTE and PMD entries written (migration entries in, mappings back)."""
        return self.pte_writes + self.pmd_writes


def _measure(m: System, run: Callable[[], Iterable[Any]], size: int, backing: str,
             large_pages: bool, direction: str) -> MigrationCost:
    before = dict(m.trace.costs)
    results = run()
    d = {k: m.trace.costs[k] - before.get(k, 0) for k in
         ("pte_writes", "pmd_writes", "tlb_flushes", "pages_copied")}
    return MigrationCost(size, backing, large_pages, direction, migrated=sum(
        r.migrated for r in results), **d)


@lru_cache(maxsize=64)  # deterministic: the same arguments give the same machine
def migration_cost(size: int | str, backing: str = "thp", *, large_pages: bool = True,
                   seed: int = 0) -> tuple[MigrationCost, MigrationCost]:
    """Migrate a written region of ``size`` (a multiple of 2 MiB for THPs, of 4 KiB for
    4 KiB pages) to a dmirror device and back on a fresh machine; ``backing`` "thp"
    (MADV_HUGEPAGE: PMD-mapped THPs) or "4k" (MADV_NOHUGEPAGE: 4 KiB pages);
    ``large_pages=False``: the device has no 2 MiB pages.
    Returns the costs (to device, to system). MmError(EINVAL) for a bad size or backing.
    Results are cached (each call would build the same machine again)."""
    from pyfolio.system import System

    nbytes = parse_size(size)
    if backing not in BACKINGS:
        raise MmError(EINVAL, f"backing {backing!r} is not one of {', '.join(BACKINGS)}")
    unit = PMD_SIZE if backing == "thp" else PAGE_SIZE
    if nbytes <= 0 or nbytes % unit:
        raise MmError(EINVAL, f"region size {size!r} is not a positive multiple of "
                      f"{unit // 1024} KiB")
    m = System(ram=2 * nbytes + 32 * MiB, thp="madvise", seed=seed)
    dev = m.add_device("dmirror0", memory=-(-nbytes // PMD_SIZE) * PMD_SIZE,
                       large_pages=large_pages)
    p = m.spawn()
    a = p.mmap(nbytes)
    p.madvise(a, nbytes, BACKINGS[backing])
    p.touch(a, nbytes)
    m.trace.enabled = False
    there = _measure(m, lambda: dev.migrate_to_device(p, a, nbytes), nbytes, backing,
                     large_pages, "to device")
    back = _measure(m, lambda: dev.migrate_to_system(p, a, nbytes), nbytes, backing,
                    large_pages, "to system")
    return there, back


def cost_sweep(sizes: Sequence[int | str], backings: Sequence[str] = ("4k", "thp"), *,
               large_pages: bool = True) -> list[MigrationCost]:
    """:func:`migration_cost` for every size and backing, both directions, in that order."""
    return [c for s in sizes for b in backings
            for c in migration_cost(s, b, large_pages=large_pages)]


_STYLE = {("4k", "to device"): ("#d62728", "o", "-"), ("4k", "to system"): ("#d62728", "s", "--"),
          ("thp", "to device"): ("#1f4e9c", "o", "-"), ("thp", "to system"): ("#1f4e9c", "s", "--")}
_NAMES = {"4k": "4 KiB pages", "thp": "THP"}


def draw_costs(rows: Sequence[MigrationCost], *, title: str | None = None,
               highlight: MigrationCost | None = None) -> Figure:
    """Three panels (entries written, TLB flushes, pages copied) against region size, one
    line per backing and direction; y on a symmetric-log scale so that 0 shows.
    ``highlight`` rings one measurement (the widget's current choice)."""
    if not rows:
        raise ValueError("draw_costs() needs at least one measurement")
    fig = new_figure(PAGE_WIDTH, 3.3)
    axes = fig.subplots(1, 3)
    for ax, (field, label) in zip(axes, COST_FIELDS.items(), strict=True):
        for (backing, direction), (color, marker, ls) in _STYLE.items():
            pts = sorted((r.size, getattr(r, field)) for r in rows
                         if r.backing == backing and r.direction == direction)
            if not pts:
                continue
            xs, ys = np.array(pts).T
            wide = backing == "4k"  # drawn wide and pale, so a THP line on top still shows
            ax.plot(xs / MiB, ys, color=color, marker=marker, ls=ls, ms=7 if wide else 4,
                    lw=4 if wide else 1.5, alpha=0.45 if wide else 1.0,
                    label=f"{_NAMES[backing]}, {direction}")
        if highlight is not None:
            ax.plot(highlight.size / MiB, getattr(highlight, field), "o", ms=13, mfc="none",
                    mec="black", mew=1.5)
        ax.set_xscale("log", base=2)
        ax.set_yscale("symlog", linthresh=1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("region size (MiB)", fontsize=MIN_FONT)
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=MIN_FONT)
        ax.grid(True, which="major", alpha=0.3)
        sizes = sorted({r.size / MiB for r in rows})
        ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7.5, frameon=False)
    large = {r.large_pages for r in rows}
    dev = "device with 2 MiB pages" if large == {True} else \
        "device without 2 MiB pages" if large == {False} else "devices"
    fig.suptitle(title or f"Migrating a written region to a {dev} and back", fontsize=9.5)
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.33, top=0.84, wspace=0.35)
    return fig


def cost_view(size_mib: int = 2, backing: str = "thp", large_pages: bool = True) -> Figure:
    """The cost of migrating ``size_mib`` MiB to the device and back, for both backings
    (bars; the chosen ``backing`` solid, the other hatched), with the numbers on the bars."""
    if backing not in BACKINGS:
        raise MmError(EINVAL, f"backing {backing!r} is not one of {', '.join(BACKINGS)}")
    rows = {b: migration_cost(size_mib * MiB, b, large_pages=large_pages) for b in BACKINGS}
    fig = new_figure(PAGE_WIDTH, 2.9)
    axes = fig.subplots(1, 3)
    for ax, (field, label) in zip(axes, COST_FIELDS.items(), strict=True):
        for k, b in enumerate(BACKINGS):
            vals = [getattr(c, field) for c in rows[b]]
            bars = ax.bar(np.arange(2) + (k - 0.5) * 0.38, vals, 0.36,
                          color=_STYLE[(b, "to device")][0], alpha=1.0 if b == backing else 0.35,
                          hatch=None if b == backing else "//", label=_NAMES[b])
            ax.bar_label(bars, [str(v) for v in vals], fontsize=MIN_FONT)
        ax.set_xticks(range(2), list(_DIRECTIONS))
        ax.set_yscale("symlog", linthresh=1)
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=MIN_FONT)
        ax.margins(y=0.25)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=7.5,
               frameon=False)
    dev = "with" if large_pages else "without"
    fig.suptitle(f"{size_mib} MiB to a device {dev} 2 MiB pages and back "
                 f"(chosen: {_NAMES[backing]})", fontsize=9.5)
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.2, top=0.82, wspace=0.35)
    return fig
