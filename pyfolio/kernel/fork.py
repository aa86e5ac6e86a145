"""fork and exit of an address space.

Models: kernel/fork.c:dup_mm() / dup_mmap() (v6.18): every VMA is copied, anon_vma_fork()
links the child into the parent's anon_vmas, and copy_page_range() shares the pages; and
check_mm(), the RSS-counter check when an mm is freed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import pte_alloc_one
from pyfolio.include.linux.mm_types import MM_COUNTER_NAMES, VMA, MMStruct
from pyfolio.mm.memory import copy_page_range
from pyfolio.mm.rmap import anon_vma_fork
from pyfolio.sim.errors import VmWarning

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["mm_alloc", "dup_mm", "check_mm"]


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


def check_mm(mm: MMStruct) -> None:
    """check_mm() - an mm being freed must count no page any more.

    Models: kernel/fork.c:check_mm() (v6.18), called from __mmdrop() after exit_mmap():
    the kernel prints "BUG: Bad rss-counter state" for each MM_* counter that is not
    zero; the simulator raises VmWarning, naming them (resident_page_types[]).
    """
    bad = [f"{MM_COUNTER_NAMES[i]} val:{v}" for i, v in enumerate(mm.rss_stat) if v]
    if bad:
        raise VmWarning(f"BUG: Bad rss-counter state mm:{mm.id} type:" + ", ".join(bad))
