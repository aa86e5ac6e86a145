"""migrate_vma_collect(): the first step of a device migration, walking the range.

Models: mm/migrate_device.c as merged with the 2025 series "mm: support THP migration for
zone device private pages" (linux-mm tree): the page-table walk that fills
``migrate->src`` (holes, PTEs, PMD leaves and device-private PMDs, the split of a large
folio met at PTE level) and replaces each collected mapping with a migration entry. The
overview, unmap, setup, pages and finalize are in :mod:`pyfolio.mm.migrate_device`, which
re-exports everything here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    pmd_leaf,
    pmd_present,
    pte_pfn,
    pte_present,
    swp_offset,
)
from pyfolio.include.linux.mm import (
    Folio,
    folio_lock,
    folio_test_large,
    folio_test_locked,
    folio_unlock,
    page_folio,
)
from pyfolio.include.linux.swapops import (
    is_device_private_entry,
    is_migration_entry,
    is_writable_device_private_entry,
)
from pyfolio.mm.memremap import page_pgmap
from pyfolio.mm.migrate import (
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    MIGRATE_PFN_VALID,
    MIGRATE_PFN_WRITE,
    MIGRATE_VMA_SELECT,
    MigrateVma,
    migrate_pfn,
    ref_drop,
    ref_hold,
    set_pmd_migration_entry,
    set_pte_migration_entry,
)
from pyfolio.mm.migrate_device_batch import collect_device_ptes_run
from pyfolio.mm.mmu_notifier import MMU_NOTIFY, invalidate_secondary_mmus
from pyfolio.sim.errors import EAGAIN, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    pass

__all__ = [
    "ENOENT", "migrate_vma_collect", "migrate_vma_collect_hole", "migrate_vma_collect_skip",
    "migrate_vma_collect_pmd", "migrate_vma_collect_huge_pmd", "migrate_vma_split_folio",
]

ENOENT = 2  # errno: "go on at the PTE level" from migrate_vma_collect_huge_pmd()


def migrate_vma_collect_skip(migrate: MigrateVma, start: int, end: int) -> int:
    """migrate_vma_collect_skip() - empty src/dst entries for [start, end).

    Models: mm/migrate_device.c:migrate_vma_collect_skip() (merged series).
    """
    for _ in range(start, end, PAGE_SIZE):
        migrate.dst[migrate.npages] = 0
        migrate.src[migrate.npages] = 0
        migrate.npages += 1
    return 0


def migrate_vma_collect_hole(migrate: MigrateVma, start: int, end: int) -> int:
    """migrate_vma_collect_hole() - unpopulated anon range: MIGRATE without a page, so the
    driver may allocate fresh device memory; with SELECT_COMPOUND and a PMD-aligned range
    one MIGRATE|COMPOUND entry plus 511 empty ones.

    Models: mm/migrate_device.c:migrate_vma_collect_hole() (merged series).
    """
    if (migrate.flags & MIGRATE_VMA_SELECT.COMPOUND and not start % PMD_SIZE
            and not end % PMD_SIZE):
        migrate.src[migrate.npages] = MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND
        migrate.dst[migrate.npages] = 0
        migrate.npages += 1
        migrate.cpages += 1
        return migrate_vma_collect_skip(migrate, start + PAGE_SIZE, end)
    for _ in range(start, end, PAGE_SIZE):
        migrate.src[migrate.npages] = MIGRATE_PFN_MIGRATE
        migrate.dst[migrate.npages] = 0
        migrate.npages += 1
        migrate.cpages += 1
    return 0


def migrate_vma_split_folio(folio: Folio, fault_page: int | None) -> int:
    """migrate_vma_split_folio() - split a large folio met at PTE level (split_folio()),
    keeping the fault page's folio locked and referenced. Returns 0 or -errno.

    Models: mm/migrate_device.c:migrate_vma_split_folio() (merged series, linux-mm).
    """
    from pyfolio.mm.huge_memory_split import split_folio

    m = folio.m
    fault_folio = page_folio(m, fault_page) if fault_page is not None else None
    if folio != fault_folio:
        ref_hold(folio)
        folio_lock(folio)
    ret = split_folio(folio)
    if ret:
        if folio != fault_folio:
            folio_unlock(folio)
            ref_drop(folio)
        return ret
    new_fault = page_folio(m, fault_page) if fault_page is not None else None
    if new_fault is None:
        folio_unlock(folio)
        ref_drop(folio)
    elif folio != new_fault:
        if new_fault != fault_folio:
            ref_hold(new_fault)
            folio_lock(new_fault)
        folio_unlock(folio)
        ref_drop(folio)
    return 0


def migrate_vma_collect_huge_pmd(migrate: MigrateVma, slot: tuple[int, int], start: int,
                                 end: int, fault_folio: Folio | None) -> int:
    """migrate_vma_collect_huge_pmd() - collect a PMD-mapped THP or device-private PMD.

    Models: mm/migrate_device.c:migrate_vma_collect_huge_pmd() (merged series): a huge
    zero PMD is a hole; a present THP needs SELECT_SYSTEM, a device-private PMD
    SELECT_DEVICE_PRIVATE and the owner; the folio is referenced and locked; with
    SELECT_COMPOUND over an aligned PMD range it is collected as ONE entry
    ``migrate_pfn(head) | MIGRATE | COMPOUND [| WRITE]`` and the PMD becomes a migration
    entry (set_pmd_migration_entry()); otherwise the folio is split (split_folio()) and
    -ENOENT sends the walk to the PTE level. Returns 0, -EAGAIN or -ENOENT.
    """
    from pyfolio.mm.huge_memory import is_huge_zero_pmd

    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    pmd = int(m.pgtables[slot[0]][slot[1]])
    if pmd == 0:
        return migrate_vma_collect_hole(migrate, start, end)
    if pmd_leaf(pmd):
        if not migrate.flags & MIGRATE_VMA_SELECT.SYSTEM:
            return migrate_vma_collect_skip(migrate, start, end)
        if is_huge_zero_pmd(m, pmd):
            return migrate_vma_collect_hole(migrate, start, end)
        folio, write = page_folio(m, pte_pfn(pmd)), bool(pmd & _PAGE_RW)
    elif not pmd_present(pmd):
        if is_migration_entry(pmd):
            return -EAGAIN
        folio = page_folio(m, swp_offset(pmd))
        if (not is_device_private_entry(pmd) or not migrate.flags
                & MIGRATE_VMA_SELECT.DEVICE_PRIVATE
                or page_pgmap(m, folio.pfn).owner is not migrate.pgmap_owner):
            return migrate_vma_collect_skip(migrate, start, end)
        write = is_writable_device_private_entry(pmd)
    else:
        return -EAGAIN
    ref_hold(folio)
    if folio != fault_folio and folio_test_locked(folio):
        ref_drop(folio)
        return migrate_vma_collect_skip(migrate, start, end)
    if folio != fault_folio:
        folio_lock(folio)
    if (migrate.flags & MIGRATE_VMA_SELECT.COMPOUND and not start % PMD_SIZE
            and not end % PMD_SIZE):
        i = migrate.npages
        migrate.src[i] = (migrate_pfn(folio.pfn) | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND
                          | (MIGRATE_PFN_WRITE if write else 0))
        migrate.dst[i] = 0
        if set_pmd_migration_entry(vma, slot, folio.pfn) == 0:
            migrate.npages += 1
            migrate.cpages += 1
            migrate_vma_collect_skip(migrate, start + PAGE_SIZE, end)
            return 0
        migrate.src[i] = 0
    return _collect_huge_pmd_fallback(migrate, slot, start, end, folio, fault_folio)


def _collect_huge_pmd_fallback(migrate: MigrateVma, slot: tuple[int, int], start: int,
                               end: int, folio: Folio, fault_folio: Folio | None) -> int:
    """The ``fallback:`` label: split the folio and go on at PTE level."""
    from pyfolio.mm.huge_memory_split import split_folio

    m = folio.m
    ret = split_folio(folio) if folio_test_large(folio) else 0
    if fault_folio != folio:
        folio_unlock(folio)
    ref_drop(folio)
    if ret:
        return migrate_vma_collect_skip(migrate, start, end)
    if int(m.pgtables[slot[0]][slot[1]]) == 0:
        return migrate_vma_collect_hole(migrate, start, end)
    return -ENOENT


def _collect_pte(migrate: MigrateVma, pslot: tuple[int, int], addr: int,
                 fault_folio: Folio | None) -> tuple[int, Folio | None]:
    """One PTE of migrate_vma_collect_pmd(): (mpfn, large folio to split first or None)."""
    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    pte = int(m.pgtables[pslot[0]][pslot[1]])
    if pte == 0:
        migrate.cpages += 1
        return MIGRATE_PFN_MIGRATE, None
    if not pte_present(pte):
        if not is_device_private_entry(pte):
            return 0, None
        pfn = swp_offset(pte)
        if (not migrate.flags & MIGRATE_VMA_SELECT.DEVICE_PRIVATE
                or page_pgmap(m, pfn).owner is not migrate.pgmap_owner):
            return 0, None
        mpfn = migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE
        mpfn |= MIGRATE_PFN_WRITE if is_writable_device_private_entry(pte) else 0
    else:
        pfn = pte_pfn(pte)
        if pte & _PAGE_SPECIAL or pfn == m.zero_pfn:
            if migrate.flags & MIGRATE_VMA_SELECT.SYSTEM:
                migrate.cpages += 1
                return MIGRATE_PFN_MIGRATE, None
            return 0, None
        if not migrate.flags & MIGRATE_VMA_SELECT.SYSTEM:
            return 0, None
        mpfn = migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE
        mpfn |= MIGRATE_PFN_WRITE if pte & _PAGE_RW else 0
    folio = page_folio(m, pfn)
    if folio_test_large(folio):
        return 0, folio
    if not m.mem.mapping[folio.pfn]:
        return 0, None
    ref_hold(folio)
    if folio != fault_folio:
        if folio_test_locked(folio):
            ref_drop(folio)
            return 0, None
        folio_lock(folio)
    if pte_present(pte) and m.mem.test(pfn, PG.anon_exclusive):
        m.trace.cost("tlb_flushes")  # ptep_clear_flush() before folio_try_share_anon_rmap_pte()
    if not set_pte_migration_entry(vma, pslot, pfn):
        if folio != fault_folio:
            folio_unlock(folio)
        ref_drop(folio)
        return 0, None
    migrate.cpages += 1
    return mpfn, None


def migrate_vma_collect_pmd(migrate: MigrateVma, start: int, end: int) -> int:
    """migrate_vma_collect_pmd() - collect [start, end) inside one PMD.

    Models: mm/migrate_device.c:migrate_vma_collect_pmd() (merged series): a PMD leaf or
    non-present PMD goes to migrate_vma_collect_huge_pmd(); otherwise each PTE: none ->
    MIGRATE (hole), zero page -> MIGRATE without page, a normal or owned device-private
    page -> referenced, locked, replaced by a migration entry (rmap and mapping reference
    dropped); a page of a large folio is split first (migrate_vma_split_folio()) and the
    walk goes on from that page (``goto again``). ``unmapped`` survives the split, so one
    flush_tlb_range() at the end covers the PTEs cleared before and after it; only if a
    split fails is the flush done early, before migrate_vma_collect_skip() (besides the
    ptep_clear_flush() of each anon-exclusive page). With ``Machine.batch`` a run of
    device-private PTEs goes in one step (:func:`pyfolio.mm.migrate_device_batch.
    collect_device_ptes_run`, same result).
    """
    from pyfolio.mm.memory import pmd_slot, pte_slot

    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    fault_folio = page_folio(m, migrate.fault_page) if migrate.fault_page is not None else None
    slot = pmd_slot(vma.vm_mm, start)
    assert slot is not None
    unmapped = 0  # set once, above "again:": it survives the walk again after a split
    while True:
        pmd = int(m.pgtables[slot[0]][slot[1]])
        if pmd and (pmd & _PAGE_PSE or not pmd & _PAGE_PRESENT):
            ret = migrate_vma_collect_huge_pmd(migrate, slot, start, end, fault_folio)
            if ret == -EAGAIN:
                raise MmError(EAGAIN, f"PMD migration entry at {start:#x}: folio under migration")
            if ret == 0:
                return 0
        if int(m.pgtables[slot[0]][slot[1]]) == 0:
            return migrate_vma_collect_hole(migrate, start, end)
        addr = start - PAGE_SIZE
        while (addr := addr + PAGE_SIZE) < end:
            pslot = pte_slot(vma.vm_mm, addr)
            assert pslot is not None
            if done := collect_device_ptes_run(migrate, pslot, addr, end):
                addr += (done - 1) * PAGE_SIZE  # a run of device-private PTEs (Machine.batch)
                continue
            present = pte_present(int(m.pgtables[pslot[0]][pslot[1]]))
            mpfn, large = _collect_pte(migrate, pslot, addr, fault_folio)
            if large is not None:
                break
            unmapped += bool(mpfn & MIGRATE_PFN_VALID) and present
            migrate.dst[migrate.npages] = 0
            migrate.src[migrate.npages] = mpfn
            migrate.npages += 1
        else:
            if unmapped:  # "Only flush the TLB if we actually modified any entries"
                m.trace.cost("tlb_flushes")
            return 0
        if migrate_vma_split_folio(large, migrate.fault_page):
            if unmapped:  # the failure path flushes what it cleared before giving up
                m.trace.cost("tlb_flushes")
            return migrate_vma_collect_skip(migrate, addr, end)
        start = addr  # goto again: walk on from the split folio's page


def migrate_vma_collect(migrate: MigrateVma) -> None:
    """migrate_vma_collect() - walk the page tables of [start, end), one PMD at a time.

    Models: mm/migrate_device.c:migrate_vma_collect() with walk_page_range() calling
    migrate_vma_collect_pmd() / migrate_vma_collect_hole(); ``end`` becomes
    ``start + npages * PAGE_SIZE``. Secondary MMUs hear MMU_NOTIFY_MIGRATE for the range
    first, with ``pgmap_owner`` as the owner ("so that the registered device driver can
    skip invalidating device private page mappings that won't be migrated").
    """
    from pyfolio.mm.memory import pmd_slot

    vma = migrate.vma
    assert vma is not None
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_MIGRATE, vma.vm_mm, migrate.start,
                              migrate.end, migrate.pgmap_owner)
    addr = migrate.start
    while addr < migrate.end:
        nxt = min((addr | (PMD_SIZE - 1)) + 1, migrate.end)
        if pmd_slot(vma.vm_mm, addr) is None:
            migrate_vma_collect_hole(migrate, addr, nxt)
        else:
            migrate_vma_collect_pmd(migrate, addr, nxt)
        addr = nxt
    migrate.end = migrate.start + migrate.npages * PAGE_SIZE
    vma.vm_mm.m.trace.emit("migrate_vma_collect", changes={"cpages": migrate.cpages},
                           start=migrate.start, npages=migrate.npages)
