"""Swap areas: swapon, clusters and slot allocation, swap counts, freeing slots.

Models: mm/swapfile.c (v6.18, the swap-table "phase I" tree this machine runs): the
cluster allocator (cluster_alloc_swap_entry(), alloc_swap_scan_cluster(),
alloc_swap_scan_list(), the free / nonfull / frag / full cluster lists), folio_alloc_swap(),
the swap_map counts (__swap_duplicate(), swap_entries_put_map(), swap_entries_free()),
folio_free_swap(), free_swap_and_cache_nr(). swapon, swapoff and /proc/swaps are in
:mod:`pyfolio.mm.swapfile_swapon`.

What the allocator does, as measured on this machine (the issue 18 measurements):
on a fresh area slot 0 is the header, so cluster 0 starts on the nonfull list and serves
order 0 from slot 1; each large order takes a whole free cluster of its own, in index
order (the first THP gets slots 512..1023), and keeps filling it; a large folio's slots are
contiguous and naturally aligned. Only a block device (SWP_BLKDEV) hands out more than one
slot at a time: "Swapfile is not block device so unable to allocate large entries", so a
large folio bound for a swap file is split first (mm/vmscan.c). A rotating device uses one
cluster cursor per order (si->global_cluster); a solid-state one a per-CPU cursor (one CPU
here); the result is the same for one process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.include.linux.mm import (
    VM_WARN_ON_FOLIO,
    Folio,
    folio_mapped,
    folio_nr_pages,
    folio_order,
    folio_put,
    folio_test_locked,
)
from pyfolio.include.linux.swap import (
    CLUSTER_FLAG,
    COUNT_CONTINUED,
    SWAP_ENTRY_INVALID,
    SWAP_HAS_CACHE,
    SWAP_MAP_BAD,
    SWAP_MAP_MAX,
    SWAP_NR_ORDERS,
    SWAPFILE_CLUSTER,
    SWP,
    SwapClusterInfo,
    SwapInfoStruct,
    swap_count,
)
from pyfolio.include.linux.swapops import swp_entry, swp_offset, swp_type
from pyfolio.sim.errors import EEXIST, EINVAL, ENOENT, ENOMEM
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_ORDER

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = [
    "TTRS_ANYWAY", "TTRS_UNMAPPED", "TTRS_FULL", "swap_entry_to_info", "get_swap_device",
    "vm_swap_full", "get_nr_swap_pages", "total_swap_pages", "cluster_alloc_swap_entry",
    "alloc_swap_scan_cluster", "alloc_swap_scan_list", "swap_alloc_fast", "swap_alloc_slow",
    "folio_alloc_swap", "__swap_duplicate", "swap_duplicate", "swapcache_prepare",
    "swapcache_clear", "swap_entries_put_map_nr", "swap_entries_put_cache",
    "swap_entries_free", "swap_free_nr", "put_swap_folio", "__swap_count", "swp_swapcount",
    "swap_entry_swapped", "folio_swapped", "folio_swapcache_freeable", "folio_free_swap",
    "__try_to_reclaim_swap", "free_swap_and_cache_nr", "move_cluster", "free_cluster",
]

#: __try_to_reclaim_swap() flags: reclaim anyway / if unmapped / if swap is getting full
TTRS_ANYWAY, TTRS_UNMAPPED, TTRS_FULL = 0x1, 0x2, 0x4
_FREE, _NONFULL = CLUSTER_FLAG.CLUSTER_FLAG_FREE, CLUSTER_FLAG.CLUSTER_FLAG_NONFULL
_FRAG, _FULL = CLUSTER_FLAG.CLUSTER_FLAG_FRAG, CLUSTER_FLAG.CLUSTER_FLAG_FULL


# -- areas ----------------------------------------------------------------------------------
def swap_entry_to_info(m: Machine, entry: int) -> SwapInfoStruct | None:
    """swap_entry_to_info() - the swap area of ``entry`` (None for a free or special type).

    Models: mm/swapfile.c:swap_entry_to_info() / swap_type_to_info() (v6.18).
    """
    t = swp_type(entry)
    return m.swap_info[t] if t < len(m.swap_info) else None


def get_swap_device(m: Machine, entry: int) -> SwapInfoStruct | None:
    """get_swap_device() - the area of ``entry`` if it is live and the offset inside it.

    Models: mm/swapfile.c:get_swap_device() (v6.18; no percpu_ref: nothing runs
    concurrently here).
    """
    si = swap_entry_to_info(m, entry)
    if si is None or not si.flags & SWP.SWP_USED:
        return None
    return si if swp_offset(entry) < si.max else None


def total_swap_pages(m: Machine) -> int:
    """total_swap_pages: the usable slots of every active area."""
    return sum(si.pages for si in m.swap_info if si is not None and si.flags & SWP.SWP_WRITEOK)


def get_nr_swap_pages(m: Machine) -> int:
    """get_nr_swap_pages() - free slots over every active area (nr_swap_pages).

    Models: include/linux/swap.h:get_nr_swap_pages() (v6.18).
    """
    return sum(si.pages - si.inuse_pages for si in m.swap_info
               if si is not None and si.flags & SWP.SWP_WRITEOK)


def vm_swap_full(m: Machine) -> bool:
    """vm_swap_full() - more than half of all swap is in use.

    Models: mm/swap.h:vm_swap_full() (v6.18); also mem_cgroup_swap_full() here (no memcg
    swap limit is modelled).
    """
    return get_nr_swap_pages(m) * 2 < total_swap_pages(m)


# -- clusters -------------------------------------------------------------------------------
def _ci(si: SwapInfoStruct, offset: int) -> SwapClusterInfo:
    return si.cluster_info[offset // SWAPFILE_CLUSTER]


def move_cluster(si: SwapInfoStruct, idx: int, lst: list[int], flags: int) -> None:
    """move_cluster() - take cluster ``idx`` off the list it is on (if any) and add it to
    the tail of ``lst``, its flags saying which list that is.

    Models: mm/swapfile.c:move_cluster() (v6.18).
    """
    ci = si.cluster_info[idx]
    if ci.lst is not None:
        ci.lst.remove(idx)
    lst.append(idx)
    ci.lst, ci.flags = lst, flags


def _isolate(si: SwapInfoStruct, idx: int) -> None:
    ci = si.cluster_info[idx]
    if ci.lst is not None:
        ci.lst.remove(idx)
    ci.lst, ci.flags = None, CLUSTER_FLAG.CLUSTER_FLAG_NONE


def free_cluster(si: SwapInfoStruct, idx: int) -> None:
    """free_cluster() - an empty cluster back on the free list, serving no order.

    Models: mm/swapfile.c:free_cluster() and __free_cluster() (v6.18; no discard).
    """
    move_cluster(si, idx, si.free_clusters, _FREE)
    si.cluster_info[idx].order = 0


def _relocate_cluster(si: SwapInfoStruct, idx: int) -> None:
    """relocate_cluster(): after an allocation, to the free, frag or full list."""
    ci = si.cluster_info[idx]
    if not ci.count:
        if ci.flags != _FREE:
            free_cluster(si, idx)
    elif ci.count != SWAPFILE_CLUSTER:
        if ci.flags != _FRAG:
            move_cluster(si, idx, si.frag_clusters[ci.order], _FRAG)
    elif ci.flags != _FULL:
        move_cluster(si, idx, si.full_clusters, _FULL)


def _cluster_is_usable(ci: SwapClusterInfo, order: int) -> bool:
    """cluster_is_usable(): not being discarded or full; any order if empty, else its own."""
    if ci.flags > CLUSTER_FLAG.CLUSTER_FLAG_FRAG:
        return False
    return not order or ci.count == 0 or order == ci.order


def _cluster_scan_range(m: Machine, si: SwapInfoStruct, ci: SwapClusterInfo, start: int,
                        nr: int) -> tuple[bool, bool]:
    """cluster_scan_range(): (all free, some only held by the swap cache and swap full)."""
    if ci.count == 0:
        return True, False
    codes = si.swap_map[start: start + nr]
    if ((codes != 0) & (codes != SWAP_HAS_CACHE)).any():
        return False, False
    cached = bool((codes == SWAP_HAS_CACHE).any())
    if cached and not vm_swap_full(m):
        return False, False
    return True, cached


def _cluster_alloc_range(si: SwapInfoStruct, ci: SwapClusterInfo, start: int, usage: int,
                         order: int) -> bool:
    """cluster_alloc_range(): claim 2^order slots; the first allocation in an empty
    cluster makes it that order's."""
    if not si.flags & SWP.SWP_WRITEOK:
        return False
    nr = 1 << order
    if ci.count == 0:
        ci.order = order
    si.swap_map[start: start + nr] = usage
    si.inuse_pages += nr  # swap_range_alloc(): swap_usage_add()
    ci.count += nr
    return True


def alloc_swap_scan_cluster(m: Machine, si: SwapInfoStruct, idx: int, offset: int, order: int,
                            usage: int) -> int:
    """alloc_swap_scan_cluster() - the first free naturally aligned run of 2^order slots
    from ``offset`` in cluster ``idx``; records where the next one would start (the
    per-CPU cursor of a solid-state area, else si->global_cluster->next[order]). 0 if
    none.

    Models: mm/swapfile.c:alloc_swap_scan_cluster() (v6.18).
    """
    ci = si.cluster_info[idx]
    nr = 1 << order
    start = idx * SWAPFILE_CLUSTER
    end = min(start + SWAPFILE_CLUSTER, si.max)
    nxt = found = SWAP_ENTRY_INVALID
    if not (end < nr or ci.count + nr > SWAPFILE_CLUSTER):
        end -= nr
        while offset <= end:
            ok, need_reclaim = _cluster_scan_range(m, si, ci, offset, nr)
            if not ok:
                offset += nr
                continue
            if need_reclaim:
                ok = _cluster_reclaim_range(m, si, offset, offset + nr)
                if not _cluster_is_usable(ci, order):
                    break
                if ci.count == 0:
                    offset = start
                if not ok:
                    offset += nr
                    continue
            if not _cluster_alloc_range(si, ci, offset, usage, order):
                break
            found = offset
            offset += nr
            if ci.count < SWAPFILE_CLUSTER and offset <= end:
                nxt = offset
            break
    _relocate_cluster(si, idx)
    if si.flags & SWP.SWP_SOLIDSTATE:
        m.percpu_swap_cluster_offset[order] = nxt
        m.percpu_swap_cluster_si[order] = si.type
    else:
        si.global_cluster_next[order] = nxt
    return found


def _cluster_reclaim_range(m: Machine, si: SwapInfoStruct, start: int, end: int) -> bool:
    """cluster_reclaim_range(): drop swap-cache-only folios in [start, end) (swap full)."""
    offset = start
    while offset < end:
        code = int(si.swap_map[offset])
        if code == 0:
            offset += 1
        elif code == SWAP_HAS_CACHE:
            got = __try_to_reclaim_swap(m, si, offset, TTRS_ANYWAY)
            if got <= 0:
                break
            offset += got
        else:
            break
    return not si.swap_map[start:end].any()


def alloc_swap_scan_list(m: Machine, si: SwapInfoStruct, lst: list[int], order: int,
                         usage: int, scan_all: bool) -> int:
    """alloc_swap_scan_list() - take clusters off the head of ``lst`` (isolate_lock_cluster())
    and try each; once unless ``scan_all``.

    Models: mm/swapfile.c:alloc_swap_scan_list() (v6.18).
    """
    found = SWAP_ENTRY_INVALID
    while lst:
        idx = lst[0]
        _isolate(si, idx)
        found = alloc_swap_scan_cluster(m, si, idx, idx * SWAPFILE_CLUSTER, order, usage)
        if found or not scan_all:
            break
    return found


def cluster_alloc_swap_entry(m: Machine, si: SwapInfoStruct, order: int, usage: int) -> int:
    """cluster_alloc_swap_entry() - the first slot of 2^order free slots in ``si``, or 0.

    Models: mm/swapfile.c:cluster_alloc_swap_entry() (v6.18): a swap file (no
    SWP_BLKDEV) gives no large entries; a rotating area first tries the cluster its
    cursor for this order points into; then a nonfull cluster of this order, then a free
    one, then (swap more than half full) reclaims full clusters, then one fragmented
    cluster of this order; order 0 finally steals from other orders' clusters.
    """
    if order and not si.flags & SWP.SWP_BLKDEV:
        return 0  # "Swapfile is not block device so unable to allocate large entries"
    found = SWAP_ENTRY_INVALID
    if not si.flags & SWP.SWP_SOLIDSTATE:
        offset = si.global_cluster_next[order]
        if offset != SWAP_ENTRY_INVALID:
            idx = offset // SWAPFILE_CLUSTER
            ci = si.cluster_info[idx]
            if _cluster_is_usable(ci, order):
                if ci.count == 0:
                    offset = idx * SWAPFILE_CLUSTER
                if ci.lst is not None:  # off its list while the cursor allocates in it
                    _isolate(si, idx)
                found = alloc_swap_scan_cluster(m, si, idx, offset, order, usage)
            if found:
                return found
    if order < HPAGE_PMD_ORDER:
        found = alloc_swap_scan_list(m, si, si.nonfull_clusters[order], order, usage, True)
        if found:
            return found
    found = alloc_swap_scan_list(m, si, si.free_clusters, order, usage, False)
    if found:
        return found
    if vm_swap_full(m):
        _swap_reclaim_full_clusters(m, si)
    if order < HPAGE_PMD_ORDER:
        found = alloc_swap_scan_list(m, si, si.frag_clusters[order], order, usage, False)
        if found or order:
            return found
    if order:
        return found
    for o in range(1, SWAP_NR_ORDERS):  # order 0 stealing from higher order
        found = alloc_swap_scan_list(m, si, si.frag_clusters[o], 0, usage, True) \
            or alloc_swap_scan_list(m, si, si.nonfull_clusters[o], 0, usage, True)
        if found:
            return found
    return found


def _swap_reclaim_full_clusters(m: Machine, si: SwapInfoStruct) -> None:
    """swap_reclaim_full_clusters(si, false): free swap-cache-only slots of one full
    cluster."""
    if not si.full_clusters:
        return
    idx = si.full_clusters[0]
    _isolate(si, idx)
    offset, end = idx * SWAPFILE_CLUSTER, min(si.max, (idx + 1) * SWAPFILE_CLUSTER)
    while offset < end:
        if int(si.swap_map[offset]) == SWAP_HAS_CACHE:
            got = __try_to_reclaim_swap(m, si, offset, TTRS_ANYWAY)
            if got:
                offset += abs(got)
                continue
        offset += 1
    if si.cluster_info[idx].flags == CLUSTER_FLAG.CLUSTER_FLAG_NONE:
        _relocate_cluster(si, idx)


def _available(m: Machine) -> list[SwapInfoStruct]:
    """swap_avail_heads: the writable areas that are not full, highest priority first."""
    return sorted((si for si in m.swap_info if si is not None and si.flags & SWP.SWP_WRITEOK
                   and si.inuse_pages < si.pages), key=lambda si: -si.prio)


def swap_alloc_fast(m: Machine, order: int) -> int:
    """swap_alloc_fast() - allocate from this CPU's cluster for ``order`` (solid-state
    areas set it); the swp_entry_t or 0.

    Models: mm/swapfile.c:swap_alloc_fast() (v6.18).
    """
    t, offset = m.percpu_swap_cluster_si[order], m.percpu_swap_cluster_offset[order]
    if t < 0 or not offset or t >= len(m.swap_info) or m.swap_info[t] is None:
        return 0
    si = m.swap_info[t]
    assert si is not None
    idx = offset // SWAPFILE_CLUSTER
    ci = si.cluster_info[idx]
    if not _cluster_is_usable(ci, order):
        return 0
    if ci.count == 0:
        offset = idx * SWAPFILE_CLUSTER
    if ci.lst is not None:
        _isolate(si, idx)
    found = alloc_swap_scan_cluster(m, si, idx, offset, order, SWAP_HAS_CACHE)
    return swp_entry(si.type, found) if found else 0


def swap_alloc_slow(m: Machine, order: int) -> int:
    """swap_alloc_slow() - try the available areas in priority order; the swp_entry_t or 0
    (a large order gives up after the first area).

    Models: mm/swapfile.c:swap_alloc_slow() (v6.18; equal priorities are not rotated).
    """
    for si in _available(m):
        offset = cluster_alloc_swap_entry(m, si, order, SWAP_HAS_CACHE)
        if offset:
            return swp_entry(si.type, offset)
        if order:
            return 0
    return 0


def folio_alloc_swap(folio: Folio) -> int:
    """folio_alloc_swap() - give a locked folio 2^order slots and add it to the swap cache.

    Models: mm/swapfile.c:folio_alloc_swap() (v6.18): swap_alloc_fast(), else
    swap_alloc_slow(); on success swap_cache_add_folio() (one swap-cache reference per
    page, PG_swapcache, folio->swap). Returns 0, or -ENOMEM when no area has the slots
    (the caller, shrink_folio_list(), then splits a large folio and tries again).
    """
    from pyfolio.mm.swap_state import swap_cache_add_folio

    m, order = folio.m, folio_order(folio)
    VM_WARN_ON_FOLIO(not folio_test_locked(folio), folio, "folio_alloc_swap of an unlocked folio")
    VM_WARN_ON_FOLIO(not m.mem.test(folio.pfn, PG.uptodate), folio, "not uptodate")
    entry = swap_alloc_fast(m, order) or swap_alloc_slow(m, order)
    if not entry:
        m.trace.emit("folio_alloc_swap", changes={"entry": None}, pfn=folio.pfn, order=order)
        return -ENOMEM
    swap_cache_add_folio(folio, entry)
    m.trace.emit("folio_alloc_swap", changes={"type": swp_type(entry),
                                              "offset": swp_offset(entry)},
                 pfn=folio.pfn, order=order)
    return 0


# -- swap counts ----------------------------------------------------------------------------
def __swap_duplicate(m: Machine, entry: int, usage: int, nr: int) -> int:
    """__swap_duplicate() - add ``usage`` (1: a page-table reference; SWAP_HAS_CACHE: the
    swap cache) to ``nr`` slots; 0 or -errno, nothing changed on failure.

    Models: mm/swapfile.c:__swap_duplicate() (v6.18): a free slot gives -ENOENT, a second
    SWAP_HAS_CACHE -EEXIST. Simplification: no count continuation: a count at
    SWAP_MAP_MAX gives -ENOMEM (the kernel would add a continuation page).
    """
    si = swap_entry_to_info(m, entry)
    if si is None:
        return -EINVAL
    off = swp_offset(entry)
    codes = si.swap_map[off: off + nr].astype(np.int64)
    counts, cached = codes & ~SWAP_HAS_CACHE, (codes & SWAP_HAS_CACHE) != 0
    if (counts == SWAP_MAP_BAD).any() or ((counts == 0) & ~cached).any():
        return -ENOENT
    if usage == SWAP_HAS_CACHE:
        if cached.any():
            return -EEXIST
        si.swap_map[off: off + nr] = codes | SWAP_HAS_CACHE
        return 0
    if ((counts & ~COUNT_CONTINUED) >= SWAP_MAP_MAX).any():
        return -ENOMEM
    si.swap_map[off: off + nr] = codes + usage
    return 0


def swap_duplicate(m: Machine, entry: int) -> int:
    """swap_duplicate() - one more page-table reference to ``entry``'s slot.

    Models: mm/swapfile.c:swap_duplicate() (v6.18; no add_swap_count_continuation()).
    """
    return __swap_duplicate(m, entry, 1, 1)


def swapcache_prepare(m: Machine, entry: int, nr: int) -> int:
    """swapcache_prepare() - mark ``nr`` slots SWAP_HAS_CACHE before a folio for them is
    read (or bypasses the swap cache); -EEXIST if one already has it.

    Models: mm/swapfile.c:swapcache_prepare() (v6.18).
    """
    return __swap_duplicate(m, entry, SWAP_HAS_CACHE, nr)


def swapcache_clear(m: Machine, si: SwapInfoStruct, entry: int, nr: int) -> None:
    """swapcache_clear() - drop the SWAP_HAS_CACHE swapcache_prepare() set (a direct
    swap-in that skipped the swap cache); slots left with nothing are freed.

    Models: mm/swapfile.c:swapcache_clear() (v6.18).
    """
    swap_entries_put_cache(m, si, entry, nr)


def swap_entries_free(m: Machine, si: SwapInfoStruct, entry: int, nr: int) -> None:
    """swap_entries_free() - the last reference to ``nr`` slots (one cluster) is gone: free
    them, clear their zeromap bits, and move the cluster to the nonfull or free list.

    Models: mm/swapfile.c:swap_entries_free() and swap_range_free() (v6.18).
    """
    off = swp_offset(entry)
    idx = off // SWAPFILE_CLUSTER
    ci = si.cluster_info[idx]
    VM_WARN_ON_FOLIO(ci.count < nr, Folio(m, 0), "cluster count below the slots freed")
    ci.count -= nr
    si.swap_map[off: off + nr] = 0
    si.zeromap[off: off + nr] = False
    si.inuse_pages -= nr  # swap_usage_sub()
    if not ci.count:
        free_cluster(si, idx)
    elif ci.flags != _NONFULL:  # partialfree_cluster()
        move_cluster(si, idx, si.nonfull_clusters[ci.order], _NONFULL)


def _put_locked(m: Machine, si: SwapInfoStruct, off: int, usage: int) -> int:
    """swap_entry_put_locked(): drop one reference (a count, or the cache); the new code."""
    code = int(si.swap_map[off])
    has_cache, count = code & SWAP_HAS_CACHE, code & ~SWAP_HAS_CACHE
    if usage == SWAP_HAS_CACHE:
        has_cache = 0
    else:
        count -= 1
    code = count | has_cache
    if code:
        si.swap_map[off] = code
    else:
        swap_entries_free(m, si, swp_entry(si.type, off), 1)
    return code


def swap_entries_put_map_nr(m: Machine, si: SwapInfoStruct, entry: int, nr: int) -> bool:
    """swap_entries_put_map_nr() - drop one page-table reference from each of ``nr`` slots;
    True if any is then held only by the swap cache.

    Models: mm/swapfile.c:swap_entries_put_map_nr() and swap_entries_put_map() (v6.18):
    a whole run of count-1 slots without the cache is freed at once.
    """
    off, has_cache = swp_offset(entry), False
    for i in range(nr):
        if _put_locked(m, si, off + i, 1) == SWAP_HAS_CACHE:
            has_cache = True
    return has_cache


def swap_entries_put_cache(m: Machine, si: SwapInfoStruct, entry: int, nr: int) -> None:
    """swap_entries_put_cache() - drop the swap cache's SWAP_HAS_CACHE from ``nr`` slots.

    Models: mm/swapfile.c:swap_entries_put_cache() (v6.18).
    """
    off = swp_offset(entry)
    for i in range(nr):
        _put_locked(m, si, off + i, SWAP_HAS_CACHE)


def swap_free_nr(m: Machine, entry: int, nr: int) -> None:
    """swap_free_nr() - drop one page-table reference from each of ``nr`` slots (a
    swap-in mapped them).

    Models: mm/swapfile.c:swap_free_nr() (v6.18).
    """
    si = swap_entry_to_info(m, entry)
    if si is not None:
        swap_entries_put_map_nr(m, si, entry, nr)


def put_swap_folio(folio: Folio, entry: int) -> None:
    """put_swap_folio() - the swap cache let go of the folio's slots.

    Models: mm/swapfile.c:put_swap_folio() (v6.18).
    """
    si = swap_entry_to_info(folio.m, entry)
    if si is not None:
        swap_entries_put_cache(folio.m, si, entry, folio_nr_pages(folio))


def __swap_count(m: Machine, entry: int) -> int:
    """__swap_count() - the page-table references to ``entry``'s slot.

    Models: mm/swapfile.c:__swap_count() (v6.18).
    """
    si = swap_entry_to_info(m, entry)
    return swap_count(int(si.swap_map[swp_offset(entry)])) if si is not None else 0


def swp_swapcount(m: Machine, entry: int) -> int:
    """swp_swapcount() - the number of page tables holding ``entry``'s slot (what smaps
    divides SwapPss by); 0 for a slot of no active area.

    Models: mm/swapfile.c:swp_swapcount() (v6.18; no count continuations here, so it is
    swap_count() of the slot's swap_map byte).
    """
    return __swap_count(m, entry)


def swap_entry_swapped(m: Machine, si: SwapInfoStruct, entry: int) -> bool:
    """swap_entry_swapped() - does any page table still reference the slot?

    Models: mm/swapfile.c:swap_entry_swapped() (v6.18).
    """
    return bool(swap_count(int(si.swap_map[swp_offset(entry)])))


def folio_swapped(folio: Folio) -> bool:
    """folio_swapped() - does any page table still reference one of the folio's slots?

    Models: mm/swapfile.c:folio_swapped() and swap_page_trans_huge_swapped() (v6.18).
    """
    m = folio.m
    entry = int(m.mem.swap[folio.pfn])
    si = swap_entry_to_info(m, entry)
    if si is None:
        return False
    off, nr = swp_offset(entry), folio_nr_pages(folio)
    codes = si.swap_map[off: off + nr].astype(np.int64) & ~SWAP_HAS_CACHE
    return bool(codes.any())


def folio_swapcache_freeable(folio: Folio) -> bool:
    """folio_swapcache_freeable() - in the swap cache and not under writeback.

    Models: mm/swapfile.c:folio_swapcache_freeable() (v6.18; no hibernation).
    """
    mem = folio.m.mem
    return mem.test(folio.pfn, PG.swapcache) and not mem.test(folio.pfn, PG.writeback)


def folio_free_swap(folio: Folio) -> bool:
    """folio_free_swap() - drop the folio's slots and its swap-cache place, if no page
    table references them any more; the folio is marked dirty (its only copy is now in
    memory).

    Models: mm/swapfile.c:folio_free_swap() (v6.18).
    """
    from pyfolio.mm.swap_state import swap_cache_del_folio

    if not folio_swapcache_freeable(folio) or folio_swapped(folio):
        return False
    swap_cache_del_folio(folio)
    folio.m.mem.set(folio.pfn, PG.dirty)  # folio_set_dirty()
    return True


def __try_to_reclaim_swap(m: Machine, si: SwapInfoStruct, offset: int, flags: int) -> int:
    """__try_to_reclaim_swap() - free the swap-cache folio at ``offset`` if ``flags`` say
    so and only the cache holds its slots: +nr_pages if freed, -nr_pages if not, 0 if
    there is no folio.

    Models: mm/swapfile.c:__try_to_reclaim_swap() (v6.18).
    """
    from pyfolio.mm.swap_state import swap_cache_del_folio, swap_cache_get_folio

    folio = swap_cache_get_folio(m, swp_entry(si.type, offset))
    if folio is None:
        return 0
    nr = folio_nr_pages(folio)
    ret = -nr
    if not folio_test_locked(folio):  # folio_trylock()
        m.mem.set(folio.pfn, PG.locked)
        need = (flags & TTRS_ANYWAY or (flags & TTRS_UNMAPPED and not folio_mapped(folio))
                or (flags & TTRS_FULL and vm_swap_full(m)))
        first = swp_offset(int(m.mem.swap[folio.pfn]))
        if need and folio_swapcache_freeable(folio) \
                and (si.swap_map[first: first + nr] == SWAP_HAS_CACHE).all():
            swap_cache_del_folio(folio)
            m.mem.set(folio.pfn, PG.dirty)  # folio_set_dirty()
            ret = nr
        m.mem.clear(folio.pfn, PG.locked)
    folio_put(folio)
    return ret


def free_swap_and_cache_nr(m: Machine, entry: int, nr: int) -> None:
    """free_swap_and_cache_nr() - drop one page-table reference from ``nr`` slots (their
    PTEs are being zapped); folios left held only by the swap cache and unmapped (or swap
    full) are freed.

    Models: mm/swapfile.c:free_swap_and_cache_nr() (v6.18).
    """
    si = get_swap_device(m, entry)
    if si is None:
        return
    start = swp_offset(entry)
    if not swap_entries_put_map_nr(m, si, entry, nr):
        return
    offset = start
    while offset < start + nr:
        step = 1
        if int(si.swap_map[offset]) == SWAP_HAS_CACHE:
            got = __try_to_reclaim_swap(m, si, offset, TTRS_UNMAPPED | TTRS_FULL)
            step = abs(got) or 1
            step = -(-(offset + 1) // step) * step - offset  # ALIGN(offset + 1, nr) - offset
        offset += step
