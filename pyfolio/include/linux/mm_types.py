"""mm_struct, vm_area_struct and anon_vma: the address-space structures.

Models: include/linux/mm_types.h (struct mm_struct, struct vm_area_struct),
include/linux/mm_types_task.h (the MM_* RSS counter indices) and include/linux/rmap.h
(struct anon_vma, anon_vma_chain) (v6.18). The anon_vma_chain is kept as the set of VMAs
each anon_vma reaches (``anon_vma.vmas``), which is what rmap_walk_anon() iterates.
``mm->rss_stat[]`` (percpu counters in the kernel) is a plain list of page counts; the
helpers that keep it (add_mm_counter(), mm_counter(), ...) are in
:mod:`pyfolio.include.linux.mm`.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING

from pyfolio.sim.units import PAGE_SHIFT

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import File
    from pyfolio.include.linux.mm import VmOperations
    from pyfolio.mm.mmu_notifier import MmuNotifierSubscriptions
    from pyfolio.sim.machine import Machine

__all__ = ["VM", "VMA", "MMStruct", "AnonVma", "TASK_SIZE", "MMAP_BASE", "MM_FILEPAGES",
           "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES", "NR_MM_COUNTERS", "MM_COUNTER_NAMES",
           "FAULT_FLAG_WRITE", "FAULT_FLAG_TRIED", "VM_FAULT_OOM", "VM_FAULT_SIGBUS",
           "VM_FAULT_MAJOR", "VM_FAULT_NOPAGE", "VM_FAULT_LOCKED", "VM_FAULT_RETRY",
           "VM_FAULT_FALLBACK", "VM_FAULT_DONE_COW", "VM_FAULT_ERROR"]

#: The top of the user address space with 4-level paging (arch/x86: TASK_SIZE_MAX).
TASK_SIZE = 0x7FFF_FFFF_F000
#: Where top-down mmap starts (below the stack gap; the kernel randomises it, we do not).
MMAP_BASE = 0x7F00_0000_0000

#: include/linux/mm_types_task.h: the indices of mm->rss_stat[] (resident file mapping
#: pages, resident anonymous pages, anonymous swap entries, resident shared memory pages)
MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES, NR_MM_COUNTERS = range(5)
#: their names, as kernel/fork.c:resident_page_types[] spells them
MM_COUNTER_NAMES = ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES")

#: include/linux/mm_types.h enum fault_flag (the two the model uses)
FAULT_FLAG_WRITE = 1 << 0
FAULT_FLAG_TRIED = 1 << 5
#: include/linux/mm_types.h enum vm_fault_reason
VM_FAULT_OOM = 0x000001
VM_FAULT_SIGBUS = 0x000002
VM_FAULT_MAJOR = 0x000004
VM_FAULT_NOPAGE = 0x000100
VM_FAULT_LOCKED = 0x000200
VM_FAULT_RETRY = 0x000400
VM_FAULT_FALLBACK = 0x000800
VM_FAULT_DONE_COW = 0x001000
VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS


class VM(enum.IntFlag):
    """vm_flags (include/linux/mm.h)."""

    READ = 0x1
    WRITE = 0x2
    EXEC = 0x4
    SHARED = 0x8
    MAYREAD = 0x10
    MAYWRITE = 0x20
    MAYEXEC = 0x40
    MAYSHARE = 0x80
    #: MADV_DONTFORK: fork() leaves this VMA out of the child
    DONTCOPY = 0x00020000
    #: MADV_WIPEONFORK: the child gets the VMA empty (no anon_vma, no pages)
    WIPEONFORK = 0x02000000
    #: CONFIG_MEM_SOFT_DIRTY=y (0 without it): "not soft dirty clean area". Set on every
    #: new VMA (mm/vma.c:__mmap_complete()); only clear_refs (writing 4) clears it.
    SOFTDIRTY = 0x08000000
    HUGEPAGE = 0x20000000
    NOHUGEPAGE = 0x40000000


@dataclass(eq=False)
class AnonVma:
    """struct anon_vma: what an anon folio's ->mapping points at; ``vmas`` are the VMAs its
    anon_vma_chains reach (the VMA it belongs to, and those of forked children)."""

    id: int
    root: AnonVma | None = None
    parent: AnonVma | None = None
    vmas: set[VMA] = field(default_factory=set)

    def __hash__(self) -> int:
        return self.id


@dataclass(eq=False)
class VMA:
    """struct vm_area_struct: [vm_start, vm_end) with vm_flags, vm_pgoff and anon_vma."""

    vm_mm: MMStruct
    vm_start: int
    vm_end: int
    vm_flags: VM
    vm_pgoff: int
    anon_vma: AnonVma | None = None
    #: every anon_vma this VMA is chained to (its own and its ancestors'), as avc list
    anon_vma_chain: list[AnonVma] = field(default_factory=list)
    #: vma->swap_readahead_info: the last fault address, window and hits of VMA-based
    #: swap readahead (mm/swap_state.c), 0 until the first swap-in
    swap_readahead_info: int = 0
    #: the mapped file (None for anonymous memory) and the file system's fault operations
    #: (None: vma_is_anonymous())
    vm_file: File | None = None
    vm_ops: VmOperations | None = None

    # hashed by identity: object.__hash__ (eq=False keeps it; a C slot, no Python call)

    @property
    def writable(self) -> bool:
        return bool(int(self.vm_flags) & 0x2)  # VM_WRITE (int: IntFlag & is slow)

    @property
    def vm_page_prot(self) -> int:
        """vma->vm_page_prot as vma_set_page_prot() keeps it: PAGE_NONE for a PROT_NONE VMA,
        PAGE_COPY_NOEXEC for a private one, RW for a writable shared one that does not want
        write notification (:func:`pyfolio.mm.memory_file.vma_page_prot`)."""
        from pyfolio.mm.memory_file import vma_page_prot

        return vma_page_prot(self)

    def linear_page_index(self, addr: int) -> int:
        """linear_page_index() - the folio->index an anon page faulted at ``addr`` gets."""
        return ((addr - self.vm_start) >> PAGE_SHIFT) + self.vm_pgoff

    def address_of(self, index: int) -> int:
        """vma_address() - the address at which page ``index`` would be mapped here."""
        return self.vm_start + ((index - self.vm_pgoff) << PAGE_SHIFT)

    def __repr__(self) -> str:
        return (f"VMA({self.vm_start:#x}-{self.vm_end:#x} {VM(self.vm_flags)!r} "
                f"mm={self.vm_mm.id})")


@dataclass(eq=False)
class MMStruct:
    """struct mm_struct: the page-table root (pgd), the VMAs sorted by address, counters
    (``rss_stat``: pages per MM_* index)."""

    m: Machine
    id: int
    pgd: int
    vmas: list[VMA] = field(default_factory=list)
    #: pgtable_trans_huge_deposit(): PTE tables deposited for PMD-mapped THPs,
    #: keyed by (PMD table pfn, index)
    pmd_huge_pte: dict[tuple[int, int], int] = field(default_factory=dict)
    mmap_base: int = MMAP_BASE
    #: mm->rss_stat[NR_MM_COUNTERS], in pages
    rss_stat: list[int] = field(default_factory=lambda: [0] * NR_MM_COUNTERS)
    #: mm->notifier_subscriptions (CONFIG_MMU_NOTIFIER): None until a driver subscribes
    #: (pyfolio.mm.mmu_notifier.MmuNotifierSubscriptions)
    notifier_subscriptions: MmuNotifierSubscriptions | None = None
    #: a lookup hint, not mm state: the index in ``vmas`` after the last VMA mprotect()
    #: changed (a run of calls walks up the list). vma_span() takes it only when the
    #: neighbours confirm it (as find_vma() once checked the per-thread vmacache first,
    #: Linux 3.15-6.0)
    vma_hint: int = 0

    def __hash__(self) -> int:
        return self.id

    def find_vma(self, addr: int) -> VMA | None:
        """find_vma() in the strict sense: the VMA containing ``addr``, or None."""
        i = bisect.bisect_right(self.vmas, addr, key=_vm_start) - 1
        if i >= 0 and addr < self.vmas[i].vm_end:
            return self.vmas[i]
        return None

    def vmas_between(self, start: int, end: int) -> list[VMA]:
        """The VMAs overlapping [start, end), in address order (the maple tree walk)."""
        i, j = self.vma_span(start, end)
        return self.vmas[i:j]

    def vma_span(self, start: int, end: int, hint: int | None = None) -> tuple[int, int]:
        """``(i, j)``: ``vmas[i:j]`` are the VMAs overlapping [start, end) (i == j: none;
        then ``i`` is where a VMA at ``start`` would go). ``hint``: where the caller
        expects ``i`` (or ``i + 1``); taken when the neighbours confirm it, else bisected.
        ``j`` is looked for two VMAs on before bisecting (ranges usually hold few)."""
        vmas = self.vmas
        n = len(vmas)
        # i: the first VMA ending above start (vm_end rises with the index)
        if hint is not None and 0 <= hint <= n:
            i = hint
            if i and vmas[i - 1].vm_end > start:
                i -= 1
                ok = not i or vmas[i - 1].vm_end <= start
            else:
                ok = i == n or vmas[i].vm_end > start
        else:
            ok = False
        if not ok:
            i = bisect.bisect_right(vmas, start, key=_vm_start) - 1
            if i < 0 or vmas[i].vm_end <= start:
                i += 1
        # j: the first VMA starting at or above end
        j = i
        if j < n and vmas[j].vm_start < end:
            j += 1
            if j < n and vmas[j].vm_start < end:
                j += 1
                if j < n and vmas[j].vm_start < end:
                    j = bisect.bisect_left(vmas, end, lo=j + 1, key=_vm_start)
        return i, j

    def vma_index(self, vma: VMA) -> int:
        """Where ``vma`` sits in ``vmas`` (a bisect: VMAs do not overlap, so their starts
        are unique and sorted)."""
        i = bisect.bisect_left(self.vmas, vma.vm_start, key=_vm_start)
        assert self.vmas[i] is vma, f"{vma!r} is not in its mm's VMA list"
        return i

    def insert_vma(self, vma: VMA) -> None:
        """Put a new VMA in ``vmas`` at its place by address (vma_iter_store())."""
        bisect.insort_right(self.vmas, vma, key=_vm_start)


#: the sort key of ``MMStruct.vmas`` (a C-level getter: bisect calls it per probe)
_vm_start = attrgetter("vm_start")
