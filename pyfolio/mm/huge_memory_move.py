"""The PMD step of mremap: a huge PMD entry moves to a new address whole.

Models: mm/huge_memory.c (v6.18, with the 2025 device-private THP series): move_huge_pmd()
and move_soft_dirty_pmd(). A continuation of :mod:`pyfolio.mm.huge_memory` (kept apart for
size); :mod:`pyfolio.mm.mremap` calls it from move_page_tables().
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import _PAGE_SWP_SOFT_DIRTY, pmd_present, pte_mksoft_dirty

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA

__all__ = ["move_huge_pmd", "move_soft_dirty_pmd"]

Slot = tuple[int, int]


def move_soft_dirty_pmd(pmd: int) -> int:
    """move_soft_dirty_pmd() - mark a moved PMD soft-dirty (so a tracker notices the move):
    pmd_mksoft_dirty() on a present (or PROT_NONE) leaf, pmd_swp_mksoft_dirty() on a
    migration or device-private PMD.

    Models: mm/huge_memory.c:move_soft_dirty_pmd() (v6.18, CONFIG_MEM_SOFT_DIRTY=y).
    """
    return pte_mksoft_dirty(pmd) if pmd_present(pmd) else pmd | _PAGE_SWP_SOFT_DIRTY


def move_huge_pmd(vma: VMA, old_addr: int, new_addr: int, old_pmd: Slot,
                  new_pmd: Slot) -> bool:
    """move_huge_pmd() - move one huge PMD entry (a THP leaf, the huge zero PMD, a PROT_NONE
    leaf, a PMD migration entry or a device-private PMD) from ``old_pmd`` to ``new_pmd``.

    Models: mm/huge_memory.c:move_huge_pmd() (v6.18; device-private PMDs as in the series):
    False when the new PMD is not empty; otherwise pmdp_huge_get_and_clear() of the old
    one (a TLB flush if it was present), the deposited PTE table withdrawn from the old
    PMD and deposited at the new one (pmd_move_must_withdraw(): the simulator keys deposits
    by slot, so it always moves them), move_soft_dirty_pmd(), set_pmd_at(). No rmap,
    refcount, mapcount, RSS or vmstat change: the same folio is mapped at the new address,
    whose VMA has the vm_pgoff that keeps its folio->index valid.
    """
    from pyfolio.mm.huge_memory import (
        _set_pmd_at,
        pgtable_trans_huge_deposit,
        pgtable_trans_huge_withdraw,
    )

    m = vma.vm_mm.m
    if int(m.pgtables[new_pmd[0]][new_pmd[1]]):
        return False  # "The destination pmd shouldn't be established"
    pmd = int(m.pgtables[old_pmd[0]][old_pmd[1]])
    _set_pmd_at(m, old_pmd, 0)  # pmdp_huge_get_and_clear()
    force_flush = pmd_present(pmd)
    pgtable_trans_huge_deposit(vma, new_pmd, pgtable_trans_huge_withdraw(vma, old_pmd))
    _set_pmd_at(m, new_pmd, move_soft_dirty_pmd(pmd))
    if force_flush:
        m.trace.cost("tlb_flushes")  # flush_pmd_tlb_range()
    m.trace.emit("move_huge_pmd", old_addr=old_addr, new_addr=new_addr)
    return True
