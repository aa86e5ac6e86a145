"""Batched runs of the dmirror driver's per-page steps: many order-0 pages in one step.

Models: lib/test_hmm.c (the 2025 THP series, as :mod:`pyfolio.lib.dmirror`):
dmirror_devmem_fault_alloc_and_copy() over a run of order-0 device pages going back to
system memory (alloc_page(), lock_page(), the copy, the device page-table entry erased);
dmirror_devmem_alloc_page() for the single pages of a split fallback.

A batch here is not a driver function: it is an implementation of the same steps for a
run at once, leaving exactly the state, counters and trace events the per-page loop of
:func:`pyfolio.lib.dmirror_to_system.dmirror_devmem_fault_alloc_and_copy` leaves, in the same order
(tests/test_batch.py compares both ways). It is taken only where it is sure to be that
same sequence and ``Machine.batch`` (``System.batch``) is on.

Place: next to :mod:`pyfolio.lib.dmirror` (lib/test_hmm.c's driver is called dmirror).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.mm.memory_batch import BATCH_MIN
from pyfolio.mm.migrate import (
    MIGRATE_PFN_MIGRATE,
    MIGRATE_PFN_SHIFT,
    MIGRATE_PFN_VALID,
    MIGRATE_PFN_WRITE,
)
from pyfolio.mm.page_alloc import alloc_pages_run
from pyfolio.sim.memmap import NO_HEAD, PG
from pyfolio.sim.units import HPAGE_PMD_NR, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.lib.dmirror import Dmirror
    from pyfolio.mm.migrate import MigrateVma

__all__ = ["devmem_fault_alloc_and_copy_run", "devmem_alloc_pages_run"]

_WANT = MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE
_PG_HEAD, _PG_LOCKED = np.uint32(PG.head), np.uint32(PG.locked)


def devmem_fault_alloc_and_copy_run(args: MigrateVma, dmirror: Dmirror, i: int) -> int:
    """dmirror_devmem_fault_alloc_and_copy()'s loop for the entries from ``i`` on, while
    they qualify, in one step; returns how many were done (0 when fewer than
    :data:`~pyfolio.mm.migrate_device_batch.BATCH_MIN` qualify: take the per-page loop).
    The caller takes it only while HMM_DMIRROR_FLAG_FAIL_ALLOC is clear.

    An entry qualifies when src is VALID and MIGRATE and its page an order-0 folio; the
    run stops where free frames run out (the per-page loop then meets the failure). Per
    entry what the loop does there: alloc_pages(0) (``mm_page_alloc``; the frames as
    :func:`~pyfolio.mm.page_alloc.alloc_pages_run` takes them), the page locked with the
    driver's reference (``extra_refs``), ``dst = migrate_pfn(page) | WRITE`` as the source
    had it, the data copied (``pages_copied``), the device page-table entry erased.
    """
    m = dmirror.m
    npages = args.npages
    if not m.batch or npages - i < BATCH_MIN or args.src[i] & _WANT != _WANT \
            or args.vma is None:
        return 0
    sa = np.array(args.src[i:npages], np.int64)
    ok = sa & _WANT == _WANT
    sp = np.where(ok, sa >> MIGRATE_PFN_SHIFT, 0)
    mem = m.mem
    ok &= (mem.compound_head[sp] == NO_HEAD) & (mem.flags[sp] & _PG_HEAD == 0)
    bad = np.flatnonzero(~ok)
    run = min(int(bad[0]) if len(bad) else len(ok), m.free_area.nr_free)
    if run < BATCH_MIN:
        return 0
    sp, write = sp[:run], sa[:run] & MIGRATE_PFN_WRITE
    new = alloc_pages_run(m, run)
    if m.trace.keeps_events():
        m.trace.emit_run(("mm_page_alloc", (("pfn", p), ("order", 0)), ())
                         for p in new.tolist())
    mem.flags[new] |= _PG_LOCKED
    for p in new.tolist():
        mem.extra_refs[p] += 1
    args.dst[i: i + run] = ((new << MIGRATE_PFN_SHIFT) | MIGRATE_PFN_VALID | write).tolist()
    mem.stamp[new] = mem.stamp[sp]
    m.trace.cost("pages_copied", run)
    dmirror.pt.unmap_range(args.vma.vm_mm.id, args.start + i * PAGE_SIZE, run)
    return run


def devmem_alloc_pages_run(dmirror: Dmirror, n: int) -> list[int] | None:
    """The pages ``n`` calls of dmirror_devmem_alloc_page(dmirror, False) return, in that
    order, taken in one step (fewer when the device runs out: the calls after that return
    None); None, with nothing changed, unless ``Machine.batch`` is on and the device's
    chunks were not released (HMM_DMIRROR_RELEASE: the per-page call makes a new chunk).

    Per page what the call does: the last page of ``free_pages`` (an empty list refilled
    from the last free 2 MiB folio, dmirror_allocate_chunk()), ``calloc`` + 1,
    zone_device_folio_init(order 0): refcount 1, locked; the driver's reference in
    ``extra_refs``. The run stops before a page that is locked already (the per-page
    call would warn there).
    """
    m = dmirror.m
    if not m.batch or dmirror.released:
        return None
    mem, free = m.mem, dmirror.free_pages
    out: list[int] = []
    while len(out) < n:
        if not free and dmirror.free_folios:
            head = dmirror.free_folios.pop()
            dmirror._carve(head, head + HPAGE_PMD_NR, False)
        if not free:
            break
        take = free[len(free) - min(n - len(out), len(free)):][::-1]
        locked = np.flatnonzero(mem.flags[take] & _PG_LOCKED)
        if len(locked):
            take = take[:int(locked[0])]
        del free[len(free) - len(take):]
        out += take
        if len(locked):
            break
    dmirror.calloc += len(out)
    mem._refcount[out] = 1
    mem.flags[out] |= _PG_LOCKED
    for p in out:
        mem.extra_refs[p] += 1
    return out
