"""Frames: frozen snapshots of what the views need, recorded over a scenario.

A scenario is a list of steps ``(label, callable)``; :func:`record` runs them in order and
takes a :class:`Snapshot` before the first and after each one, through public accessors
only (so recording changes nothing the steps did not). A step that raises ``MmError`` is
recorded with its message and the run goes on, as a reader pressing a button would.

>>> from pyfolio import System, MiB, KiB
>>> m = System(ram="64M"); p = m.spawn(); a = p.mmap(2 * MiB)
>>> frames = record(m, [("madvise", lambda: p.madvise(a, 2 * MiB, "hugepage")),
...                     ("touch", lambda: p.touch(a, 2 * MiB)),
...                     ("mprotect", lambda: p.mprotect(a, 4 * KiB, "r"))], proc=p, addr=a)
>>> [(f.label, f.counts.order if f.counts else None, f.pmd_kind) for f in frames]
[('start', None, 'none'), ('madvise', None, 'none'), ('touch', 9, 'huge'), ('mprotect', 9, 'table')]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pyfolio.arch.x86.pgtable import decode_entry, walk
from pyfolio.include.linux.mm import (
    Folio,
    folio_expected_ref_count,
    folio_maybe_dma_pinned,
    page_folio,
)
from pyfolio.sim.errors import MmError
from pyfolio.sim.trace import Event
from pyfolio.sim.units import PMD_SIZE
from pyfolio.views.folio_strip import FrameCells, frame_cells
from pyfolio.views.region import RegionCells, region_cells

if TYPE_CHECKING:
    from pyfolio.system import Process, System

__all__ = ["FolioCounts", "Snapshot", "Step", "folio_counts", "snapshot", "record",
           "record_events"]

Step = tuple[str, Callable[[], Any]]


@dataclass(frozen=True)
class FolioCounts:
    """A folio's counts at one moment (``page_mapcounts`` has one value per page)."""

    pfn: int
    order: int
    refcount: int
    mapcount: int
    entire_mapcount: int
    expected_refcount: int
    pincount: int
    maybe_dma_pinned: bool
    page_mapcounts: tuple[int, ...]

    def key(self) -> tuple[int, ...]:
        """The numbers a timeline compares between steps."""
        return (self.order, self.refcount, self.mapcount, self.entire_mapcount,
                self.expected_refcount, self.pincount, *self.page_mapcounts)


def folio_counts(folio: Folio) -> FolioCounts:
    """Read a folio's counts (never changes them)."""
    return FolioCounts(folio.pfn, folio.order, folio.refcount, folio.mapcount,
                       folio.entire_mapcount, folio_expected_ref_count(folio), folio.pincount,
                       folio_maybe_dma_pinned(folio), tuple(folio.page_mapcounts()))


@dataclass(frozen=True, eq=False)
class Snapshot:
    """What the views show after one step.

    ``events`` are the trace events the step emitted; ``counts`` the watched folio's
    counts (the folio at ``addr`` in ``proc``, else the one holding ``pfn``); ``cells`` the
    watched region; ``pmd_kind``/``pte_table`` the PMD entry over ``addr`` and, when it
    points at a PTE table, a copy of that table's 512 raw entries; ``frames`` the
    watched physical frames (``pfns``), by folio, as :func:`draw_frames` draws them.
    """

    step: int
    label: str
    events: tuple[Event, ...]
    error: str | None
    counts: FolioCounts | None
    cells: RegionCells | None
    pmd_raw: int
    pmd_kind: str
    pte_table: np.ndarray | None
    frames: FrameCells | None = None

    def why(self) -> list[str]:
        """Distinct event names of this step, in order (allocation events left out)."""
        names = [e.name for e in self.events if e.name not in ("mm_page_alloc", "mm_page_free")]
        return list(dict.fromkeys(names))


def snapshot(m: System, step: int = 0, label: str = "start", events: Sequence[Event] = (),
             error: str | None = None, *, proc: Process | None = None, addr: int | None = None,
             length: int = PMD_SIZE, pfn: int | None = None,
             pfns: range | None = None) -> Snapshot:
    """Take one :class:`Snapshot` of ``m`` (see :func:`record` for what is watched)."""
    counts, cells, pmd_raw, pmd_kind, table = None, None, 0, "none", None
    if proc is not None and addr is not None and proc.alive:
        cells = region_cells(proc, addr, length)
        w = walk(proc.m, proc.mm.pgd, addr)
        if w.level == "pte":
            pmd_kind, table = "table", proc.m.pgtables[w.tables[-1][1]].copy()
            pmd_raw = int(proc.m.pgtables[w.tables[-2][1]][w.tables[-2][2]])
        elif w.level == "pmd":
            pmd_raw, pmd_kind = w.raw, decode_entry(w.raw, "pmd").kind
        f = proc.folio_at(addr)
        counts = folio_counts(f) if f is not None else None
    if pfn is not None:
        counts = folio_counts(page_folio(m.machine, pfn))
    frames = frame_cells(m.machine, pfns) if pfns is not None else None
    return Snapshot(step, label, tuple(events), error, counts, cells, pmd_raw, pmd_kind, table,
                    frames)


def record(m: System, steps: Sequence[Step], *, proc: Process | None = None,
           addr: int | None = None, length: int = PMD_SIZE,
           pfn: int | None = None, pfns: range | None = None) -> list[Snapshot]:
    """Run ``steps`` in order; a snapshot before the first ("start") and after each.

    Watch the region ``[addr, addr + length)`` of ``proc`` and the folio mapped at
    ``addr``, and/or the folio holding frame ``pfn``, and/or the frames ``pfns``.
    """
    watch: dict[str, Any] = dict(proc=proc, addr=addr, length=length, pfn=pfn, pfns=pfns)
    frames = [snapshot(m, **watch)]
    for i, (label, fn) in enumerate(steps, 1):
        mark, error = m.trace.mark(), None
        try:
            fn()
        except MmError as e:
            error = str(e)
        frames.append(snapshot(m, i, label, m.trace.since(mark), error, **watch))
    return frames


def record_events(m: System, fn: Callable[[], Any], names: Sequence[str], *,
                  proc: Process | None = None, addr: int | None = None,
                  length: int = PMD_SIZE, pfn: int | None = None,
                  pfns: range | None = None) -> list[Snapshot]:
    """Run ``fn`` once; a snapshot before it ("start") and right after each trace event
    whose name is in ``names`` (labelled with the event's name), then one at the end.

    This shows the states *inside* one operation (a split's unmap, freeze, split, unfreeze
    and remap) exactly as the model passed through them: the snapshots only read state,
    taken while ``m.trace.emit`` is observed (restored afterwards; the batched paths are
    off meanwhile, ``System.batch``: they emit a run's events at once). An ``MmError`` from
    ``fn`` is recorded in the last frame. Watches what :func:`record` watches.
    """
    watch: dict[str, Any] = dict(proc=proc, addr=addr, length=length, pfn=pfn, pfns=pfns)
    frames = [snapshot(m, **watch)]
    trace, wanted = m.trace, set(names)
    emit, last = trace.emit, [trace.mark()]

    def observe(name: str, changes: dict[str, Any] | None = None, **args: Any) -> Event | None:
        ev = emit(name, changes, **args)
        if name in wanted:
            frames.append(snapshot(m, len(frames), name, trace.since(last[0]), **watch))
            last[0] = trace.mark()
        return ev

    error = None
    trace.emit = observe  # type: ignore[method-assign]
    batch, m.batch = m.batch, False  # the per-page model's steps, each with its event
    try:
        fn()
    except MmError as e:
        error = str(e)
    finally:
        del trace.emit  # the instance attribute; the class method is back
        m.batch = batch
    frames.append(snapshot(m, len(frames), "end", trace.since(last[0]), error, **watch))
    return frames
