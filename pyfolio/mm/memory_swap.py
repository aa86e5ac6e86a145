"""Swap-in: do_swap_page() for a PTE holding a real swap slot.

Models: mm/memory.c (v6.18): do_swap_page() (its swap branch), should_try_to_free_swap(),
alloc_swap_folio() with can_swapin_thp() and thp_swap_suitable_orders(); mm/internal.h:
swap_pte_batch() and non_swapcache_batch(). A continuation of :mod:`pyfolio.mm.memory`,
kept apart for size; do_swap_page() there sends swap entries here.

Where the page comes from (measured for issue 18):

* the swap cache (no I/O, no major fault): a large folio is mapped whole when the PTEs
  around the fault hold exactly its consecutive entries (swap_pte_batch()), else the one
  page; it stays in the swap cache (its slots stay used) unless this is a write fault and
  only the fault and the cache hold it (should_try_to_free_swap()), or swap is half full;
* a SWP_SYNCHRONOUS_IO area (zram) with the slot referenced once: a new folio read
  directly, never in the swap cache, of the largest mTHP size allowed at fault time whose
  aligned range is all consecutive swap entries (alloc_swap_folio()), its slots freed;
* otherwise swapin_readahead(): an order-0 folio read into the swap cache, with its
  neighbours (``swap_ra``), a major fault.

An exclusive swap entry is mapped writable even on a read fault (and dirty on a write);
never a PMD mapping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.arch.x86.pgtable import (
    _PAGE_SWP_UFFD_WP,
    _PAGE_UFFD_WP,
    pfn_pte,
    pte_index,
    pte_mkdirty,
    pte_mksoft_dirty,
    pte_mkwrite,
    vm_page_prot,
)
from pyfolio.include.linux.huge_mm import MTHP_STAT, count_mthp_stat
from pyfolio.include.linux.mm import (
    Folio,
    add_mm_counter,
    folio_nr_pages,
    folio_put,
    folio_ref_add,
    folio_ref_count,
    folio_test_anon,
    folio_test_large,
    folio_unlock,
)
from pyfolio.include.linux.mm_types import MM_ANONPAGES, MM_SWAPENTS
from pyfolio.include.linux.swap import SWAP_HAS_CACHE, SWP
from pyfolio.include.linux.swapops import (
    pte_move_swp_offset,
    pte_swp_exclusive,
    pte_swp_soft_dirty,
    pte_to_swp_entry,
    swp_offset,
)
from pyfolio.mm import huge_memory as hm
from pyfolio.mm.rmap import RMAP_EXCLUSIVE, RMAP_NONE, folio_add_anon_rmap_ptes
from pyfolio.mm.swap import folio_add_lru
from pyfolio.mm.swapfile import (
    __swap_count,
    folio_free_swap,
    get_swap_device,
    swap_entry_to_info,
    swap_free_nr,
    swapcache_clear,
    swapcache_prepare,
    vm_swap_full,
)
from pyfolio.sim.errors import MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA
    from pyfolio.sim.machine import Machine

__all__ = ["VM_FAULT_MAJOR", "swap_pte_batch", "non_swapcache_batch", "can_swapin_thp",
           "thp_swap_suitable_orders", "alloc_swap_folio", "should_try_to_free_swap",
           "do_swap_page_swap", "zap_nonpresent_swap_ptes"]

VM_FAULT_MAJOR = 0x4
_PTES = 512


def swap_pte_batch(tbl: np.ndarray, i: int, max_nr: int, pte: int) -> int:
    """swap_pte_batch() - how many PTEs from slot ``i`` (at most ``max_nr``) are ``pte``
    followed by the same swap entry with the offset one higher each time, flags equal.

    Models: mm/internal.h:swap_pte_batch() (v6.18; no swap cgroup ids).
    """
    n = 1
    expected = pte_move_swp_offset(pte, 1)
    while n < max_nr and i + n < _PTES and int(tbl[i + n]) == expected:
        n += 1
        expected = pte_move_swp_offset(expected, 1)
    return n


def non_swapcache_batch(m: Machine, entry: int, max_nr: int) -> int:
    """non_swapcache_batch() - how many slots from ``entry`` have no SWAP_HAS_CACHE.

    Models: mm/internal.h:non_swapcache_batch() (v6.18).
    """
    si = swap_entry_to_info(m, entry)
    assert si is not None
    off = swp_offset(entry)
    cached = (si.swap_map[off: off + max_nr] & SWAP_HAS_CACHE) != 0
    hit = cached.nonzero()[0]
    return int(hit[0]) if len(hit) else max_nr


def can_swapin_thp(m: Machine, tbl: np.ndarray, first: int, address: int, orig_pte: int,
                   nr: int) -> bool:
    """can_swapin_thp() - are the ``nr`` PTEs of the aligned range around ``address``
    (from slot ``first``) its consecutive swap entries, all with the same zeromap state and
    none in the swap cache?

    Models: mm/memory.c:can_swapin_thp() (v6.18).
    """
    from pyfolio.mm.page_io import swap_zeromap_batch

    idx = (address - (address & ~(nr * PAGE_SIZE - 1))) >> PAGE_SHIFT
    pte = int(tbl[first])
    if pte != pte_move_swp_offset(orig_pte, -idx):
        return False
    if swap_pte_batch(tbl, first, nr, pte) != nr:
        return False
    entry = pte_to_swp_entry(pte)
    if swap_zeromap_batch(m, entry, nr)[0] != nr:
        return False
    return non_swapcache_batch(m, entry, nr) == nr


def thp_swap_suitable_orders(swp_off: int, addr: int, orders: int) -> int:
    """thp_swap_suitable_orders() - drop, highest first, the orders whose folio would not
    start at a slot aligned as the address is ("as it was when the THP was swapped out").

    Models: mm/memory.c:thp_swap_suitable_orders() (v6.18).
    """
    order = hm.highest_order(orders)
    while orders:
        nr = 1 << order
        if (addr >> PAGE_SHIFT) % nr == swp_off % nr:
            break
        orders, order = hm.next_order(orders, order)
    return orders


def alloc_swap_folio(vma: VMA, address: int, slot: tuple[int, int], orig_pte: int
                     ) -> Folio | None:
    """alloc_swap_folio() - the folio a synchronous swap-in reads into: of the largest
    order below the PMD order that the per-size settings allow for ``vma`` now, that fits
    the VMA, whose slots are aligned like the address, and whose PTEs can_swapin_thp();
    each size that cannot be allocated counts ``swpin_fallback``; else one page.

    Models: mm/memory.c:alloc_swap_folio() and __alloc_swap_folio() (v6.18;
    zswap_never_enabled() holds here, no memcg charge, no userfaultfd). None when not even
    a page is free.
    """
    from pyfolio.mm.page_alloc import alloc_pages

    m = vma.vm_mm.m
    entry = pte_to_swp_entry(orig_pte)
    orders = hm.thp_vma_allowable_orders(vma, (1 << HPAGE_PMD_ORDER) - 1)
    orders = hm.thp_vma_suitable_orders(vma, address, orders)
    orders = thp_swap_suitable_orders(swp_offset(entry), address, orders)
    order = hm.highest_order(orders)
    tbl = m.pgtables[slot[0]]
    while orders:
        addr = address & ~((PAGE_SIZE << order) - 1)
        if can_swapin_thp(m, tbl, pte_index(addr), address, orig_pte, 1 << order):
            break
        orders, order = hm.next_order(orders, order)
    while orders:
        try:
            return Folio(m, alloc_pages(m, order))
        except MmError:
            count_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_SWPIN_FALLBACK)
            orders, order = hm.next_order(orders, order)
    try:
        return Folio(m, alloc_pages(m, 0))
    except MmError:
        return None


def should_try_to_free_swap(folio: Folio, vma: VMA, fault_flags: int) -> bool:
    """should_try_to_free_swap() - after mapping a swap-cache folio: drop it from the swap
    cache when swap is more than half full, or when a write fault is its only user (the
    refcount is the fault's reference plus the cache's one per page).

    Models: mm/memory.c:should_try_to_free_swap() (v6.18; no mlock, no KSM).
    """
    from pyfolio.mm.memory import FAULT_FLAG_WRITE

    if not folio.m.mem.test(folio.pfn, PG.swapcache):
        return False
    if vm_swap_full(folio.m):  # mem_cgroup_swap_full()
        return True
    return bool(fault_flags & FAULT_FLAG_WRITE) \
        and folio_ref_count(folio) == 1 + folio_nr_pages(folio)


def _read_direct(vma: VMA, address: int, slot: tuple[int, int], orig_pte: int
                 ) -> tuple[Folio | None, int]:
    """The SWP_SYNCHRONOUS_IO branch: (new folio read without the swap cache, or None;
    the first entry its slots are pinned with SWAP_HAS_CACHE from, 0 if not pinned)."""
    from pyfolio.mm.page_io import swap_read_folio

    m = vma.vm_mm.m
    entry = pte_to_swp_entry(orig_pte)
    folio = alloc_swap_folio(vma, address, slot, orig_pte)
    if folio is None:
        return None, 0
    m.mem.set(folio.pfn, PG.locked | PG.swapbacked)
    nr = folio_nr_pages(folio)
    if nr > 1:
        entry &= ~(nr - 1)  # entry.val = ALIGN_DOWN(entry.val, nr_pages)
    if swapcache_prepare(m, entry, nr):
        folio_unlock(folio)
        folio_put(folio)
        return None, 0
    folio_add_lru(folio)
    m.mem.swap[folio.pfn] = entry  # "To provide entry to swap_read_folio()"
    swap_read_folio(folio)
    m.mem.swap[folio.pfn] = 0  # folio->private = NULL
    return folio, entry


def do_swap_page_swap(vma: VMA, address: int, flags: int, slot: tuple[int, int]) -> int:
    """do_swap_page() for a swap entry of a swap area: bring the page (or its whole large
    folio) back and map it; VM_FAULT_* bits.

    Models: mm/memory.c:do_swap_page() (v6.18), the swap branch (see the module
    docstring). A write fault on a page that cannot be mapped writable goes on to
    do_wp_page().
    """
    from pyfolio.mm.memory import VM_FAULT_OOM, do_wp_page
    from pyfolio.mm.swap_state import (
        swap_cache_get_folio,
        swap_update_readahead,
        swapin_readahead,
    )

    m = vma.vm_mm.m
    tbl = m.pgtables[slot[0]]
    orig_pte = int(tbl[slot[1]])
    entry = pte_to_swp_entry(orig_pte)
    si = get_swap_device(m, entry)
    if si is None:
        return 0
    ret, pinned = 0, 0
    folio = swapcache = swap_cache_get_folio(m, entry)
    if folio is not None:
        swap_update_readahead(folio, vma, address)
    else:
        if si.flags & SWP.SWP_SYNCHRONOUS_IO and __swap_count(m, entry) == 1:
            folio, pinned = _read_direct(vma, address, slot, orig_pte)
        else:
            folio = swapcache = swapin_readahead(vma, address, entry)
        if folio is None:
            return VM_FAULT_OOM
        ret = VM_FAULT_MAJOR
        m.vmstat["pgmajfault"] += 1
    nr_folio = folio_nr_pages(folio)
    page = folio.pfn + (swp_offset(entry) & (nr_folio - 1))  # folio_file_page()
    m.mem.set(folio.pfn, PG.locked)  # folio_lock_or_retry()
    nr_pages, addr, first = 1, address, slot[1]
    if folio_test_large(folio):
        idx = page - folio.pfn
        start = address - idx * PAGE_SIZE
        pmd = address & ~(PMD_SIZE - 1)
        fits = start >= max(pmd, vma.vm_start) and \
            start + nr_folio * PAGE_SIZE <= min(pmd + PMD_SIZE, vma.vm_end)
        batch = fits and int(tbl[slot[1] - idx]) == pte_move_swp_offset(orig_pte, -idx) and \
            swap_pte_batch(tbl, slot[1] - idx, nr_folio, int(tbl[slot[1] - idx])) == nr_folio
        if swapcache is None and not batch:
            folio_unlock(folio)  # out_nomap: a direct large read no longer fits
            folio_put(folio)
            if pinned:
                swapcache_clear(m, si, pinned, nr_folio)
            return 0
        if batch:
            nr_pages, addr, first, page = nr_folio, start, slot[1] - idx, folio.pfn
            entry = int(m.mem.swap[folio.pfn]) if swapcache is not None else pinned
    ret |= _map_swapped_in(vma, flags, slot, orig_pte, folio, swapcache, page, entry,
                           nr_pages, addr, first, pinned, bool(ret))
    if ret & _STILL_WRITE:  # FAULT_FLAG_WRITE still set: do_wp_page() copies or reuses
        ret = (ret & ~_STILL_WRITE) | do_wp_page(vma, address, flags, slot)
    return ret


_STILL_WRITE = 1 << 30


def _map_swapped_in(vma: VMA, flags: int, slot: tuple[int, int], orig_pte: int,
                    folio: Folio, swapcache: Folio | None, page: int, entry: int,
                    nr_pages: int, addr: int, first: int, pinned: int, major: bool) -> int:
    """check_folio: onwards: free the slots, maybe the swap cache, map ``nr_pages``;
    _STILL_WRITE if a write fault still needs do_wp_page()."""
    from pyfolio.mm.memory import FAULT_FLAG_WRITE as write_flag
    from pyfolio.mm.memory import set_pte_at
    from pyfolio.mm.rmap import folio_add_new_anon_rmap

    m, mm = vma.vm_mm.m, vma.vm_mm
    exclusive = pte_swp_exclusive(orig_pte) or swapcache is None
    si = swap_entry_to_info(m, entry)
    if exclusive and swapcache is not None and m.mem.test(folio.pfn, PG.writeback) \
            and si is not None and si.flags & SWP.SWP_STABLE_WRITES:
        exclusive = False
    swap_free_nr(m, entry, nr_pages)
    if should_try_to_free_swap(folio, vma, flags):
        folio_free_swap(folio)
    add_mm_counter(mm, MM_ANONPAGES, nr_pages)
    add_mm_counter(mm, MM_SWAPENTS, -nr_pages)
    pte = pfn_pte(page, vm_page_prot(vma.writable))  # mk_pte(page, vma->vm_page_prot)
    if pte_swp_soft_dirty(orig_pte):
        pte = pte_mksoft_dirty(pte)
    if orig_pte & _PAGE_SWP_UFFD_WP:
        pte |= _PAGE_UFFD_WP
    rmap_flags = RMAP_NONE
    if exclusive or folio_ref_count(folio) == 1:
        if vma.writable:
            pte = pte_mkwrite(pte)
            if flags & write_flag:
                pte = pte_mkdirty(pte)
                flags &= ~write_flag
        rmap_flags = RMAP_EXCLUSIVE
    folio_ref_add(folio, nr_pages - 1)
    if not folio_test_anon(folio):
        folio_add_new_anon_rmap(folio, vma, addr, rmap_flags)
    else:
        folio_add_anon_rmap_ptes(folio, page, nr_pages, vma, addr, rmap_flags)
    for i in range(nr_pages):  # set_ptes()
        set_pte_at(m, (slot[0], first + i), pte + (i << PAGE_SHIFT))
    folio_unlock(folio)
    if pinned:  # need_clear_cache: the direct swap-in's SWAP_HAS_CACHE pin goes
        assert si is not None
        swapcache_clear(m, si, pinned, nr_pages)
    source = "direct" if swapcache is None else "device" if major else "swapcache"
    m.trace.emit("do_swap_page", changes={"nr_pages": nr_pages, "source": source},
                 address=addr, pfn=page, major=major)
    return _STILL_WRITE if flags & write_flag else 0


def zap_nonpresent_swap_ptes(vma: VMA, tbl: np.ndarray, i: int, hi: int) -> int:
    """zap_nonpresent_ptes() for genuine swap entries: clear the batch of consecutive swap
    PTEs from slot ``i`` (before ``hi``), MM_SWAPENTS -= their number, and give back one
    reference to each slot (free_swap_and_cache_nr()); how many.

    Models: mm/memory.c:zap_nonpresent_ptes() (v6.18), its ``!non_swap_entry()`` branch.
    """
    from pyfolio.mm.swapfile import free_swap_and_cache_nr

    m = vma.vm_mm.m
    raw = int(tbl[i])
    nr = swap_pte_batch(tbl, i, hi - i, raw)
    add_mm_counter(vma.vm_mm, MM_SWAPENTS, -nr)
    free_swap_and_cache_nr(m, pte_to_swp_entry(raw), nr)
    tbl[i: i + nr] = 0  # clear_not_present_full_ptes()
    m.trace.cost("pte_writes", nr)
    return nr
