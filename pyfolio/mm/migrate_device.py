"""migrate_vma: move anonymous memory between system RAM and device-private memory.

Models: mm/migrate_device.c and include/linux/migrate.h as merged with the 2025 series
"mm: support THP migration for zone device private pages" (read in the linux-mm tree,
commit 08ea4eae). A driver fills a :class:`MigrateVma`, then calls
:func:`migrate_vma_setup` (collect + unmap: every page to migrate is locked, isolated and
replaced by a migration entry), allocates and copies destination pages into ``dst``,
calls :func:`migrate_vma_pages` (struct-page state moves; the THP split fallback runs
here) and :func:`migrate_vma_finalize` (migration entries become mappings of the new
pages, or of the old ones where migration failed; old pages are released).

Split fallback, two designs (``MigrateVma.split_design``, not a kernel field):
``"b"`` (default) as merged in Nov 2025 (mm-unstable during 6.18-rc; in Linus's tree for
v6.19 with mm-stable-2025-12-03, merge 7203ca412fc8): migrate_vma_split_unmapped_folio()
calls ``folio_split_unmapped(folio, 0)``;
``"a"`` the v7 patch 11/16 (Oct 2025): ``__split_huge_page_to_list_to_order(
folio_page(folio, 0), NULL, 0, true)``, an ``unmapped`` flag threaded through
``__folio_split()``. Both must leave the same machine state.

Simplifications: one walk step per PMD (the kernel's walk_page_range() may report a hole
spanning several PMDs at once; dmirror never passes more than one PMD); no
device-coherent memory; no swap or page cache.

Layout: the migrate_vma interface of include/linux/migrate.h (``MIGRATE_PFN_*``,
:class:`MigrateVma`) is in :mod:`pyfolio.mm.migrate` and the collect walk in
:mod:`pyfolio.mm.migrate_device_collect`; both are re-exported here, so every name of the
interface still imports from this module.
"""

from __future__ import annotations

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PSE,
    pte_alloc_one,
    pte_free,
    pte_pfn,
    pte_present,
)
from pyfolio.include.linux.huge_mm import MTHP_STAT, count_mthp_stat
from pyfolio.include.linux.mm import (
    VM_WARN_ON_FOLIO,
    Folio,
    add_mm_counter,
    folio_get,
    folio_mapcount,
    folio_mapped,
    folio_nr_pages,
    folio_order,
    folio_ref_count,
    folio_test_locked,
    folio_unlock,
    page_folio,
)
from pyfolio.include.linux.mm_types import MM_ANONPAGES
from pyfolio.mm.memremap import folio_is_device_private, is_device_private_page
from pyfolio.mm.migrate import (
    MIGRATE_PFN,
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    MIGRATE_PFN_SHIFT,
    MIGRATE_PFN_VALID,
    MIGRATE_PFN_WRITE,
    MIGRATE_VMA_SELECT,
    MigrateVma,
    folio_isolate_lru,
    folio_migrate_flags,
    folio_migrate_mapping,
    folio_putback_lru,
    migrate_pfn,
    migrate_pfn_to_page,
    ref_drop,
    ref_hold,
    remove_migration_ptes,
    try_to_migrate,
)
from pyfolio.mm.migrate_device_batch import (
    migrate_device_finalize_run,
    migrate_device_unmap_run,
    migrate_folios_run,
    migrate_pages_run,
)
from pyfolio.mm.migrate_device_collect import (
    migrate_vma_collect,
    migrate_vma_collect_hole,
    migrate_vma_collect_huge_pmd,
    migrate_vma_collect_pmd,
    migrate_vma_collect_skip,
    migrate_vma_split_folio,
)
from pyfolio.mm.mmu_notifier import MMU_NOTIFY, invalidate_secondary_mmus
from pyfolio.mm.swap import folio_add_lru
from pyfolio.sim.errors import EINVAL, MmError
from pyfolio.sim.memmap import PG, ZONE_DEVICE
from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SIZE, PMD_SIZE

__all__ = [
    "MIGRATE_PFN", "MIGRATE_PFN_VALID", "MIGRATE_PFN_MIGRATE", "MIGRATE_PFN_WRITE",
    "MIGRATE_PFN_COMPOUND", "MIGRATE_PFN_SHIFT", "MIGRATE_VMA_SELECT", "MigrateVma",
    "migrate_pfn", "migrate_pfn_to_page", "migrate_vma_setup", "migrate_vma_collect",
    "migrate_vma_collect_hole", "migrate_vma_collect_skip", "migrate_vma_collect_pmd",
    "migrate_vma_collect_huge_pmd", "migrate_vma_split_folio", "migrate_vma_check_page",
    "migrate_device_unmap", "migrate_vma_unmap", "migrate_vma_pages",
    "__migrate_device_pages", "migrate_vma_insert_page", "migrate_vma_insert_huge_pmd_page",
    "migrate_vma_split_unmapped_folio", "migrate_vma_nr_pages", "migrate_vma_finalize",
    "__migrate_device_finalize", "SPLIT_DESIGNS",
]


SPLIT_DESIGNS = ("a", "b")


# -- unmap --------------------------------------------------------------------------------
def migrate_vma_check_page(page: int, folio: Folio, fault_page: int | None) -> bool:
    """migrate_vma_check_page() - False if someone else holds a reference (a pin).

    Models: mm/migrate_device.c:migrate_vma_check_page(): one extra reference for the
    caller (isolation or collect), one more for the fault page, one more for ZONE_DEVICE;
    migratable iff ``refcount - extra <= mapcount``.
    """
    extra = 1 + (page == fault_page)
    if int(folio.m.mem.zone[folio.pfn]) == ZONE_DEVICE:
        extra += 1
    return folio_ref_count(folio) - extra <= folio_mapcount(folio)


def migrate_device_unmap(src: list[int], npages: int, fault_page: int | None,
                         m: object) -> int:
    """migrate_device_unmap() - isolate, unmap and check every collected folio.

    Models: mm/migrate_device.c:migrate_device_unmap() (merged series): large folios get
    COMPOUND; system folios are isolated from the LRU (the isolation reference replaces
    the collect reference); still-mapped folios go through try_to_migrate(); a folio still
    mapped or failing migrate_vma_check_page() is restored (migration entries removed,
    unlocked, released) and its entry cleared. Returns the entries still migrating. It
    begins with lru_add_drain(), so no folio still holds an LRU batch's reference. With
    ``Machine.batch`` a run of unmapped order-0 folios goes in one step
    (:func:`pyfolio.mm.migrate_device_batch.migrate_device_unmap_run`, same result).
    """
    from pyfolio.mm.swap import lru_add_drain
    from pyfolio.sim.machine import Machine

    assert isinstance(m, Machine)
    lru_add_drain(m)
    fault_folio = page_folio(m, fault_page) if fault_page is not None else None
    unmapped = restore = 0
    i = 0
    while i < npages:
        if done := migrate_device_unmap_run(src, i, npages, fault_page, m):
            unmapped += done  # a run of unmapped order-0 folios (Machine.batch)
            i += done
            continue
        page = migrate_pfn_to_page(src[i])
        if page is None:
            unmapped += bool(src[i] & MIGRATE_PFN_MIGRATE)
            i += 1
            continue
        folio = page_folio(m, page)
        nr = folio_nr_pages(folio)
        if nr > 1:
            src[i] |= MIGRATE_PFN_COMPOUND
        if int(m.mem.zone[folio.pfn]) != ZONE_DEVICE:
            if not folio_isolate_lru(folio):
                src[i] &= ~MIGRATE_PFN_MIGRATE
                restore += 1
                i += nr
                continue
            ref_drop(folio)
        if folio_mapped(folio):
            try_to_migrate(folio, 0)
        if folio_mapped(folio) or not migrate_vma_check_page(page, folio, fault_page):
            if int(m.mem.zone[folio.pfn]) != ZONE_DEVICE:
                ref_hold(folio)
                folio_putback_lru(folio)
            src[i] &= ~MIGRATE_PFN_MIGRATE
            restore += 1
        else:
            unmapped += 1
        i += nr
    for i in range(npages):
        page = migrate_pfn_to_page(src[i])
        if not restore or page is None or src[i] & MIGRATE_PFN_MIGRATE:
            continue
        folio = page_folio(m, page)
        remove_migration_ptes(folio, folio, 0)
        src[i] = 0
        if fault_folio != folio:
            folio_unlock(folio)
        ref_drop(folio)
        restore -= 1
    return unmapped


def migrate_vma_unmap(migrate: MigrateVma) -> None:
    """migrate_vma_unmap() - ``cpages = migrate_device_unmap(...)``.

    Models: mm/migrate_device.c:migrate_vma_unmap().
    """
    assert migrate.vma is not None
    migrate.cpages = migrate_device_unmap(migrate.src, migrate.npages, migrate.fault_page,
                                          migrate.vma.vm_mm.m)


def migrate_vma_setup(args: MigrateVma) -> int:
    """migrate_vma_setup() - collect, lock, isolate and unmap the pages of a range.

    Models: mm/migrate_device.c:migrate_vma_setup() (merged series). Raises MmError(EINVAL)
    (the kernel returns -EINVAL) with nothing changed for: no VMA, an empty range, a range
    not inside the VMA, a fault page that is not a locked device-private page; and, a
    simulator limit, for a file or shmem VMA (see the message). ``src`` and
    ``dst`` are (re)sized to the range. Returns 0.

    After it, each entry with MIGRATE_PFN_MIGRATE and a page is unmapped (migration
    entries), locked and held by one reference.
    """
    vma = args.vma
    args.start &= ~(PAGE_SIZE - 1)
    nr_pages = (args.end - args.start) // PAGE_SIZE
    args.end = args.start + max(nr_pages, 0) * PAGE_SIZE
    if vma is None:
        raise MmError(EINVAL, "migrate_vma_setup: no VMA")
    if nr_pages <= 0:
        raise MmError(EINVAL, f"migrate_vma_setup: empty range at {args.start:#x}")
    if not vma.vm_start <= args.start < vma.vm_end or not vma.vm_start < args.end <= vma.vm_end:
        raise MmError(EINVAL, f"migrate_vma_setup: [{args.start:#x}, {args.end:#x}) is not "
                      f"inside the VMA [{vma.vm_start:#x}, {vma.vm_end:#x})")
    if vma.vm_ops is not None:
        raise MmError(EINVAL, "migrate_vma_setup: device migration of a file or shmem "
                              "mapping is not modelled by the simulator (the kernel collects "
                              "such pages, but migrate_vma_pages() moves only anonymous "
                              "memory to device-private memory)")
    m = vma.vm_mm.m
    if args.fault_page is not None and not (is_device_private_page(m, args.fault_page)
                                            and folio_test_locked(page_folio(m, args.fault_page))):
        raise MmError(EINVAL, "migrate_vma_setup: fault_page is not a locked device page")
    if args.split_design not in SPLIT_DESIGNS:
        raise MmError(EINVAL, f"split design {args.split_design!r} is not one of {SPLIT_DESIGNS}")
    args.src = [0] * nr_pages
    args.dst = [0] * nr_pages
    args.cpages = args.npages = 0
    migrate_vma_collect(args)
    if args.cpages:
        migrate_vma_unmap(args)
    m.trace.emit("migrate_vma_setup", changes={"cpages": args.cpages, "npages": args.npages},
                 start=args.start, end=args.end, flags=int(args.flags))
    return 0


# -- pages ----------------------------------------------------------------------------------
def migrate_vma_insert_huge_pmd_page(migrate: MigrateVma, addr: int, page: int,
                                     src: list[int], idx: int, slot: tuple[int, int]) -> int:
    """migrate_vma_insert_huge_pmd_page() - map a new device THP where there was a hole.

    Models: mm/migrate_device.c:migrate_vma_insert_huge_pmd_page() (merged series): like
    __do_huge_pmd_anonymous_page(): order 9, a PTE table deposited (or the huge zero
    PMD's kept), a device-private PMD (writable iff VM_WRITE), MM_ANONPAGES += 512, new
    exclusive anon rmap, one reference for the mapping, ``thp_fault_alloc`` and the
    2048kB ``anon_fault_alloc``. Any problem, the page table that cannot be allocated
    (pte_alloc_one()) among them, clears MIGRATE on all 512 entries before anything is
    mapped. Returns 0.
    """
    from pyfolio.include.linux.swapops import (
        make_readable_device_private_entry,
        make_writable_device_private_entry,
    )
    from pyfolio.mm.huge_memory import is_huge_zero_pmd, pgtable_trans_huge_deposit
    from pyfolio.mm.rmap import RMAP_EXCLUSIVE, anon_vma_prepare, folio_add_new_anon_rmap

    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    folio = page_folio(m, page)
    pmd = int(m.pgtables[slot[0]][slot[1]])
    suitable = not addr % PMD_SIZE and vma.vm_start <= addr and addr + PMD_SIZE <= vma.vm_end
    pgtable = -1
    if suitable and folio_is_device_private(folio):
        anon_vma_prepare(vma)
        try:
            pgtable = pte_alloc_one(m)
        except MmError:  # "if (unlikely(!pgtable)) goto abort;"
            pgtable = -1
        if pgtable >= 0 and pmd and not is_huge_zero_pmd(m, pmd):  # unlock_abort
            pte_free(m, pgtable)
            pgtable = -1
    if pgtable < 0:  # abort:
        for i in range(HPAGE_PMD_NR):
            src[idx + i] &= ~MIGRATE_PFN_MIGRATE
        return 0
    make = make_writable_device_private_entry if vma.writable else \
        make_readable_device_private_entry
    m.mem.set(folio.pfn, PG.uptodate)
    add_mm_counter(vma.vm_mm, MM_ANONPAGES, HPAGE_PMD_NR)
    folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE)
    folio_get(folio)  # the new mapping's reference
    if not pmd:
        pgtable_trans_huge_deposit(vma, slot, pgtable)
    else:  # over the huge zero PMD, whose deposited table stays: pte_free() the new one
        pte_free(m, pgtable)
        m.trace.cost("tlb_flushes")
    m.pgtables[slot[0]][slot[1]] = make(folio.pfn)
    m.trace.cost("pmd_writes")
    m.vmstat["thp_fault_alloc"] += 1
    count_mthp_stat(m, HPAGE_PMD_ORDER, MTHP_STAT.MTHP_STAT_ANON_FAULT_ALLOC)
    return 0


def migrate_vma_insert_page(migrate: MigrateVma, addr: int, idx: int) -> None:
    """migrate_vma_insert_page() - map a new device page at a hole or zero-page PTE.

    Models: mm/migrate_device.c:migrate_vma_insert_page() (merged series): a COMPOUND dst
    goes to migrate_vma_insert_huge_pmd_page(); a huge zero PMD is split first; the PTE
    must be none or the zero page; a device-private PTE (writable iff VM_WRITE),
    inc_mm_counter(MM_ANONPAGES) (the zero page it may replace was not counted), new
    exclusive anon rmap, one reference. Failure (a page table that cannot be allocated
    among the reasons) clears MIGRATE for the entry: the page is skipped, the rest go on.
    """
    from pyfolio.include.linux.swapops import (
        make_readable_device_private_entry,
        make_writable_device_private_entry,
    )
    from pyfolio.mm.huge_memory import is_huge_zero_pmd, split_huge_pmd
    from pyfolio.mm.memory import pmd_slot, pte_slot, set_pte_at
    from pyfolio.mm.rmap import RMAP_EXCLUSIVE, anon_vma_prepare, folio_add_new_anon_rmap

    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    page = migrate_pfn_to_page(migrate.dst[idx])
    assert page is not None
    try:
        slot = pmd_slot(vma.vm_mm, addr, alloc=True)
    except MmError:  # p4d/pud/pmd_alloc() failed: "goto abort"
        slot = None
    if slot is None:
        migrate.src[idx] &= ~MIGRATE_PFN_MIGRATE
        return
    if migrate.dst[idx] & MIGRATE_PFN_COMPOUND:
        migrate_vma_insert_huge_pmd_page(migrate, addr, page, migrate.src, idx, slot)
        return
    pmd = int(m.pgtables[slot[0]][slot[1]])
    if pmd and (pmd & _PAGE_PSE or not pmd & _PAGE_PRESENT):
        if not is_huge_zero_pmd(m, pmd):
            migrate.src[idx] &= ~MIGRATE_PFN_MIGRATE
            return
        split_huge_pmd(vma, slot, addr)
    try:
        pslot = pte_slot(vma.vm_mm, addr, alloc=True)
    except MmError:  # pte_alloc() failed: "goto abort"
        pslot = None
    if pslot is None:
        migrate.src[idx] &= ~MIGRATE_PFN_MIGRATE
        return
    old = int(m.pgtables[pslot[0]][pslot[1]])
    folio = page_folio(m, page)
    if (old and not (pte_present(old) and pte_pfn(old) == m.zero_pfn)) or \
            not folio_is_device_private(folio):
        migrate.src[idx] &= ~MIGRATE_PFN_MIGRATE
        return
    anon_vma_prepare(vma)
    m.mem.set(folio.pfn, PG.uptodate)
    add_mm_counter(vma.vm_mm, MM_ANONPAGES, 1)
    folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE)
    folio_get(folio)  # the new mapping's reference
    if old:
        m.trace.cost("tlb_flushes")
    make = make_writable_device_private_entry if vma.writable else \
        make_readable_device_private_entry
    set_pte_at(m, pslot, make(page))
    migrate.src[idx] = MIGRATE_PFN_MIGRATE


def migrate_vma_nr_pages(mpfn: int) -> int:
    """migrate_vma_nr_pages() - 512 for a COMPOUND entry, else 1.

    Models: mm/migrate_device.c:migrate_vma_nr_pages() (the series).
    """
    return HPAGE_PMD_NR if mpfn & MIGRATE_PFN_COMPOUND else 1


def migrate_vma_split_unmapped_folio(migrate: MigrateVma, idx: int, addr: int,
                                     folio: Folio) -> int:
    """migrate_vma_split_unmapped_folio() - the fallback when a COMPOUND source gets a
    small destination: split the isolated, unmapped THP and expand its src entry.

    Models: mm/migrate_device.c:migrate_vma_split_unmapped_folio(), two designs:

    * ``"b"`` merged (linux-mm, Nov 2025): ``folio_get``;
      ``split_huge_pmd_address(vma, addr, true)`` (the PMD migration entry becomes 512 PTE
      migration entries and drops a reference); ``folio_split_unmapped(folio, 0)``.
    * ``"a"`` v7 11/16 (balbirs-nv/linux, Oct 2025): the same, but the split is
      ``__split_huge_page_to_list_to_order(folio_page(folio, 0), NULL, 0, true)``.

    Then ``src[idx + i] = migrate_pfn(pfn + i) | flags`` for i in 1..511. Every new
    folio stays locked and isolated, holding one reference. Returns 0 or -errno.
    """
    from pyfolio.mm import huge_memory_split as split
    from pyfolio.mm.huge_memory import split_huge_pmd_address

    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    before = folio_ref_count(folio)
    folio_get(folio)  # split_huge_pmd_address(freeze=true) drops a reference at the end
    split_huge_pmd_address(vma, addr, True)
    VM_WARN_ON_FOLIO(folio_ref_count(folio) != before, folio)
    if migrate.split_design == "a":
        ret = split.__split_huge_page_to_list_to_order(Folio(m, folio.pfn), None, 0, True)
    else:
        ret = split.folio_split_unmapped(folio, 0)
    if ret:
        return ret
    span = range(folio.pfn, folio.pfn + HPAGE_PMD_NR)  # each new folio keeps one
    dict.update(m.mem.extra_refs, zip(span, m.mem._refcount[span.start: span.stop].tolist(),
                                      strict=True))
    migrate.src[idx] &= ~MIGRATE_PFN_COMPOUND
    flags = migrate.src[idx] & ((1 << MIGRATE_PFN_SHIFT) - 1)
    pfn = migrate.src[idx] >> MIGRATE_PFN_SHIFT
    for i in range(1, HPAGE_PMD_NR):
        migrate.src[idx + i] = migrate_pfn(pfn + i) | flags
    m.trace.emit("migrate_vma_split_unmapped_folio", changes={"folios": HPAGE_PMD_NR},
                 pfn=folio.pfn, design=migrate.split_design)
    return 0


def __migrate_device_pages(src: list[int], dst: list[int], npages: int,
                           migrate: MigrateVma) -> None:
    """__migrate_device_pages() - move struct-page state from each src to its dst.

    Models: mm/migrate_device.c:__migrate_device_pages() (merged series): no dst ->
    not migrated; a hole -> migrate_vma_insert_page() (a COMPOUND hole with small dsts
    inserts 512 pages; secondary MMUs hear MMU_NOTIFY_MIGRATE, with the owner, from the
    first hole filled to the end); COMPOUND src with small dst ->
    migrate_vma_split_unmapped_folio(); COMPOUND dst with small src -> not migrated; then
    folio_migrate_mapping() + folio_migrate_flags() for each page of the unit. With
    ``Machine.batch`` a run of order-0 entries, and the 512 folios of a split, go in one
    step (:mod:`pyfolio.mm.migrate_device_batch`, same result).
    """
    notified = False
    i = 0
    while i < npages:
        if not src[i] and not dst[i]:  # an empty entry (e.g. after a COMPOUND head)
            i += 1
            continue
        newpage, page = migrate_pfn_to_page(dst[i]), migrate_pfn_to_page(src[i])
        nr = 1
        if newpage is None:
            src[i] &= ~MIGRATE_PFN_MIGRATE
        elif page is None:
            if src[i] & MIGRATE_PFN_MIGRATE:
                if not notified:  # MMU_NOTIFY_MIGRATE from the first hole filled
                    notified = True
                    assert migrate.vma is not None
                    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_MIGRATE, migrate.vma.vm_mm,
                                              migrate.start + i * PAGE_SIZE, migrate.end,
                                              migrate.pgmap_owner)
                if src[i] & MIGRATE_PFN_COMPOUND and not dst[i] & MIGRATE_PFN_COMPOUND:
                    nr = migrate_vma_nr_pages(src[i])
                    src[i] &= ~MIGRATE_PFN_COMPOUND
                for j in range(min(nr, npages - i)):
                    src[i + j] |= MIGRATE_PFN_MIGRATE
                    if migrate_pfn_to_page(dst[i + j]) is not None:
                        migrate_vma_insert_page(migrate, migrate.start + (i + j) * PAGE_SIZE,
                                                i + j)
                    else:
                        src[i + j] &= ~MIGRATE_PFN_MIGRATE
        else:
            nr = migrate_pages_run(migrate, i, npages) or \
                _migrate_one(migrate, src, dst, i, page, newpage)
        i += nr


def _migrate_one(migrate: MigrateVma, src: list[int], dst: list[int], i: int, page: int,
                 newpage: int) -> int:
    """The page-backed branch of __migrate_device_pages(); returns the entries consumed."""
    m = migrate.vma.vm_mm.m if migrate.vma else None
    assert m is not None
    folio, newfolio = page_folio(m, page), page_folio(m, newpage)
    nr = 1
    if (src[i] & MIGRATE_PFN_MIGRATE and src[i] & MIGRATE_PFN_COMPOUND
            and not dst[i] & MIGRATE_PFN_COMPOUND):
        nr = 1 << folio_order(folio)
        if migrate_vma_split_unmapped_folio(migrate, i, migrate.start + i * PAGE_SIZE, folio):
            src[i] &= ~(MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND)
            return nr
    elif (src[i] & MIGRATE_PFN_MIGRATE and dst[i] & MIGRATE_PFN_COMPOUND
          and not src[i] & MIGRATE_PFN_COMPOUND):
        src[i] &= ~MIGRATE_PFN_MIGRATE
    if int(m.mem.zone[newfolio.pfn]) == ZONE_DEVICE and not folio_is_device_private(newfolio):
        src[i] &= ~MIGRATE_PFN_MIGRATE
        return nr
    extra = 1 if migrate.fault_page == page else 0
    if not extra and migrate_folios_run(m, src, dst, i, min(nr, len(src) - i)):
        return nr  # the folios of a split in one step (Machine.batch)
    for j in range(min(nr, len(src) - i)):
        if not src[i + j] & MIGRATE_PFN_MIGRATE:
            continue
        f = page_folio(m, src[i + j] >> MIGRATE_PFN_SHIFT)
        nf = page_folio(m, dst[i + j] >> MIGRATE_PFN_SHIFT)
        if folio_migrate_mapping(None, nf, f, extra):
            src[i + j] &= ~MIGRATE_PFN_MIGRATE
        else:
            folio_migrate_flags(nf, f)
    return nr


def migrate_vma_pages(migrate: MigrateVma) -> None:
    """migrate_vma_pages() - migrate struct-page state of every collected entry.

    Models: mm/migrate_device.c:migrate_vma_pages().
    """
    __migrate_device_pages(migrate.src, migrate.dst, migrate.npages, migrate)
    assert migrate.vma is not None
    migrate.vma.vm_mm.m.trace.emit("migrate_vma_pages", start=migrate.start)


# -- finalize -------------------------------------------------------------------------------
def __migrate_device_finalize(src: list[int], dst: list[int], npages: int,
                              fault_page: int | None, m: object) -> None:
    """__migrate_device_finalize() - migration entries to mappings of the new (or, where
    migration failed, the old) folio; unlock and release both.

    Models: mm/migrate_device.c:__migrate_device_finalize() (merged series): a system
    dst goes on the LRU; remove_migration_ptes(src, dst); src unlocked (unless it is the
    fault folio) and put; dst unlocked and put (the driver's allocation reference).
    With ``Machine.batch`` a run of order-0 pairs goes in one step
    (:func:`pyfolio.mm.migrate_device_batch.migrate_device_finalize_run`, same result).
    """
    from pyfolio.sim.machine import Machine

    assert isinstance(m, Machine)
    fault_folio = page_folio(m, fault_page) if fault_page is not None else None
    i = -1
    while i + 1 < npages:
        i += 1
        if not src[i] and not dst[i]:  # an empty entry: nothing to restore or release
            continue
        if fault_page is None and (done := migrate_device_finalize_run(src, dst, i, npages, m)):
            i += done - 1  # a run of order-0 pairs in one step (Machine.batch)
            continue
        newpage, page = migrate_pfn_to_page(dst[i]), migrate_pfn_to_page(src[i])
        dfolio = page_folio(m, newpage) if newpage is not None else None
        if page is None:
            if dfolio is not None:
                folio_unlock(dfolio)
                ref_drop(dfolio)
            continue
        sfolio = page_folio(m, page)
        if not src[i] & MIGRATE_PFN_MIGRATE or dfolio is None:
            if dfolio is not None:
                folio_unlock(dfolio)
                ref_drop(dfolio)
            dfolio = sfolio
        if int(m.mem.zone[dfolio.pfn]) != ZONE_DEVICE:
            folio_add_lru(dfolio)
        remove_migration_ptes(sfolio, dfolio, 0)
        if fault_folio != sfolio:
            folio_unlock(sfolio)
        ref_drop(sfolio)
        if dfolio != sfolio:
            folio_unlock(dfolio)
            ref_drop(dfolio)


def migrate_vma_finalize(migrate: MigrateVma) -> None:
    """migrate_vma_finalize() - restore CPU page-table entries; release the pages.

    Models: mm/migrate_device.c:migrate_vma_finalize().
    """
    assert migrate.vma is not None
    m = migrate.vma.vm_mm.m
    __migrate_device_finalize(migrate.src, migrate.dst, migrate.npages, migrate.fault_page, m)
    m.trace.emit("migrate_vma_finalize", start=migrate.start)

