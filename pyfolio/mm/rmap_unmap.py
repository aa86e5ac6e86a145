"""try_to_unmap(): every mapping of a swap-cache folio becomes a swap entry.

Models: mm/rmap.c (v6.18): try_to_unmap() and try_to_unmap_one() for anonymous folios,
swap-backed ones (swap entries) and lazy-free MADV_FREE'd ones (discarded); mlock,
hwpoison and hugetlb are not modelled. A continuation of :mod:`pyfolio.mm.rmap`, kept
apart for size.

What a mapping becomes (measured on this machine for issue 18): a
PMD mapping is split first (split_huge_pmd_locked(), ``thp_split_pmd`` +1: there is no
PMD-level swap entry for anonymous memory), then each PTE mapping page i of the folio
becomes the swap entry of slot folio->swap + i, exclusive if the page was
PageAnonExclusive, keeping soft-dirty and uffd-wp; the slot gains one reference
(swap_duplicate()); the page's rmap and reference go; MM_ANONPAGES -1, MM_SWAPENTS +1 in
that mm. A dirty PTE dirties the folio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_SPECIAL,
    _PAGE_SWP_SOFT_DIRTY,
    _PAGE_SWP_UFFD_WP,
    _PAGE_UFFD_WP,
    pmd_leaf,
    pte_dirty,
    pte_index,
    pte_pfn,
    pte_soft_dirty,
)
from pyfolio.include.linux.mm import (
    VM_WARN_ON_FOLIO,
    Folio,
    add_mm_counter,
    dec_mm_counter,
    folio_mapcount,
    folio_nr_pages,
    folio_put_refs,
    folio_ref_count,
    folio_test_anon,
    folio_test_large,
    inc_mm_counter,
)
from pyfolio.include.linux.mm_types import MM_ANONPAGES, MM_SWAPENTS
from pyfolio.include.linux.swapops import (
    pte_swp_mkexclusive,
    swp_entry,
    swp_entry_to_pte,
    swp_offset,
    swp_type,
)
from pyfolio.mm.rmap import (
    TTU_SPLIT_HUGE_PMD,
    anon_vma_ranges,
    folio_remove_rmap_ptes,
    folio_try_share_anon_rmap_pte,
    pmd_chunks,
    pte_table_of,
)
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA

__all__ = ["TTU_SYNC", "TTU_BATCH_FLUSH", "page_swap_entry", "try_to_unmap",
           "try_to_unmap_one"]

#: include/linux/rmap.h enum ttu_flags (v6.18), the two reclaim adds to TTU_SPLIT_HUGE_PMD
TTU_SYNC = 0x10
TTU_BATCH_FLUSH = 0x20


def page_swap_entry(folio: Folio, pfn: int) -> int:
    """page_swap_entry() - the swap entry of page ``pfn`` of a swap-cache folio.

    Models: include/linux/swap.h:page_swap_entry() (v6.18).
    """
    entry = int(folio.m.mem.swap[folio.pfn])
    return swp_entry(swp_type(entry), swp_offset(entry) + pfn - folio.pfn)


def try_to_unmap(folio: Folio, flags: int) -> None:
    """try_to_unmap() - replace every mapping of the folio with a swap entry (the rmap walk
    stops where one cannot be made, leaving the rest mapped: check folio_mapped()).

    Models: mm/rmap.c:try_to_unmap() (v6.18) with try_to_unmap_one() per VMA.
    """
    m = folio.m
    for vma, lo, hi in list(anon_vma_ranges(m, folio.pfn, folio_nr_pages(folio))):
        if not try_to_unmap_one(folio, vma, lo, hi, flags):
            break
    m.trace.emit("try_to_unmap", changes={"mapcount": folio.mapcount}, pfn=folio.pfn)


def try_to_unmap_one(folio: Folio, vma: VMA, lo: int, hi: int, flags: int) -> bool:
    """try_to_unmap_one() - unmap the folio in one VMA ([lo, hi) is where it would be
    mapped); False to stop the walk (a swap count that cannot rise, a page that cannot be
    shared, a lazy-free folio that must be kept).

    Models: mm/rmap.c:try_to_unmap_one() (v6.18), the anonymous branches. A swap-backed
    folio must be in the swap cache (else WARN_ON_ONCE and abort, as the kernel does): its
    PTEs become swap entries. A lazy-free one (MADV_FREE'd: anon, not PG_swapbacked) is
    discarded instead, in batches of PTEs mapping consecutive pages of the folio
    (folio_unmap_pte_batch()); if the PTEs or the folio are dirty again it becomes
    swap-backed and is kept, and so it is when something beyond the isolation holds a
    reference (``refcount != 1 + mapcount``).

    A PMD mapping is split first (TTU_SPLIT_HUGE_PMD), the lazy-free THP's too: measured
    on 6.18.44, MADV_PAGEOUT of a MADV_FREE'd THP counts ``thp_split_pmd`` +1 and then
    ``pglazyfreed`` +512, leaving an empty PTE table (a later write faults one small
    page); written again after MADV_FREE, it is split and kept, PTE-mapped and swap-backed.
    The newest mm tree's text (and the 6.18-era series tree) has a branch before the split
    that hands a lazy-free PMD to unmap_huge_pmd_locked() to be discarded whole, or kept
    unsplit when dirty (6.15: "mm: Avoid splitting pmd for lazyfree pmd-mapped THP in
    try_to_unmap"); this kernel did not behave so, clean or dirty, with or without swap.
    Why is not confirmed; the simulator follows the measurement.
    """
    m, end_pfn = folio.m, folio.pfn + folio_nr_pages(folio)
    lazyfree = folio_test_anon(folio) and not m.mem.test(folio.pfn, PG.swapbacked)
    if not lazyfree and not m.mem.test(folio.pfn, PG.swapcache):
        m.trace.emit("WARN_ON_ONCE", pfn=folio.pfn,
                     what="folio_test_swapbacked(folio) != folio_test_swapcache(folio)")
        return False
    for addr, nxt, slot in pmd_chunks(vma, lo, hi):
        raw = int(m.pgtables[slot[0]][slot[1]])
        if pmd_leaf(raw) and folio.pfn <= pte_pfn(raw) < end_pfn:
            VM_WARN_ON_FOLIO(not flags & TTU_SPLIT_HUGE_PMD, folio, "PMD-mapped, no split")
            from pyfolio.mm.huge_memory import split_huge_pmd_address

            split_huge_pmd_address(vma, addr, False)  # split_huge_pmd_locked()
            flags &= ~TTU_SPLIT_HUGE_PMD
        table = pte_table_of(m, slot)
        if table is None:
            continue
        a = addr
        while a < nxt:
            i = pte_index(a)
            pte = int(m.pgtables[table][i])
            pfn = pte_pfn(pte)
            if not pte & _PAGE_PRESENT or pte & _PAGE_SPECIAL or not folio.pfn <= pfn < end_pfn:
                a += PAGE_SIZE
                continue
            nr = 1
            if lazyfree and folio_test_large(folio):  # folio_unmap_pte_batch()
                from pyfolio.mm.memory import folio_pte_batch

                nr = folio_pte_batch(m, m.pgtables[table], i,
                                     pte_index(nxt - PAGE_SIZE) + 1, pfn)
            ok = _discard_ptes(folio, vma, (table, i), nr, pfn) if lazyfree \
                else _unmap_pte(folio, vma, (table, i), pte, pfn)
            if not ok:
                return False
            a += nr * PAGE_SIZE
    return True


def _discard_ptes(folio: Folio, vma: VMA, slot: tuple[int, int], nr: int, pfn: int) -> bool:
    """The MADV_FREE branch of try_to_unmap_one() for ``nr`` PTEs from ``slot``: clear them
    (get_and_clear_full_ptes(): the dirty bits gathered), then discard, or put them back."""
    m = folio.m
    tbl, i = m.pgtables[slot[0]], slot[1]
    vals = tbl[i: i + nr].copy()
    tbl[i: i + nr] = 0
    if any(pte_dirty(int(v)) for v in vals):
        m.mem.set(folio.pfn, PG.dirty)  # folio_mark_dirty()
    if m.mem.test(folio.pfn, PG.dirty):  # redirtied: swap-backed again, kept
        tbl[i: i + nr] = vals
        m.mem.set(folio.pfn, PG.swapbacked)
        return False
    if folio_ref_count(folio) != 1 + folio_mapcount(folio):  # another reference
        tbl[i: i + nr] = vals
        return False
    m.trace.cost("tlb_flushes")
    add_mm_counter(vma.vm_mm, MM_ANONPAGES, -nr)
    folio_remove_rmap_ptes(folio, pfn, nr, vma)  # discard:
    folio_put_refs(folio, nr)
    return True


def _unmap_pte(folio: Folio, vma: VMA, slot: tuple[int, int], pteval: int, pfn: int) -> bool:
    """The PTE body of try_to_unmap_one(): clear the PTE, make it a swap entry."""
    from pyfolio.mm.memory import set_pte_at
    from pyfolio.mm.swapfile import swap_duplicate, swap_free_nr

    m, mm = folio.m, vma.vm_mm
    anon_exclusive = folio_test_anon(folio) and m.mem.test(pfn, PG.anon_exclusive)
    m.pgtables[slot[0]][slot[1]] = 0  # ptep_clear_flush()
    if pte_dirty(pteval):
        m.mem.set(folio.pfn, PG.dirty)  # folio_mark_dirty()
    entry = page_swap_entry(folio, pfn)
    if swap_duplicate(m, entry) < 0:
        m.pgtables[slot[0]][slot[1]] = pteval
        return False
    if anon_exclusive and not folio_try_share_anon_rmap_pte(folio, pfn):
        swap_free_nr(m, entry, 1)
        m.pgtables[slot[0]][slot[1]] = pteval
        return False
    dec_mm_counter(mm, MM_ANONPAGES)
    inc_mm_counter(mm, MM_SWAPENTS)
    swp_pte = swp_entry_to_pte(entry)
    if anon_exclusive:
        swp_pte = pte_swp_mkexclusive(swp_pte)
    if pte_soft_dirty(pteval):
        swp_pte |= _PAGE_SWP_SOFT_DIRTY
    if pteval & _PAGE_UFFD_WP:
        swp_pte |= _PAGE_SWP_UFFD_WP
    set_pte_at(m, slot, swp_pte)
    m.trace.cost("tlb_flushes")
    folio_remove_rmap_ptes(folio, pfn, 1, vma)
    folio_put_refs(folio, 1)
    return True
