"""Batched runs of device migration's per-folio steps: many order-0 folios in one step.

Models: mm/migrate_device.c (merged series, see :mod:`pyfolio.mm.migrate_device`):
__migrate_device_finalize() over a run of src/dst entries that each pair an order-0
source folio with an order-0 destination, with mm/migrate.c:remove_migration_ptes() for
each pair; __migrate_device_pages()'s folio_migrate_mapping() + folio_migrate_flags() over
the order-0 folios a split-fallback made.

The kernel works entry by entry; so does the simulator's per-entry path in
:mod:`pyfolio.mm.migrate_device`, the model the chapters teach. A batch here is not a
kernel function: it is an implementation of the same steps for a run at once, leaving
exactly the state, counters and trace events the per-entry calls leave, in the same order
(tests/test_batch.py compares both ways on random scenarios). It is selected only where
it is sure to be that same sequence (see :func:`migrate_device_finalize_run`) and
``Machine.batch`` (``System.batch``) is on; anywhere else the caller goes entry by entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_SWP_SOFT_DIRTY,
    PAGE_SHIFT,
    pte_index,
    swp_offset,
)
from pyfolio.include.linux.mm import GUP_PIN_COUNTING_BIAS
from pyfolio.include.linux.swapops import SwpType, is_device_private_entry, is_migration_entry
from pyfolio.mm.memory_batch import BATCH_MIN
from pyfolio.mm.memremap import is_device_private_page
from pyfolio.mm.migrate import (
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    MIGRATE_PFN_SHIFT,
    MIGRATE_PFN_VALID,
    MIGRATE_PFN_WRITE,
    MIGRATE_VMA_SELECT,
    MigrateVma,
    migration_entry_pfns,
    remap_entries,
)
from pyfolio.mm.page_alloc import free_pages_run
from pyfolio.mm.rmap import anon_vma_ranges, pmd_chunks, pte_table_of, swp_entries
from pyfolio.sim.memmap import FOLIO_MAPPING_ANON, NO_HEAD, PG, ZONE_DEVICE
from pyfolio.sim.units import PTRS_PER_TABLE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA
    from pyfolio.sim.machine import Machine

__all__ = ["migrate_device_finalize_run", "migrate_pages_run", "migrate_folios_run",
           "collect_device_ptes_run", "migrate_device_unmap_run"]

_U64 = np.uint64
_EventItem = tuple[str, tuple[tuple[str, Any], ...], tuple[tuple[str, Any], ...]]
_PG_HEAD, _PG_LOCKED, _PG_LRU = np.uint32(PG.head), np.uint32(PG.locked), np.uint32(PG.lru)
_PG_SWAPCACHE, _PG_SWAPBACKED = np.uint32(PG.swapcache), np.uint32(PG.swapbacked)
_MIGRATE_FLAGS = np.uint32(PG.referenced | PG.uptodate | PG.active | PG.unevictable | PG.dirty
                           | PG.mlocked)  # folio_migrate_flags()
_PG_ACTIVE_UNEVICTABLE = np.uint32(PG.active | PG.unevictable)
_PG_ANON_EXCLUSIVE = np.uint32(PG.anon_exclusive)
_DEV_READ, _DEV_WRITE = _U64(SwpType.SWP_DEVICE_READ), _U64(SwpType.SWP_DEVICE_WRITE)
_MIG_READ, _MIG_WRITE = _U64(SwpType.SWP_MIGRATION_READ), _U64(SwpType.SWP_MIGRATION_WRITE)
_MIG_READ_EXCL = _U64(SwpType.SWP_MIGRATION_READ_EXCLUSIVE)
_WANT = MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE
_Plan = tuple[int, int, np.ndarray, np.ndarray, np.ndarray, "VMA"]


def _small_locked(m: Machine, pfns: np.ndarray) -> np.ndarray:
    """Which pages are order-0 folios (no head, no tail), locked, with exactly one
    reference, held outside page tables (``extra_refs`` 1)."""
    mem = m.mem
    extra = np.fromiter((mem.extra_refs.get(p, 0) for p in pfns.tolist()), np.int64, len(pfns))
    return (mem.compound_head[pfns] == NO_HEAD) & (mem.flags[pfns] & _PG_HEAD == 0) \
        & (mem.flags[pfns] & _PG_LOCKED != 0) & (mem._refcount[pfns] == 1) & (extra == 1)


def _leading(ok: np.ndarray) -> int:
    """The length of the run of True at the start of ``ok``."""
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if len(bad) else len(ok)


def migrate_device_finalize_run(src: list[int], dst: list[int], i: int, npages: int,
                                m: Machine) -> int:
    """__migrate_device_finalize() for the entries from ``i`` on, while they qualify, in
    one step; returns how many were done (0 when fewer than :data:`BATCH_MIN` qualify:
    take the per-entry loop). Only without a fault page and with ``Machine.batch`` on.

    An entry qualifies when src is VALID and MIGRATE and dst VALID, neither COMPOUND, and
    both are order-0 folios, locked, held only by the migration (the isolation reference
    of the source, the driver's allocation reference of the destination, each in
    ``extra_refs``), of the same kind (system or device) as the run's first, the
    destinations one anon_vma at consecutive indices (folio_migrate_mapping() gave them
    the sources'), each with at least one migration entry to restore, none in a PMD.

    Per entry what the per-entry loop does there: a system destination goes on the LRU
    (folio_add_lru()); remove_migration_ptes(src, dst, 0): every migration entry for the
    source page at the destination's address in each VMA of the anon_vma becomes a
    mapping of the destination (mm/migrate.c:remove_migration_pte(), as
    :func:`pyfolio.mm.migrate.remap_entries` does it per table) with its
    ``remove_migration_ptes`` event; the source unlocked and put, which frees it
    (``free_folio``; a system page's __free_pages() and ``mm_page_free``, merged by
    :func:`~pyfolio.mm.page_alloc.free_pages_run`; a device page back to its driver by
    free_zone_device_folio()); the destination unlocked and put (it stays mapped).
    """
    if not m.batch or npages - i < BATCH_MIN or src[i] & _WANT != _WANT \
            or not dst[i] & MIGRATE_PFN_VALID:
        return 0
    sa = np.array(src[i:npages], np.int64)
    da = np.array(dst[i:npages], np.int64)
    ok = (sa & _WANT == _WANT) & (da & MIGRATE_PFN_VALID != 0) \
        & ((sa | da) & MIGRATE_PFN_COMPOUND == 0)
    run = _leading(ok)
    if run < BATCH_MIN:
        return 0
    mem = m.mem
    sp, dp = sa[:run] >> MIGRATE_PFN_SHIFT, da[:run] >> MIGRATE_PFN_SHIFT
    sdev, ddev = mem.zone[sp] == ZONE_DEVICE, mem.zone[dp] == ZONE_DEVICE
    d0 = int(dp[0])
    ok = _small_locked(m, sp) & _small_locked(m, dp) & (sp != dp) \
        & (sdev == sdev[0]) & (ddev == ddev[0]) \
        & (mem.mapping[dp] == mem.mapping[d0]) & (mem.mapping[d0] != 0) \
        & (mem.index[dp] == int(mem.index[d0]) + np.arange(run)) \
        & (mem.pgmap[sp] == mem.pgmap[int(sp[0])])
    run = _leading(ok)
    if run < BATCH_MIN:
        return 0
    plan = _plan_remap(m, sp[:run], dp[:run])
    if plan is None:
        return 0
    plans, run = plan
    if run < BATCH_MIN:
        return 0
    sp, dp = sp[:run], dp[:run]
    _finalize(m, sp, dp, bool(sdev[0]), bool(ddev[0]), plans)
    return run


def _plan_remap(m: Machine, sp: np.ndarray, dp: np.ndarray
                ) -> tuple[list[_Plan], int] | None:
    """Where remove_migration_ptes(src_k, dst_k) would restore entries, without changing
    anything: per PTE table (table, first index, offsets, new pfns, run positions, VMA).
    The run is cut before the first pair with no entry to restore (its destination's last
    reference would go); None for a PMD migration entry of a source page (the per-entry
    path meets it)."""
    mem, nr = m.mem, len(sp)
    index0 = int(mem.index[int(dp[0])])
    srcs = set(sp.tolist())
    plans: list[_Plan] = []
    for vma, lo, hi in list(anon_vma_ranges(m, int(dp[0]), nr)):
        base = vma.address_of(index0)
        for addr, nxt, slot in pmd_chunks(vma, lo, hi):
            pmd = int(m.pgtables[slot[0]][slot[1]])
            if is_migration_entry(pmd) and swp_offset(pmd) in srcs:
                return None
            table = pte_table_of(m, slot)
            if table is None:
                continue
            i0, n = pte_index(addr), (nxt - addr) >> PAGE_SHIFT
            pos = ((addr - base) >> PAGE_SHIFT) + np.arange(n)
            _, pfns, mig = migration_entry_pfns(m.pgtables[table][i0: i0 + n])
            sel = np.flatnonzero(mig & (pfns == sp[pos].astype(_U64)))
            if len(sel):
                plans.append((table, i0, sel, dp[pos[sel]], pos[sel], vma))
    counts = np.bincount(np.concatenate([p[4] for p in plans]) if plans
                         else np.zeros(0, np.int64), minlength=nr)
    run = _leading(counts > 0)
    if run < nr:
        plans = [(t, i0, sel[pos < run], new[pos < run], pos[pos < run], vma)
                 for t, i0, sel, new, pos, vma in plans]
    return plans, run


def _finalize(m: Machine, sp: np.ndarray, dp: np.ndarray, sdev: bool, ddev: bool,
              plans: list[_Plan]) -> None:
    """The per-entry finalize steps for the run (see :func:`migrate_device_finalize_run`)."""
    mem, nr = m.mem, len(sp)
    if not ddev:  # folio_add_lru(dst) for each in turn
        mem.lru_seq[dp] = m.lru_clock + np.arange(1, nr + 1, dtype=np.float64)
        m.lru_clock += float(nr)
        mem.flags[dp] |= _PG_LRU
    counts = np.zeros(nr, np.int64)
    for table, i0, sel, new, pos, vma in plans:
        if len(sel):
            remap_entries(m, table, i0, sel, new, 0, vma.vm_page_prot)
            counts[pos] += 1
    srcs, dsts = sp.tolist(), dp.tolist()
    drop = mem.extra_refs.pop  # folio_unlock() + ref_drop(): the sources' isolation
    for p in srcs + dsts:  # reference (their last), the driver's allocation reference
        drop(p)
    mem.flags[dp] &= ~_PG_LOCKED
    mem._refcount[dp] -= 1
    mem._refcount[sp] = 0
    keep = m.trace.keeps_events()
    blocks: list[tuple[int, int]] = []
    if sdev:  # free_zone_device_folio(): order 0 counts in no nr_anon
        pgmap = m.pgmaps[int(mem.pgmap[srcs[0]])]
        mem.reset_frames(sp)
        mem.zone[sp] = ZONE_DEVICE
        mem.pgmap[sp] = pgmap.id  # type: ignore[attr-defined]
        for p in srcs:
            pgmap.ops.page_free(p, 0)  # type: ignore[attr-defined]
    else:
        blocks = free_pages_run(m, srcs, keep)
    if keep:
        m.trace.emit_run(_finalize_events(srcs, dsts, counts.tolist(), blocks, sdev))


def _finalize_events(srcs: list[int], dsts: list[int], counts: list[int],
                     blocks: list[tuple[int, int]], sdev: bool) -> Iterator[_EventItem]:
    """Per entry: ``remove_migration_ptes``, then the source's ``free_folio`` (and, for a
    system page, ``mm_page_free`` of the block it ended in)."""
    freed1 = (("freed_pages", 1),)
    for k, (s, d, c) in enumerate(zip(srcs, dsts, counts, strict=True)):
        yield "remove_migration_ptes", (("src", s), ("dst", d)), (("entries", c),)
        yield "free_folio", (("pfn", s), ("order", 0)), freed1
        if not sdev:
            yield "mm_page_free", (("pfn", blocks[k][0]), ("order", blocks[k][1])), ()



def migrate_pages_run(migrate: MigrateVma, i: int, npages: int) -> int:
    """__migrate_device_pages() for the entries from ``i`` on, while they qualify, in one
    step; returns how many were done (0 when fewer than :data:`BATCH_MIN` qualify: take
    the per-entry loop). Only without a fault page and with ``Machine.batch`` on.

    An entry qualifies when src is VALID and MIGRATE and dst VALID, neither COMPOUND, the
    source an order-0 anon folio and the destination an order-0 folio, one in system RAM
    and the other device-private (all destinations of one dev_pagemap). Per entry the
    per-entry loop then does folio_migrate_mapping() + folio_migrate_flags() (see
    :func:`migrate_folios_run`).
    """
    src, dst = migrate.src, migrate.dst
    assert migrate.vma is not None
    m: Machine = migrate.vma.vm_mm.m
    if not m.batch or migrate.fault_page is not None or npages - i < BATCH_MIN \
            or src[i] & _WANT != _WANT or not dst[i] & MIGRATE_PFN_VALID:
        return 0
    sa = np.array(src[i:npages], np.int64)
    da = np.array(dst[i:npages], np.int64)
    run = _leading((sa & _WANT == _WANT) & (da & MIGRATE_PFN_VALID != 0)
                   & ((sa | da) & MIGRATE_PFN_COMPOUND == 0))
    if run < BATCH_MIN:
        return 0
    mem = m.mem
    sp, dp = sa[:run] >> MIGRATE_PFN_SHIFT, da[:run] >> MIGRATE_PFN_SHIFT
    ddev = mem.zone[dp] == ZONE_DEVICE
    if ddev[0] and not is_device_private_page(m, int(dp[0])):
        return 0
    ok = (ddev == ddev[0]) & (mem.pgmap[dp] == mem.pgmap[int(dp[0])]) \
        & ((mem.zone[sp] == ZONE_DEVICE) != ddev[0])
    run = _leading(ok)
    if run < BATCH_MIN or not migrate_folios_run(m, src, dst, i, run):
        return 0
    return run


def migrate_folios_run(m: Machine, src: list[int], dst: list[int], i: int, n: int) -> bool:
    """For each entry of ``src[i:i + n]`` with MIGRATE in turn, folio_migrate_mapping(None,
    dst folio, src folio, 0) (MIGRATE cleared on -EAGAIN) then folio_migrate_flags(), in
    one step; False, with nothing changed, unless ``Machine.batch`` is on and every such
    entry pairs an order-0 anon source with an order-0 destination (VALID) and no page
    is both a source and a destination.

    mm/migrate.c (v6.18): an order-0 anon folio outside the swap cache is expected to
    hold ``folio_mapcount() + 1`` references (+1 in the swap cache); the destination
    takes ->index, ->mapping and PG_swapbacked, then referenced, uptodate, active,
    unevictable, dirty and mlocked; the source loses active and unevictable.
    """
    if not m.batch or n < BATCH_MIN:
        return False
    sa = np.array(src[i:i + n], np.int64)
    da = np.array(dst[i:i + n], np.int64)
    sel = np.flatnonzero(sa & MIGRATE_PFN_MIGRATE)
    if len(sel) < BATCH_MIN or not (da[sel] & sa[sel] & MIGRATE_PFN_VALID).all():
        return False
    mem = m.mem
    f, nf = sa[sel] >> MIGRATE_PFN_SHIFT, da[sel] >> MIGRATE_PFN_SHIFT
    both = np.concatenate([f, nf])
    if not ((mem.compound_head[both] == NO_HEAD) & (mem.flags[both] & _PG_HEAD == 0)).all() \
            or not (mem.mapping[f] & FOLIO_MAPPING_ANON).all() \
            or len(np.unique(both)) != len(both):
        return False
    flags = mem.flags[f]
    expected = (flags & _PG_SWAPCACHE != 0) + mem._mapcount[f].astype(np.int64) + 2
    good = mem._refcount[f] == expected
    for k in sel[~good].tolist():  # -EAGAIN
        src[i + k] &= ~MIGRATE_PFN_MIGRATE
    f, nf, flags = f[good], nf[good], flags[good]
    mem.index[nf] = mem.index[f]
    mem.mapping[nf] = mem.mapping[f]
    mem.flags[nf] |= _PG_SWAPBACKED | (flags & _MIGRATE_FLAGS)
    mem.flags[f] &= ~_PG_ACTIVE_UNEVICTABLE
    return True


def collect_device_ptes_run(migrate: MigrateVma, pslot: tuple[int, int], addr: int,
                            end: int) -> int:
    """migrate_vma_collect_pmd()'s per-PTE steps for the PTEs from ``pslot`` (at
    ``addr``) up to ``end`` or the table's end, while they qualify, in one step; returns
    how many were done (0 when fewer than :data:`BATCH_MIN` qualify: take the per-PTE
    loop). Only without a fault page, for SELECT_DEVICE_PRIVATE, with ``Machine.batch``.

    A PTE qualifies when it is a device-private entry of an order-0 folio of the caller's
    pgmap owner (all of one dev_pagemap), with a ->mapping, not locked, not maybe pinned,
    each page once. Per PTE what the per-PTE loop does there: src = migrate_pfn(pfn) |
    MIGRATE (| WRITE for a writable entry), dst 0, ``cpages``/``npages`` + 1; the folio
    referenced (``extra_refs``) and locked; an exclusive anon page shared
    (PG_anon_exclusive cleared); the entry replaced by a migration entry (writable,
    readable-exclusive or readable; soft-dirty kept; ``pte_writes``), the rmap and the
    mapping's reference dropped. No TLB flush: the entries were not present.
    """
    vma = migrate.vma
    assert vma is not None
    m: Machine = vma.vm_mm.m
    table, i0 = pslot
    n = min((end - addr) >> PAGE_SHIFT, PTRS_PER_TABLE - i0)
    if not m.batch or migrate.fault_page is not None or n < BATCH_MIN \
            or not migrate.flags & MIGRATE_VMA_SELECT.DEVICE_PRIVATE \
            or not is_device_private_entry(int(m.pgtables[table][i0])):
        return 0
    mem, tbl = m.mem, m.pgtables[table]
    ents = tbl[i0: i0 + n]
    typ, pfns, _ = migration_entry_pfns(ents)
    run = _leading((ents & _U64(_PAGE_PRESENT | _PAGE_PROTNONE) == 0)
                   & ((typ == _DEV_READ) | (typ == _DEV_WRITE)))
    if run < BATCH_MIN:
        return 0
    ents, typ, pfn = ents[:run], typ[:run], pfns[:run].astype(np.int64)
    pg = int(mem.pgmap[int(pfn[0])])
    if pg < 0 or m.pgmaps[pg].owner is not migrate.pgmap_owner:  # type: ignore[attr-defined]
        return 0
    flags = mem.flags[pfn]
    excl = (flags & _PG_ANON_EXCLUSIVE != 0) & (mem.mapping[pfn] & FOLIO_MAPPING_ANON != 0)
    ok = (mem.pgmap[pfn] == pg) & (mem.compound_head[pfn] == NO_HEAD) \
        & (flags & (_PG_HEAD | _PG_LOCKED) == 0) & (mem.mapping[pfn] != 0) \
        & ~(excl & (mem._refcount[pfn] + 1 >= GUP_PIN_COUNTING_BIAS))
    run = _leading(ok)
    if run < BATCH_MIN or len(np.unique(pfn[:run])) != run:
        return 0
    ents, typ, pfn, excl = ents[:run], typ[:run], pfn[:run], excl[:run]
    write = typ == _DEV_WRITE
    for p in pfn.tolist():  # ref_hold(); folio_put() after the rmap goes leaves refcount
        mem.extra_refs[p] += 1
    mem.flags[pfn] |= _PG_LOCKED
    mem.flags[pfn[excl]] &= ~_PG_ANON_EXCLUSIVE  # folio_try_share_anon_rmap_pte()
    types = np.where(write, _MIG_WRITE, np.where(excl, _MIG_READ_EXCL, _MIG_READ))
    tbl[i0: i0 + run] = swp_entries(types, pfn) | (ents & _U64(_PAGE_SWP_SOFT_DIRTY))
    m.trace.cost("pte_writes", run)
    mem._mapcount[pfn] -= 1  # folio_remove_rmap_pte()
    mpfn = (pfn << MIGRATE_PFN_SHIFT) | _WANT | np.where(write, MIGRATE_PFN_WRITE, 0)
    k = migrate.npages
    migrate.src[k: k + run] = mpfn.tolist()
    migrate.dst[k: k + run] = [0] * run
    migrate.npages += run
    migrate.cpages += run
    return run


def migrate_device_unmap_run(src: list[int], i: int, npages: int, fault_page: int | None,
                             m: Machine) -> int:
    """migrate_device_unmap()'s first loop for the entries from ``i`` on, while they
    qualify, in one step; returns how many were done (0 when fewer than
    :data:`BATCH_MIN` qualify: take the per-entry loop). Only without a fault page and
    with ``Machine.batch`` on.

    An entry qualifies when it is VALID and MIGRATE, not COMPOUND, its page an order-0
    folio no page table maps any more (the collect walk replaced its entry) that
    migrate_vma_check_page() accepts, and, in system RAM, on the LRU. Per entry the
    per-entry loop then only isolates a system folio (folio_isolate_lru(): PG_lru
    cleared, a reference taken, and the collect reference dropped: the count stays) and
    counts it as unmapped; the caller adds the run's length.
    """
    if not m.batch or fault_page is not None or npages - i < BATCH_MIN \
            or src[i] & _WANT != _WANT:
        return 0
    sa = np.array(src[i:npages], np.int64)
    run = _leading((sa & _WANT == _WANT) & (sa & MIGRATE_PFN_COMPOUND == 0))
    if run < BATCH_MIN:
        return 0
    mem = m.mem
    pfn = sa[:run] >> MIGRATE_PFN_SHIFT
    dev = mem.zone[pfn] == ZONE_DEVICE
    flags = mem.flags[pfn]
    ok = (mem.compound_head[pfn] == NO_HEAD) & (flags & _PG_HEAD == 0) \
        & (mem._mapcount[pfn] == -1) & (mem._refcount[pfn] - 1 - dev <= 0) \
        & (dev | (flags & _PG_LRU != 0))
    run = _leading(ok)
    if run < BATCH_MIN or len(np.unique(pfn[:run])) != run:
        return 0
    system = pfn[:run][~dev[:run]]
    mem.flags[system] &= ~_PG_LRU
    return run
