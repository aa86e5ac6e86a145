"""Page faults, zapping and copying page tables: the PTE-level half of the mm.

Models: mm/memory.c (v6.18): handle_mm_fault(), __handle_mm_fault(), handle_pte_fault(),
do_anonymous_page(), do_wp_page(), wp_page_copy(), zap_pte_range(), copy_page_range(),
free_pgtables(), and the page-table allocators __pud_alloc()/__pmd_alloc()/__pte_alloc().
Simplifications: no locks, no TLB batching (each flush is counted), no swap. Faults on
file VMAs (do_fault() and friends) and unmap_mapping_range() are in
:mod:`pyfolio.mm.memory_file`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.arch.x86.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY_BITS,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    _PAGE_TABLE,
    PTE_PFN_MASK,
    pfn_pte,
    pgd_index,
    pmd_leaf,
    pte_alloc_one,
    pte_free,
    pte_index,
    pte_mkdirty,
    pte_mkold,
    pte_mkwrite,
    pte_pfn,
    pte_present,
    pte_wrprotect,
    pud_index,
)
from pyfolio.include.linux.huge_mm import MTHP_STAT, count_mthp_stat
from pyfolio.include.linux.mm import (
    Folio,
    VmFault,
    ZapDetails,
    add_mm_counter,
    dec_mm_counter,
    folio_get,
    folio_lock,
    folio_order,
    folio_put,
    folio_put_refs,
    folio_ref_add,
    folio_ref_count,
    folio_test_anon,
    folio_test_large,
    folio_test_locked,
    folio_unlock,
    inc_mm_counter,
    is_cow_mapping,
    is_zero_folio,
    mm_counter,
    mm_counter_file,
    page_folio,
    vma_is_anonymous,
)
from pyfolio.include.linux.mm_types import (
    FAULT_FLAG_WRITE,
    MM_ANONPAGES,
    VM,
    VM_FAULT_FALLBACK,
    VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
    VMA,
    MMStruct,
)
from pyfolio.include.linux.swapops import (
    is_device_exclusive_entry,
    is_device_private_entry,
    is_swap_entry,
)
from pyfolio.mm import huge_memory as hm
from pyfolio.mm.mmu_notifier import MMU_NOTIFY, invalidate_secondary_mmus
from pyfolio.mm.rmap import (
    RMAP_EXCLUSIVE,
    anon_vma_prepare,
    folio_add_new_anon_rmap,
    folio_mms,
    folio_move_anon_rmap,
    folio_remove_rmap_pte,
    folio_remove_rmap_ptes,
    folio_try_dup_anon_rmap_ptes,
    pmd_chunks,
)
from pyfolio.mm.swap import folio_add_lru_vma
from pyfolio.sim.errors import EBUSY, EFAULT, ENOMEM, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import (
    HPAGE_PMD_ORDER,
    PAGE_SHIFT,
    PAGE_SIZE,
    PGDIR_SHIFT,
    PMD_SHIFT,
    PMD_SIZE,
    PUD_SHIFT,
)

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = [
    "FAULT_FLAG_WRITE", "VM_FAULT_FALLBACK", "VM_FAULT_OOM", "VM_FAULT_SIGBUS",
    "pmd_slot", "pte_slot", "set_pte_at", "handle_mm_fault", "wp_huge_pmd", "handle_pte_fault",
    "pte_range_none", "alloc_anon_folio", "do_anonymous_page", "do_wp_page", "wp_page_copy",
    "do_swap_page", "zap_pte_range", "folio_pte_batch",
    "zap_page_range", "try_to_free_pte", "copy_page_range", "vma_needs_copy", "free_pgtables",
    "maybe_mkwrite", "restore_exclusive_pte", "try_restore_exclusive_pte",
    "remove_device_exclusive_entry",
]



# -- page-table pages ---------------------------------------------------------------------
def _next_table(m: Machine, table: int, idx: int, alloc: bool) -> int | None:
    raw = m.pgtables[table].item(idx)  # a Python int (int(tbl[idx]) builds a numpy scalar)
    if raw & _PAGE_PRESENT:  # pte_pfn() of a table entry (present: nothing inverted)
        return (raw & PTE_PFN_MASK) >> PAGE_SHIFT
    if raw == 0:
        if not alloc:
            return None
        new = pte_alloc_one(m)
        m.pgtables[table][idx] = pfn_pte(new, _PAGE_TABLE)
        return new
    return pte_pfn(raw)


def pmd_slot(mm: MMStruct, addr: int, alloc: bool = False) -> tuple[int, int] | None:
    """(PMD table pfn, index) for ``addr``; allocates the PUD and PMD tables when asked
    (__pud_alloc(), __pmd_alloc())."""
    m = mm.m
    pgtables = m.pgtables
    # pgd_index(), pud_index() and pmd_index() inline (511: PTRS_PER_TABLE - 1); a present
    # entry's table read as _next_table() reads it, which handles the rest (none, alloc)
    raw = pgtables[mm.pgd].item((addr >> PGDIR_SHIFT) & 511)
    if raw & _PAGE_PRESENT:
        pud = (raw & PTE_PFN_MASK) >> PAGE_SHIFT
    else:
        table = _next_table(m, mm.pgd, pgd_index(addr), alloc)
        if table is None:
            return None
        pud = table
    raw = pgtables[pud].item((addr >> PUD_SHIFT) & 511)
    if raw & _PAGE_PRESENT:
        pmd = (raw & PTE_PFN_MASK) >> PAGE_SHIFT
    else:
        table = _next_table(m, pud, pud_index(addr), alloc)
        if table is None:
            return None
        pmd = table
    return pmd, (addr >> PMD_SHIFT) & 511


def pte_slot(mm: MMStruct, addr: int, alloc: bool = False) -> tuple[int, int] | None:
    """(PTE table pfn, index) for ``addr``, or None when a PMD leaf or nothing is there
    (allocating the PTE table with __pte_alloc() when asked)."""
    slot = pmd_slot(mm, addr, alloc)
    if slot is None:
        return None
    table, idx = slot
    raw = int(mm.m.pgtables[table][idx])
    if raw and not (raw & _PAGE_PRESENT and not raw & _PAGE_PSE):
        return None  # a PMD leaf or a PMD-level swap-format entry
    pt = _next_table(mm.m, table, idx, alloc)
    return None if pt is None else (pt, pte_index(addr))


def set_pte_at(m: Machine, slot: tuple[int, int], val: int) -> None:
    """set_pte_at() - write one entry (counted as a PTE write).

    Models: include/linux/pgtable.h:set_pte_at() (v6.18).
    """
    m.pgtables[slot[0]][slot[1]] = val
    m.trace.costs["pte_writes"] += 1  # trace.cost("pte_writes") without the method call


def maybe_mkwrite(pte: int, vma: VMA) -> int:
    """maybe_mkwrite() - pte_mkwrite() (RW, SavedDirty back to D) only where the VMA is
    writable.

    Models: include/linux/mm.h:maybe_mkwrite() (v6.18).
    """
    return pte_mkwrite(pte) if vma.writable else pte


# -- faults -------------------------------------------------------------------------------
def handle_mm_fault(vma: VMA, address: int, flags: int) -> int:
    """handle_mm_fault() - resolve a fault at ``address`` in ``vma``; returns VM_FAULT_*.

    Models: mm/memory.c:__handle_mm_fault() (v6.18): an empty PMD in a THP-eligible
    anonymous range tries a PMD-sized fault first (create_huge_pmd(); file VMAs have no
    ``huge_fault`` here, so it falls back); a write to a read-only PMD leaf goes to
    wp_huge_pmd(); whatever falls back is handled at the PTE level.
    Access checks (VMA present, permissions) are the caller's (do_user_addr_fault()).
    """
    m = vma.vm_mm.m
    m.vmstat["pgfault"] += 1
    write = bool(flags & FAULT_FLAG_WRITE)
    slot = pmd_slot(vma.vm_mm, address, alloc=True)
    assert slot is not None
    pmd = int(m.pgtables[slot[0]][slot[1]])
    if pmd == 0 and vma_is_anonymous(vma) and hm.thp_vma_allowable_order(vma, address):
        ret = hm.do_huge_pmd_anonymous_page(vma, address, flags, slot)
        if not ret & VM_FAULT_FALLBACK:
            return ret
    elif pmd_leaf(pmd):
        if write and not pmd & _PAGE_RW:
            ret = wp_huge_pmd(vma, address, flags, slot)
            if not ret & VM_FAULT_FALLBACK:
                return ret
        else:
            hm.huge_pmd_set_accessed(vma, slot, write)
            return 0
    elif pmd and is_device_private_entry(pmd):
        return hm.do_huge_pmd_device_private(vma, address, flags, slot)
    return handle_pte_fault(vma, address, flags)


def wp_huge_pmd(vma: VMA, address: int, flags: int, slot: tuple[int, int]) -> int:
    """wp_huge_pmd() - a write to a read-only PMD leaf.

    Models: mm/memory.c:wp_huge_pmd() (v6.18): an anonymous VMA's goes to
    do_huge_pmd_wp_page(); a file VMA's (a private mapping's COW, or a shared mapping's
    write notification) is handled at the PTE level: the PMD is split (for a file VMA,
    cleared) and the fault falls back.
    """
    if vma_is_anonymous(vma):
        return hm.do_huge_pmd_wp_page(vma, address, flags, slot)
    hm.__split_huge_pmd(vma, slot, address, False)
    return VM_FAULT_FALLBACK


def handle_pte_fault(vma: VMA, address: int, flags: int) -> int:
    """handle_pte_fault() - the PTE-level fault: none, swap-format, or write-protect.

    Models: mm/memory.c:handle_pte_fault() (v6.18): a missing PTE goes to
    do_anonymous_page() in an anonymous VMA and to do_fault() in a file VMA (which
    allocates the PTE table only if no PMD maps the folio instead: do_pte_missing()).
    """
    m = vma.vm_mm.m
    if not vma_is_anonymous(vma):
        here = pte_slot(vma.vm_mm, address)
        if here is None or int(m.pgtables[here[0]][here[1]]) == 0:
            from pyfolio.mm.memory_file import do_fault

            pmd = pmd_slot(vma.vm_mm, address)
            assert pmd is not None
            return do_fault(VmFault(vma, address & ~(PAGE_SIZE - 1),
                                    vma.linear_page_index(address), flags, pmd))
    slot = pte_slot(vma.vm_mm, address, alloc=True)
    assert slot is not None, "PTE fault under a PMD leaf"
    pte = int(m.pgtables[slot[0]][slot[1]])
    write = bool(flags & FAULT_FLAG_WRITE)
    if pte == 0:
        return do_anonymous_page(vma, address, flags, slot)
    if not pte_present(pte):
        return do_swap_page(vma, address, flags, slot)
    if write and not pte & _PAGE_RW:
        return do_wp_page(vma, address, flags, slot)
    new = (pte_mkdirty(pte) if write else pte) | _PAGE_ACCESSED  # pte_mkdirty(); pte_mkyoung()
    if new != pte:
        set_pte_at(m, slot, new)
    return 0


def pte_range_none(m: Machine, table: int, first: int, nr_pages: int) -> bool:
    """pte_range_none() - are the ``nr_pages`` entries from slot ``first`` all empty?

    Models: mm/memory.c:pte_range_none() (v6.18).
    """
    return not m.pgtables[table][first: first + nr_pages].any()


def alloc_anon_folio(vma: VMA, address: int, slot: tuple[int, int]) -> Folio | None:
    """alloc_anon_folio() - a zeroed folio for an anonymous write fault: the largest
    allowed mTHP size that fits, else one page; None when not even a page is free.

    Models: mm/memory.c:alloc_anon_folio() (v6.18): the orders below the PMD order that
    thp_vma_allowable_orders() (the hugepages-<size>kB/enabled settings) and
    thp_vma_suitable_orders() (the aligned range lies in the VMA) allow; from the highest,
    the first whose aligned range of PTEs is all none (pte_range_none()); then the
    allocation is tried order by order downwards (each failure counts that size's
    ``anon_fault_fallback``) before order 0 (folio_prealloc()). No memcg charge (so never
    ``anon_fault_fallback_charge``), no userfaultfd.
    """
    from pyfolio.mm.page_alloc import alloc_pages

    m = vma.vm_mm.m
    orders = hm.thp_vma_allowable_orders(vma, (1 << HPAGE_PMD_ORDER) - 1)
    orders = hm.thp_vma_suitable_orders(vma, address, orders)
    order = hm.highest_order(orders)
    while orders:
        first = pte_index(address & ~((PAGE_SIZE << order) - 1))
        if pte_range_none(m, slot[0], first, 1 << order):
            break
        orders, order = hm.next_order(orders, order)
    while orders:
        try:
            pfn = alloc_pages(m, order)
            break
        except MmError:
            count_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_ANON_FAULT_FALLBACK)
            m.trace.emit("anon_fault_fallback", address=address, order=order)
            orders, order = hm.next_order(orders, order)
    else:
        try:
            pfn = alloc_pages(m, 0)
        except MmError:
            return None
    folio = Folio(m, pfn)
    m.mem.stamp[pfn: pfn + folio.nr_pages] = 0
    m.trace.cost("pages_zeroed", folio.nr_pages)
    return folio


def do_anonymous_page(vma: VMA, address: int, flags: int, slot: tuple[int, int]) -> int:
    """do_anonymous_page() - first touch of an anonymous page.

    Models: mm/memory.c:do_anonymous_page() (v6.18): a read maps the shared zero page
    read-only (a special PTE: no refcount, no mapcount); a write gets a zeroed folio from
    alloc_anon_folio() (an mTHP of 2^order pages where the per-size settings allow one,
    else order 0), takes a reference per page (folio_ref_add(nr_pages - 1)), counts the
    pages in MM_ANONPAGES and the size's ``anon_fault_alloc`` (mod_mthp_stat() ignores
    order 0), maps it exclusive to this process (folio_add_new_anon_rmap(RMAP_EXCLUSIVE)),
    puts it on the LRU and sets its nr_pages PTEs (set_ptes()) writable and dirty
    (pte_mkwrite(pte_mkdirty()): D and soft-dirty). The zero-page PTE counts in no
    RSS counter.
    """
    m = vma.vm_mm.m
    if not flags & FAULT_FLAG_WRITE:
        set_pte_at(m, slot, pfn_pte(m.zero_pfn, vma.vm_page_prot | _PAGE_SPECIAL))
        m.trace.emit("do_anonymous_page", address=address, zero_page=True)
        return 0
    anon_vma_prepare(vma)
    folio = alloc_anon_folio(vma, address, slot)
    if folio is None:
        return VM_FAULT_OOM
    nr = folio.nr_pages
    addr = address & ~(nr * PAGE_SIZE - 1)
    folio_ref_add(folio, nr - 1)
    add_mm_counter(vma.vm_mm, MM_ANONPAGES, nr)
    count_mthp_stat(m, folio_order(folio), MTHP_STAT.MTHP_STAT_ANON_FAULT_ALLOC)
    folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE)
    folio_add_lru_vma(folio, vma)
    first = pte_index(addr)
    for i in range(nr):  # set_ptes()
        entry = pfn_pte(folio.pfn + i, vma.vm_page_prot)
        set_pte_at(m, (slot[0], first + i), maybe_mkwrite(pte_mkdirty(entry), vma))
    m.trace.emit("do_anonymous_page", changes={"folio_order": folio_order(folio)},
                 address=addr, pfn=folio.pfn)
    return 0


def _wp_can_reuse_anon_folio(folio: Folio, vma: VMA) -> bool:
    """wp_can_reuse_anon_folio() (mm/memory.c, v6.18): a small folio is reused when only
    this mapping holds it (refcount 1); a large one (CONFIG_MM_ID,
    __wp_can_reuse_large_anon_folio()) when only this mm maps it and every reference is a
    mapping (large mapcount == refcount)."""
    if folio_test_large(folio):
        from pyfolio.include.linux.mm import folio_large_mapcount

        if folio_mms(folio) - {vma.vm_mm.id}:
            return False
        return folio_large_mapcount(folio) == folio_ref_count(folio)
    if folio_ref_count(folio) != 1:
        return False
    folio_move_anon_rmap(folio, vma)
    return True


def do_wp_page(vma: VMA, address: int, flags: int, slot: tuple[int, int]) -> int:
    """do_wp_page() - a write to a present, write-protected PTE: reuse or copy (COW).

    Models: mm/memory.c:do_wp_page() (v6.18): in a MAP_SHARED mapping the page is never
    copied (wp_page_shared()); an anon page marked PG_anon_exclusive is reused in place;
    so is an anon folio nobody else holds (wp_can_reuse_anon_folio()), which is then
    marked exclusive; otherwise wp_page_copy() gives this process its own copy (of a
    page-cache page of a MAP_PRIVATE file mapping, too). A write to the zero page always
    copies (into a fresh zeroed page).
    """
    m = vma.vm_mm.m
    pte = int(m.pgtables[slot[0]][slot[1]])
    pfn = pte_pfn(pte)
    folio = page_folio(m, pfn)
    if vma.vm_flags & (VM.SHARED | VM.MAYSHARE) and not pte & _PAGE_SPECIAL:
        from pyfolio.mm.memory_file import wp_page_shared

        pmd = pmd_slot(vma.vm_mm, address)
        assert pmd is not None
        return wp_page_shared(VmFault(vma, address, vma.linear_page_index(address), flags,
                                      pmd, pfn), folio, slot)
    if not pte & _PAGE_SPECIAL and not is_zero_folio(folio) and folio_test_anon(folio):
        if m.mem.test(pfn, PG.anon_exclusive) or _wp_can_reuse_anon_folio(folio, vma):
            m.mem.set(pfn, PG.anon_exclusive)
            set_pte_at(m, slot, maybe_mkwrite(pte_mkdirty(pte | _PAGE_ACCESSED), vma))
            m.trace.emit("wp_page_reuse", address=address, pfn=pfn)
            return 0
    return wp_page_copy(vma, address, slot)


def wp_page_copy(vma: VMA, address: int, slot: tuple[int, int]) -> int:
    """wp_page_copy() - copy the page, map the copy writable, drop the old mapping.

    Models: mm/memory.c:wp_page_copy() (v6.18). Secondary MMUs hear MMU_NOTIFY_CLEAR for
    the page first. Dropping one PTE of a large folio leaves it partially mapped, which
    queues it for deferred split (in folio_remove_rmap_pte()).
    RSS: a copy of an anon page replaces an anon page (no change); a copy of the zero
    page is one more MM_ANONPAGES page; a copy of a file page moves one page from
    mm_counter_file() to MM_ANONPAGES.
    """
    from pyfolio.mm.page_alloc import alloc_pages

    m = vma.vm_mm.m
    old = int(m.pgtables[slot[0]][slot[1]])
    old_pfn = pte_pfn(old)
    anon_vma_prepare(vma)
    try:
        new_pfn = alloc_pages(m, 0)
    except MmError:
        return VM_FAULT_OOM
    # MMU_NOTIFY_CLEAR for the page, before the PTE changes
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_CLEAR, vma.vm_mm,
                              address & ~(PAGE_SIZE - 1), (address & ~(PAGE_SIZE - 1)) + PAGE_SIZE)
    if old_pfn == m.zero_pfn:  # is_zero_pfn(): folio_prealloc(need_zero), nothing copied
        m.mem.stamp[new_pfn] = 0
        m.trace.cost("pages_zeroed")
    else:  # __wp_page_copy_user()
        m.mem.stamp[new_pfn] = m.mem.stamp[old_pfn]
        m.trace.cost("pages_copied")
    new = Folio(m, new_pfn)
    folio_add_new_anon_rmap(new, vma, address, RMAP_EXCLUSIVE)
    folio_add_lru_vma(new, vma)
    entry = pfn_pte(new_pfn, vma.vm_page_prot)
    set_pte_at(m, slot, maybe_mkwrite(pte_mkdirty(entry), vma))
    m.trace.cost("tlb_flushes")
    old_folio = page_folio(m, old_pfn)
    if old & _PAGE_SPECIAL or is_zero_folio(old_folio):
        inc_mm_counter(vma.vm_mm, MM_ANONPAGES)
    else:
        if not folio_test_anon(old_folio):  # a private file page becomes anon
            dec_mm_counter(vma.vm_mm, mm_counter_file(old_folio))
            inc_mm_counter(vma.vm_mm, MM_ANONPAGES)
        folio_remove_rmap_pte(old_folio, old_pfn, vma)
        folio_put(old_folio)
    m.trace.emit("wp_page_copy", address=address, old_pfn=old_pfn, new_pfn=new_pfn)
    return 0


def do_swap_page(vma: VMA, address: int, flags: int, slot: tuple[int, int]) -> int:
    """do_swap_page() - a fault on a swap-format PTE.

    Models: mm/memory.c:do_swap_page() (v6.18): a device-private entry calls the owning
    driver's ``pgmap->ops->migrate_to_ram()`` with the page locked and referenced
    (``trylock_page()``, ``get_page()``; afterwards ``unlock_page()`` and ``put_page()`` of
    ``vmf->page``, whose folio may by then be a piece of a split). If the page is already
    locked the fault returns 0 and the access faults again. An entry of a swap area is
    swapped in (:func:`pyfolio.mm.memory_swap.do_swap_page_swap`); a device-exclusive entry
    goes to remove_device_exclusive_entry(); a migration entry seen outside an operation is
    an error (there is nothing to wait for).
    """
    m = vma.vm_mm.m
    raw = int(m.pgtables[slot[0]][slot[1]])
    if is_swap_entry(raw):
        from pyfolio.mm.memory_swap import do_swap_page_swap

        return do_swap_page_swap(vma, address, flags, slot)
    if is_device_exclusive_entry(raw):
        return remove_device_exclusive_entry(vma, address, slot)
    if is_device_private_entry(raw):
        from pyfolio.arch.x86.pgtable import swp_offset
        from pyfolio.mm.migrate import ref_drop, ref_hold

        pfn = swp_offset(raw)
        if folio_test_locked(page_folio(m, pfn)):
            return 0  # trylock_page() failed
        folio_lock(page_folio(m, pfn))
        ref_hold(page_folio(m, pfn))
        pgmap = m.pgmaps[int(m.mem.pgmap[pfn])]
        ret = int(pgmap.ops.migrate_to_ram(vma, address, pfn, True))  # type: ignore[attr-defined]
        folio_unlock(page_folio(m, pfn))
        ref_drop(page_folio(m, pfn))
        return ret
    raise MmError(EFAULT, f"swap-format entry {raw:#x} at {address:#x}: neither a swap slot "
                          "nor a device-private page")


def restore_exclusive_pte(vma: VMA, pfn: int, address: int, slot: tuple[int, int]) -> None:
    """restore_exclusive_pte() - a device-exclusive entry back to an ordinary PTE: old,
    soft-dirty as the entry was, writable (and dirty if the folio is) where the VMA is
    writable and the page anon-exclusive (can_change_pte_writable()). The mapping, its
    reference and the RSS count stayed all along, so nothing else changes.

    Models: mm/memory.c:restore_exclusive_pte() (v6.18).
    """
    from pyfolio.arch.x86.pgtable import _PAGE_SWP_SOFT_DIRTY, pte_mksoft_dirty
    from pyfolio.mm.mprotect import can_change_pte_writable

    m = vma.vm_mm.m
    orig = int(m.pgtables[slot[0]][slot[1]])
    pte = pte_mkold(pfn_pte(pfn, vma.vm_page_prot))
    if orig & _PAGE_SWP_SOFT_DIRTY:
        pte = pte_mksoft_dirty(pte)
    if vma.writable and can_change_pte_writable(vma, address, pte):
        if m.mem.test(page_folio(m, pfn).pfn, PG.dirty):
            pte = pte_mkdirty(pte)
        pte = pte_mkwrite(pte)
    set_pte_at(m, slot, pte)
    m.trace.emit("restore_exclusive_pte", address=address, pfn=pfn)


def try_restore_exclusive_pte(vma: VMA, address: int, slot: tuple[int, int]) -> int:
    """try_restore_exclusive_pte() - restore the entry if the folio lock can be taken
    without sleeping (fork calls it); 0, or -EBUSY when the folio is locked.

    Models: mm/memory.c:try_restore_exclusive_pte() (v6.18).
    """
    from pyfolio.arch.x86.pgtable import swp_offset

    m = vma.vm_mm.m
    pfn = swp_offset(int(m.pgtables[slot[0]][slot[1]]))
    folio = page_folio(m, pfn)
    if folio_test_locked(folio):
        return -EBUSY
    folio_lock(folio)
    restore_exclusive_pte(vma, pfn, address, slot)
    folio_unlock(folio)
    return 0


def remove_device_exclusive_entry(vma: VMA, address: int, slot: tuple[int, int]) -> int:
    """remove_device_exclusive_entry() - a CPU fault on a device-exclusive entry takes the
    page back: the folio referenced and locked (a locked folio: return 0, the access faults
    again), secondary MMUs told (MMU_NOTIFY_CLEAR, owner NULL: the device drops its
    exclusive mapping), the PTE restored (restore_exclusive_pte()).

    Models: mm/memory.c:remove_device_exclusive_entry() (v6.18).
    """
    from pyfolio.arch.x86.pgtable import swp_offset
    from pyfolio.mm.migrate import ref_drop, ref_hold

    m = vma.vm_mm.m
    pfn = swp_offset(int(m.pgtables[slot[0]][slot[1]]))
    folio = page_folio(m, pfn)
    if folio_test_locked(folio):
        return 0  # folio_lock_or_retry()
    ref_hold(folio)  # folio_try_get()
    folio_lock(folio)
    # mmu_notifier_range_init_owner(MMU_NOTIFY_CLEAR, ..., address, address + PAGE_SIZE, NULL)
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_CLEAR, vma.vm_mm, address,
                              address + PAGE_SIZE)
    restore_exclusive_pte(vma, pfn, address, slot)
    folio_unlock(folio)
    ref_drop(folio)
    return 0


# -- zap ----------------------------------------------------------------------------------
def zap_pte_range(vma: VMA, table: int, start: int, end: int,
                  details: ZapDetails | None = None) -> None:
    """zap_pte_range() - clear the PTEs for [start, end) inside one PTE table.

    Models: mm/memory.c:zap_pte_range() (v6.18): each present page loses its rmap and
    the reference its mapping held, and its page leaves ``rss[mm_counter(folio)]``
    (zap_present_folio_ptes()); a dirty PTE of a page-cache page dirties its folio;
    zero-page PTEs are just cleared; device-private entries drop their folio like present
    ones (zap_nonpresent_ptes(): ``rss[mm_counter(folio)]--``); a swap-cache folio left
    unmapped leaves the swap cache when nothing else needs its slots (the mmu_gather's
    free_pages_and_swap_cache(): free_swap_cache()); a batch of swap entries
    (swap_pte_batch()) gives back one slot reference each (free_swap_and_cache_nr(): slots
    nobody needs are freed, with a swap-cache folio left unmapped) and leaves MM_SWAPENTS.
    With ``details`` (unmap_mapping_range()), anon pages are left unless ``even_cows``
    (should_zap_folio()), and with ``single_folio`` only that folio's pages go.
    """
    from pyfolio.mm.memory_batch import zap_pte_run

    m = vma.vm_mm.m
    tbl = m.pgtables[table]
    lo, hi = pte_index(start), pte_index(start) + (end - start) // PAGE_SIZE
    i = lo
    while i < hi:
        raw = int(tbl[i])
        if raw == 0:
            nz = np.flatnonzero(tbl[i:hi])
            if not len(nz):
                break
            i += int(nz[0])
            continue
        if details is None and m.batch and (done := zap_pte_run(vma, tbl, i, hi)):
            i += done  # a run of order-0 anon PTEs in one step (pyfolio.mm.memory_batch)
            continue
        nr = 1
        if pte_present(raw):
            pfn = pte_pfn(raw)
            if not raw & _PAGE_SPECIAL:
                nr = folio_pte_batch(m, tbl, i, hi, pfn)
        elif is_device_private_entry(raw) or is_device_exclusive_entry(raw):
            from pyfolio.arch.x86.pgtable import swp_offset

            pfn = swp_offset(raw)
        elif is_swap_entry(raw):
            from pyfolio.mm.memory_swap import zap_nonpresent_swap_ptes

            i += zap_nonpresent_swap_ptes(vma, tbl, i, hi)
            continue
        else:
            pfn = -1
        if details is not None and pfn >= 0 and not (raw & _PAGE_PRESENT
                                                     and raw & _PAGE_SPECIAL):
            folio = page_folio(m, pfn)
            if (folio_test_anon(folio) and not details.even_cows) or (
                    details.single_folio >= 0 and folio.pfn != details.single_folio):
                i += nr  # should_zap_folio(): leave it
                continue
        if raw & _PAGE_PRESENT and not raw & _PAGE_SPECIAL and np.any(
                tbl[i: i + nr] & np.uint64(_PAGE_DIRTY_BITS)):
            folio = page_folio(m, pfn)
            if not folio_test_anon(folio):
                m.mem.set(folio.pfn, PG.dirty)  # folio_mark_dirty()
        tbl[i: i + nr] = 0
        m.trace.cost("pte_writes", nr)
        if pfn >= 0 and not (pte_present(raw) and raw & _PAGE_SPECIAL):
            folio = page_folio(m, pfn)
            add_mm_counter(vma.vm_mm, mm_counter(folio), -nr)
            folio_remove_rmap_ptes(folio, pfn, nr, vma)
            if m.mem.test(folio.pfn, PG.swapcache):  # free_pages_and_swap_cache()
                from pyfolio.mm.swap_state import free_swap_cache

                free_swap_cache(folio)
            folio_put_refs(folio, nr)
        i += nr
    m.trace.cost("tlb_flushes")


def folio_pte_batch(m: Machine, tbl: np.ndarray, i: int, hi: int, pfn: int) -> int:
    """folio_pte_batch() - how many PTEs from slot ``i`` (before slot ``hi``) map consecutive
    pages of the folio of ``pfn``, starting at ``pfn`` (present, not special; the A/D/RW
    bits may differ; all PROT_NONE or none of them, as the first). The entry at ``i``
    must be such a PTE.

    Models: mm/internal.h:folio_pte_batch() (v6.18); x86's pte_advance_pfn() steps an
    inverted (PROT_NONE) PFN downwards, so a batch of PROT_NONE PTEs is one too.
    """
    folio = page_folio(m, pfn)
    n = min(hi - i, folio.pfn + folio.nr_pages - pfn)
    if n <= 1:
        return 1
    vals = tbl[i: i + n]
    want = np.arange(pfn, pfn + n, dtype=np.uint64)
    inverted = (int(tbl[i]) & _PAGE_PRESENT) == 0  # a PROT_NONE batch
    pfns = ((~vals if inverted else vals) & np.uint64(PTE_PFN_MASK)) >> np.uint64(12)
    kind = np.uint64(_PAGE_PROTNONE if inverted else _PAGE_PRESENT)
    ok = (pfns == want) & (vals & np.uint64(_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_SPECIAL)
                           == kind)
    return n if ok.all() else max(1, int(np.argmin(ok)))


def zap_page_range(vma: VMA, start: int, end: int, reclaim_pt: bool = False,
                   details: ZapDetails | None = None) -> None:
    """zap_page_range_single() - unmap every page of [start, end) in ``vma``.

    Models: mm/memory.c:zap_pmd_range() (v6.18): a PMD leaf fully inside the range is zapped
    whole (zap_huge_pmd()); one only partly inside is split first (__split_huge_pmd()).
    ``reclaim_pt`` (``zap_details.reclaim_pt``, set by MADV_DONTNEED; CONFIG_PT_RECLAIM, on
    by default on x86-64 since 6.14): a PTE table whose whole 2 MiB the zap covered is freed
    and its PMD cleared when no entry is left (mm/pt_reclaim.c:try_to_free_pte()).
    """
    from pyfolio.mm.memory_batch import zap_pte_ranges

    mm = vma.vm_mm
    # the batched path (pyfolio.mm.memory_batch): the PTE tables of a zap over more than
    # one are zapped together, before anything else of the zap comes
    pending: list[tuple[int, int, int]] | None = (
        [] if details is None and not reclaim_pt and mm.m.batch and end - start > PMD_SIZE
        else None)
    for addr, nxt, slot in pmd_chunks(vma, start, end):
        raw = int(mm.m.pgtables[slot[0]][slot[1]])
        if raw and (pmd_leaf(raw) or not raw & _PAGE_PRESENT):
            if pending:
                zap_pte_ranges(vma, pending)
                pending.clear()
            if addr & (PMD_SIZE - 1) == 0 and nxt - addr == PMD_SIZE:
                hm.zap_huge_pmd(vma, slot, addr)
                continue
            hm.__split_huge_pmd(vma, slot, addr, False)
            raw = int(mm.m.pgtables[slot[0]][slot[1]])
        if raw and pending is not None:
            pending.append((pte_pfn(raw), addr, nxt))
        elif raw:
            zap_pte_range(vma, pte_pfn(raw), addr, nxt, details)
            if reclaim_pt and nxt - addr >= PMD_SIZE:  # reclaim_pt_is_enabled()
                try_to_free_pte(mm, slot, pte_pfn(raw))
    if pending:
        zap_pte_ranges(vma, pending)
    mm.m.trace.emit("zap_page_range", start=start, end=end)


def try_to_free_pte(mm: MMStruct, slot: tuple[int, int], table: int) -> None:
    """try_to_free_pte() - free a PTE table that has no entry left, clearing its PMD.

    Models: mm/pt_reclaim.c:try_to_free_pte() (v6.18).
    """
    m = mm.m
    if m.pgtables[table].any():
        return
    m.pgtables[slot[0]][slot[1]] = 0  # pmd_clear()
    pte_free(m, table)  # free_pte(): pte_free_tlb()
    m.trace.emit("try_to_free_pte", changes={"page_tables": -1}, table=table)


# -- fork ---------------------------------------------------------------------------------
def copy_page_range(dst_vma: VMA, src_vma: VMA) -> None:
    """copy_page_range() - fork: give the child the parent's mappings of ``src_vma``.

    Models: mm/memory.c:copy_page_range(), copy_pte_range(), copy_present_ptes() (v6.18):
    anon pages are shared (folio_get plus folio_try_dup_anon_rmap_pte) and both PTEs are
    write-protected for COW (pte_wrprotect(): a dirty page's D moves to SavedDirty); the
    child's PTE is marked old. A possibly pinned exclusive
    page is copied for the child at once (copy_present_page()). PMD leaves go to
    copy_huge_pmd(), which splits and retries at the PTE level for a pinned THP.
    Nothing is copied for a VMA without an anon_vma (vma_needs_copy(): only read faults,
    so only zero-page PTEs): the child faults them in again. The child's RSS counts what
    it inherits: ``rss[MM_ANONPAGES]++`` per shared or copied anon page
    (copy_present_ptes(), copy_present_page()), 512 per PMD (copy_huge_pmd()), one per
    device-private entry (copy_nonpresent_pte()); zero-page entries count nothing. For a
    COW mapping (is_cow_mapping()) secondary MMUs hear MMU_NOTIFY_PROTECTION_PAGE over
    the parent's whole VMA first.
    """
    if not vma_needs_copy(dst_vma, src_vma):
        return
    m = src_vma.vm_mm.m
    if is_cow_mapping(src_vma):  # the parent's entries lose write permission
        invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_PROTECTION_PAGE, src_vma.vm_mm,
                                  src_vma.vm_start, src_vma.vm_end)
    for addr, nxt, slot in pmd_chunks(src_vma, src_vma.vm_start, src_vma.vm_end):
        raw = int(m.pgtables[slot[0]][slot[1]])
        if raw and (pmd_leaf(raw) or not raw & _PAGE_PRESENT):
            if hm.copy_huge_pmd(dst_vma, src_vma, slot, addr) == 0:
                continue
            raw = int(m.pgtables[slot[0]][slot[1]])
        if raw:
            _copy_pte_range(dst_vma, src_vma, pte_pfn(raw), addr, nxt)


def vma_needs_copy(dst_vma: VMA, src_vma: VMA) -> bool:
    """vma_needs_copy() - must fork copy this VMA's page tables?

    Models: mm/memory.c:vma_needs_copy() (v6.18): yes for uffd-wp, VM_PFNMAP/VM_MIXEDMAP
    (neither modelled) or an anon_vma; otherwise a fault will fill the child's entries.
    """
    del dst_vma  # userfaultfd_wp(dst_vma): not modelled
    return src_vma.anon_vma is not None


def _copy_pte_range(dst_vma: VMA, src_vma: VMA, src_table: int, start: int, end: int) -> None:
    from pyfolio.mm.page_alloc import alloc_pages

    m = src_vma.vm_mm.m
    src = m.pgtables[src_table]
    for addr in range(start, end, PAGE_SIZE):
        i = pte_index(addr)
        raw = int(src[i])
        if raw == 0:
            continue
        dslot = pte_slot(dst_vma.vm_mm, addr, alloc=True)
        assert dslot is not None
        if is_device_exclusive_entry(raw):  # copy_nonpresent_pte(): restore, copy as present
            if try_restore_exclusive_pte(src_vma, addr, (src_table, i)):
                raise MmError(ENOMEM, "fork: a device-exclusive folio is locked "
                              "(copy_pmd_range() turns -EBUSY into -ENOMEM)")
            raw = int(src[i])
        if not pte_present(raw):
            hm.copy_nonpresent_pte(dst_vma, src_vma, (src_table, i), dslot, addr)
            continue
        if raw & _PAGE_SPECIAL:
            set_pte_at(m, dslot, raw)
            continue
        pfn = pte_pfn(raw)
        folio = page_folio(m, pfn)
        if not folio_test_anon(folio):  # a page-cache page of a private file mapping
            from pyfolio.mm.rmap_file import folio_dup_file_rmap_ptes

            folio_get(folio)
            folio_dup_file_rmap_ptes(folio, pfn, 1, dst_vma)
            inc_mm_counter(dst_vma.vm_mm, mm_counter(folio))
            set_pte_at(m, dslot, pte_mkold(raw))
            continue
        if not folio_try_dup_anon_rmap_ptes(folio, pfn, 1, src_vma):
            new_pfn = alloc_pages(m, 0)  # copy_present_page(): the child gets its own copy
            m.mem.stamp[new_pfn] = m.mem.stamp[pfn]
            m.trace.cost("pages_copied")
            anon_vma_prepare(dst_vma)
            folio_add_new_anon_rmap(Folio(m, new_pfn), dst_vma, addr, RMAP_EXCLUSIVE)
            folio_add_lru_vma(Folio(m, new_pfn), dst_vma)
            inc_mm_counter(dst_vma.vm_mm, MM_ANONPAGES)
            entry = pfn_pte(new_pfn, dst_vma.vm_page_prot)
            set_pte_at(m, dslot, maybe_mkwrite(pte_mkdirty(entry), dst_vma))
            continue
        folio_get(folio)
        inc_mm_counter(dst_vma.vm_mm, mm_counter(folio))  # anon or mm_counter_file()
        if raw & _PAGE_RW:  # __copy_present_ptes(): wrprotect_ptes() and pte_wrprotect()
            raw = pte_wrprotect(raw)
            set_pte_at(m, (src_table, i), raw)
        set_pte_at(m, dslot, pte_mkold(raw))
    m.trace.cost("tlb_flushes")


# -- page tables at munmap and exit ---------------------------------------------------------
def free_pgtables(mm: MMStruct, start: int, end: int) -> None:
    """free_pgtables() - free page tables that no longer cover any VMA.

    Models: mm/memory.c:free_pgtables() / free_pgd_range() (v6.18): a PTE, PMD or PUD table
    whose whole span lies in the unmapped gap is freed and its parent entry cleared.
    Simplification: tables are freed only when empty and their span meets no VMA.
    """
    from pyfolio.mm.memory_batch import free_pte_tables_run, pte_free_run

    m = mm.m
    # with the batch on, the tables are freed after the walk, in the walk's order, in one
    # step (pyfolio.mm.memory_batch.pte_free_run()): the walk reads no freed frame; each
    # PMD table's PTE tables are looked at in one step (free_pte_tables_run())
    freed: list[int] | None = [] if m.batch else None

    def span_free(lo: int, hi: int) -> bool:
        return not mm.vmas_between(lo, hi)

    def sweep(table: int, base: int, shift: int) -> bool:
        """Free empty child tables under ``table``; return True if ``table`` is empty."""
        tbl = m.pgtables[table]
        if shift == PAGE_SHIFT:  # a PTE table: no table below it
            return not tbl.any()
        if freed is not None and shift == PMD_SHIFT:
            return free_pte_tables_run(mm, table, base, start, end, freed)
        size = 1 << shift
        for i in (int(x) for x in np.flatnonzero(tbl)):
            raw = int(tbl[i])
            lo = base + i * size
            if not raw or lo >= end or lo + size <= start:
                continue
            is_table = raw & _PAGE_PRESENT and not raw & _PAGE_PSE and shift > 12
            if is_table and span_free(lo, lo + size):
                child = pte_pfn(raw)
                if sweep(child, lo, shift - 9):
                    if freed is None:
                        pte_free(m, child)
                    else:
                        del m.pgtables[child]
                        freed.append(child)
                    tbl[i] = 0
        return not tbl.any()

    sweep(mm.pgd, 0, PGDIR_SHIFT)
    if freed:
        pte_free_run(m, freed)
