"""Swapping shmem: shmem_writeout() puts a swap entry in the page cache, swap-in takes it out.

Models: mm/shmem.c (v6.18), its swap half: shmem_writeout(), shmem_delete_from_page_cache(),
shmem_add_to_page_cache() (for a swapped-in folio), shmem_confirm_swap(),
shmem_swap_alloc_folio(), shmem_swapin_cluster(), shmem_split_large_entry(),
shmem_swapin_folio(), shmem_free_swap(), shmem_partial_swap_usage(), shmem_swap_usage() and
shmem_unuse(). A continuation of :mod:`pyfolio.mm.shmem` (the allocation side) and
:mod:`pyfolio.mm.shmem_truncate`.

What differs from an anonymous folio (measured on 6.18.44, the issue 18 shmem measurements):

* reclaim clears the folio's PTEs (a PMD is zapped, ``thp_split_pmd``) instead of writing
  swap entries there; the swap entry goes into the page cache instead, one XArray value
  entry of the folio's order (swp_to_radix_entry()) holding one swap count per slot;
* a large folio that cannot get a run of slots (a swap file never hands one out) or that
  crosses EOF is split inside shmem_writeout() with no fallback counter (6.18; newer trees
  count ``thp_swpout_fallback`` / ``swpout_fallback`` there too);
* swap-in takes the folio's order from the stored entry, not from the current
  ``shmem_enabled`` knobs, and frees the slots and the swap-cache place at once, leaving
  the folio dirty in the page cache (a second pageout writes it again, to new slots);
* smaps ``Swap`` of a shmem VMA counts the object's swapped pages in the range it maps
  (every process mapping it sees them); no SwapPss, no VmSwap.

Simplifications: no shmem_swaplist (swapoff visits every shmem page cache, in the order
the files were created), no memcg charge, no zswap, no userfaultfd, no VM_LOCKED/noswap
mounts; a folio is never !uptodate here (fallocate() clears its folios at once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import i_size_read
from pyfolio.include.linux.mm import (
    VM_WARN_ON_FOLIO,
    Folio,
    folio_lock,
    folio_mapped,
    folio_nr_pages,
    folio_order,
    folio_put,
    folio_put_refs,
    folio_test_large,
    folio_unlock,
)
from pyfolio.include.linux.pagemap import folio_mapping
from pyfolio.include.linux.shmem_fs import SHMEM_I
from pyfolio.include.linux.swap import SWP
from pyfolio.include.linux.swapops import (
    radix_to_swp_entry,
    swp_offset,
    swp_to_radix_entry,
    swp_type,
)
from pyfolio.lib.xarray import (
    XaState,
    XaValue,
    xa_entries,
    xa_get_order,
    xa_load,
    xas_set_order,
    xas_store,
    xas_try_split,
    xas_try_split_min_order,
)
from pyfolio.mm.filemap import __filemap_add_folio, filemap_alloc_folio, folio_mark_dirty
from pyfolio.mm.shmem import SGP, shmem_fallocend, shmem_mapping, shmem_recalc_inode
from pyfolio.sim.errors import EEXIST, EINVAL, ENOMEM
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace, Inode
    from pyfolio.include.linux.mm_types import VMA
    from pyfolio.sim.machine import Machine

__all__ = ["AOP_WRITEPAGE_ACTIVATE", "shmem_delete_from_page_cache", "shmem_writeout",
           "shmem_add_to_page_cache", "shmem_confirm_swap", "shmem_swap_alloc_folio",
           "shmem_swapin_cluster", "shmem_split_large_entry", "shmem_swapin_folio",
           "shmem_free_swap", "shmem_partial_swap_usage", "shmem_swap_usage", "shmem_unuse"]

#: include/linux/fs.h: "don't put the folio back on the inactive list": reclaim activates it
AOP_WRITEPAGE_ACTIVATE = 0x80000


def shmem_delete_from_page_cache(folio: Folio, radswap: XaValue) -> None:
    """shmem_delete_from_page_cache() - replace the folio's page-cache entry by the value
    entry ``radswap`` (the same order: one entry for the whole folio), clear
    ``folio->mapping`` and drop the page cache's references (the swap cache's stay).

    Models: mm/shmem.c:shmem_delete_from_page_cache() with shmem_replace_entry() (v6.18).
    """
    mapping = folio_mapping(folio)
    assert mapping is not None
    m, nr = folio.m, folio_nr_pages(folio)
    index = int(m.mem.index[folio.pfn])
    VM_WARN_ON_FOLIO(xa_load(mapping.i_pages, index) != folio.pfn, folio,
                     "shmem_replace_entry: the page cache holds another entry")
    xas = XaState(mapping.i_pages, index)
    xas_set_order(xas, index, folio_order(folio))
    xas_store(xas, radswap)
    m.mem.mapping[folio.pfn] = 0
    mapping.nrpages -= nr
    folio_put_refs(folio, nr)
    m.trace.emit("shmem_delete_from_page_cache", pfn=folio.pfn, index=index,
                 order=folio_order(folio), ino=mapping.host.i_ino)


def _split_to_list(folio: Folio, folio_list: list[Folio] | None) -> int:
    from pyfolio.mm.huge_memory_split import split_folio_to_list

    return split_folio_to_list(folio, folio_list)


def shmem_writeout(folio: Folio, folio_list: list[Folio] | None) -> int:
    """shmem_writeout() - reclaim's write of a locked, unmapped shmem folio: give it swap
    slots, leave a swap entry in the page cache, write it (swap_writeout()). 0, or
    AOP_WRITEPAGE_ACTIVATE (the folio redirtied and still locked: no swap, or a split
    failed).

    Models: mm/shmem.c:shmem_writeout() (v6.18): a large folio crossing
    ``max(i_size, fallocend)`` is split first; so is one that folio_alloc_swap() cannot
    serve whole (a swap file: order 0 only; a full device) -- split_folio_to_list() puts
    the pieces on ``folio_list`` for reclaim to meet on their own, and no fallback counter
    moves (6.18). On success: ``info->swapped`` += nr (shmem_recalc_inode()), one swap
    count per slot for the page cache's entry (swap_duplicate_nr()),
    shmem_delete_from_page_cache(), swap_writeout().
    """
    from pyfolio.mm.page_io import swap_writeout
    from pyfolio.mm.swapfile import __swap_duplicate, folio_alloc_swap, total_swap_pages

    m = folio.m
    mapping = folio_mapping(folio)
    VM_WARN_ON_FOLIO(mapping is None or not shmem_mapping(mapping), folio, "not shmem")
    VM_WARN_ON_FOLIO(folio_mapped(folio), folio, "shmem_writeout of a mapped folio")
    assert mapping is not None
    inode = mapping.host
    if not total_swap_pages(m):
        folio_mark_dirty(folio)  # redirty
        return AOP_WRITEPAGE_ACTIVATE
    split = False
    if folio_test_large(folio):
        first = int(m.mem.index[folio.pfn])
        end = shmem_fallocend(inode, -(-i_size_read(inode) // PAGE_SIZE))
        split = first < end < first + folio_nr_pages(folio)
    while True:
        if split:  # try_split:
            m.mem.set(folio.pfn, PG.dirty)  # "Ensure the subpages are still dirty"
            if _split_to_list(folio, folio_list):
                folio_mark_dirty(folio)
                return AOP_WRITEPAGE_ACTIVATE
            m.mem.clear(folio.pfn, PG.dirty)
        nr_pages = folio_nr_pages(folio)
        if not folio_alloc_swap(folio):
            shmem_recalc_inode(inode, 0, nr_pages)
            entry = int(m.mem.swap[folio.pfn])
            __swap_duplicate(m, entry, 1, nr_pages)  # swap_duplicate_nr()
            shmem_delete_from_page_cache(folio, swp_to_radix_entry(entry))
            return swap_writeout(folio)
        if nr_pages > 1:
            split = True
            continue
        folio_mark_dirty(folio)  # redirty
        return AOP_WRITEPAGE_ACTIVATE


# -- swap-in ----------------------------------------------------------------------------------
def shmem_add_to_page_cache(folio: Folio, mapping: AddressSpace, index: int,
                            expected: XaValue) -> int:
    """shmem_add_to_page_cache() - put a swapped-in folio back where its swap entries are:
    the range must hold exactly the consecutive entries from ``expected``; 0 or -EEXIST
    (nothing changed).

    Models: mm/shmem.c:shmem_add_to_page_cache() (v6.18), with ``expected`` a swap entry.
    """
    nr = folio_nr_pages(folio)
    VM_WARN_ON_FOLIO(bool(index & (nr - 1)), folio, "index not aligned to the folio")
    it = radix_to_swp_entry(expected)
    for _, order, e in xa_entries(mapping.i_pages, index, index + nr):
        if not isinstance(e, XaValue) or radix_to_swp_entry(e) != it:
            return -EEXIST
        it += 1 << order
    if it - nr != radix_to_swp_entry(expected):
        return -EEXIST
    xas = XaState(mapping.i_pages, index)
    xas_set_order(xas, index, folio_order(folio))
    xas_store(xas, None)  # the swap entries make way: xas_store() of the folio over them
    return __filemap_add_folio(mapping, folio, index)


def shmem_confirm_swap(mapping: AddressSpace, index: int, swap: XaValue) -> int:
    """shmem_confirm_swap() - the order of the entry at ``index`` if it is still ``swap``,
    else -1.

    Models: mm/shmem.c:shmem_confirm_swap() (v6.18).
    """
    return xa_get_order(mapping.i_pages, index) if xa_load(mapping.i_pages, index) == swap \
        else -1


def shmem_swap_alloc_folio(inode: Inode, vma: VMA | None, index: int, entry: int,
                           order: int) -> Folio | int:
    """shmem_swap_alloc_folio() - read a swapped-out range straight from a synchronous
    device (zram) into a new folio of the entry's ``order``, bypassing the swap cache;
    the folio (read, unlocked, ``folio->swap`` set, SWAP_HAS_CACHE on its slots) or -errno.

    Models: mm/shmem.c:shmem_swap_alloc_folio() (v6.18): a large order falls back to
    order 0 (the one slot of ``index``) when some slot of the range is already in the
    swap cache (non_swapcache_batch()), no folio of that order can be allocated, or
    swapcache_prepare() fails. The order comes from the entry, not from the
    shmem_enabled policy.
    """
    from pyfolio.mm.memory_swap import non_swapcache_batch
    from pyfolio.mm.page_io import swap_read_folio
    from pyfolio.mm.swap import folio_add_lru
    from pyfolio.mm.swapfile import swapcache_prepare

    m = inode.i_sb.m
    nr = 1 << order
    if order and non_swapcache_batch(m, entry, nr) != nr:
        entry, order, nr = entry + index - (index & ~(nr - 1)), 0, 1
    while True:
        new = filemap_alloc_folio(m, order)  # shmem_alloc_folio()
        err = -ENOMEM
        if new is not None:
            if not swapcache_prepare(m, entry, nr):
                break
            folio_put(new)
            err = -EEXIST
        if not order:
            return err
        entry, order, nr = entry + index - (index & ~(nr - 1)), 0, 1
    m.mem.set(new.pfn, PG.locked | PG.swapbacked)
    m.mem.swap[new.pfn] = entry  # new->swap = entry
    folio_add_lru(new)
    swap_read_folio(new)  # unlocks it when the read is done
    return new


def shmem_swapin_cluster(m: Machine, swap: int) -> Folio | None:
    """shmem_swapin_cluster() - read the order-0 folio of ``swap`` into the swap cache with
    the slots around it (cluster readahead; shmem has no VMA readahead).

    Models: mm/shmem.c:shmem_swapin_cluster() (v6.18): swap_cluster_readahead().
    """
    from pyfolio.mm.swap_state import swap_cluster_readahead

    return swap_cluster_readahead(m, swap)


def shmem_split_large_entry(inode: Inode, index: int, swap: XaValue) -> int:
    """shmem_split_large_entry() - cut the large swap entry covering ``index`` step by step
    (xas_try_split_min_order()) until the piece at ``index`` is order 0; every piece gets
    its own consecutive swap entry. Returns the old order, or -EEXIST if the entry
    changed.

    Models: mm/shmem.c:shmem_split_large_entry() (v6.18).
    """
    mapping = inode.i_mapping
    if xa_load(mapping.i_pages, index) != swap:
        return -EEXIST
    entry_order = cur = xa_get_order(mapping.i_pages, index)
    swap_index = index & ~((1 << entry_order) - 1)
    first = radix_to_swp_entry(swap)
    split_order = xas_try_split_min_order(cur)
    while cur > 0:
        aligned = index & ~((1 << cur) - 1)
        old = xa_load(mapping.i_pages, aligned)
        assert old is not None
        xas = XaState(mapping.i_pages, index)
        xas_set_order(xas, index, split_order)
        xas_try_split(xas, old, cur)
        for i in range(0, 1 << cur, 1 << split_order):  # re-set each piece's swap entry
            piece = XaState(mapping.i_pages, aligned + i)
            xas_set_order(piece, aligned + i, split_order)
            xas_store(piece, swp_to_radix_entry(first + aligned - swap_index + i))
        cur, split_order = split_order, xas_try_split_min_order(split_order)
    return entry_order


def shmem_swapin_folio(inode: Inode, index: int, radswap: XaValue, sgp: SGP,
                       vma: VMA | None, fault: bool) -> Folio | int:
    """shmem_swapin_folio() - bring the swapped-out page ``index`` back into the page
    cache; the folio (locked, referenced) or -errno (-EEXIST: the entry changed, look
    again).

    Models: mm/shmem.c:shmem_swapin_folio() (v6.18): the swap cache first (a hit: no I/O,
    the whole cached folio, swap_update_readahead()); on a miss a SWP_SYNCHRONOUS_IO area
    is read directly at the entry's order (shmem_swap_alloc_folio()), any other through
    cluster readahead at order 0, and a fault counts ``pgmajfault``. A folio smaller than
    the entry splits the entry (shmem_split_large_entry()). Then
    shmem_add_to_page_cache(), ``info->swapped`` -= nr, and at once the swap goes: the
    slots' counts (swap_free_nr()) and the swap cache (or the direct read's
    SWAP_HAS_CACHE) are dropped and the folio is marked dirty.
    """
    from pyfolio.mm.swap_state import (
        swap_cache_del_folio,
        swap_cache_get_folio,
        swap_update_readahead,
    )
    from pyfolio.mm.swapfile import (
        get_swap_device,
        swap_entry_to_info,
        swap_free_nr,
        swapcache_clear,
    )

    m, mapping = inode.i_sb.m, inode.i_mapping
    index_entry = radix_to_swp_entry(radswap)
    si = get_swap_device(m, index_entry)
    order = shmem_confirm_swap(mapping, index, radswap)
    if si is None or order < 0:
        return -EEXIST if order < 0 else -EINVAL
    swap = index_entry + (index - (index & ~((1 << order) - 1)))
    skip_swapcache = False
    folio = swap_cache_get_folio(m, swap)
    if folio is None:
        if si.flags & SWP.SWP_SYNCHRONOUS_IO:
            got = shmem_swap_alloc_folio(inode, vma, index, index_entry, order)
            if not isinstance(got, Folio):
                return got
            folio, skip_swapcache = got, True
        else:
            folio = shmem_swapin_cluster(m, swap)
            if folio is None:
                return -ENOMEM
        if fault:
            m.vmstat["pgmajfault"] += 1
    else:
        swap_update_readahead(folio, None, 0)
    nr = folio_nr_pages(folio)
    if order > folio_order(folio) and shmem_split_large_entry(inode, index, radswap) < 0:
        return _swapin_failed(folio, skip_swapcache, False)
    index &= ~(nr - 1)
    swap &= ~(nr - 1)
    folio_lock(folio)
    if (not skip_swapcache and not m.mem.test(folio.pfn, PG.swapcache)) \
            or int(m.mem.swap[folio.pfn]) != swap \
            or shmem_add_to_page_cache(folio, mapping, index, swp_to_radix_entry(swap)):
        return _swapin_failed(folio, skip_swapcache, True)
    shmem_recalc_inode(inode, 0, -nr)
    if sgp == SGP.SGP_WRITE:
        m.mem.set(folio.pfn, PG.referenced)  # folio_mark_accessed()
    if skip_swapcache:
        m.mem.swap[folio.pfn] = 0
        area = swap_entry_to_info(m, swap)
        assert area is not None
        swapcache_clear(m, area, swap, nr)
    else:
        swap_cache_del_folio(folio)
    folio_mark_dirty(folio)
    swap_free_nr(m, swap, nr)
    m.trace.emit("shmem_swapin_folio", pfn=folio.pfn, index=index, order=folio_order(folio),
                 offset=swp_offset(swap), cached=not skip_swapcache)
    return folio


def _swapin_failed(folio: Folio, skip_swapcache: bool, locked: bool) -> int:
    """The failure exits of shmem_swapin_folio() for a raced entry: a direct read gives
    back its SWAP_HAS_CACHE (swapcache_clear()); the folio is unlocked and put; -EEXIST."""
    from pyfolio.mm.swapfile import swap_entry_to_info, swapcache_clear

    m = folio.m
    if skip_swapcache:
        swap = int(m.mem.swap[folio.pfn])
        area = swap_entry_to_info(m, swap)
        assert area is not None
        m.mem.swap[folio.pfn] = 0
        swapcache_clear(m, area, swap, folio_nr_pages(folio))
    if locked:
        folio_unlock(folio)
    folio_put(folio)
    return -EEXIST


# -- freeing, usage, swapoff ------------------------------------------------------------------
def shmem_free_swap(mapping: AddressSpace, index: int, radswap: XaValue) -> int:
    """shmem_free_swap() - truncation met the swap entry ``radswap`` at ``index``: erase it
    and drop its slots' counts (free_swap_and_cache_nr(): a swap-cache folio nothing else
    needs goes too); the pages freed (0 if the entry changed).

    Models: mm/shmem.c:shmem_free_swap() (v6.18).
    """
    from pyfolio.mm.swapfile import free_swap_and_cache_nr

    order = xa_get_order(mapping.i_pages, index)
    if xa_load(mapping.i_pages, index) != radswap:
        return 0
    xas = XaState(mapping.i_pages, index)
    xas_set_order(xas, index, order)
    xas_store(xas, None)
    free_swap_and_cache_nr(mapping.host.i_sb.m, radix_to_swp_entry(radswap), 1 << order)
    return 1 << order


def shmem_partial_swap_usage(mapping: AddressSpace, start: int, end: int) -> int:
    """shmem_partial_swap_usage() - bytes of swap the entries in pages [start, end) hold (a
    large entry counts whole).

    Models: mm/shmem.c:shmem_partial_swap_usage() (v6.18).
    """
    return sum(1 << order for _, order, e in xa_entries(mapping.i_pages, start, end)
               if isinstance(e, XaValue)) << PAGE_SHIFT


def shmem_swap_usage(vma: VMA) -> int:
    """shmem_swap_usage() - bytes of the shmem object mapped by ``vma`` that are in swap:
    ``info->swapped`` when the VMA maps it from offset 0 to at least its size, else the
    entries in the range it maps.

    Models: mm/shmem.c:shmem_swap_usage() (v6.18).
    """
    assert vma.vm_file is not None
    inode = vma.vm_file.f_inode
    swapped = SHMEM_I(inode).swapped
    if not swapped:
        return 0
    if not vma.vm_pgoff and vma.vm_end - vma.vm_start >= i_size_read(inode):
        return swapped << PAGE_SHIFT
    return shmem_partial_swap_usage(inode.i_mapping, vma.vm_pgoff,
                                    vma.vm_pgoff + ((vma.vm_end - vma.vm_start) >> PAGE_SHIFT))


def shmem_unuse(m: Machine, type_: int) -> int:
    """shmem_unuse() - swapoff: bring every page of swap area ``type_`` that a shmem page
    cache holds back into it, unmapped (shmem_swapin_folio() with SGP_CACHE and no VMA:
    a folio in the swap cache comes back whole, a synchronous area is read at the entry's
    order); 0 or -errno.

    Models: mm/shmem.c:shmem_unuse(), shmem_unuse_inode(), shmem_find_swap_entries() and
    shmem_unuse_swap_entries() (v6.18), over every shmem page cache in creation order
    (the kernel walks shmem_swaplist, the inodes in the order they first swapped).
    """
    for mapping in list(m.mappings.values()):
        if not shmem_mapping(mapping) or not SHMEM_I(mapping.host).swapped:
            continue
        inode = mapping.host
        for _ in range(4):
            todo = [(i, e) for i, _, e in xa_entries(mapping.i_pages)
                    if isinstance(e, XaValue) and swp_type(radix_to_swp_entry(e)) == type_]
            if not todo:
                break
            for index, e in todo:
                got = shmem_swapin_folio(inode, index, e, SGP.SGP_CACHE, None, False)
                if isinstance(got, Folio):
                    folio_unlock(got)
                    folio_put(got)
                elif got != -EEXIST:
                    return got
    return 0

