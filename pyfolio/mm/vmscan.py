"""Page reclaim of anonymous and shmem folios: shrink_folio_list(), reclaim_pages(), and the
LRU scan.

Models: mm/vmscan.c (v6.18): shrink_folio_list() for anonymous folios (swap-backed ones,
and lazy-free ones: a MADV_FREE'd folio still clean is discarded, ``pglazyfreed``) and
shmem folios (their PTEs cleared by the file try_to_unmap(), then writeout() hands them to
shmem_writeout(): :mod:`pyfolio.mm.shmem_swap`), folio_check_references() with
folio_referenced(), writeout(), pageout(), __remove_mapping(),
reclaim_folio_list() and reclaim_pages() (MADV_PAGEOUT), isolate_lru_folios(),
shrink_inactive_list(), shrink_active_list(), inactive_is_low(), and the priority loop of
do_try_to_free_pages() as try_to_free_mem_cgroup_pages() runs it.

What a folio meets in shrink_folio_list(), as the kernel here does it
(the issue 18 measurements): a large folio that cannot be split (an extra
reference) is activated; a partially mapped one is split first; folio_alloc_swap() gives it
slots, and when it cannot (a swap file never hands out more than one slot, a block device
has no free run) the folio is split to order 0 (``thp_swpout_fallback`` for a PMD-sized
folio, the size's ``swpout_fallback``) and its head gets one slot; the tails join the list
being shrunk, last page first. Then try_to_unmap() writes swap entries, pageout() writes the
folio (one bio), and the folio is freed if the write already finished (a synchronous
device) or kept in the swap cache until a later pass finds it clean. Folios that fail are
put back on the LRU (activated where the kernel activates them).

Simplifications: one node, the root memory cgroup, anonymous lists only (no file LRU: the
anon/file balance of get_scan_count() is not modelled, and the lazy-free folios that sit
on the file list are reached by MADV_PAGEOUT only; page-cache folios of other files are
kept), no MGLRU, no demotion, no mlock; writeback completes when the pass has put its
folios back (see :func:`pyfolio.mm.page_io.end_swap_bio_writes`). The LRU scan is checked
against the measured facts, not compared step by step with the kernel (its timing depends
on per-CPU batches and I/O completion).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import pmd_leaf, pte_mkold, pte_young
from pyfolio.include.linux.huge_mm import MTHP_STAT, count_mthp_stat
from pyfolio.include.linux.mm import (
    Folio,
    folio_mapped,
    folio_maybe_dma_pinned,
    folio_nr_pages,
    folio_order,
    folio_ref_count,
    folio_test_anon,
    folio_test_large,
    folio_test_locked,
    folio_test_swapbacked,
    folio_unlock,
)
from pyfolio.mm.migrate import folio_isolate_lru, folio_putback_lru, ref_drop
from pyfolio.mm.page_io import end_swap_bio_writes, swap_writeout
from pyfolio.mm.rmap import rmap_walk
from pyfolio.mm.rmap_unmap import TTU_BATCH_FLUSH, TTU_SYNC, try_to_unmap
from pyfolio.mm.swap import LRU_ACTIVE_ANON, LRU_INACTIVE_ANON, lru_folios
from pyfolio.mm.swap_state import __swap_cache_del_folio
from pyfolio.mm.swapfile import folio_alloc_swap, folio_free_swap, put_swap_folio, vm_swap_full
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["FOLIOREF", "ReclaimStat", "folio_referenced", "folio_check_references",
           "writeout", "pageout", "__remove_mapping", "shrink_folio_list", "reclaim_folio_list",
           "reclaim_pages", "isolate_lru_folios", "shrink_inactive_list",
           "shrink_active_list", "inactive_is_low", "try_to_free_mem_cgroup_pages",
           "DEF_PRIORITY"]

#: include/linux/mmzone.h: the first (gentlest) reclaim priority: scan size >> 12
DEF_PRIORITY = 12
SWAP_CLUSTER_MAX = 32


class FOLIOREF(enum.IntEnum):
    """enum folio_references (mm/vmscan.c)."""

    FOLIOREF_RECLAIM = 0
    FOLIOREF_RECLAIM_CLEAN = 1
    FOLIOREF_KEEP = 2
    FOLIOREF_ACTIVATE = 3


class PAGE(enum.IntEnum):
    """pageout_t (mm/vmscan.c): what pageout() did."""

    PAGE_KEEP = 0
    PAGE_ACTIVATE = 1
    PAGE_SUCCESS = 2
    PAGE_CLEAN = 3


@dataclass
class ReclaimStat:
    """struct reclaim_stat (include/linux/vmstat.h), the fields pyfolio keeps, plus what
    the pass wrote and freed."""

    nr_scanned: int = 0
    nr_reclaimed: int = 0
    nr_ref_keep: int = 0
    nr_unmap_fail: int = 0
    nr_lazyfree_fail: int = 0
    nr_activate: int = 0
    nr_pageout: int = 0
    nr_writeback: int = 0
    freed: list[int] = field(default_factory=list)  # head PFNs freed, in order


def folio_referenced(folio: Folio) -> int:
    """folio_referenced() - how many of the folio's mappings were young; the young bits
    are cleared (ptep_clear_flush_young() / pmdp_clear_flush_young()).

    Models: mm/rmap.c:folio_referenced() and folio_referenced_one() (v6.18): 0 for an
    unmapped folio; one per young PTE or PMD mapping. No VM_LOCKED, no MGLRU.
    """
    if not folio_mapped(folio):
        return 0
    m, referenced = folio.m, 0
    from pyfolio.mm.memory import pmd_slot, pte_slot

    for mp in rmap_walk(folio):
        if mp.kind not in ("page", "huge"):
            continue
        slot = pmd_slot(mp.mm, mp.address) if mp.level == "pmd" else pte_slot(mp.mm, mp.address)
        assert slot is not None
        raw = int(m.pgtables[slot[0]][slot[1]])
        if pte_young(raw) and (mp.level == "pte" or pmd_leaf(raw)):
            m.pgtables[slot[0]][slot[1]] = pte_mkold(raw)
            m.trace.cost("tlb_flushes")
            referenced += 1
    return referenced


def folio_check_references(folio: Folio) -> FOLIOREF:
    """folio_check_references() - reclaim, keep or activate a folio by its references.

    Models: mm/vmscan.c:folio_check_references() (v6.18): a folio used through a page
    table since the last look is marked PG_referenced and kept for another trip round the
    inactive list ("all mapped folios start out with page table references from the
    instantiating fault"); used again (already PG_referenced, or by more than one
    mapping) it is activated; not used, it is reclaimed.
    """
    referenced_ptes = folio_referenced(folio)
    mem = folio.m.mem
    referenced_folio = mem.test(folio.pfn, PG.referenced)
    mem.clear(folio.pfn, PG.referenced)  # folio_test_clear_referenced()
    if referenced_ptes:
        mem.set(folio.pfn, PG.referenced)
        if referenced_folio or referenced_ptes > 1:
            return FOLIOREF.FOLIOREF_ACTIVATE
        return FOLIOREF.FOLIOREF_KEEP
    return FOLIOREF.FOLIOREF_RECLAIM


def writeout(folio: Folio, folio_list: list[Folio] | None) -> PAGE:
    """writeout() - hand a dirty folio to shmem_writeout() (a shmem folio: its split
    pieces join ``folio_list``) or swap_writeout() (an anon swap-cache folio);
    PAGE_ACTIVATE if the writer asked for it (AOP_WRITEPAGE_ACTIVATE), else PAGE_SUCCESS.

    Models: mm/vmscan.c:writeout() (v6.18).
    """
    from pyfolio.include.linux.pagemap import folio_mapping
    from pyfolio.mm.shmem import shmem_mapping
    from pyfolio.mm.shmem_swap import AOP_WRITEPAGE_ACTIVATE, shmem_writeout

    mem = folio.m.mem
    mem.set(folio.pfn, PG.reclaim)  # folio_set_reclaim()
    if not folio_test_anon(folio) and shmem_mapping(folio_mapping(folio)):
        res = shmem_writeout(folio, folio_list)
    else:
        res = swap_writeout(folio)
    if res == AOP_WRITEPAGE_ACTIVATE:
        mem.clear(folio.pfn, PG.reclaim)
        return PAGE.PAGE_ACTIVATE
    if not mem.test(folio.pfn, PG.writeback):
        mem.clear(folio.pfn, PG.reclaim)  # "synchronous write?"
    return PAGE.PAGE_SUCCESS


def pageout(folio: Folio, folio_list: list[Folio] | None = None) -> PAGE:
    """pageout() - write a dirty swap-cache or shmem folio out (writeout()).

    Models: mm/vmscan.c:pageout() (v6.18), for anonymous and shmem folios: PAGE_KEEP
    while references other than the caller's and the cache's (swap cache or page cache:
    one per page) exist (is_page_cache_freeable()); PAGE_CLEAN if it was not dirty; else
    the write (PAGE_SUCCESS, or PAGE_ACTIVATE when shmem_writeout() redirtied it).
    """
    mem = folio.m.mem
    if folio_ref_count(folio) != 1 + folio_nr_pages(folio):  # is_page_cache_freeable()
        return PAGE.PAGE_KEEP
    if not mem.test(folio.pfn, PG.dirty):  # folio_clear_dirty_for_io()
        return PAGE.PAGE_CLEAN
    mem.clear(folio.pfn, PG.dirty)
    return writeout(folio, folio_list)


def __remove_mapping(folio: Folio) -> bool:
    """__remove_mapping() - take an unmapped, clean folio out of the swap cache or the page
    cache when only the caller and the cache hold it (the refcount freeze at 1 + nr_pages);
    a swap-cache folio's slots lose SWAP_HAS_CACHE (put_swap_folio()). The caller's
    reference is left.

    Models: mm/vmscan.c:__remove_mapping() (v6.18; no workingset shadow). A clean shmem
    folio (a hole read through a mapping, never written) is simply dropped from its page
    cache, as 6.18.44 does: its contents are zeroes. The inode's charge is recalculated
    at once (the kernel's shmem_recalc_inode() catches up at the next use).
    """
    from pyfolio.include.linux.pagemap import folio_mapping
    from pyfolio.mm.filemap import __filemap_remove_folio

    nr = folio_nr_pages(folio)
    mem = folio.m.mem
    if folio_ref_count(folio) != 1 + nr or mem.test(folio.pfn, PG.dirty):
        return False  # cannot_free
    if mem.test(folio.pfn, PG.swapcache):
        entry = int(mem.swap[folio.pfn])
        __swap_cache_del_folio(folio, entry)
        mem._refcount[folio.pfn] -= nr
        put_swap_folio(folio, entry)
    elif (mapping := folio_mapping(folio)) is not None:
        from pyfolio.mm.shmem import shmem_recalc_inode

        __filemap_remove_folio(folio)
        mem._refcount[folio.pfn] -= nr
        shmem_recalc_inode(mapping.host, 0, 0)
    return True


def _split_to_list(folio: Folio, folio_list: list[Folio]) -> int:
    """split_folio_to_list(folio, folio_list): 0 or -errno; the tails join the list."""
    from pyfolio.mm.huge_memory_split import split_folio_to_list

    return split_folio_to_list(folio, folio_list)


def _swap_anon_folio(folio: Folio, folio_list: list[Folio], stat: ReclaimStat) -> str:
    """The anon, swap-backed, not-yet-swap-cache branch of shrink_folio_list(): "" to go
    on, or the label to jump to."""
    m = folio.m
    if folio_maybe_dma_pinned(folio):
        return "keep_locked"
    if folio_test_large(folio):
        from pyfolio.mm.huge_memory_split import can_split_folio

        if not can_split_folio(folio, 1)[0]:
            return "activate_locked"  # "cannot split folio, skip it"
        if folio.pfn in m.deferred_split_queue and m.mem.test(folio.pfn, PG.partially_mapped) \
                and _split_to_list(folio, folio_list):
            return "activate_locked"
    if folio_alloc_swap(folio):
        order, nr_pages = folio_order(folio), folio_nr_pages(folio)
        if not folio_test_large(folio):
            return "activate_locked_split"
        if _split_to_list(folio, folio_list):  # "Fallback to swap normal pages"
            return "activate_locked"
        if nr_pages >= HPAGE_PMD_NR:
            m.vmstat["thp_swpout_fallback"] += 1
        count_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_SWPOUT_FALLBACK)
        m.trace.emit("thp_swpout_fallback", pfn=folio.pfn, order=order)
        if folio_alloc_swap(folio):
            return "activate_locked_split"
    m.mem.set(folio.pfn, PG.dirty)  # folio_mark_dirty(): the only copy will be on swap
    return ""


def _is_shmem(folio: Folio) -> bool:
    """A folio of a shmem page cache (shmem_mapping(folio_mapping())), not yet written."""
    from pyfolio.include.linux.pagemap import folio_mapping
    from pyfolio.mm.shmem import shmem_mapping

    return not folio_test_anon(folio) and not folio.m.mem.test(folio.pfn, PG.swapcache) \
        and shmem_mapping(folio_mapping(folio))


def shrink_folio_list(m: Machine, folio_list: list[Folio], ignore_references: bool,
                      stat: ReclaimStat) -> list[Folio]:
    """shrink_folio_list() - try to free each isolated folio of ``folio_list`` (taken from
    its end, as lru_to_folio() takes the list's tail); the folios it could not free.

    Models: mm/vmscan.c:shrink_folio_list() (v6.18) for anonymous folios (see the module
    docstring). ``stat`` collects what the pass did; freed pages are ``nr_reclaimed``.
    """
    ret: list[Folio] = []
    while folio_list:
        folio = folio_list.pop()
        if folio_test_locked(folio):
            ret.append(folio)  # folio_trylock() failed: keep
            continue
        m.mem.set(folio.pfn, PG.locked)
        nr_pages = folio_nr_pages(folio)
        stat.nr_scanned += nr_pages
        label = _shrink_one(folio, folio_list, ignore_references, stat)
        if nr_pages > 1 and not folio_test_large(folio):  # split: the pieces count alone
            stat.nr_scanned -= nr_pages - 1
            nr_pages = 1
        if label == "free_it":
            stat.nr_reclaimed += nr_pages
            stat.freed.append(folio.pfn)
            m.mem.clear(folio.pfn, PG.locked)
            ref_drop(folio)  # the isolation reference, the last one: the folio is freed
            continue
        if label == "activate_locked_split" and nr_pages > 1:
            stat.nr_scanned -= nr_pages - 1
        if label.startswith("activate_locked"):
            if m.mem.test(folio.pfn, PG.swapcache) and vm_swap_full(m):
                folio_free_swap(folio)  # "Not a candidate for swapping, so reclaim swap"
            m.mem.set(folio.pfn, PG.active)
            stat.nr_activate += folio_nr_pages(folio)
        if label != "keep":
            folio_unlock(folio)
        ret.append(folio)
    m.vmstat["pgactivate"] += stat.nr_activate  # count_vm_events(PGACTIVATE, pgactivate)
    return ret


def _shrink_one(folio: Folio, folio_list: list[Folio], ignore_references: bool,
                stat: ReclaimStat) -> str:
    """One folio of shrink_folio_list(), locked: the label it ends at."""
    m = folio.m
    if m.mem.test(folio.pfn, PG.writeback):
        m.mem.set(folio.pfn, PG.reclaim)
        stat.nr_writeback += folio_nr_pages(folio)
        return "activate_locked"
    references = FOLIOREF.FOLIOREF_RECLAIM if ignore_references \
        else folio_check_references(folio)
    if references == FOLIOREF.FOLIOREF_ACTIVATE:
        return "activate_locked"
    if references == FOLIOREF.FOLIOREF_KEEP:
        stat.nr_ref_keep += folio_nr_pages(folio)
        return "keep_locked"
    shmem = _is_shmem(folio)
    if not folio_test_anon(folio) and not shmem:
        return "keep_locked"  # page-cache folios of files: not modelled
    was_swapbacked = folio_test_swapbacked(folio)
    if was_swapbacked and not shmem and not m.mem.test(folio.pfn, PG.swapcache):
        label = _swap_anon_folio(folio, folio_list, stat)
        if label:
            return label
    if folio_mapped(folio):
        flags = TTU_BATCH_FLUSH | (TTU_SYNC if folio_test_large(folio) else 0)
        if folio_order(folio) >= HPAGE_PMD_ORDER:
            from pyfolio.mm.rmap import TTU_SPLIT_HUGE_PMD

            flags |= TTU_SPLIT_HUGE_PMD
        if folio_test_anon(folio):
            try_to_unmap(folio, flags)
        else:  # shmem: the PTEs are cleared, a PMD zapped (no swap entries)
            from pyfolio.mm.rmap_file import try_to_unmap as try_to_unmap_file

            try_to_unmap_file(folio, flags)
        if folio_mapped(folio):
            stat.nr_unmap_fail += folio_nr_pages(folio)
            if not was_swapbacked and folio_test_swapbacked(folio):
                stat.nr_lazyfree_fail += folio_nr_pages(folio)
            return "activate_locked"
    if folio_maybe_dma_pinned(folio):
        return "activate_locked"
    if m.mem.test(folio.pfn, PG.dirty):
        res = pageout(folio, folio_list)
        if res == PAGE.PAGE_KEEP:
            return "keep_locked"
        if res == PAGE.PAGE_ACTIVATE:
            return "activate_locked"
        if res == PAGE.PAGE_SUCCESS:
            stat.nr_pageout += folio_nr_pages(folio)
            if m.mem.test(folio.pfn, PG.writeback) or m.mem.test(folio.pfn, PG.dirty):
                return "keep"  # the write unlocked the folio
            m.mem.set(folio.pfn, PG.locked)  # folio_trylock() after a synchronous write
    if not folio_test_swapbacked(folio):  # lazy-free: only the isolation reference left?
        if folio_ref_count(folio) != 1:  # folio_ref_freeze(folio, 1)
            return "keep_locked"
        m.vmstat["pglazyfreed"] += folio_nr_pages(folio)
        return "free_it"
    if not __remove_mapping(folio):
        return "keep_locked"
    return "free_it"


def reclaim_folio_list(m: Machine, folio_list: list[Folio], ignore_references: bool
                       ) -> ReclaimStat:
    """reclaim_folio_list() - shrink_folio_list() over an isolated list, then put what is
    left back on the LRU (folio_putback_lru()); the device then completes the writes.

    Models: mm/vmscan.c:reclaim_folio_list() (v6.18).
    """
    stat = ReclaimStat()
    for folio in shrink_folio_list(m, folio_list, ignore_references, stat):
        folio_putback_lru(folio)
    end_swap_bio_writes(m)
    m.trace.emit("mm_vmscan_reclaim_pages", changes={"nr_reclaimed": stat.nr_reclaimed},
                 nr_scanned=stat.nr_scanned, nr_activate=stat.nr_activate,
                 nr_ref_keep=stat.nr_ref_keep, nr_unmap_fail=stat.nr_unmap_fail)
    return stat


def reclaim_pages(m: Machine, folio_list: list[Folio]) -> int:
    """reclaim_pages() - reclaim the isolated folios MADV_PAGEOUT collected, ignoring their
    references, in the order collected; pages freed.

    Models: mm/vmscan.c:reclaim_pages() (v6.18): PG_active cleared, one node's list at a
    time, reclaim_folio_list(..., ignore_references=true).
    """
    if not folio_list:
        return 0
    for folio in folio_list:
        m.mem.clear(folio.pfn, PG.active)
    return reclaim_folio_list(m, list(reversed(folio_list)), True).nr_reclaimed


# -- the LRU scan -------------------------------------------------------------------------
def isolate_lru_folios(m: Machine, nr_to_scan: int, lru: int) -> list[Folio]:
    """isolate_lru_folios() - take folios off the tail of list ``lru`` until ``nr_to_scan``
    pages were scanned (a large folio counts all its pages); oldest first.

    Models: mm/vmscan.c:isolate_lru_folios() (v6.18).
    """
    out: list[Folio] = []
    scanned = 0
    for folio in lru_folios(m, lru):
        if scanned >= nr_to_scan:
            break
        scanned += folio_nr_pages(folio)
        if folio_isolate_lru(folio):
            out.append(folio)
    return out


def inactive_is_low(m: Machine) -> bool:
    """inactive_is_low() - the inactive anon list is smaller than the active one times
    the inactive ratio (1 below 1 GiB of anon LRU, sqrt(10 x GiB) above).

    Models: mm/vmscan.c:inactive_is_low() (v6.18).
    """
    inactive = sum(f.nr_pages for f in lru_folios(m, LRU_INACTIVE_ANON))
    active = sum(f.nr_pages for f in lru_folios(m, LRU_ACTIVE_ANON))
    gb = (inactive + active) >> 18
    ratio = int((10 * gb) ** 0.5) if gb else 1
    return inactive * ratio < active


def shrink_active_list(m: Machine, nr_to_scan: int) -> None:
    """shrink_active_list() - move up to ``nr_to_scan`` pages' folios from the tail of the
    active anon list to the head of the inactive one (referenced or not: only executable
    file folios stay active); their young bits are cleared.

    Models: mm/vmscan.c:shrink_active_list() (v6.18), anon lists.
    """
    for folio in isolate_lru_folios(m, nr_to_scan, LRU_ACTIVE_ANON):
        folio_referenced(folio)
        m.mem.clear(folio.pfn, PG.active)
        m.vmstat["pgdeactivate"] += folio_nr_pages(folio)
        folio_putback_lru(folio)


def shrink_inactive_list(m: Machine, nr_to_scan: int) -> int:
    """shrink_inactive_list() - isolate ``nr_to_scan`` pages from the inactive anon tail,
    shrink_folio_list() them, put the rest back; pages freed. Counts ``pgscan_anon`` and
    ``pgsteal_anon``.

    Models: mm/vmscan.c:shrink_inactive_list() (v6.18).
    """
    isolated = isolate_lru_folios(m, nr_to_scan, LRU_INACTIVE_ANON)
    if not isolated:
        return 0
    stat = reclaim_folio_list(m, list(reversed(isolated)), False)
    m.vmstat["pgscan_anon"] += stat.nr_scanned
    m.vmstat["pgsteal_anon"] += stat.nr_reclaimed
    return stat.nr_reclaimed


def try_to_free_mem_cgroup_pages(m: Machine, nr_pages: int) -> int:
    """try_to_free_mem_cgroup_pages() - reclaim at least ``nr_pages`` (SWAP_CLUSTER_MAX at
    least) from the anon LRU lists; pages freed (possibly more than asked: a split folio's
    pieces are all written in the same pass).

    Models: mm/vmscan.c:try_to_free_mem_cgroup_pages() and do_try_to_free_pages() (v6.18):
    priorities DEF_PRIORITY down to 0, each scanning inactive-list size >> priority pages
    in SWAP_CLUSTER_MAX batches (shrink_lruvec()), the active list aged first while the
    inactive one is low; stops once enough was reclaimed. Nothing is scanned when no swap
    slot is free (can_reclaim_anon_pages()).
    """
    from pyfolio.mm.swapfile import get_nr_swap_pages

    nr_to_reclaim = max(nr_pages, SWAP_CLUSTER_MAX)
    reclaimed = 0
    for priority in range(DEF_PRIORITY, -1, -1):
        if not get_nr_swap_pages(m):
            break
        if inactive_is_low(m):
            shrink_active_list(m, SWAP_CLUSTER_MAX)
        todo = sum(f.nr_pages for f in lru_folios(m, LRU_INACTIVE_ANON)) >> priority
        while todo > 0 and reclaimed < nr_to_reclaim:
            batch = min(todo, SWAP_CLUSTER_MAX)
            todo -= batch
            reclaimed += shrink_inactive_list(m, batch)
        if reclaimed >= nr_to_reclaim:
            break
    m.trace.emit("mm_vmscan_memcg_reclaim", changes={"nr_reclaimed": reclaimed},
                 nr_pages=nr_pages)
    return reclaimed

