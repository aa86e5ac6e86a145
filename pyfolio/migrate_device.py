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
``"b"`` (default) as merged in Nov 2025 (mm-unstable during 6.18-rc, so 6.19 at the
earliest): migrate_vma_split_unmapped_folio() calls ``folio_split_unmapped(folio, 0)``;
``"a"`` the v7 patch 11/16 (Oct 2025): ``__split_huge_page_to_list_to_order(
folio_page(folio, 0), NULL, 0, true)``, an ``unmapped`` flag threaded through
``__folio_split()``. Both must leave the same machine state.

Simplifications: one walk step per PMD (the kernel's walk_page_range() may report a hole
spanning several PMDs at once; dmirror never passes more than one PMD); no mmu
notifiers; no device-coherent memory; no swap or page cache.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import EAGAIN, EINVAL, MmError
from .folio import (
    Folio,
    folio_get,
    folio_lock,
    folio_mapcount,
    folio_mapped,
    folio_nr_pages,
    folio_order,
    folio_put,
    folio_ref_count,
    folio_test_large,
    folio_test_locked,
    folio_unlock,
    page_folio,
)
from .memmap import PG, ZONE_DEVICE
from .memremap import folio_is_device_private, is_device_private_page, page_pgmap
from .migrate import (
    folio_isolate_lru,
    folio_migrate_flags,
    folio_migrate_mapping,
    folio_putback_lru,
    ref_drop,
    ref_hold,
    remove_migration_ptes,
    set_pmd_migration_entry,
    set_pte_migration_entry,
    try_to_migrate,
)
from .pgtable import (
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    is_device_private_entry,
    is_migration_entry,
    is_writable_device_private_entry,
    pte_pfn,
    swp_offset,
)
from .units import HPAGE_PMD_NR, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from .mm_types import VMA

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


class MIGRATE_PFN(enum.IntFlag):
    """The flag bits of a src/dst entry (include/linux/migrate.h).

    An entry is ``pfn << MIGRATE_PFN_SHIFT | flags``::

        63 ............ 6 | 5 | 4        | 3     | 2 | 1       | 0
        pfn               | - | COMPOUND | WRITE | - | MIGRATE | VALID
    """

    VALID = 1 << 0
    MIGRATE = 1 << 1
    WRITE = 1 << 3
    COMPOUND = 1 << 4


# Plain ints (as the kernel's #defines): ``~`` of an IntFlag member would keep only the
# other flag bits and wipe the PFN.
MIGRATE_PFN_VALID = int(MIGRATE_PFN.VALID)
MIGRATE_PFN_MIGRATE = int(MIGRATE_PFN.MIGRATE)
MIGRATE_PFN_WRITE = int(MIGRATE_PFN.WRITE)
MIGRATE_PFN_COMPOUND = int(MIGRATE_PFN.COMPOUND)
MIGRATE_PFN_SHIFT = 6
SPLIT_DESIGNS = ("a", "b")
ENOENT = 2  # errno: "go on at the PTE level" from migrate_vma_collect_huge_pmd()


class MIGRATE_VMA_SELECT(enum.IntFlag):
    """enum migrate_vma_direction (include/linux/migrate.h); COMPOUND is the series'."""

    SYSTEM = 1 << 0
    DEVICE_PRIVATE = 1 << 1
    DEVICE_COHERENT = 1 << 2
    COMPOUND = 1 << 3


def migrate_pfn(pfn: int) -> int:
    """migrate_pfn() - ``pfn << MIGRATE_PFN_SHIFT | MIGRATE_PFN_VALID``.

    >>> hex(migrate_pfn(0x1234))
    '0x48d01'
    """
    return (pfn << MIGRATE_PFN_SHIFT) | MIGRATE_PFN_VALID


def migrate_pfn_to_page(mpfn: int) -> int | None:
    """migrate_pfn_to_page() - the PFN of a VALID entry, else None."""
    return mpfn >> MIGRATE_PFN_SHIFT if mpfn & MIGRATE_PFN_VALID else None


@dataclass
class MigrateVma:
    """struct migrate_vma (include/linux/migrate.h), kernel field names.

    ``split_design`` is the simulator's switch between the two split-fallback designs.
    """

    vma: VMA | None
    start: int
    end: int
    src: list[int] = field(default_factory=list)
    dst: list[int] = field(default_factory=list)
    npages: int = 0
    cpages: int = 0
    pgmap_owner: object = None
    flags: int = 0
    fault_page: int | None = None
    split_design: str = "b"


# -- collect ------------------------------------------------------------------------------
def migrate_vma_collect_skip(migrate: MigrateVma, start: int, end: int) -> int:
    """migrate_vma_collect_skip() - empty src/dst entries for [start, end)."""
    for _ in range(start, end, PAGE_SIZE):
        migrate.dst[migrate.npages] = 0
        migrate.src[migrate.npages] = 0
        migrate.npages += 1
    return 0


def migrate_vma_collect_hole(migrate: MigrateVma, start: int, end: int) -> int:
    """migrate_vma_collect_hole() - unpopulated anon range: MIGRATE without a page, so the
    driver may allocate fresh device memory; with SELECT_COMPOUND and a PMD-aligned range
    one MIGRATE|COMPOUND entry plus 511 empty ones."""
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
    from .split import split_folio

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
    from .huge_memory import is_huge_zero_pmd

    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    pmd = int(m.pgtables[slot[0]][slot[1]])
    if pmd == 0:
        return migrate_vma_collect_hole(migrate, start, end)
    if pmd & _PAGE_PRESENT and pmd & _PAGE_PSE:
        if not migrate.flags & MIGRATE_VMA_SELECT.SYSTEM:
            return migrate_vma_collect_skip(migrate, start, end)
        if is_huge_zero_pmd(m, pmd):
            return migrate_vma_collect_hole(migrate, start, end)
        folio, write = page_folio(m, pte_pfn(pmd)), bool(pmd & _PAGE_RW)
    elif not pmd & _PAGE_PRESENT:
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
    from .split import split_folio

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
    if not pte & _PAGE_PRESENT:
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
    if pte & _PAGE_PRESENT and m.mem.test(pfn, PG.anon_exclusive):
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
    PMD walked again. One TLB flush for the range if anything was unmapped.
    """
    from .memory import pmd_slot, pte_slot

    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    fault_folio = page_folio(m, migrate.fault_page) if migrate.fault_page is not None else None
    slot = pmd_slot(vma.vm_mm, start)
    assert slot is not None
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
        unmapped = 0
        for addr in range(start, end, PAGE_SIZE):
            pslot = pte_slot(vma.vm_mm, addr)
            assert pslot is not None
            present = bool(int(m.pgtables[pslot[0]][pslot[1]]) & _PAGE_PRESENT)
            mpfn, large = _collect_pte(migrate, pslot, addr, fault_folio)
            if large is not None:
                break
            unmapped += bool(mpfn & MIGRATE_PFN_VALID) and present
            migrate.dst[migrate.npages] = 0
            migrate.src[migrate.npages] = mpfn
            migrate.npages += 1
        else:
            if unmapped:
                m.trace.cost("tlb_flushes")
            return 0
        if unmapped:
            m.trace.cost("tlb_flushes")
        if migrate_vma_split_folio(large, migrate.fault_page):
            return migrate_vma_collect_skip(migrate, addr, end)
        start = addr


def migrate_vma_collect(migrate: MigrateVma) -> None:
    """migrate_vma_collect() - walk the page tables of [start, end), one PMD at a time.

    Models: mm/migrate_device.c:migrate_vma_collect() with walk_page_range() calling
    migrate_vma_collect_pmd() / migrate_vma_collect_hole(); ``end`` becomes
    ``start + npages * PAGE_SIZE``.
    """
    from .memory import pmd_slot

    vma = migrate.vma
    assert vma is not None
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
    unlocked, released) and its entry cleared. Returns the entries still migrating.
    """
    from .machine import Machine

    assert isinstance(m, Machine)
    fault_folio = page_folio(m, fault_page) if fault_page is not None else None
    unmapped = restore = 0
    i = 0
    while i < npages:
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
    """migrate_vma_unmap() - ``cpages = migrate_device_unmap(...)``."""
    assert migrate.vma is not None
    migrate.cpages = migrate_device_unmap(migrate.src, migrate.npages, migrate.fault_page,
                                          migrate.vma.vm_mm.m)


def migrate_vma_setup(args: MigrateVma) -> int:
    """migrate_vma_setup() - collect, lock, isolate and unmap the pages of a range.

    Models: mm/migrate_device.c:migrate_vma_setup() (merged series). Raises MmError(EINVAL)
    (the kernel returns -EINVAL) with nothing changed for: no VMA, an empty range, a range
    not inside the VMA, a fault page that is not a locked device-private page. ``src`` and
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
    PMD's kept), a device-private PMD (writable iff VM_WRITE), new exclusive anon rmap,
    one reference for the mapping, ``thp_fault_alloc``. Any problem clears MIGRATE on all
    512 entries. Returns 0.
    """
    from .huge_memory import is_huge_zero_pmd, pgtable_trans_huge_deposit
    from .pgtable import make_readable_device_private_entry, make_writable_device_private_entry
    from .rmap import RMAP_EXCLUSIVE, anon_vma_prepare, folio_add_new_anon_rmap

    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    folio = page_folio(m, page)
    pmd = int(m.pgtables[slot[0]][slot[1]])
    suitable = not addr % PMD_SIZE and vma.vm_start <= addr and addr + PMD_SIZE <= vma.vm_end
    if not suitable or (
            pmd and not is_huge_zero_pmd(m, pmd)) or not folio_is_device_private(folio):
        for i in range(HPAGE_PMD_NR):
            src[idx + i] &= ~MIGRATE_PFN_MIGRATE
        return 0
    anon_vma_prepare(vma)
    make = make_writable_device_private_entry if vma.writable else \
        make_readable_device_private_entry
    m.mem.set(folio.pfn, PG.uptodate)
    folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE)
    folio_get(folio)  # the new mapping's reference
    if not pmd:
        pgtable_trans_huge_deposit(vma, slot, m.alloc_pgtable())
    else:
        m.trace.cost("tlb_flushes")
    m.pgtables[slot[0]][slot[1]] = make(folio.pfn)
    m.trace.cost("pmd_writes")
    m.vmstat["thp_fault_alloc"] += 1
    return 0


def migrate_vma_insert_page(migrate: MigrateVma, addr: int, idx: int) -> None:
    """migrate_vma_insert_page() - map a new device page at a hole or zero-page PTE.

    Models: mm/migrate_device.c:migrate_vma_insert_page() (merged series): a COMPOUND dst
    goes to migrate_vma_insert_huge_pmd_page(); a huge zero PMD is split first; the PTE
    must be none or the zero page; a device-private PTE (writable iff VM_WRITE), new
    exclusive anon rmap, one reference. Failure clears MIGRATE for the entry.
    """
    from .huge_memory import is_huge_zero_pmd, split_huge_pmd
    from .memory import pmd_slot, pte_slot, set_pte_at
    from .pgtable import make_readable_device_private_entry, make_writable_device_private_entry
    from .rmap import RMAP_EXCLUSIVE, anon_vma_prepare, folio_add_new_anon_rmap

    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    page = migrate_pfn_to_page(migrate.dst[idx])
    assert page is not None
    slot = pmd_slot(vma.vm_mm, addr, alloc=True)
    assert slot is not None
    if migrate.dst[idx] & MIGRATE_PFN_COMPOUND:
        migrate_vma_insert_huge_pmd_page(migrate, addr, page, migrate.src, idx, slot)
        return
    pmd = int(m.pgtables[slot[0]][slot[1]])
    if pmd and (pmd & _PAGE_PSE or not pmd & _PAGE_PRESENT):
        if not is_huge_zero_pmd(m, pmd):
            migrate.src[idx] &= ~MIGRATE_PFN_MIGRATE
            return
        split_huge_pmd(vma, slot, addr)
    pslot = pte_slot(vma.vm_mm, addr, alloc=True)
    assert pslot is not None
    old = int(m.pgtables[pslot[0]][pslot[1]])
    folio = page_folio(m, page)
    if (old and not (old & _PAGE_PRESENT and pte_pfn(old) == m.zero_pfn)) or \
            not folio_is_device_private(folio):
        migrate.src[idx] &= ~MIGRATE_PFN_MIGRATE
        return
    anon_vma_prepare(vma)
    m.mem.set(folio.pfn, PG.uptodate)
    folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE)
    folio_get(folio)  # the new mapping's reference
    if old:
        m.trace.cost("tlb_flushes")
    make = make_writable_device_private_entry if vma.writable else \
        make_readable_device_private_entry
    set_pte_at(m, pslot, make(page))
    migrate.src[idx] = MIGRATE_PFN_MIGRATE


def migrate_vma_nr_pages(mpfn: int) -> int:
    """migrate_vma_nr_pages() - 512 for a COMPOUND entry, else 1."""
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
    from . import split
    from .huge_memory import split_huge_pmd_address

    vma = migrate.vma
    assert vma is not None
    m = vma.vm_mm.m
    before = folio_ref_count(folio)
    folio_get(folio)  # split_huge_pmd_address(freeze=true) drops a reference at the end
    split_huge_pmd_address(vma, addr, True)
    if folio_ref_count(folio) == before + 1:
        # ADAPTER (core gap, reported): pyfolio.huge_memory.__split_huge_pmd_locked()
        # does not put_page() when it splits a PMD *migration* entry with freeze; the
        # kernel does (``if (freeze) put_page(page)``), which is why the get above exists.
        folio_put(folio)
    if migrate.split_design == "a":
        ret = split.__split_huge_page_to_list_to_order(Folio(m, folio.pfn), None, 0, True)
    else:
        ret = split.folio_split_unmapped(folio, 0)
    if ret:
        return ret
    for i in range(HPAGE_PMD_NR):  # each new folio keeps one isolation reference
        m.mem.extra_refs[folio.pfn + i] = int(m.mem._refcount[folio.pfn + i])
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
    inserts 512 pages); COMPOUND src with small dst -> migrate_vma_split_unmapped_folio();
    COMPOUND dst with small src -> not migrated; then folio_migrate_mapping() +
    folio_migrate_flags() for each page of the unit.
    """
    i = 0
    while i < npages:
        newpage, page = migrate_pfn_to_page(dst[i]), migrate_pfn_to_page(src[i])
        nr = 1
        if newpage is None:
            src[i] &= ~MIGRATE_PFN_MIGRATE
        elif page is None:
            if src[i] & MIGRATE_PFN_MIGRATE:
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
            nr = _migrate_one(migrate, src, dst, i, page, newpage)
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
    """migrate_vma_pages() - migrate struct-page state of every collected entry."""
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
    """
    from .machine import Machine

    assert isinstance(m, Machine)
    fault_folio = page_folio(m, fault_page) if fault_page is not None else None
    for i in range(npages):
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
            m.mem.set(dfolio.pfn, PG.lru)
        remove_migration_ptes(sfolio, dfolio, 0)
        if fault_folio != sfolio:
            folio_unlock(sfolio)
        ref_drop(sfolio)
        if dfolio != sfolio:
            folio_unlock(dfolio)
            ref_drop(dfolio)


def migrate_vma_finalize(migrate: MigrateVma) -> None:
    """migrate_vma_finalize() - restore CPU page-table entries; release the pages."""
    assert migrate.vma is not None
    m = migrate.vma.vm_mm.m
    __migrate_device_finalize(migrate.src, migrate.dst, migrate.npages, migrate.fault_page, m)
    m.trace.emit("migrate_vma_finalize", start=migrate.start)

