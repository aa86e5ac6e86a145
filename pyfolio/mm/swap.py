"""The per-CPU LRU batch of MADV_FREE: a small folio is lazy-freed only when the batch drains.

Models: mm/swap.c (v6.18): folio_mark_lazyfree() adds an anon folio to the CPU's
``cpu_fbatches.lru_lazyfree`` folio_batch (with a reference); folio_batch_move_lru() runs
lru_lazyfree() on each folio when the batch fills (FOLIO_BATCH_SIZE, 31 folios), when a
folio that may not be cached (a large one) is added, or when lru_add_drain() drains it.
lru_lazyfree() clears PG_active, PG_referenced and PG_swapbacked and counts ``pglazyfree``.

Until then a small folio MADV_FREE'd keeps PG_swapbacked: /proc/kpageflags shows it, smaps
does not count it as LazyFree, ``pglazyfree`` has not moved, and the batch's reference is one
more on the folio (a munmap() leaves it allocated until the drain). Measured on 6.18.44:
ten pages stay swapbacked after MADV_FREE until something drains that CPU (0.6 to 3.8 s
on an idle machine); of 40, the first 31 are moved at once.

Simplifications: one CPU, so one batch, and the simulator's own drain points are the
kernel's: madvise_free_single_vma() and madvise_cold() begin with lru_add_drain(),
exit_mmap() and migrate_device_unmap() drain, madvise_collapse() drains all CPUs, and
``System.lru_add_drain()`` stands for the rest (another task's drain on that CPU,
khugepaged's lru_add_drain_all() at each pass). The other batches (lru_add for new folios,
lru_deactivate, lru_activate) are not modelled: new folios get PG_lru at once, and
MADV_COLD's deactivation has nothing to move because no anon folio here is ever active.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import Folio, folio_nr_pages, folio_test_anon, folio_test_large
from pyfolio.mm.migrate import ref_drop, ref_hold
from pyfolio.sim.memmap import PG

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["FOLIO_BATCH_SIZE", "folio_may_be_lru_cached", "folio_mark_lazyfree", "lru_lazyfree",
           "folio_batch_move_lru", "lru_add_drain", "lru_add_drain_all"]

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
    """lru_lazyfree() - make the folio lazy-free: off the active list, not referenced, not
    PG_swapbacked (reclaim may then drop it without swapping it out); ``pglazyfree``.

    Models: mm/swap.c:lru_lazyfree() (v6.18): nothing if the folio is no longer anon
    and swapbacked, or is in the swap cache or unevictable.
    """
    m, pfn = folio.m, folio.pfn
    if not folio_test_anon(folio) or not m.mem.test(pfn, PG.swapbacked) \
            or m.mem.test(pfn, PG.swapcache | PG.unevictable):
        return
    m.mem.clear(pfn, PG.active | PG.referenced | PG.swapbacked)
    m.vmstat["pglazyfree"] += folio_nr_pages(folio)


def folio_batch_move_lru(m: Machine) -> None:
    """folio_batch_move_lru() - run lru_lazyfree() on every folio of the batch that is still
    on the LRU (folio_test_clear_lru(): an isolated one is skipped), then drop the batch's
    references (folios_put(): a folio unmapped meanwhile is freed here).

    Models: mm/swap.c:folio_batch_move_lru() (v6.18) for the lru_lazyfree batch.
    """
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
