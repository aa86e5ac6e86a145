"""Huge PMDs of file mappings: splitting them, and placing file mappings for them.

Models: mm/huge_memory.c (v6.18): the non-anonymous branch of __split_huge_pmd_locked()
(a file or shmem VMA's PMD is cleared, not turned into PTEs), and
thp_get_unmapped_area() / __thp_get_unmapped_area() (where a mapping of a file that
can hold PMD-sized folios is placed). The anonymous PMD code is
:mod:`pyfolio.mm.huge_memory`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import _PAGE_ACCESSED, pmd_dirty, pte_pfn
from pyfolio.include.linux.mm import (
    add_mm_counter,
    folio_put,
    folio_test_dirty,
    mm_counter_file,
    page_folio,
)
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_NR, PAGE_SHIFT, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import File
    from pyfolio.include.linux.mm_types import VMA, MMStruct

__all__ = ["split_huge_pmd_file", "__thp_get_unmapped_area", "thp_get_unmapped_area"]


def split_huge_pmd_file(vma: VMA, slot: tuple[int, int], haddr: int, pmd: int) -> None:
    """The file-VMA branch of __split_huge_pmd_locked(): "We are going to unmap this huge
    page. So just go ahead and zap it": the PMD is cleared (pmdp_huge_clear_flush()), a
    dirty PMD dirties the folio and a young one marks it referenced, the PMD's rmap,
    reference and 512 RSS pages go. No PTE table is made (x86 deposits none for file
    PMDs); the caller counted ``thp_split_pmd``. The folio stays whole in the page cache
    and the next access faults PTEs (or a PMD again) in.

    Models: mm/huge_memory.c:__split_huge_pmd_locked() (v6.18), ``!vma_is_anonymous(vma)``.
    """
    from pyfolio.mm.huge_memory import _set_pmd_at
    from pyfolio.mm.rmap import folio_remove_rmap_pmd

    m = vma.vm_mm.m
    _set_pmd_at(m, slot, 0)
    m.trace.cost("tlb_flushes")
    folio = page_folio(m, pte_pfn(pmd))
    if not folio_test_dirty(folio) and pmd_dirty(pmd):
        m.mem.set(folio.pfn, PG.dirty)  # folio_mark_dirty()
    if pmd & _PAGE_ACCESSED:
        m.mem.set(folio.pfn, PG.referenced)
    folio_remove_rmap_pmd(folio, folio.pfn, vma)
    folio_put(folio)
    add_mm_counter(vma.vm_mm, mm_counter_file(folio), -HPAGE_PMD_NR)
    m.trace.emit("split_huge_pmd", changes={"ptes_written": 0, "into": "none (file)"},
                 address=haddr, old_pmd=pmd)


def __thp_get_unmapped_area(mm: MMStruct, filp: File | None, length: int, off: int,
                            size: int = PMD_SIZE) -> int:
    """__thp_get_unmapped_area() - an address for a mapping of ``length`` bytes at file
    offset ``off``, congruent to ``off`` modulo ``size`` so that PMD-sized folios can be
    mapped whole; 0 when the mapping does not reach ``size`` bytes past the first
    ``size``-aligned offset it covers (then the caller places it normally).

    Models: mm/huge_memory.c:__thp_get_unmapped_area() (v6.18): the kernel pads the
    search by ``size`` and shifts the result; the simulator's top-down search asks for
    the congruence directly (same alignment, possibly another address).
    """
    from pyfolio.mm.mmap import mm_get_unmapped_area

    del filp
    off_end = off + length
    off_align = -(-off // size) * size
    if off_end <= off_align or off_end - off_align < size:
        return 0
    return mm_get_unmapped_area(mm, length, size, off & (size - 1))


def thp_get_unmapped_area(mm: MMStruct, filp: File | None, length: int, pgoff: int) -> int:
    """thp_get_unmapped_area() - place a file mapping for PMD mappings where it can
    (ext4's ``get_unmapped_area``), else anywhere.

    Models: mm/huge_memory.c:thp_get_unmapped_area() (v6.18).
    """
    from pyfolio.mm.mmap import mm_get_unmapped_area

    addr = __thp_get_unmapped_area(mm, filp, length, pgoff << PAGE_SHIFT)
    return addr or mm_get_unmapped_area(mm, length)
