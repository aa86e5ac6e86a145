"""Splitting an unmapped, frozen large folio: the struct-page half of the folio split.

Models: mm/huge_memory.c (v6.18) __split_folio_to_order() and __split_unmapped_folio(),
with folio_cache_ref_count() (mm tree, Nov 2025). Freezing around them, the checks, the
unmap and remap and the entry points are in :mod:`pyfolio.mm.huge_memory_split` (the same
kernel file, kept apart for size), which re-exports everything here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.include.linux.huge_mm import MTHP_STAT, mod_mthp_stat
from pyfolio.include.linux.mm import (
    Folio,
    folio_nr_pages,
    folio_order,
    folio_test_anon,
    page_folio,
)
from pyfolio.sim.memmap import NO_HEAD, PG

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = [
    "folio_cache_ref_count", "__split_folio_to_order", "__split_unmapped_folio",
    "heads_in_range", "orders_in_range",
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


def __split_unmapped_folio(folio: Folio, new_order: int, split_at: int, xas: object = None,
                           mapping: object = None, uniform_split: bool = True) -> int:
    """__split_unmapped_folio() - split a frozen, unmapped folio, uniformly or buddy-style.

    Models: mm/huge_memory.c:__split_unmapped_folio() (v6.18). Uniform: one step to
    ``new_order``. Non-uniform: from order-1 down to ``new_order``, halve the piece that
    holds ``split_at`` and keep the other half; anon folios skip order 1. An anon folio's
    ``nr_anon`` moves: -1 at its old order, +1 at the order of each folio it leaves
    (order 0 is not counted). Returns 0 (the page-cache ``xas`` failures of file folios
    do not arise: anon only).

    >>> from pyfolio import System, MiB
    >>> m = System(ram="16M"); p = m.spawn(); a = p.mmap(2 * MiB)
    >>> p.madvise(a, 2 * MiB, "hugepage"); p.touch(a, 2 * MiB)
    >>> f = p.folio_at(a)
    >>> from pyfolio.mm.huge_memory_split import split_orders
    >>> orders = split_orders(m.machine, f.pfn, 257, 0, uniform=False)
    >>> orders
    [8, 0, 0, 0, 0, 2, 3, 4, 5, 6, 7]
    """
    is_anon, old_order = folio_test_anon(folio), folio_order(folio)
    nr = 1 << old_order
    start = new_order if uniform_split else old_order - 1
    cur = folio
    for split_order in range(start, new_order - 1, -1):
        if is_anon and split_order == 1:
            continue
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


def heads_in_range(m: Machine, pfn: int, nr: int) -> np.ndarray:
    """Heads of the folios in [pfn, pfn + nr) (folio_next() from pfn), in address order."""
    return pfn + np.flatnonzero(m.mem.compound_head[pfn: pfn + nr] == NO_HEAD)


def orders_in_range(m: Machine, pfn: int, nr: int) -> list[int]:
    """Orders of the folios in [pfn, pfn + nr), in address order (vectorised)."""
    mem = m.mem
    heads = heads_in_range(m, pfn, nr)
    large = (mem.flags[heads] & np.uint32(PG.head)) != 0
    return [int(x) for x in np.where(large, mem.order[heads], 0)]
