"""MADV_COLLAPSE: copy the small pages of a 2 MiB block into a new PMD-mapped THP.

Models: mm/khugepaged.c (v6.18), the synchronous path madvise(2) takes:
madvise_collapse() -> hpage_collapse_scan_pmd() -> collapse_huge_page() ->
__collapse_huge_page_swapin(), __collapse_huge_page_isolate(),
__collapse_huge_page_copy(). The khugepaged thread itself is not modelled, so the
collapse control is always MADV_COLLAPSE's (``cc->is_khugepaged`` false): no
``max_ptes_none``/``max_ptes_swap``/``max_ptes_shared`` limits and no "referenced"
requirement, and the sysfs ``enabled`` setting is ignored (TVA_FORCED_COLLAPSE;
Documentation/admin-guide/mm/transhuge.rst: MADV_COLLAPSE is independent of the sysfs
THP settings). Simplifications: no locks (so no revalidation ever fails), no memcg
charge, no NUMA node choice, no copy machine-check; only anonymous private VMAs.

The new folio sits at new PFNs: the kernel never collapses in place for anonymous
memory, even a folio that is already large (a PTE-mapped THP is copied too).

>>> from pyfolio import System, MiB
>>> m = System(ram="16M", thp="never"); p = m.spawn(); a = p.mmap(2 * MiB)
>>> p.touch(a, 2 * MiB); old = p.pfn_at(a)
>>> p.madvise(a, 2 * MiB, "collapse")
>>> f = p.folio_at(a); (f.order, f.pfn != old, m.vmstat()["thp_collapse_alloc"])
(9, True, 1)
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import (
    _PAGE_PSE,
    _PAGE_SPECIAL,
    _PAGE_UFFD_WP,
    pfn_pte,
    pmd_leaf,
    pmd_mkdirty,
    pmd_present,
    pte_pfn,
    pte_present,
)
from pyfolio.include.linux.mm import (
    Folio,
    add_mm_counter,
    folio_expected_ref_count,
    folio_get,
    folio_is_zone_device,
    folio_lock,
    folio_put,
    folio_put_refs,
    folio_ref_count,
    folio_test_anon,
    folio_test_large,
    folio_test_locked,
    folio_unlock,
    page_folio,
)
from pyfolio.include.linux.mm_types import MM_ANONPAGES, VM, VMA, MMStruct
from pyfolio.include.linux.swapops import is_migration_entry
from pyfolio.mm.huge_memory import (
    deferred_split_folio,
    maybe_pmd_mkwrite,
    pgtable_trans_huge_deposit,
)
from pyfolio.mm.memory import folio_pte_batch
from pyfolio.mm.mmu_notifier import MMU_NOTIFY, invalidate_secondary_mmus
from pyfolio.mm.rmap import (
    RMAP_EXCLUSIVE,
    folio_add_new_anon_rmap,
    folio_mms,
    folio_remove_rmap_ptes,
)
from pyfolio.mm.swap import folio_add_lru, folio_add_lru_vma, lru_add_drain_all
from pyfolio.mm.swap_state import free_swap_cache
from pyfolio.sim.errors import EAGAIN, EINVAL, ENOMEM, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = [
    "SCAN", "madvise_collapse", "madvise_collapse_errno", "hpage_collapse_scan_pmd",
    "collapse_huge_page", "alloc_charge_folio", "hugepage_vma_revalidate",
    "find_pmd_or_thp_or_none", "__collapse_huge_page_swapin", "__collapse_huge_page_isolate",
    "__collapse_huge_page_copy", "__collapse_huge_page_copy_succeeded", "release_pte_pages",
]

Slot = tuple[int, int]


class SCAN(enum.Enum):
    """mm/khugepaged.c enum scan_result (v6.18): the results this model can produce.

    (v6.18 has no SCAN_PAGE_RO any more: a read-only VMA collapses, as seen on a 6.18
    kernel; later trees rename SCAN_PMD_NULL/SCAN_PMD_NONE to SCAN_NO_PTE_TABLE.)
    """

    SCAN_FAIL = enum.auto()
    SCAN_SUCCEED = enum.auto()
    SCAN_PMD_NULL = enum.auto()
    SCAN_PMD_NONE = enum.auto()
    SCAN_PMD_MAPPED = enum.auto()
    SCAN_PTE_NON_PRESENT = enum.auto()
    SCAN_PTE_UFFD_WP = enum.auto()
    SCAN_PAGE_NULL = enum.auto()
    SCAN_PAGE_COUNT = enum.auto()
    SCAN_PAGE_LRU = enum.auto()
    SCAN_PAGE_LOCK = enum.auto()
    SCAN_PAGE_ANON = enum.auto()
    SCAN_VMA_NULL = enum.auto()
    SCAN_VMA_CHECK = enum.auto()
    SCAN_ADDRESS_RANGE = enum.auto()
    SCAN_DEL_PAGE_LRU = enum.auto()
    SCAN_ALLOC_HUGE_PAGE_FAIL = enum.auto()


#: madvise_collapse(): results after which the walk goes on to the next 2 MiB block
_CONTINUE = {SCAN.SCAN_PMD_NULL, SCAN.SCAN_PTE_NON_PRESENT, SCAN.SCAN_PTE_UFFD_WP,
             SCAN.SCAN_PAGE_NULL, SCAN.SCAN_PAGE_COUNT, SCAN.SCAN_PAGE_LOCK,
             SCAN.SCAN_PAGE_LRU, SCAN.SCAN_DEL_PAGE_LRU}


# -- the madvise entry point ----------------------------------------------------------------
def madvise_collapse(vma: VMA, start: int, end: int) -> None:
    """madvise_collapse() - MADV_COLLAPSE over [start, end) of one VMA.

    Models: mm/khugepaged.c:madvise_collapse() (v6.18). The VMA must allow a forced
    collapse (see :func:`_forced_collapse_allowed`), else -EINVAL. The range is shrunk to
    the whole 2 MiB blocks inside it (hstart = ALIGN(start), hend = ALIGN_DOWN(end)) and
    each block is collapsed on its own; one already PMD-mapped counts as done
    (SCAN_PMD_MAPPED). Some failures let the walk go on to the next block, the others
    stop it; in the end the call succeeds only if every block is a THP, else raises the
    errno of the last failure (:func:`madvise_collapse_errno`). As on the kernel, blocks
    collapsed before a failure stay collapsed; a block that fails is left as it was
    (except for counters, and a device-private page brought back by the swap-in step).
    Once the VMA passes, lru_add_drain_all() empties the per-CPU LRU batches.
    """
    assert vma.vm_start <= start and end <= vma.vm_end  # BUG_ON()s
    if not _forced_collapse_allowed(vma):
        raise MmError(EINVAL, f"MADV_COLLAPSE: {vma!r} does not allow a THP")
    lru_add_drain_all(vma.vm_mm.m)  # no page may hold a per-CPU batch's reference
    hstart = (start + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
    hend = end & ~(PMD_SIZE - 1)
    thps, last_fail = 0, SCAN.SCAN_FAIL
    for addr in range(hstart, hend, PMD_SIZE):
        result = hpage_collapse_scan_pmd(vma.vm_mm, vma, addr)
        if result in (SCAN.SCAN_SUCCEED, SCAN.SCAN_PMD_MAPPED):
            thps += 1
            continue
        last_fail = result
        if result not in _CONTINUE:
            break
    if hend > hstart and thps != (hend - hstart) // PMD_SIZE:
        err = madvise_collapse_errno(last_fail)
        raise MmError(err, f"MADV_COLLAPSE [{hstart:#x}, {hend:#x}): {last_fail.name}")


def madvise_collapse_errno(r: SCAN) -> int:
    """madvise_collapse_errno() - the (positive) errno MADV_COLLAPSE reports for ``r``.

    Models: mm/khugepaged.c:madvise_collapse_errno() (v6.18): -ENOMEM when no THP could
    be allocated, -EAGAIN for what may pass (a page with extra references, locked, off
    the LRU), -EINVAL for the rest. (-EBUSY is for SCAN_EXCEED_NONE_PTE and a memcg
    charge failure, neither of which MADV_COLLAPSE meets here.)
    """
    if r is SCAN.SCAN_ALLOC_HUGE_PAGE_FAIL:
        return ENOMEM
    if r in (SCAN.SCAN_PAGE_COUNT, SCAN.SCAN_PAGE_LOCK, SCAN.SCAN_PAGE_LRU,
             SCAN.SCAN_DEL_PAGE_LRU):
        return EAGAIN
    return EINVAL


def _forced_collapse_allowed(vma: VMA) -> bool:
    """thp_vma_allowable_order(vma, vm_flags, TVA_FORCED_COLLAPSE, PMD_ORDER) for an
    anonymous VMA (mm/huge_memory.c:__thp_vma_allowable_orders(), vma_thp_disabled(),
    v6.18): the sysfs policy is not asked; VM_NOHUGEPAGE refuses; the VMA must hold a
    whole aligned 2 MiB block (checked at vm_end - PMD_SIZE); and it must have an
    anon_vma ("return (smaps || in_pf) ? orders : 0": a VMA never written to is refused,
    seen on a 6.18 kernel as -EINVAL with no thp_collapse_alloc)."""
    if vma.vm_flags & VM.NOHUGEPAGE:
        return False
    haddr = (vma.vm_end - PMD_SIZE) & ~(PMD_SIZE - 1)
    if haddr < vma.vm_start:
        return False
    return vma.anon_vma is not None


# -- scan -------------------------------------------------------------------------------------
def find_pmd_or_thp_or_none(mm: MMStruct, address: int) -> tuple[SCAN, Slot | None]:
    """find_pmd_or_thp_or_none() - what the PMD entry for ``address`` holds.

    Models: mm/khugepaged.c:find_pmd_or_thp_or_none() (v6.18): no PMD table
    (mm_find_pmd() fails) or a non-present PMD (a device-private PMD entry) is
    SCAN_PMD_NULL, an empty entry SCAN_PMD_NONE, a leaf (a THP or the huge zero folio)
    SCAN_PMD_MAPPED, a PTE table SCAN_SUCCEED.
    """
    from pyfolio.mm.memory import pmd_slot

    slot = pmd_slot(mm, address)
    if slot is None:
        return SCAN.SCAN_PMD_NULL, None
    pmd = _entry(mm.m, slot)
    if pmd == 0:
        return SCAN.SCAN_PMD_NONE, slot
    if not pmd_present(pmd):
        return SCAN.SCAN_PMD_NULL, slot
    if pmd_leaf(pmd):
        return SCAN.SCAN_PMD_MAPPED, slot
    return SCAN.SCAN_SUCCEED, slot


def hpage_collapse_scan_pmd(mm: MMStruct, vma: VMA, address: int) -> SCAN:
    """hpage_collapse_scan_pmd() - check the 512 PTEs of one block, then collapse it.

    Models: mm/khugepaged.c:hpage_collapse_scan_pmd() (v6.18) for MADV_COLLAPSE: a
    swap-format entry is counted (``unmapped``) and brought in later; pte_none and
    zero-page PTEs are allowed in any number; every other PTE must map an anonymous page
    on the LRU, unlocked, whose refcount its mappings explain
    (folio_expected_ref_count(); a GUP pin fails with SCAN_PAGE_COUNT). Pages another
    process maps too (after fork) are allowed. If all pass, collapse_huge_page().
    """
    m = mm.m
    result, slot = find_pmd_or_thp_or_none(mm, address)
    if result is not SCAN.SCAN_SUCCEED:
        m.trace.emit("mm_khugepaged_scan_pmd", address=address, status=result.name)
        return result
    assert slot is not None
    tbl = m.pgtables[pte_pfn(_entry(m, slot))]
    none_or_zero = unmapped = shared = 0
    for i in range(HPAGE_PMD_NR):
        pte = int(tbl[i])
        if pte and not pte_present(pte):  # is_swap_pte()
            unmapped += 1
            continue
        if _pte_none_or_zero(m, pte):
            none_or_zero += 1
            continue
        folio, result = _check_present_pte(m, pte)
        if folio is None:
            break
        shared += bool(folio_mms(folio) - {mm.id})  # folio_maybe_mapped_shared()
        if not m.mem.test(folio.pfn, PG.lru):
            result = SCAN.SCAN_PAGE_LRU
        elif folio_test_locked(folio):
            result = SCAN.SCAN_PAGE_LOCK
        elif folio_expected_ref_count(folio) != folio_ref_count(folio):
            result = SCAN.SCAN_PAGE_COUNT
        if result is not SCAN.SCAN_SUCCEED:
            break
    m.trace.emit("mm_khugepaged_scan_pmd", address=address, status=result.name,
                 none_or_zero=none_or_zero, unmapped=unmapped, shared=shared)
    if result is SCAN.SCAN_SUCCEED:
        result = collapse_huge_page(mm, address, 0, unmapped)
    return result


def _pte_none_or_zero(m: Machine, pte: int) -> bool:
    """pte_none(), or a present PTE of the shared zero page (is_zero_pfn())."""
    return pte == 0 or (pte_present(pte) and pte_pfn(pte) == m.zero_pfn)


def _check_present_pte(m: Machine, pte: int) -> tuple[Folio | None, SCAN]:
    """The checks both the scan and the isolation make of a present, non-zero PTE:
    uffd-wp, vm_normal_page() (NULL for another special PTE) and not ZONE_DEVICE, anon."""
    if pte & _PAGE_UFFD_WP:
        return None, SCAN.SCAN_PTE_UFFD_WP
    if pte & _PAGE_SPECIAL:
        return None, SCAN.SCAN_PAGE_NULL
    folio = page_folio(m, pte_pfn(pte))
    if folio_is_zone_device(folio):
        return None, SCAN.SCAN_PAGE_NULL
    if not folio_test_anon(folio):
        return None, SCAN.SCAN_PAGE_ANON
    return folio, SCAN.SCAN_SUCCEED


def _entry(m: Machine, slot: Slot) -> int:
    return int(m.pgtables[slot[0]][slot[1]])


# -- collapse ---------------------------------------------------------------------------------
def alloc_charge_folio(mm: MMStruct) -> tuple[SCAN, Folio | None]:
    """alloc_charge_folio() - allocate the order-9 folio to copy into.

    Models: mm/khugepaged.c:alloc_charge_folio() (v6.18): GFP_TRANSHUGE for
    MADV_COLLAPSE; ``thp_collapse_alloc`` on success, ``thp_collapse_alloc_failed`` and
    SCAN_ALLOC_HUGE_PAGE_FAIL when no free order-9 block is left (no compaction is
    modelled). No memcg charge.
    """
    from pyfolio.mm.page_alloc import alloc_pages

    m = mm.m
    try:
        pfn = alloc_pages(m, HPAGE_PMD_ORDER)
    except MmError:
        m.vmstat["thp_collapse_alloc_failed"] += 1
        return SCAN.SCAN_ALLOC_HUGE_PAGE_FAIL, None
    m.vmstat["thp_collapse_alloc"] += 1
    return SCAN.SCAN_SUCCEED, Folio(m, pfn)


def hugepage_vma_revalidate(mm: MMStruct, address: int, expect_anon: bool) -> SCAN:
    """hugepage_vma_revalidate() - is the block still inside a VMA that allows a THP?

    Models: mm/khugepaged.c:hugepage_vma_revalidate() (v6.18). The kernel needs it
    because the mmap_lock was dropped around the allocation; the simulator drops no lock,
    so for a block madvise_collapse() chose it always succeeds.
    """
    vma = mm.find_vma(address)
    if vma is None:
        return SCAN.SCAN_VMA_NULL
    if address < vma.vm_start or address + PMD_SIZE > vma.vm_end:  # thp_vma_suitable_order()
        return SCAN.SCAN_ADDRESS_RANGE
    if not _forced_collapse_allowed(vma):
        return SCAN.SCAN_VMA_CHECK
    if expect_anon and vma.anon_vma is None:
        return SCAN.SCAN_PAGE_ANON
    return SCAN.SCAN_SUCCEED


def collapse_huge_page(mm: MMStruct, address: int, referenced: int, unmapped: int) -> SCAN:
    """collapse_huge_page() - replace the PTE table of a block by a PMD-mapped new THP.

    Models: mm/khugepaged.c:collapse_huge_page() (v6.18): allocate (alloc_charge_folio());
    revalidate; swap in non-present entries (__collapse_huge_page_swapin()); secondary MMUs
    hear MMU_NOTIFY_CLEAR for the 2 MiB range; clear the PMD (pmdp_collapse_flush());
    isolate the pages (__collapse_huge_page_isolate()), on failure putting the PTE table
    back (pmd_populate()) and the new folio; copy (__collapse_huge_page_copy()); then the
    emptied PTE table becomes the deposited table of the new PMD
    (pgtable_trans_huge_deposit()), which maps the folio dirty and, in a writable VMA,
    writable (folio_mk_pmd(); maybe_pmd_mkwrite(pmd_mkdirty())); new anon rmap, exclusive
    (folio_add_new_anon_rmap(RMAP_EXCLUSIVE)); LRU; and the folio is queued unflagged for
    the underused-THP shrinker (deferred_split_folio(folio, false)).
    """
    m = mm.m
    result, folio = alloc_charge_folio(mm)
    if folio is not None:
        result = _collapse_into(mm, address, referenced, unmapped, folio)
        if result is not SCAN.SCAN_SUCCEED:
            folio_put(folio)  # out_nolock: the unused new folio goes back
    m.trace.emit("mm_collapse_huge_page", changes={"folio_order": HPAGE_PMD_ORDER}
                 if result is SCAN.SCAN_SUCCEED else None, address=address,
                 isolated=result is SCAN.SCAN_SUCCEED, status=result.name,
                 pfn=folio.pfn if folio is not None else -1, referenced=referenced)
    return result


def _collapse_into(mm: MMStruct, address: int, referenced: int, unmapped: int,
                   folio: Folio) -> SCAN:
    """collapse_huge_page() from the revalidation on, with the new ``folio`` allocated."""
    m = mm.m
    result = hugepage_vma_revalidate(mm, address, True)
    if result is SCAN.SCAN_SUCCEED:
        result, slot = find_pmd_or_thp_or_none(mm, address)
    if result is SCAN.SCAN_SUCCEED and unmapped:
        result = __collapse_huge_page_swapin(mm, address, referenced)
        if result is SCAN.SCAN_SUCCEED:  # check_pmd_still_valid()
            result, slot = find_pmd_or_thp_or_none(mm, address)
    if result is not SCAN.SCAN_SUCCEED:
        return result
    assert slot is not None
    vma = mm.find_vma(address)
    assert vma is not None
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_CLEAR, mm, address, address + PMD_SIZE)
    orig_pmd = _entry(m, slot)
    _set_pmd(m, slot, 0)  # pmdp_collapse_flush(): no new access can reach the PTEs
    m.trace.cost("tlb_flushes")
    table = pte_pfn(orig_pmd)
    isolated: list[Folio] = []
    result = __collapse_huge_page_isolate(vma, address, table, isolated)
    if result is not SCAN.SCAN_SUCCEED:
        _set_pmd(m, slot, orig_pmd)  # pmd_populate(mm, pmd, pmd_pgtable(_pmd))
        return result
    __collapse_huge_page_copy(table, folio, vma, address, isolated)
    m.mem.set(folio.pfn, PG.uptodate)  # __folio_mark_uptodate()
    entry = pfn_pte(folio.pfn, vma.vm_page_prot | _PAGE_PSE)  # folio_mk_pmd()
    entry = maybe_pmd_mkwrite(pmd_mkdirty(entry), vma)
    folio_add_new_anon_rmap(folio, vma, address, RMAP_EXCLUSIVE)
    folio_add_lru_vma(folio, vma)
    pgtable_trans_huge_deposit(vma, slot, table)
    _set_pmd(m, slot, entry)
    deferred_split_folio(folio, False)
    return SCAN.SCAN_SUCCEED


def _set_pmd(m: Machine, slot: Slot, val: int) -> None:
    """set_pmd_at() / pmd_clear() / pmd_populate(): write one PMD entry."""
    m.pgtables[slot[0]][slot[1]] = val
    m.trace.cost("pmd_writes")


def __collapse_huge_page_swapin(mm: MMStruct, address: int, referenced: int) -> SCAN:
    """__collapse_huge_page_swapin() - fault in every swap-format PTE of the block.

    Models: mm/khugepaged.c:__collapse_huge_page_swapin() (v6.18): do_swap_page() on each
    is_swap_pte() entry: a swapped-out page is read back (order 0, or from the swap cache),
    a device-private one is migrated back by its driver (migrate_to_ram()), a migration
    entry is only waited on (the entry stays and the isolation then fails with
    SCAN_PTE_NON_PRESENT). A fault that fails (VM_FAULT_ERROR)
    is SCAN_FAIL. (Later trees abort the scan on non-swap entries instead.)
    """
    from pyfolio.mm.memory import VM_FAULT_OOM, VM_FAULT_SIGBUS, do_swap_page, pte_slot

    m = mm.m
    vma = mm.find_vma(address)
    assert vma is not None
    swapped_in, result = 0, SCAN.SCAN_SUCCEED
    for addr in range(address, address + PMD_SIZE, PAGE_SIZE):
        slot = pte_slot(mm, addr)
        if slot is None:
            result = SCAN.SCAN_PMD_NULL
            break
        pte = _entry(m, slot)
        if not pte or pte_present(pte):
            continue
        if is_migration_entry(pte):
            swapped_in += 1  # migration_entry_wait(): returns 0, the entry stays
            continue
        if do_swap_page(vma, addr, 0, slot) & (VM_FAULT_OOM | VM_FAULT_SIGBUS):
            result = SCAN.SCAN_FAIL
            break
        swapped_in += 1
    m.trace.emit("mm_collapse_huge_page_swapin", address=address, swapped_in=swapped_in,
                 referenced=referenced, status=result.name)
    return result


def __collapse_huge_page_isolate(vma: VMA, address: int, table: int,
                                 isolated: list[Folio]) -> SCAN:
    """__collapse_huge_page_isolate() - lock and isolate every page the block maps.

    Models: mm/khugepaged.c:__collapse_huge_page_isolate() (v6.18), run with the PMD
    cleared: pte_none and zero-page PTEs pass (no max_ptes_none for MADV_COLLAPSE); any
    other non-present PTE fails with SCAN_PTE_NON_PRESENT; each page's folio must be
    anonymous, unlocked (folio_trylock(): SCAN_PAGE_LOCK), without references its mappings
    do not explain (SCAN_PAGE_COUNT) and on the LRU (folio_isolate_lru(), which takes a
    reference: SCAN_DEL_PAGE_LRU). A large folio is isolated once (the compound_pagelist).
    The isolated folios are appended to ``isolated``, in PTE order. On failure those
    already isolated are released again (release_pte_pages()).
    """
    m = vma.vm_mm.m
    tbl = m.pgtables[table]
    result, none_or_zero = SCAN.SCAN_SUCCEED, 0
    for i in range(HPAGE_PMD_NR):
        pte = int(tbl[i])
        if _pte_none_or_zero(m, pte):
            none_or_zero += 1
            continue
        if not pte_present(pte):
            result = SCAN.SCAN_PTE_NON_PRESENT
            break
        folio, result = _check_present_pte(m, pte)
        if folio is None:
            break
        if folio_test_large(folio) and any(f.pfn == folio.pfn for f in isolated):
            continue
        result = _isolate_one(folio)
        if result is not SCAN.SCAN_SUCCEED:
            break
        isolated.append(folio)
    m.trace.emit("mm_collapse_huge_page_isolate", address=address, none_or_zero=none_or_zero,
                 status=result.name)
    if result is not SCAN.SCAN_SUCCEED:
        release_pte_pages(isolated)
        isolated.clear()
    return result


def _isolate_one(folio: Folio) -> SCAN:
    """folio_trylock(), the refcount check and folio_isolate_lru() for one folio."""
    m = folio.m
    if folio_test_locked(folio):
        return SCAN.SCAN_PAGE_LOCK
    folio_lock(folio)
    if folio_expected_ref_count(folio) != folio_ref_count(folio):
        folio_unlock(folio)
        return SCAN.SCAN_PAGE_COUNT
    if not m.mem.test(folio.pfn, PG.lru):
        folio_unlock(folio)
        return SCAN.SCAN_DEL_PAGE_LRU
    m.mem.clear(folio.pfn, PG.lru)  # folio_isolate_lru(): off the LRU, with a reference
    folio_get(folio)
    return SCAN.SCAN_SUCCEED


def _release_pte_folio(folio: Folio) -> None:
    """release_pte_folio(): unlock, back onto the LRU (folio_putback_lru() drops the
    isolation reference, which may free the folio)."""
    folio_unlock(folio)
    folio_add_lru(folio)
    folio_put(folio)


def release_pte_pages(isolated: list[Folio]) -> None:
    """release_pte_pages() - undo the isolation of ``isolated`` (small and large folios).

    Models: mm/khugepaged.c:release_pte_pages() (v6.18).
    """
    for folio in isolated:
        _release_pte_folio(folio)


def __collapse_huge_page_copy(table: int, folio: Folio, vma: VMA, address: int,
                              isolated: list[Folio]) -> SCAN:
    """__collapse_huge_page_copy() - copy the block's data into ``folio``.

    Models: mm/khugepaged.c:__collapse_huge_page_copy() (v6.18): page i of the new folio
    gets the data of the page PTE i maps, or zeroes for a none or zero-page PTE
    (clear_user_highpage()). A machine check while copying (SCAN_COPY_MC) is not modelled,
    so the copy always succeeds and the old pages are let go
    (__collapse_huge_page_copy_succeeded()).
    """
    m = vma.vm_mm.m
    tbl = m.pgtables[table]
    for i in range(HPAGE_PMD_NR):
        pte = int(tbl[i])
        if _pte_none_or_zero(m, pte):
            m.mem.stamp[folio.pfn + i] = 0
            m.trace.cost("pages_zeroed")
        else:
            m.mem.stamp[folio.pfn + i] = m.mem.stamp[pte_pfn(pte)]
            m.trace.cost("pages_copied")
    __collapse_huge_page_copy_succeeded(table, vma, address, isolated)
    return SCAN.SCAN_SUCCEED


def __collapse_huge_page_copy_succeeded(table: int, vma: VMA, address: int,
                                        isolated: list[Folio]) -> None:
    """__collapse_huge_page_copy_succeeded() - clear the old PTEs and drop the old pages.

    Models: mm/khugepaged.c:__collapse_huge_page_copy_succeeded() (v6.18): each none or
    zero-page PTE is a page the new THP adds to MM_ANONPAGES (add_mm_counter(1); the
    mapped pages move to the THP uncounted), and zero-page PTEs are cleared; a small
    folio is released from isolation, then loses this mapping (folio_remove_rmap_ptes())
    and its reference, so it is freed unless another process maps it too (a page still
    in the swap cache leaves it first: free_swap_cache()); the PTEs of a large folio are
    cleared in batches of consecutive pages (folio_pte_batch(): no partially-mapped state
    in between, so no deferred split while all its pages were mapped here), and at the end
    each large folio is unlocked and put back, freed if that was its last reference.
    """
    m = vma.vm_mm.m
    tbl = m.pgtables[table]
    i = 0
    while i < HPAGE_PMD_NR:
        pte, nr = int(tbl[i]), 1
        if pte == 0:
            add_mm_counter(vma.vm_mm, MM_ANONPAGES, 1)
            i += 1
            continue
        if pte_pfn(pte) == m.zero_pfn:
            add_mm_counter(vma.vm_mm, MM_ANONPAGES, 1)
            tbl[i] = 0  # ptep_clear()
            m.trace.cost("pte_writes")
            i += 1
            continue
        page = pte_pfn(pte)
        src = page_folio(m, page)
        if folio_test_large(src):
            nr = folio_pte_batch(m, tbl, i, HPAGE_PMD_NR, page)
        else:
            _release_pte_folio(src)
        tbl[i: i + nr] = 0  # clear_ptes()
        m.trace.cost("pte_writes", nr)
        folio_remove_rmap_ptes(src, page, nr, vma)
        free_swap_cache(src)  # a page swapped in for the collapse leaves the swap cache
        folio_put_refs(src, nr)
        i += nr
    for src in isolated:
        if folio_test_large(src):
            _release_pte_folio(src)
    m.trace.emit("collapse_huge_page_copy_succeeded", address=address,
                 old_folios=len(isolated))
