"""fork and exit of an address space.

Models: kernel/fork.c:dup_mm() and mm/mmap.c:dup_mmap() (v6.18; dup_mmap() moved there
from kernel/fork.c before 6.18): every VMA is copied, anon_vma_fork() links the child into
the parent's anon_vmas, a file VMA's copy takes a file reference and joins the file's
i_mmap, and copy_page_range() shares the pages (none for a VMA without an anon_vma, such as
a shared file or shmem mapping: the child faults those in); and check_mm(), the
RSS-counter check when an mm is freed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import pte_alloc_one
from pyfolio.include.linux.mm_types import MM_COUNTER_NAMES, VM, VMA, MMStruct
from pyfolio.mm.memory import copy_page_range
from pyfolio.mm.mmap import exit_mmap
from pyfolio.mm.rmap import anon_vma_fork
from pyfolio.sim.errors import ENOMEM, MmError, VmWarning

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

    Models: kernel/fork.c:dup_mm() and mm/mmap.c:dup_mmap() (v6.18): a VM_DONTCOPY VMA
    (MADV_DONTFORK) is left out of the child; a VM_WIPEONFORK one (MADV_WIPEONFORK) is
    copied without its anon_vma ("a clean slate": tmp->anon_vma = NULL) and without
    copy_page_range(), so the child faults fresh zeroed pages (or the zero page) there.
    If a copy runs out of memory (a page table or a page for a pinned page's copy:
    copy_page_range() returns -ENOMEM), dup_mmap() stops at that VMA and dup_mm() tears
    the half-built child down (``free_pt:`` mmput() -> exit_mmap(), which stops at the
    XA_ZERO_ENTRY dup_mmap() left after the failing VMA) and fork() fails with ENOMEM
    (MmError). The parent keeps what copy_page_range() did to it (entries
    write-protected, pages no longer anon-exclusive), as the kernel's does.
    """
    from pyfolio.mm.mmap import get_file

    mm = mm_alloc(oldmm.m)
    try:
        for vma in oldmm.vmas:
            if vma.vm_flags & VM.DONTCOPY:
                continue
            new = VMA(mm, vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_pgoff)
            new.swap_readahead_info = vma.swap_readahead_info  # vm_area_dup()'s copy
            mm.vmas.append(new)
            if vma.vm_flags & VM.WIPEONFORK:
                continue
            anon_vma_fork(new, vma)
            if vma.vm_file is not None:  # get_file(); the child's VMA joins the file's i_mmap
                new.vm_file, new.vm_ops = get_file(vma.vm_file), vma.vm_ops
                vma.vm_file.f_mapping.i_mmap.add(new)
            copy_page_range(new, vma)
    except MmError as e:
        if e.errno != ENOMEM:
            raise
        exit_mmap(mm)
        check_mm(mm)  # mmput() -> __mmdrop(): the half-built child's counters back at zero
        oldmm.m.trace.emit("dup_mm", changes={"failed": "ENOMEM"}, parent=oldmm.id)
        raise MmError(ENOMEM, f"fork: out of memory copying the page tables of mm "
                      f"{oldmm.id}") from e
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
