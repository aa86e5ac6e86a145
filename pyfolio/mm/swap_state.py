"""The swap cache and swap readahead.

Models: mm/swap_state.c (v6.18, the swap-table tree: the swap cache is each cluster's swap
table, not an xarray): swap_cache_add_folio(), swap_cache_del_folio(),
swap_cache_get_folio(), __swap_cache_replace_folio(), free_swap_cache(),
free_folio_and_swap_cache(), __read_swap_cache_async(), read_swap_cache_async(),
swap_cluster_readahead() with swapin_nr_pages(), swap_vma_readahead() with
swap_vma_ra_win(), swapin_readahead() and swap_update_readahead().

The swap cache holds a folio at every slot it covers and one reference per page
(folio_expected_ref_count() counts them); PG_swapcache is set and folio->swap is the first
slot. Readahead reads order-0 folios only; which kind runs is swap_use_vma_readahead():
VMA-based (pages around the fault address) unless any active area sits on a rotating
device (nr_rotate_swap), in which case the cluster of slots around the faulting one is
read, its window sized by the global hit statistics. A swap file on this machine's disk
and a loop device over it are both rotating.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import (
    Folio,
    folio_get,
    folio_mapped,
    folio_nr_pages,
    folio_put,
    folio_ref_add,
    folio_ref_sub,
    folio_test_large,
    folio_test_locked,
    folio_unlock,
    is_zero_folio,
)
from pyfolio.include.linux.swapops import (
    is_swap_pte,
    non_swap_entry,
    pte_to_swp_entry,
    swp_entry,
    swp_offset,
    swp_type,
)
from pyfolio.mm.swap import folio_add_lru
from pyfolio.mm.swapfile import (
    folio_free_swap,
    put_swap_folio,
    swap_entry_swapped,
    swap_entry_to_info,
    swapcache_prepare,
)
from pyfolio.sim.errors import MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA
    from pyfolio.sim.machine import Machine

__all__ = [
    "swap_cache_add_folio", "__swap_cache_del_folio", "swap_cache_del_folio",
    "swap_cache_get_folio", "__swap_cache_replace_folio", "free_swap_cache",
    "free_folio_and_swap_cache", "swap_use_vma_readahead", "swap_update_readahead",
    "__read_swap_cache_async", "read_swap_cache_async", "__swapin_nr_pages",
    "swapin_nr_pages", "swap_cluster_readahead", "swap_vma_ra_win", "swap_vma_readahead",
    "swapin_readahead", "SWAP_RA_ORDER_CEILING",
]

SWAP_RA_ORDER_CEILING = 5
#: vma->swap_readahead_info packs address | window << SWAP_RA_WIN_SHIFT | hits
SWAP_RA_WIN_SHIFT = PAGE_SHIFT // 2
SWAP_RA_HITS_MASK = (1 << SWAP_RA_WIN_SHIFT) - 1
SWAP_RA_WIN_MASK = (PAGE_SIZE - 1) & ~SWAP_RA_HITS_MASK


def swap_cache_add_folio(folio: Folio, entry: int) -> None:
    """swap_cache_add_folio() - put a locked, swap-backed folio at ``entry``'s slots.

    Models: mm/swap_state.c:swap_cache_add_folio() (v6.18): each slot's swap-table entry
    points at the folio; folio_ref_add(folio, nr_pages); PG_swapcache; folio->swap.
    (The caller has set SWAP_HAS_CACHE in swap_map.)
    """
    m, nr = folio.m, folio_nr_pages(folio)
    si = swap_entry_to_info(m, entry)
    assert si is not None
    off = swp_offset(entry)
    si.swap_table[off: off + nr] = folio.pfn
    folio_ref_add(folio, nr)
    m.mem.set(folio.pfn, PG.swapcache)
    m.mem.swap[folio.pfn] = entry


def __swap_cache_del_folio(folio: Folio, entry: int) -> None:
    """__swap_cache_del_folio() - empty the folio's slots in the swap table and clear
    PG_swapcache and folio->swap; the references stay the caller's to drop.

    Models: mm/swap_state.c:__swap_cache_del_folio() (v6.18; no shadow entries).
    """
    m, nr = folio.m, folio_nr_pages(folio)
    si = swap_entry_to_info(m, entry)
    assert si is not None
    off = swp_offset(entry)
    si.swap_table[off: off + nr] = -1
    m.mem.swap[folio.pfn] = 0
    m.mem.clear(folio.pfn, PG.swapcache)


def swap_cache_del_folio(folio: Folio) -> None:
    """swap_cache_del_folio() - take the folio out of the swap cache: its slots lose
    SWAP_HAS_CACHE (put_swap_folio(): slots with no count left are freed) and the cache's
    nr_pages references go (folio_ref_sub()).

    Models: mm/swap_state.c:swap_cache_del_folio() (v6.18).
    """
    entry = int(folio.m.mem.swap[folio.pfn])
    __swap_cache_del_folio(folio, entry)
    put_swap_folio(folio, entry)
    folio_ref_sub(folio, folio_nr_pages(folio))  # the caller still holds one


def swap_cache_get_folio(m: Machine, entry: int) -> Folio | None:
    """swap_cache_get_folio() - the folio cached at ``entry``'s slot, with a reference
    taken (folio_try_get()), or None.

    Models: mm/swap_state.c:swap_cache_get_folio() (v6.18).
    """
    si = swap_entry_to_info(m, entry)
    if si is None:
        return None
    head = int(si.swap_table[swp_offset(entry)])
    if head < 0:
        return None
    folio = Folio(m, head)
    folio_get(folio)
    return folio


def __swap_cache_replace_folio(old: Folio, new: Folio) -> None:
    """__swap_cache_replace_folio() - the slots ``new`` covers now point at ``new`` (a
    split: each piece keeps its place in the swap cache).

    Models: mm/swap_state.c:__swap_cache_replace_folio() (v6.18).
    """
    m = new.m
    entry = int(m.mem.swap[new.pfn])
    si = swap_entry_to_info(m, entry)
    assert si is not None
    off, nr = swp_offset(entry), folio_nr_pages(new)
    assert (si.swap_table[off: off + nr] == old.pfn).all()
    si.swap_table[off: off + nr] = new.pfn


def free_swap_cache(folio: Folio) -> None:
    """free_swap_cache() - if the folio is in the swap cache and mapped nowhere, try
    folio_free_swap() (under folio_trylock()).

    Models: mm/swap_state.c:free_swap_cache() (v6.18).
    """
    mem = folio.m.mem
    if mem.test(folio.pfn, PG.swapcache) and not folio_mapped(folio) \
            and not folio_test_locked(folio):
        mem.set(folio.pfn, PG.locked)
        folio_free_swap(folio)
        folio_unlock(folio)


def free_folio_and_swap_cache(folio: Folio) -> None:
    """free_folio_and_swap_cache() - free_swap_cache(), then folio_put().

    Models: mm/swap_state.c:free_folio_and_swap_cache() (v6.18).
    """
    free_swap_cache(folio)
    if not is_zero_folio(folio):
        folio_put(folio)


# -- reading in, with readahead ---------------------------------------------------------------
def swap_use_vma_readahead(m: Machine) -> bool:
    """swap_use_vma_readahead() - VMA-based readahead, unless an area is on a rotating disk.

    Models: mm/swap_state.c:swap_use_vma_readahead() (v6.18).
    """
    return m.enable_vma_readahead and not m.nr_rotate_swap


def swap_update_readahead(folio: Folio, vma: VMA | None, addr: int) -> None:
    """swap_update_readahead() - a fault found ``folio`` in the swap cache: if readahead
    brought it in (PG_readahead), count ``swap_ra_hit`` and feed the hit to the window.

    Models: mm/swap_state.c:swap_update_readahead() (v6.18): large folios are ignored.
    """
    m = folio.m
    if folio_test_large(folio):
        return
    vma_ra = swap_use_vma_readahead(m)
    readahead = m.mem.test(folio.pfn, PG.readahead)
    m.mem.clear(folio.pfn, PG.readahead)
    if vma is not None and vma_ra:
        ra = vma.swap_readahead_info or 4
        win, hits = (ra & SWAP_RA_WIN_MASK) >> SWAP_RA_WIN_SHIFT, ra & SWAP_RA_HITS_MASK
        if readahead:
            hits = min(hits + 1, SWAP_RA_HITS_MASK)
        vma.swap_readahead_info = _ra_val(addr, win, hits)
    if readahead:
        m.vmstat["swap_ra_hit"] += 1
        if vma is None or not vma_ra:
            m.swapin_readahead_hits += 1


def _ra_val(addr: int, win: int, hits: int) -> int:
    """SWAP_RA_VAL(addr, win, hits)."""
    return (addr & ~(PAGE_SIZE - 1)) | ((win << SWAP_RA_WIN_SHIFT) & SWAP_RA_WIN_MASK) \
        | (hits & SWAP_RA_HITS_MASK)


def __read_swap_cache_async(m: Machine, entry: int) -> tuple[Folio | None, bool]:
    """__read_swap_cache_async() - the folio for ``entry``: the swap cache's, or a new
    order-0 folio added to the swap cache (locked, not yet read); (folio with a reference
    taken, new_page_allocated). None for a slot no page table uses any more.

    Models: mm/swap_state.c:__read_swap_cache_async() (v6.18).
    """
    from pyfolio.mm.page_alloc import alloc_pages

    folio = swap_cache_get_folio(m, entry)
    if folio is not None:
        return folio, False
    si = swap_entry_to_info(m, entry)
    if si is None or not swap_entry_swapped(m, si, entry):
        return None, False  # just skip read ahead for an unused slot
    try:
        new = Folio(m, alloc_pages(m, 0))  # folio_alloc_mpol(gfp_mask, 0, ...)
    except MmError:
        return None, False
    if swapcache_prepare(m, entry, 1):
        folio_put(new)
        return None, False
    m.mem.set(new.pfn, PG.locked | PG.swapbacked)
    swap_cache_add_folio(new, entry)
    folio_add_lru(new)
    return new, True


def read_swap_cache_async(m: Machine, entry: int) -> Folio | None:
    """read_swap_cache_async() - __read_swap_cache_async(), then swap_read_folio() if a new
    folio was allocated.

    Models: mm/swap_state.c:read_swap_cache_async() (v6.18).
    """
    from pyfolio.mm.page_io import swap_read_folio

    folio, allocated = __read_swap_cache_async(m, entry)
    if allocated and folio is not None:
        swap_read_folio(folio)
    return folio


def __swapin_nr_pages(prev_offset: int, offset: int, hits: int, max_pages: int,
                      prev_win: int) -> int:
    """__swapin_nr_pages() - the readahead window: hits + 2 rounded up to a power of two
    (at least 4), or 1 without hits unless the offset follows the previous one; at most
    ``max_pages``; never below half the previous window.

    Models: mm/swap_state.c:__swapin_nr_pages() (v6.18).

    >>> __swapin_nr_pages(10, 11, 0, 8, 0), __swapin_nr_pages(10, 20, 0, 8, 0), \\
    ...     __swapin_nr_pages(0, 5, 3, 8, 0), __swapin_nr_pages(0, 5, 0, 8, 8)
    (2, 1, 8, 4)
    """
    pages = hits + 2
    if pages == 2:
        if offset not in (prev_offset + 1, prev_offset - 1):
            pages = 1
    else:
        roundup = 4
        while roundup < pages:
            roundup <<= 1
        pages = roundup
    pages = min(pages, max_pages)
    return max(pages, prev_win // 2)


def swapin_nr_pages(m: Machine, offset: int) -> int:
    """swapin_nr_pages() - the cluster readahead window for a fault at ``offset``, from the
    global hit count (taken and reset) and the previous window (statics).

    Models: mm/swap_state.c:swapin_nr_pages() (v6.18).
    """
    max_pages = 1 << m.page_cluster
    if max_pages <= 1:
        return 1
    hits, m.swapin_readahead_hits = m.swapin_readahead_hits, 0
    pages = __swapin_nr_pages(m.swapin_prev_offset, offset, hits, max_pages,
                              m.last_readahead_pages)
    if not hits:
        m.swapin_prev_offset = offset
    m.last_readahead_pages = pages
    return pages


def _readahead_one(m: Machine, entry: int, target: bool) -> None:
    """One slot of a readahead batch: read it if it was not cached; a page read for a
    neighbour, not for the fault, is PG_readahead and counts ``swap_ra``."""
    from pyfolio.mm.page_io import swap_read_folio

    folio, allocated = __read_swap_cache_async(m, entry)
    if folio is None:
        return
    if allocated:
        swap_read_folio(folio)
        if not target:
            m.mem.set(folio.pfn, PG.readahead)
            m.vmstat["swap_ra"] += 1
    folio_put(folio)


def swap_cluster_readahead(m: Machine, entry: int) -> Folio | None:
    """swap_cluster_readahead() - read the aligned block of swapin_nr_pages() slots around
    ``entry`` (skipping the header and slots nobody uses), then return ``entry``'s folio
    (with a reference).

    Models: mm/swap_state.c:swap_cluster_readahead() (v6.18).
    """
    si = swap_entry_to_info(m, entry)
    assert si is not None
    offset = swp_offset(entry)
    mask = swapin_nr_pages(m, offset) - 1
    if mask:
        start, end = offset & ~mask, offset | mask
        start = max(start, 1)
        end = min(end, si.max - 1)
        for off in range(start, end + 1):
            _readahead_one(m, swp_entry(swp_type(entry), off), off == offset)
    return read_swap_cache_async(m, entry)


def swap_vma_ra_win(vma: VMA, addr: int) -> tuple[int, int, int]:
    """swap_vma_ra_win() - (window, start, end) of VMA-based readahead around ``addr``:
    ahead of a forward run, behind a backward one, else centred; clipped to the VMA and to
    the PMD.

    Models: mm/swap_state.c:swap_vma_ra_win() (v6.18).
    """
    m = vma.vm_mm.m
    max_win = 1 << min(m.page_cluster, SWAP_RA_ORDER_CEILING)
    if max_win == 1:
        return 1, addr, addr
    ra = vma.swap_readahead_info or 4
    prev_faddr = ra & ~(PAGE_SIZE - 1)
    prev_win, hits = (ra & SWAP_RA_WIN_MASK) >> SWAP_RA_WIN_SHIFT, ra & SWAP_RA_HITS_MASK
    win = __swapin_nr_pages(prev_faddr >> PAGE_SHIFT, addr >> PAGE_SHIFT, hits, max_win,
                            prev_win)
    vma.swap_readahead_info = _ra_val(addr, win, 0)
    if win == 1:
        return 1, addr, addr
    if addr == prev_faddr + PAGE_SIZE:
        left = addr
    elif prev_faddr == addr + PAGE_SIZE:
        left = addr - (win << PAGE_SHIFT) + PAGE_SIZE
    else:
        left = addr - (((win - 1) // 2) << PAGE_SHIFT)
    right = left + (win << PAGE_SHIFT)
    pmd = addr & ~(PMD_SIZE - 1)
    return win, max(left, vma.vm_start, pmd), min(right, vma.vm_end, pmd + PMD_SIZE)


def swap_vma_readahead(vma: VMA, addr: int, entry: int) -> Folio | None:
    """swap_vma_readahead() - read the swap PTEs of the window around ``addr`` (same
    PTE table), then return ``entry``'s folio (with a reference).

    Models: mm/swap_state.c:swap_vma_readahead() (v6.18).
    """
    from pyfolio.mm.memory import pte_slot

    m = vma.vm_mm.m
    win, start, end = swap_vma_ra_win(vma, addr)
    if win > 1:
        for a in range(start, end, PAGE_SIZE):
            slot = pte_slot(vma.vm_mm, a)
            if slot is None:
                continue
            pte = int(m.pgtables[slot[0]][slot[1]])
            if not is_swap_pte(pte) or non_swap_entry(pte_to_swp_entry(pte)):
                continue
            _readahead_one(m, pte_to_swp_entry(pte), a == addr)
    return read_swap_cache_async(m, entry)


def swapin_readahead(vma: VMA, addr: int, entry: int) -> Folio | None:
    """swapin_readahead() - bring ``entry`` into the swap cache (order 0) with readahead
    around it, by VMA or by swap cluster (swap_use_vma_readahead()).

    Models: mm/swap_state.c:swapin_readahead() (v6.18).
    """
    m = vma.vm_mm.m
    if swap_use_vma_readahead(m):
        return swap_vma_readahead(vma, addr, entry)
    return swap_cluster_readahead(m, entry)
