"""Reverse mapping of page-cache folios: file rmaps, try_to_unmap(), folio_mkclean().

Models: mm/rmap.c (v6.18): folio_add_file_rmap_ptes(), folio_add_file_rmap_pte(),
folio_add_file_rmap_pmd() (__folio_add_file_rmap()), try_to_unmap() with
try_to_unmap_one() for file folios, and folio_mkclean() with page_mkclean_one(). The
walk itself (rmap_walk_file(): the VMAs in ``mapping->i_mmap``) is
:func:`pyfolio.mm.rmap.rmap_walk`. A file folio is never queued for deferred split when
it becomes partially mapped (__folio_remove_rmap() queues anon folios only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import (
    _PAGE_DIRTY_BITS,
    _PAGE_PRESENT,
    pmd_leaf,
    pte_mkclean,
    pte_pfn,
    pte_wrprotect,
)
from pyfolio.include.linux.mm import (
    VM_WARN_ON_FOLIO,
    Folio,
    add_mm_counter,
    folio_nr_pages,
    folio_put_refs,
    folio_test_anon,
    mm_counter_file,
)
from pyfolio.include.linux.mm_types import VM
from pyfolio.mm.rmap import (
    TTU_SPLIT_HUGE_PMD,
    __folio_add_rmap,
    folio_remove_rmap_ptes,
    pmd_chunks,
    pte_table_of,
    rmap_walk,
)
from pyfolio.sim.units import HPAGE_PMD_NR, PAGE_SHIFT

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA

__all__ = ["folio_add_file_rmap_ptes", "folio_add_file_rmap_pte", "folio_add_file_rmap_pmd",
           "folio_dup_file_rmap_ptes",
           "try_to_unmap", "folio_mkclean", "TTU_IGNORE_MLOCK"]

#: include/linux/rmap.h enum ttu_flags
TTU_IGNORE_MLOCK = 0x8


def folio_add_file_rmap_ptes(folio: Folio, page: int, nr_pages: int, vma: VMA) -> None:
    """folio_add_file_rmap_ptes() - add PTE mappings of pages [page, page + nr_pages) of a
    page-cache folio.

    Models: mm/rmap.c:folio_add_file_rmap_ptes() (v6.18): __folio_add_rmap() at the PTE
    level (NR_FILE_MAPPED / NR_SHMEM_PMDMAPPED follow from the counts).
    """
    VM_WARN_ON_FOLIO(folio_test_anon(folio), folio, "file rmap of an anon folio")
    __folio_add_rmap(folio, page, nr_pages, "pte")


def folio_add_file_rmap_pte(folio: Folio, page: int, vma: VMA) -> None:
    """folio_add_file_rmap_pte() - add one PTE mapping of one page.

    Models: include/linux/rmap.h:folio_add_file_rmap_pte() (v6.18).
    """
    folio_add_file_rmap_ptes(folio, page, 1, vma)


def folio_add_file_rmap_pmd(folio: Folio, page: int, vma: VMA) -> None:
    """folio_add_file_rmap_pmd() - add one PMD mapping of a PMD-sized page-cache folio.

    Models: mm/rmap.c:folio_add_file_rmap_pmd() (v6.18).
    """
    VM_WARN_ON_FOLIO(folio_test_anon(folio), folio, "file rmap of an anon folio")
    __folio_add_rmap(folio, page, HPAGE_PMD_NR, "pmd")


def folio_dup_file_rmap_ptes(folio: Folio, page: int, nr_pages: int, dst_vma: VMA) -> None:
    """folio_dup_file_rmap_ptes() - fork: the child's PTEs map the same page-cache pages
    (each page's mapcount and the folio's large mapcount rise; the pages were mapped).

    Models: include/linux/rmap.h:folio_dup_file_rmap_ptes() (v6.18).
    """
    __folio_add_rmap(folio, page, nr_pages, "pte")


def try_to_unmap(folio: Folio, flags: int) -> None:
    """try_to_unmap() - remove every mapping of a page-cache folio.

    Models: mm/rmap.c:try_to_unmap() with try_to_unmap_one() (v6.18), for file folios
    (what unmap_folio() uses for them; anon folios go through try_to_migrate()): a PMD
    mapping is split with TTU_SPLIT_HUGE_PMD, which for a file VMA just clears it
    (__split_huge_pmd_locked()); every PTE mapping is cleared, a dirty one dirtying the
    folio, its rmap, reference and RSS page dropped. Nothing is left to remap: the next
    access faults the pages in again.
    """
    from pyfolio.mm.filemap import folio_mark_dirty
    from pyfolio.mm.huge_memory import split_huge_pmd_address

    m, nr = folio.m, folio_nr_pages(folio)
    end = folio.pfn + nr
    for mp in rmap_walk(folio):
        vma = mp.vma
        if mp.level == "pmd":
            if flags & TTU_SPLIT_HUGE_PMD:
                split_huge_pmd_address(vma, mp.address, False)
            continue
        from pyfolio.mm.memory import pte_slot

        slot = pte_slot(vma.vm_mm, mp.address)
        if slot is None:
            continue
        raw = int(m.pgtables[slot[0]][slot[1]])
        if not raw & _PAGE_PRESENT or not folio.pfn <= pte_pfn(raw) < end:
            continue
        m.pgtables[slot[0]][slot[1]] = 0
        m.trace.cost("pte_writes")
        if raw & _PAGE_DIRTY_BITS:
            folio_mark_dirty(folio)
        folio_remove_rmap_ptes(folio, pte_pfn(raw), 1, vma)
        add_mm_counter(vma.vm_mm, mm_counter_file(folio), -1)
        folio_put_refs(folio, 1)
    m.trace.cost("tlb_flushes")
    m.trace.emit("try_to_unmap", pfn=folio.pfn, nr=nr)


def folio_mkclean(folio: Folio) -> int:
    """folio_mkclean() - write-protect and clean every shared mapping of a page-cache
    folio before it is written back; how many entries changed.

    Models: mm/rmap.c:folio_mkclean() with page_mkclean_one() (v6.18): only VM_SHARED
    VMAs (invalid_mkclean_vma()); a writable or dirty PTE or PMD becomes read-only and
    clean, so the next write faults (and, for ext4, goes through page_mkwrite again).
    """
    from pyfolio.mm.huge_memory import _set_pmd_at
    from pyfolio.mm.memory import set_pte_at

    if folio_test_anon(folio):
        return 0
    m, n = folio.m, 0
    end = folio.pfn + folio_nr_pages(folio)
    for mp in rmap_walk(folio):
        if not mp.vma.vm_flags & VM.SHARED:
            continue
        for addr, _, slot in pmd_chunks(mp.vma, mp.address, mp.address + (1 << PAGE_SHIFT)):
            raw = int(m.pgtables[slot[0]][slot[1]])
            if pmd_leaf(raw):
                new = pte_mkclean(pte_wrprotect(raw))
                if new != raw:
                    _set_pmd_at(m, slot, new)
                    n += 1
                continue
            table = pte_table_of(m, slot)
            if table is None:
                continue
            from pyfolio.arch.x86.pgtable import pte_index

            i = pte_index(addr)
            pte = int(m.pgtables[table][i])
            if pte & _PAGE_PRESENT and folio.pfn <= pte_pfn(pte) < end:
                new = pte_mkclean(pte_wrprotect(pte))
                if new != pte:
                    set_pte_at(m, (table, i), new)
                    n += 1
    m.trace.emit("folio_mkclean", changes={"entries": n}, pfn=folio.pfn)
    return n
