"""Batched split of a PMD-mapped THP: the 512 entries and 512 folios in one step.

Models: mm/huge_memory.c (v6.18) __folio_split() of an anon order-9 folio to order 0
that one PMD maps (MADV_FREE or MADV_COLD of part of it, the shrinker's split of an
underused one): unmap_folio() (mm/rmap.c:try_to_migrate() with
__split_huge_pmd_locked(freeze)), __folio_freeze_and_split_unmapped() with
__split_unmapped_folio() and lru_add_split_folio(), and remap_page()
(mm/migrate.c:remove_migration_pte() over the 512 migration entries the freeze wrote);
and __split_huge_pmd_locked() without freeze of a present PMD leaf of an anon THP in an
anonymous VMA (what mprotect() and munmap() of part of a THP do): its 512 PTEs,
mapcounts and references in one step.

The kernel goes through those steps one after the other, entry by entry; so does the
simulator's per-entry path in :mod:`pyfolio.mm.huge_memory_split` and
:mod:`pyfolio.mm.huge_memory`, the model the chapters teach. A batch here is not a
kernel function: it is an implementation of the same steps for the whole THP at once,
leaving exactly the state, counters and trace events the per-entry calls leave, in the
same order (tests/test_batch.py compares both ways on random scenarios). The migration
entries the freeze writes and remap_page() reads back are never observed between the
two, so the batch writes the PTEs they become directly. It is selected only where it is
sure to be that same sequence (see :func:`folio_split_pmd_mapped_run` and
:func:`split_huge_pmd_present_run`) and ``Machine.batch`` (``System.batch``) is on;
anywhere else the caller takes the per-entry path.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from pyfolio.arch.x86.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_PRESENT,
    _PAGE_RW,
    _PAGE_SOFT_DIRTY,
    _PAGE_TABLE,
    _PAGE_UFFD_WP,
    PAGE_SHIFT,
    PTE_PFN_MASK,
    pfn_pte,
    pmd_dirty,
    pmd_leaf,
    pte_pfn,
    pte_soft_dirty,
)
from pyfolio.include.linux.huge_mm import MTHP_STAT, count_mthp_stat, mod_mthp_stat
from pyfolio.include.linux.mm import Folio, folio_ref_freeze, vma_is_anonymous
from pyfolio.mm import huge_memory as _hm  # a cycle: used at call time only
from pyfolio.mm.huge_memory_split_unmapped import __split_folio_to_order
from pyfolio.mm.migrate import RMP_USE_SHARED_ZEROPAGE, _restored_pte_bits
from pyfolio.mm.rmap import _queue_partially_mapped, anon_vma_ranges, folio_remove_rmap_pmd
from pyfolio.sim.memmap import ENTIRELY_MAPPED, FOLIO_MAPPING_ANON, NO_HEAD, PG, ZONE_DEVICE
from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA

__all__ = ["folio_split_pmd_mapped_run", "split_huge_pmd_present_run"]

_U64 = np.uint64
#: page i of a THP at byte offset i << PAGE_SHIFT: the PFN part of the 512 PTEs
_PAGE_OFFSETS = np.arange(HPAGE_PMD_NR, dtype=_U64) << _U64(PAGE_SHIFT)
_PG_ANON_EXCLUSIVE, _PG_DIRTY = np.uint32(PG.anon_exclusive), np.uint32(PG.dirty)
_PG_HEAD, _ANON_EXCLUSIVE = int(PG.head), int(PG.anon_exclusive)
_PG_LOCKED, _NOT_LOCKED = np.uint32(PG.locked), np.uint32(~int(PG.locked) & 0xFFFFFFFF)
_NOT_ANON_EXCLUSIVE = np.uint32(~int(PG.anon_exclusive) & 0xFFFFFFFF)
_ORDERS0 = [0] * HPAGE_PMD_NR
#: the head's flags the THP split batch needs (large, locked) and those it declines
_NEEDED = int(PG.head | PG.locked)
_DECLINE = int(PG.swapcache | PG.writeback)


def folio_split_pmd_mapped_run(folio: Folio, lock_at: int) -> bool:
    """__folio_split(folio, 0, folio, lock_at, NULL, true, false) for the whole THP at
    once (the uniform split to order 0 that split_folio() asks for); False (nothing done)
    where the batch does not apply, and the caller takes the per-entry path.

    Selected when the batch is on and the locked anon order-9 folio (not in the swap
    cache nor under writeback, not ZONE_DEVICE, no page all zeroes: no shared zero page
    for remap_page()) is mapped by exactly one present PMD leaf (no PTE maps it) in an
    anonymous VMA, the only one its anon_vma reaches at the folio's address, of an mm
    without MMU-notifier subscribers; held by its mapping and the caller only
    (can_split_folio() holds and the freeze succeeds); not maybe pinned if exclusive (the
    freezing PMD split shares it). Then it leaves what the per-entry path leaves:
    ``thp_split_pmd``, the withdrawn table holding 512 PTEs as remove_migration_pte()
    rebuilds them from the entries __split_huge_pmd_locked(freeze) made (write, young,
    dirty, soft-dirty, uffd-wp; the pages anon-exclusive unless the entries were
    readable), the PMD rmap and reference gone and one per page back, 512 order-0 folios
    on the LRU after the head, every one but ``lock_at``'s unlocked, the deferred split
    queue, ``thp_split_page`` and the mTHP counters, and the events ``split_huge_pmd``,
    ``unmap_folio``, ``folio_ref_freeze``, ``__split_unmapped_folio``,
    ``folio_ref_unfreeze``, ``remap_page`` and ``__folio_split`` with their costs.
    """
    from pyfolio.mm.huge_memory_split import lru_add_split_folio
    from pyfolio.mm.memory import pmd_slot

    m, pfn = folio.m, folio.pfn
    mem = m.mem
    nr = HPAGE_PMD_NR
    hflags = int(mem.flags[pfn])
    if not m.batch or hflags & _DECLINE or ~hflags & _NEEDED \
            or int(mem.order[pfn]) != HPAGE_PMD_ORDER or int(mem.zone[pfn]) == ZONE_DEVICE \
            or pfn in (m.zero_pfn, m.huge_zero_pfn) \
            or not int(mem.mapping[pfn]) & FOLIO_MAPPING_ANON \
            or int(mem._entire_mapcount[pfn]) != 0 or int(mem._large_mapcount[pfn]) != 0 \
            or int(mem._nr_pages_mapped[pfn]) != ENTIRELY_MAPPED \
            or int(mem._refcount[pfn]) != 2:
        return False
    if hflags & int(PG.anon_exclusive) and int(mem._pincount[pfn]) > 0:
        return False
    ranges = list(anon_vma_ranges(m, pfn, nr))
    if len(ranges) != 1:
        return False
    vma, lo, hi = ranges[0]
    mm = vma.vm_mm
    prot = vma.vm_page_prot
    if hi - lo != PMD_SIZE or lo & (PMD_SIZE - 1) or mm.notifier_subscriptions is not None \
            or not vma_is_anonymous(vma) or not prot & _PAGE_PRESENT:
        return False
    slot = pmd_slot(mm, lo)
    if slot is None or slot not in mm.pmd_huge_pte:
        return False
    raw = int(m.pgtables[slot[0]][slot[1]])
    if not pmd_leaf(raw) or not raw & _PAGE_PRESENT or pte_pfn(raw) != pfn:
        return False
    pages = slice(pfn, pfn + nr)
    if not mem.stamp[pages].all():
        return False
    table = _freeze_split_pmd(folio, vma, slot, lo, raw)
    held = mem.extra_refs.pop(pfn, 0)
    ok = folio_ref_freeze(folio, 1)
    assert ok, "the batch's conditions guarantee the freeze"
    _hm.__folio_unqueue_deferred_split(folio)
    __split_folio_to_order(folio, HPAGE_PMD_ORDER, 0)
    mod_mthp_stat(m, HPAGE_PMD_ORDER, MTHP_STAT.MTHP_STAT_NR_ANON, -1)
    if m.trace.enabled:
        m.trace.emit("__split_unmapped_folio", changes={
            "orders": (HPAGE_PMD_ORDER, list(_ORDERS0))}, pfn=pfn, new_order=0,
            split_at=pfn, uniform=True)
    mem._refcount[pages] = 1  # folio_ref_unfreeze() of each: its expected refs + 1
    lru_add_split_folio(m, pfn, np.arange(pfn + 1, pfn + nr))
    if m.trace.enabled:
        m.trace.emit("folio_ref_unfreeze", changes={"folios": nr}, pfn=pfn,
                     refcounts=[1] * 16)
    if held:
        mem.extra_refs[lock_at] += held
    _remap_ptes(folio, prot, table, raw, hflags, lock_at)
    m.vmstat["thp_split_page"] += 1  # __folio_split(): out:
    count_mthp_stat(m, HPAGE_PMD_ORDER, MTHP_STAT.MTHP_STAT_SPLIT)
    if m.trace.enabled:
        m.trace.emit("__folio_split", changes={"ret": 0}, pfn=pfn, new_order=0,
                     uniform=True)
    return True


def _freeze_split_pmd(folio: Folio, vma: VMA, slot: tuple[int, int], haddr: int,
                      raw: int) -> int:
    """unmap_folio(): __split_huge_pmd_locked(freeze) of the present PMD leaf (the
    migration entries themselves are left to :func:`_remap_ptes`), then its event;
    returns the PTE table withdrawn for it."""
    m, pfn = folio.m, folio.pfn
    mem = m.mem
    before = (int(mem._large_mapcount[pfn]) + 1, int(mem._refcount[pfn]))
    m.vmstat["thp_split_pmd"] += 1
    pgtable = _hm.pgtable_trans_huge_withdraw(vma, slot)
    if pmd_dirty(raw):
        mem.flags[pfn] |= _PG_DIRTY
    mem.flags[pfn] &= _NOT_ANON_EXCLUSIVE  # folio_try_share_anon_rmap_pmd(): not pinned
    if m.migration_ad:  # the per-entry path keeps and then pops (pgtable, i) for each
        for i in range(HPAGE_PMD_NR):
            m.migration_ad.pop((pgtable, i), None)
    folio_remove_rmap_pmd(folio, pfn, vma)
    mem._refcount[pfn] -= 1  # folio_put(): the caller still holds one
    m.trace.cost("pte_writes", HPAGE_PMD_NR)
    m.trace.cost("tlb_flushes")
    m.pgtables[slot[0]][slot[1]] = pfn_pte(pgtable, _PAGE_TABLE)
    m.trace.cost("pmd_writes")
    if m.trace.enabled:
        m.trace.emit("split_huge_pmd", changes={"ptes_written": HPAGE_PMD_NR,
                                                "into": "migration"}, address=haddr,
                     old_pmd=raw)
        m.trace.emit("unmap_folio", changes={
            "mapcount": (before[0], int(mem._large_mapcount[pfn]) + 1),
            "refcount": (before[1], int(mem._refcount[pfn]))}, pfn=pfn)
    return pgtable


def _remap_ptes(folio: Folio, prot: int, table: int, raw: int, hflags: int,
                lock_at: int) -> None:
    """remap_page(folio, 512, RMP_USE_SHARED_ZEROPAGE), then the unlock and put of every
    new folio but the one holding ``lock_at``. Each migration entry the freezing split
    made (one kind for all: writable if the PMD was, else readable-exclusive if the head
    page was exclusive, else readable; the PMD's soft-dirty and uffd-wp; young and dirty
    kept beside it) becomes the PTE remove_migration_pte() makes with ``prot`` (the
    VMA's vm_page_prot), mapping its own order-0 folio (no page is all zeroes), with a
    mapcount and a reference; then the ``remap_page`` event. Each piece, locked
    (PG_locked came from the head) and mapped, is unlocked and keeps a reference after
    the put: so the pieces' counts stay at one and ``lock_at``'s gains the reference."""
    m, pfn, nr = folio.m, folio.pfn, HPAGE_PMD_NR
    mem = m.mem
    write = bool(raw & _PAGE_RW)
    exclusive = write or bool(hflags & int(PG.anon_exclusive))
    dirty = bool(int(mem.flags[pfn]) & int(PG.dirty)) and pmd_dirty(raw)  # folio & entry
    bits = _restored_pte_bits(prot, write, dirty)
    if pte_soft_dirty(raw):
        bits |= _PAGE_SOFT_DIRTY
    if raw & _PAGE_UFFD_WP and not write:
        bits |= _PAGE_UFFD_WP
    if not raw & _PAGE_ACCESSED:
        bits &= ~_PAGE_ACCESSED
    pages = slice(pfn, pfn + nr)
    m.pgtables[table][:] = (_PAGE_OFFSETS + _U64(pfn << PAGE_SHIFT)) | _U64(bits)
    m.trace.cost("pte_writes", nr)
    mem._mapcount[pages] += 1
    flags = mem.flags[pages]
    if exclusive:  # RMAP_EXCLUSIVE
        flags |= _PG_ANON_EXCLUSIVE
    flags &= _NOT_LOCKED  # folio_unlock() (in place: ``flags`` is a view)
    mem.flags[lock_at] |= _PG_LOCKED  # ... of all but lock_at's
    mem._refcount[lock_at] += 1  # folio_get() per PTE, folio_put() of all but lock_at's
    if m.trace.enabled:
        m.trace.emit("remap_page", changes={"ptes": nr, "zero_page_ptes": 0}, pfn=pfn,
                     nr=nr, flags=RMP_USE_SHARED_ZEROPAGE)


def split_huge_pmd_present_run(vma: VMA, slot: tuple[int, int], haddr: int) -> bool:
    """__split_huge_pmd_locked(vma, pmd, haddr, false) of a present PMD leaf mapping an
    anon THP in an anonymous VMA, all 512 entries in one step; False (nothing done) where
    the batch is off or the PMD is anything else (the huge zero page, a swap-format
    entry, a file VMA), and the caller takes the per-entry path.

    Leaves what the per-entry path leaves: ``thp_split_pmd``; the deposited table
    withdrawn and filled with page i in entry i (the PMD's write, young, dirty,
    soft-dirty and uffd-wp bits on each; PFNs inverted under PAGE_NONE); PG_dirty on the
    folio if the PMD was dirty; 511 more references, a PTE mapping of every page
    (exclusive if the head page was) and the PMD mapping gone (a folio left partly
    mapped is queued for deferred split); the ``split_huge_pmd`` event and its costs.
    """
    m = vma.vm_mm.m
    mem = m.mem
    raw = m.pgtables[slot[0]].item(slot[1])
    if not m.batch or not pmd_leaf(raw) or not vma_is_anonymous(vma) \
            or slot not in vma.vm_mm.pmd_huge_pte:
        return False
    pfn = pte_pfn(raw)
    if pfn == m.huge_zero_pfn or mem.compound_head.item(pfn) != NO_HEAD \
            or mem.order.item(pfn) != HPAGE_PMD_ORDER or not mem.flags.item(pfn) & _PG_HEAD \
            or mem._refcount.item(pfn) <= 0:
        return False
    m.vmstat["thp_split_pmd"] += 1
    pgtable = vma.vm_mm.pmd_huge_pte.pop(slot)  # pgtable_trans_huge_withdraw()
    write, young, dirty = bool(raw & _PAGE_RW), bool(raw & _PAGE_ACCESSED), pmd_dirty(raw)
    if dirty:
        mem.flags[pfn] |= _PG_DIRTY
    exclusive = bool(mem.flags.item(pfn) & _ANON_EXCLUSIVE)
    mem._refcount[pfn] += HPAGE_PMD_NR - 1  # folio_ref_add()
    pages = slice(pfn, pfn + HPAGE_PMD_NR)  # folio_add_anon_rmap_ptes(), __folio_add_rmap()
    mc = mem._mapcount[pages]
    mc += 1
    mem._nr_pages_mapped[pfn] += int(np.count_nonzero(mc == 0))
    mem._large_mapcount[pfn] += HPAGE_PMD_NR
    if exclusive:
        mem.flags[pages] |= _PG_ANON_EXCLUSIVE
    prot = vma.vm_page_prot
    frames = _PAGE_OFFSETS + _U64(pfn << PAGE_SHIFT)
    if not prot & _PAGE_PRESENT:  # PAGE_NONE: pfn_pte() stores the PFN inverted
        frames = ~frames & _U64(PTE_PFN_MASK)
    m.pgtables[pgtable][:] = frames | _U64(_split_pte_bits(
        prot, write, young, dirty, pte_soft_dirty(raw), bool(raw & _PAGE_UFFD_WP)))
    mem._large_mapcount[pfn] -= 1  # folio_remove_rmap_pmd(), __folio_remove_rmap()
    mem._entire_mapcount[pfn] -= 1
    if mem._entire_mapcount.item(pfn) == -1:
        mem._nr_pages_mapped[pfn] -= ENTIRELY_MAPPED
        nr = max(HPAGE_PMD_NR - mem._nr_pages_mapped.item(pfn), 0)
        if nr and nr < HPAGE_PMD_NR:
            _queue_partially_mapped(Folio(m, pfn), True)
    m.trace.cost("pte_writes", HPAGE_PMD_NR)  # _finish_split(): pmd_populate()
    m.trace.cost("tlb_flushes")
    m.pgtables[slot[0]][slot[1]] = pfn_pte(pgtable, _PAGE_TABLE)
    m.trace.cost("pmd_writes")
    if m.trace.keeps_events():
        m.trace.emit("split_huge_pmd", changes={"ptes_written": HPAGE_PMD_NR, "into": "pte"},
                     address=haddr, old_pmd=raw)
    return True


@functools.cache
def _split_pte_bits(prot: int, write: bool, young: bool, dirty: bool, soft_dirty: bool,
                    uffd_wp: bool) -> int:
    """huge_memory._split_pte_bits(), remembered (a few combinations recur)."""
    return _hm._split_pte_bits(prot, write, young, dirty, soft_dirty, uffd_wp)
