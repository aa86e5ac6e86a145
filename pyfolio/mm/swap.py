"""The LRU lists, and the per-CPU LRU batch of MADV_FREE.

Models: mm/swap.c (v6.18) and include/linux/mm_inline.h.

**The lists.** folio_add_lru(), folio_add_lru_vma(), lru_add(), folio_rotate_reclaimable() /
lru_move_tail(), folio_deactivate() / lru_deactivate(), folio_activate();
folio_lru_list(). Each lruvec list is kept as an order, not a linked list: a folio's
``lru_seq`` (in the memmap) says where it sits, the list head (newest) having the largest
value, the tail (oldest, where reclaim isolates) the smallest. Simplifications: one node,
no memcg (one lruvec), no MGLRU (this machine's kernel has CONFIG_LRU_GEN off: the classic
active/inactive lists). Unevictable folios are not modelled.

**The lazyfree batch.** folio_mark_lazyfree() adds an anon folio to the CPU's
``cpu_fbatches.lru_lazyfree`` folio_batch (with a reference); folio_batch_move_lru() runs
lru_lazyfree() on each folio when the batch fills (FOLIO_BATCH_SIZE, 31 folios), when a
folio that may not be cached (a large one) is added, or when lru_add_drain() drains it.
lru_lazyfree() clears PG_active, PG_referenced and PG_swapbacked, which moves the folio to
the head of the inactive *file* list, and counts ``pglazyfree``.
Until then a small folio MADV_FREE'd keeps PG_swapbacked: /proc/kpageflags shows it, smaps
does not count it as LazyFree, ``pglazyfree`` has not moved, and the batch's reference is
one more on the folio (a munmap() leaves it allocated until the drain). Measured on
6.18.44: ten pages stay swapbacked after MADV_FREE until something drains that CPU (0.6 to
3.8 s on an idle machine); of 40, the first 31 are moved at once.

Simplifications: one CPU, so one batch, and the simulator's own drain points are the
kernel's: madvise_free_single_vma(), madvise_cold() and madvise_pageout() begin with
lru_add_drain(), exit_mmap() and migrate_device_unmap() drain, madvise_collapse() drains
all CPUs, and ``System.lru_add_drain()`` stands for the rest (another task's drain on that
CPU, khugepaged's lru_add_drain_all() at each pass). The other batches (lru_add for new
folios, lru_deactivate, lru_activate, lru_move_tail) are not modelled: a new folio gets
PG_lru at once, and a folio changes list at once.

>>> from pyfolio import System
>>> m = System(ram="16M"); p = m.spawn(); a = p.mmap(16384); p.touch(a, 16384)
>>> [f.pfn == p.pfn_at(a + i * 4096) for i, f in enumerate(lru_folios(m.machine))]
[True, True, True, True]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.include.linux.mm import Folio, folio_nr_pages, folio_test_anon, folio_test_large
from pyfolio.mm.migrate import ref_drop, ref_hold
from pyfolio.sim.memmap import NO_HEAD, PG, PGTY

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA
    from pyfolio.sim.machine import Machine

__all__ = ["LRU_INACTIVE_ANON", "LRU_ACTIVE_ANON", "LRU_INACTIVE_FILE", "LRU_ACTIVE_FILE",
           "folio_lru_list", "folio_add_lru", "folio_add_lru_vma", "folio_rotate_reclaimable",
           "folio_deactivate", "folio_activate", "lru_folios",
           "FOLIO_BATCH_SIZE", "folio_may_be_lru_cached", "folio_mark_lazyfree", "lru_lazyfree",
           "folio_batch_move_lru", "lru_add_drain", "lru_add_drain_all"]

#: enum lru_list (include/linux/mmzone.h)
LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE = range(4)
_LRU, _ACTIVE = np.uint32(PG.lru), np.uint32(PG.active)
_SWAPBACKED = np.uint32(PG.swapbacked)


def folio_lru_list(folio: Folio) -> int:
    """folio_lru_list() - the list a folio on the LRU belongs to: anon (swap-backed) or
    file (file folios, and lazy-free anon ones), active or inactive.

    Models: include/linux/mm_inline.h:folio_lru_list() (v6.18).
    """
    mem = folio.m.mem
    lru = LRU_INACTIVE_FILE if not mem.test(folio.pfn, PG.swapbacked) else LRU_INACTIVE_ANON
    return lru + (1 if mem.test(folio.pfn, PG.active) else 0)


def folio_add_lru(folio: Folio) -> None:
    """folio_add_lru() - put a folio at the head of its LRU list (the newest place).

    Models: mm/swap.c:folio_add_lru() and lru_add() (v6.18): PG_lru set, the folio added to
    the list folio_lru_list() names (a new anon folio is inactive: since 5.9 anon folios
    start on the inactive list, "workingset protection").
    """
    _lruvec_add_folio(folio)
    folio.m.mem.set(folio.pfn, PG.lru)


def _lruvec_add_folio(folio: Folio) -> None:
    """lruvec_add_folio(): to the head (the newest place) of the list folio_lru_list()
    names; the list follows from the flags, the place from ``lru_seq``."""
    m = folio.m
    m.lru_clock += 1.0
    m.mem.lru_seq[folio.pfn] = m.lru_clock


def folio_add_lru_vma(folio: Folio, vma: VMA) -> None:
    """folio_add_lru_vma() - folio_add_lru() for a folio just mapped into ``vma``.

    Models: mm/swap.c:folio_add_lru_vma() (v6.18; the VM_LOCKED mlock branch is not
    modelled).
    """
    del vma
    folio_add_lru(folio)


def folio_rotate_reclaimable(folio: Folio) -> None:
    """folio_rotate_reclaimable() - move a folio whose reclaim writeback just finished to
    the tail of the inactive list, so the next reclaim pass frees it first.

    Models: mm/swap.c:folio_rotate_reclaimable() and lru_move_tail() (v6.18): only a folio
    on the LRU, not locked, not dirty; PG_active is cleared; ``pgrotated`` counts its pages.
    """
    m, pfn = folio.m, folio.pfn
    if not m.mem.test(pfn, PG.lru) or m.mem.test(pfn, PG.locked) or m.mem.test(pfn, PG.dirty):
        return
    m.lru_tail_clock -= 1.0
    m.mem.lru_seq[pfn] = m.lru_tail_clock
    m.mem.clear(pfn, PG.active)
    m.vmstat["pgrotated"] += folio_nr_pages(folio)


def folio_deactivate(folio: Folio) -> None:
    """folio_deactivate() - move an active LRU folio to the head of the inactive list
    (an inactive one stays where it is).

    Models: mm/swap.c:folio_deactivate() and lru_deactivate() (v6.18, no MGLRU):
    PG_active and PG_referenced cleared, ``pgdeactivate`` += its pages.
    """
    m, pfn = folio.m, folio.pfn
    if not m.mem.test(pfn, PG.lru) or m.mem.test(pfn, PG.unevictable) \
            or not m.mem.test(pfn, PG.active):
        return
    m.vmstat["pgdeactivate"] += folio_nr_pages(folio)
    m.mem.clear(pfn, PG.active | PG.referenced)
    folio_add_lru(folio)


def folio_activate(folio: Folio) -> None:
    """folio_activate() - move an inactive LRU folio to the head of the active list.

    Models: mm/swap.c:folio_activate() (v6.18): ``pgactivate`` counts its pages.
    """
    m, pfn = folio.m, folio.pfn
    if not m.mem.test(pfn, PG.lru) or m.mem.test(pfn, PG.active):
        return
    m.mem.set(pfn, PG.active)
    m.vmstat["pgactivate"] += folio_nr_pages(folio)
    folio_add_lru(folio)


def lru_folios(m: Machine, lru: int = LRU_INACTIVE_ANON) -> list[Folio]:
    """The folios on list ``lru``, oldest (the tail) first: the order reclaim meets them.

    Python-only helper (the kernel walks lruvec->lists[lru] from its tail).
    """
    mem = m.mem
    active = lru in (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE)
    anon = lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON)
    f = mem.flags
    sel = ((f & _LRU) != 0) & (((f & _ACTIVE) != 0) == active) \
        & (((f & _SWAPBACKED) != 0) == anon) & (mem.compound_head == NO_HEAD) \
        & (mem.page_type == PGTY.none)
    heads = np.flatnonzero(sel)
    heads = heads[np.argsort(mem.lru_seq[heads], kind="stable")]
    return [Folio(m, int(h)) for h in heads]


#: include/linux/folio_batch.h (pagevec.h before): folios a per-CPU batch holds
FOLIO_BATCH_SIZE = 31


def folio_may_be_lru_cached(folio: Folio) -> bool:
    """folio_may_be_lru_cached() - whether the folio may wait in a per-CPU LRU batch.

    Models: include/linux/swap.h:folio_may_be_lru_cached() (v6.18): never a large folio,
    so a THP MADV_FREE'd whole is lazy-free at once.
    """
    return not folio_test_large(folio)


def folio_mark_lazyfree(folio: Folio) -> None:
    """folio_mark_lazyfree() - queue an anon folio to become lazy-free.

    Models: mm/swap.c:folio_mark_lazyfree() and __folio_batch_add_and_move() (v6.18): only
    an anon, PG_swapbacked folio on the LRU, not in the swap cache nor unevictable; the
    batch takes a reference; adding the 31st folio, or one that may not be cached, moves
    the whole batch.
    """
    m, pfn = folio.m, folio.pfn
    if not folio_test_anon(folio) or not m.mem.test(pfn, PG.swapbacked) \
            or not m.mem.test(pfn, PG.lru) or m.mem.test(pfn, PG.swapcache | PG.unevictable):
        return
    ref_hold(folio)
    m.lru_lazyfree.append(pfn)
    m.trace.emit("folio_mark_lazyfree", pfn=pfn, batched=len(m.lru_lazyfree))
    if len(m.lru_lazyfree) == FOLIO_BATCH_SIZE or not folio_may_be_lru_cached(folio):
        folio_batch_move_lru(m)


def lru_lazyfree(folio: Folio) -> None:
    """lru_lazyfree() - make the folio lazy-free: not active, not referenced, not
    PG_swapbacked, at the head of the inactive file list (reclaim may then drop it without
    swapping it out); ``pglazyfree``.

    Models: mm/swap.c:lru_lazyfree() (v6.18): nothing if the folio is no longer anon
    and swapbacked, or is in the swap cache or unevictable.
    """
    m, pfn = folio.m, folio.pfn
    if not folio_test_anon(folio) or not m.mem.test(pfn, PG.swapbacked) \
            or m.mem.test(pfn, PG.swapcache | PG.unevictable):
        return
    m.mem.clear(pfn, PG.active | PG.referenced | PG.swapbacked)
    _lruvec_add_folio(folio)  # to the head of the inactive file list
    m.vmstat["pglazyfree"] += folio_nr_pages(folio)


def folio_batch_move_lru(m: Machine) -> None:
    """folio_batch_move_lru() - run lru_lazyfree() on every folio of the batch that is still
    on the LRU (folio_test_clear_lru(): an isolated one is skipped), then drop the batch's
    references (folios_put(): a folio unmapped meanwhile is freed here).

    Models: mm/swap.c:folio_batch_move_lru() (v6.18) for the lru_lazyfree batch.
    """
    from pyfolio.mm.swap_batch import folio_batch_move_lru_run

    if folio_batch_move_lru_run(m):  # the same steps, batched
        return
    batch, m.lru_lazyfree = m.lru_lazyfree, []
    for pfn in batch:
        folio = Folio(m, pfn)
        if m.mem.test(pfn, PG.lru):
            lru_lazyfree(folio)
        ref_drop(folio)
    if batch:
        m.trace.emit("folio_batch_move_lru", changes={"lazyfree": len(batch)}, pfns=batch)


def lru_add_drain(m: Machine) -> None:
    """lru_add_drain() - drain this CPU's LRU batches (here: the lazyfree one).

    Models: mm/swap.c:lru_add_drain() (v6.18), through lru_add_drain_cpu().
    """
    if m.lru_lazyfree:
        folio_batch_move_lru(m)


def lru_add_drain_all(m: Machine) -> None:
    """lru_add_drain_all() - drain every CPU's LRU batches; with one CPU, lru_add_drain().

    Models: mm/swap.c:lru_add_drain_all() (v6.18).
    """
    lru_add_drain(m)
