"""Splitting an unmapped, frozen large folio: the struct-page half of the folio split.

Models: mm/huge_memory.c (v6.18) __split_folio_to_order() and __split_unmapped_folio(),
with folio_cache_ref_count() and __folio_freeze_and_split_unmapped() (mm tree, Nov
2025): freeze, split (the page cache's XArray too), unfreeze. The checks, the unmap and
remap and the entry points are in :mod:`pyfolio.mm.huge_memory_split` (the same kernel
file, kept apart for size), which re-exports everything here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.include.linux.huge_mm import MTHP_STAT, mod_mthp_stat
from pyfolio.include.linux.mm import (
    Folio,
    folio_get,
    folio_is_zone_device,
    folio_nr_pages,
    folio_order,
    folio_ref_freeze,
    folio_test_anon,
    page_folio,
)
from pyfolio.sim.errors import EAGAIN
from pyfolio.sim.memmap import NO_HEAD, PG

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace
    from pyfolio.lib.xarray import XaState
    from pyfolio.sim.machine import Machine

__all__ = [
    "folio_cache_ref_count", "__split_folio_to_order", "__split_unmapped_folio",
    "__folio_freeze_and_split_unmapped", "heads_in_range", "orders_in_range",
]

#: page flags __split_folio_to_order() copies from the head to each new head
_COPY_FLAGS = (PG.referenced | PG.swapbacked | PG.swapcache | PG.mlocked | PG.uptodate
               | PG.active | PG.locked | PG.unevictable | PG.dirty)
_COPY, _HEAD, _LARGE_RMAPPABLE = int(_COPY_FLAGS), int(PG.head), int(PG.large_rmappable)
#: what an order-0 split clears on the old head (PG_head, PG_large_rmappable, partially_mapped)
_NOT_COMPOUND = np.uint32(~int(PG.head | PG.large_rmappable | PG.partially_mapped) & 0xFFFFFFFF)



def folio_cache_ref_count(folio: Folio) -> int:
    """folio_cache_ref_count() - references from the page cache or the swap cache.

    Models: mm/huge_memory.c:folio_cache_ref_count() (mm tree, Nov 2025; in v6.18 the
    same count is can_split_folio()'s ``extra_pins``): 0 for an anon folio not in the
    swap cache, else one per page.
    """
    if folio_test_anon(folio) and not folio.m.mem.test(folio.pfn, PG.swapcache):
        return 0
    return folio_nr_pages(folio)



def __split_folio_to_order(folio: Folio, old_order: int, new_order: int) -> None:
    """__split_folio_to_order() - cut a frozen, unmapped folio into 2^(old-new) folios.

    Models: mm/huge_memory.c:__split_folio_to_order() (v6.18), vectorised: each new head
    gets the head's referenced, swapbacked, swapcache, mlocked, uptodate, active, locked,
    unevictable and dirty flags (every other flag of the new head, PG_anon_exclusive
    included, is dropped: PAGE_FLAGS_CHECK_AT_PREP), ->mapping, ->index = index + i,
    in the swap cache ->swap = folio->swap + i (its own slot), and stops being a tail;
    a new order > 0 makes it a compound head (prep_compound_page(): mapcounts -1,
    _nr_pages_mapped and _pincount 0) and large-rmappable. Tail pages keep their own
    flags (per-page PG_anon_exclusive). The old head gets the new order, or stops being
    compound at order 0.
    Simplification: PG_large_rmappable is copied from the old head (the simulator's THP
    faults do not set it) instead of being set unconditionally.
    """
    mem, pfn = folio.m.mem, folio.pfn
    nr, new_nr = 1 << old_order, 1 << new_order
    heads = slice(pfn + new_nr, pfn + nr, new_nr)  # the new heads: a strided view
    hflags = int(mem.flags[pfn])
    large = _LARGE_RMAPPABLE if hflags & _LARGE_RMAPPABLE else 0
    mem.flags[heads] = (hflags & _COPY) | ((_HEAD | large) if new_order else 0)
    mem.mapping[heads] = mem.mapping[pfn]
    mem.index[heads] = mem.index[pfn] + np.arange(new_nr, nr, new_nr)
    if hflags & int(PG.swapcache):  # new_folio->swap.val = folio->swap.val + i
        mem.swap[heads] = mem.swap[pfn] + np.arange(new_nr, nr, new_nr)
    mem.compound_head[heads] = NO_HEAD  # clear_compound_head()
    if new_order:  # prep_compound_page() on each new head; folio_set_order() on the old
        ch = mem.compound_head[pfn: pfn + nr].reshape(-1, new_nr)
        ch[:, 1:] = (pfn + np.arange(0, nr, new_nr))[:, None]
        mem.order[pfn: pfn + nr: new_nr] = new_order
    else:
        mem.order[pfn] = 0
        mem.flags[pfn] &= _NOT_COMPOUND
    for arr, value in ((mem._entire_mapcount, -1), (mem._large_mapcount, -1),
                       (mem._nr_pages_mapped, 0), (mem._pincount, 0)):
        arr[heads] = value
        if not new_order:
            arr[pfn] = value


def __split_unmapped_folio(folio: Folio, new_order: int, split_at: int, xas: XaState | None = None,
                           mapping: AddressSpace | None = None,
                           uniform_split: bool = True) -> int:
    """__split_unmapped_folio() - split a frozen, unmapped folio, uniformly or buddy-style.

    Models: mm/huge_memory.c:__split_unmapped_folio() (v6.18). Uniform: one step to
    ``new_order``. Non-uniform: from order-1 down to ``new_order``, halve the piece that
    holds ``split_at`` and keep the other half; anon folios skip order 1 (file folios may
    be order 1). A page-cache folio's XArray entry is split first at each step
    (xas_split() for the uniform split, whose nodes xas_split_alloc() reserved;
    xas_try_split() for each non-uniform step, which never fails here). An anon folio's
    ``nr_anon`` moves: -1 at its old order, +1 at the order of each folio it leaves
    (order 0 is not counted). Returns 0.

    >>> from pyfolio import System, MiB
    >>> m = System(ram="16M"); p = m.spawn(); a = p.mmap(2 * MiB)
    >>> p.madvise(a, 2 * MiB, "hugepage"); p.touch(a, 2 * MiB)
    >>> f = p.folio_at(a)
    >>> from pyfolio.mm.huge_memory_split import split_orders
    >>> orders = split_orders(m.machine, f.pfn, 257, 0, uniform=False)
    >>> orders
    [8, 0, 0, 0, 0, 2, 3, 4, 5, 6, 7]
    """
    from pyfolio.lib.xarray import xas_set_order, xas_split, xas_try_split

    is_anon, old_order = folio_test_anon(folio), folio_order(folio)
    nr = 1 << old_order
    start = new_order if uniform_split else old_order - 1
    cur = folio
    for split_order in range(start, new_order - 1, -1):
        if is_anon and split_order == 1:
            continue
        if mapping is not None and xas is not None:
            index = int(folio.m.mem.index[cur.pfn])
            if uniform_split:
                xas_split(xas, cur.pfn, old_order)
            else:
                xas_set_order(xas, index, split_order)
                xas_try_split(xas, cur.pfn, old_order)
        __split_folio_to_order(cur, old_order, split_order)
        cur, old_order = page_folio(folio.m, split_at), split_order
    if is_anon:
        mod_mthp_stat(folio.m, nr.bit_length() - 1, MTHP_STAT.MTHP_STAT_NR_ANON, -1)
        for order in orders_in_range(folio.m, folio.pfn, nr):
            if order:  # mod_mthp_stat() would ignore order 0 anyway
                mod_mthp_stat(folio.m, order, MTHP_STAT.MTHP_STAT_NR_ANON, 1)
    if folio.m.trace.enabled:
        folio.m.trace.emit("__split_unmapped_folio", changes={
            "orders": (nr.bit_length() - 1, orders_in_range(folio.m, folio.pfn, nr))},
            pfn=folio.pfn, new_order=new_order, split_at=split_at, uniform=uniform_split)
    return 0


def __folio_freeze_and_split_unmapped(folio: Folio, new_order: int, split_at: int,
                                      xas: XaState | None, mapping: AddressSpace | None,
                                      do_lru: bool, list_: list[Folio] | None,
                                      uniform_split: bool, end: int = 0,
                                      nr_shmem_dropped: list[int] | None = None) -> int:
    """__folio_freeze_and_split_unmapped() - freeze, unqueue, split, unfreeze each piece,
    and put each piece of a page-cache folio in the page cache or, past ``end``, out of it.

    Models: mm/huge_memory.c:__folio_freeze_and_split_unmapped() (mm tree, Nov 2025
    "mm/huge_memory.c: introduce folio_split_unmapped"; in v6.18 and the v7 series this
    is inline in __folio_split()). Freeze at cache refs + 1 (-EAGAIN if that fails); take
    the folio off the deferred split queue and clear PG_partially_mapped (with
    ``nr_anon_partially_mapped`` -1); split; each new folio is unfrozen at
    folio_expected_ref_count() + 1 (unmapped: its page-cache or swap-cache references
    plus one) and, with ``do_lru``, put on the LRU or on ``list_`` (with an extra
    reference). With a ``mapping``, each new folio below ``end`` (pages: EOF, for shmem
    max(EOF, fallocend)) is stored in the XArray; one at or past ``end`` is dropped:
    counted in ``nr_shmem_dropped[0]`` for shmem (the caller's shmem_uncharge()) or
    cleaned for another file, __filemap_remove_folio() and its page-cache references
    put. Every piece stays locked. Emits one ``folio_ref_unfreeze`` event for all pieces.
    """
    from pyfolio.include.linux.mm import folio_put_refs
    from pyfolio.lib.xarray import XaState as _XaState
    from pyfolio.lib.xarray import xas_store
    from pyfolio.mm.filemap import __filemap_remove_folio
    from pyfolio.mm.huge_memory import __folio_unqueue_deferred_split
    from pyfolio.mm.memremap import zone_device_private_split_cb
    from pyfolio.mm.shmem import shmem_mapping

    m, nr, pfn = folio.m, folio_nr_pages(folio), folio.pfn
    if not folio_ref_freeze(folio, folio_cache_ref_count(folio) + 1):
        return -EAGAIN
    __folio_unqueue_deferred_split(folio)  # off the queue; PG_partially_mapped cleared
    __split_unmapped_folio(folio, new_order, split_at, xas, mapping, uniform_split)
    heads = heads_in_range(m, pfn, nr)
    refs = np.ones(len(heads), np.int32)
    if mapping is not None or m.mem.test(pfn, PG.swapcache):
        refs += np.int32(1) << m.mem.order[heads].astype(np.int32)  # one per page of each
    for h in heads[1:] if folio_is_zone_device(folio) else ():
        zone_device_private_split_cb(folio, Folio(m, int(h)))
    if m.mem.test(pfn, PG.swapcache):  # swap_cluster_get_and_lock(): each piece its slots
        from pyfolio.mm.swap_state import __swap_cache_replace_folio

        for h in heads[1:]:
            __swap_cache_replace_folio(folio, Folio(m, int(h)))
    m.mem._refcount[heads] = refs  # folio_ref_unfreeze(new_folio, ...), then @folio last
    if do_lru and not folio_is_zone_device(folio):
        if list_ is None:
            from pyfolio.mm.huge_memory_split import lru_add_split_folio

            lru_add_split_folio(m, pfn, heads[1:])
        else:
            for h in heads[1:]:
                folio_get(Folio(m, int(h)))
                m.mem.extra_refs[int(h)] += 1  # held by whoever owns list_
                list_.append(Folio(m, int(h)))
    if mapping is not None:
        for h in heads[1:]:
            new = Folio(m, int(h))
            index, size = int(m.mem.index[new.pfn]), folio_nr_pages(new)
            if index < end:  # __xa_store(&mapping->i_pages, new_folio->index, new_folio, 0)
                xas_store(_XaState(mapping.i_pages, index), new.pfn)
                continue
            if shmem_mapping(mapping):
                if nr_shmem_dropped is not None:
                    nr_shmem_dropped[0] += size
            else:
                m.mem.clear(new.pfn, PG.dirty)  # folio_test_clear_dirty(), account_cleaned
            __filemap_remove_folio(new)
            folio_put_refs(new, size)
    zone_device_private_split_cb(folio, None)
    m.trace.emit("folio_ref_unfreeze", changes={"folios": len(heads)}, pfn=pfn,
                 refcounts=[int(x) for x in refs[:16]])
    return 0


def heads_in_range(m: Machine, pfn: int, nr: int) -> np.ndarray:
    """Heads of the folios in [pfn, pfn + nr) (folio_next() from pfn), in address order."""
    return pfn + np.flatnonzero(m.mem.compound_head[pfn: pfn + nr] == NO_HEAD)


def orders_in_range(m: Machine, pfn: int, nr: int) -> list[int]:
    """Orders of the folios in [pfn, pfn + nr), in address order (vectorised)."""
    mem = m.mem
    heads = heads_in_range(m, pfn, nr)
    large = (mem.flags[heads] & np.uint32(PG.head)) != 0
    return [int(x) for x in np.where(large, mem.order[heads], 0)]
