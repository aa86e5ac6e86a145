"""fork and exit of an address space.

Models: kernel/fork.c:dup_mm() / dup_mmap() (v6.18): every VMA is copied, anon_vma_fork()
links the child into the parent's anon_vmas, and copy_page_range() shares the pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import pte_alloc_one
from pyfolio.include.linux.mm_types import VMA, MMStruct
from pyfolio.mm.memory import copy_page_range
from pyfolio.mm.rmap import anon_vma_fork

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["mm_alloc", "dup_mm"]


def mm_alloc(m: Machine) -> MMStruct:
    """mm_alloc() - a new, empty address space with its own PGD page.

    Models: kernel/fork.c:mm_alloc() (v6.18).
    """
    mm = MMStruct(m, m.next_mm_id, pte_alloc_one(m))
    m.next_mm_id += 1
    m.mms.append(mm)
    return mm


def dup_mm(oldmm: MMStruct) -> MMStruct:
    """dup_mm() - the child's copy of ``oldmm`` (dup_mmap() over every VMA).

    Models: kernel/fork.c:dup_mm() (v6.18).
    """
    mm = mm_alloc(oldmm.m)
    for vma in oldmm.vmas:
        new = VMA(mm, vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_pgoff)
        mm.vmas.append(new)
        anon_vma_fork(new, vma)
        copy_page_range(new, vma)
    oldmm.m.trace.emit("dup_mm", changes={"child": mm.id}, parent=oldmm.id)
    return mm
