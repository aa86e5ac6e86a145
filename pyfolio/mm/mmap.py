"""mmap, munmap and VMA splitting and merging.

Models: mm/mmap.c (do_mmap(), __get_unmapped_area(), exit_mmap()) and mm/vma.c
(__split_vma(), do_vmi_munmap(), vma_merge) (v6.18). Private anonymous mappings,
MAP_SHARED|MAP_ANONYMOUS (shmem) and file mappings, shared or private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import pte_free
from pyfolio.include.linux.mm import PAGE_ALIGN, ULONG_MASK
from pyfolio.include.linux.mm_types import TASK_SIZE, VM, VMA, MMStruct
from pyfolio.mm.huge_memory import vma_adjust_trans_huge
from pyfolio.mm.memory import free_pgtables, zap_page_range
from pyfolio.mm.memory_batch import unmap_vmas_run
from pyfolio.mm.mmu_notifier import (
    MMU_NOTIFY,
    ULONG_MAX,
    invalidate_secondary_mmus,
    mmu_notifier_release,
)
from pyfolio.mm.rmap import anon_vma_clone, unlink_anon_vmas
from pyfolio.sim.errors import EACCES, EINVAL, ENODEV, ENOMEM, MmError
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import File

__all__ = ["do_mmap", "get_unmapped_area", "mm_get_unmapped_area", "do_munmap", "split_vma",
           "vma_merge_range", "exit_mmap", "check_aligned", "get_file", "PROT"]

PROT = {"r": VM.READ, "rw": VM.READ | VM.WRITE, "w": VM.READ | VM.WRITE,
        "none": VM(0)}


def check_aligned(start: int, what: str) -> None:
    """``offset_in_page(start)``: -EINVAL (every one of these syscalls checks it first)."""
    if start & (PAGE_SIZE - 1):
        raise MmError(EINVAL, f"{what}: address {start:#x} is not page aligned")


def mm_get_unmapped_area(mm: MMStruct, length: int, align: int = PAGE_SIZE,
                         offset: int = 0) -> int:
    """mm_get_unmapped_area() - the highest free range of ``length`` bytes below
    mmap_base whose start is congruent to ``offset`` modulo ``align`` (top-down).

    Models: mm/mmap.c:mm_get_unmapped_area() with vm_unmapped_area()'s align_mask and
    align_offset (v6.18; no randomisation, no guard gaps). MmError(ENOMEM) when none.
    """
    def fit(top: int) -> int:
        return ((top - length - offset) & ~(align - 1)) + offset

    top = mm.mmap_base
    for vma in reversed(mm.vmas):
        if vma.vm_end <= top and fit(top) >= vma.vm_end:
            return fit(top)
        top = min(top, vma.vm_start)
    cand = fit(top)
    if cand < 0x10000:
        raise MmError(ENOMEM, f"no free address range of {length} bytes")
    return cand


def get_unmapped_area(mm: MMStruct, length: int, file: File | None = None, pgoff: int = 0,
                      shared: bool = False, hint: int = 0) -> int:
    """__get_unmapped_area() - where a new mapping goes.

    Models: mm/mmap.c:__get_unmapped_area() (v6.18): a file's own ``get_unmapped_area``
    (ext4: thp_get_unmapped_area(); tmpfs and memfd: shmem_get_unmapped_area()); a
    MAP_SHARED|MAP_ANONYMOUS mapping goes to shmem_get_unmapped_area() too; a private
    anonymous mapping whose length is a multiple of PMD_SIZE is placed 2 MiB aligned
    (thp_get_unmapped_area_vmflags()), so that THPs can back it, unless the caller gave a
    ``hint``; other mappings are only page aligned. A page-aligned ``hint`` whose range is
    free is taken as it is (arch_get_unmapped_area_topdown(); mremap's new address).
    """
    if hint and not hint & (PAGE_SIZE - 1) and hint + length <= TASK_SIZE and \
            not mm.vmas_between(hint, hint + length):
        return hint
    if file is not None and file.f_op.get_unmapped_area is not None:
        return file.f_op.get_unmapped_area(mm, file, length, pgoff)
    if file is None and shared:
        from pyfolio.mm.shmem import shmem_get_unmapped_area

        return shmem_get_unmapped_area(mm, None, length, 0)
    if file is None and length % PMD_SIZE == 0 and not hint:
        return mm_get_unmapped_area(mm, length, PMD_SIZE)
    return mm_get_unmapped_area(mm, length)


def do_mmap(mm: MMStruct, length: int, prot: str = "rw", *, shared: bool = False,
            file: File | None = None, pgoff: int = 0, fixed: int | None = None) -> int:
    """do_mmap() - create a mapping; returns its address.

    Models: mm/mmap.c:do_mmap() + mmap_region() (v6.18). Private anonymous by default;
    ``file`` maps an open file from page ``pgoff`` (its ``f_op->mmap`` sets the VMA's
    fault operations, and the VMA joins the file's ``i_mmap``, holding a file
    reference); ``shared`` without a file is MAP_SHARED|MAP_ANONYMOUS, backed by a new
    unlinked shmem file (shmem_zero_setup()). Errors, nothing changed: EINVAL for a bad
    protection or length, EACCES for a file not open for reading, or a shared writable
    mapping of a file not open for writing (a shared mapping of a read-only file loses
    VM_SHARED and VM_MAYWRITE instead), ENODEV for a file system that cannot map.
    ``fixed`` is MAP_FIXED_NOREPLACE at that address (EINVAL unaligned, EEXIST if any of
    the range is mapped, ENOMEM outside the user address space). Nothing is allocated
    until the first fault. The new VMA gets VM_SOFTDIRTY
    (mm/vma.c:__mmap_complete(): a new area is all soft-dirty). ``length`` is a size_t:
    0 is -EINVAL, one that PAGE_ALIGN() wraps to 0 or that exceeds TASK_SIZE -ENOMEM.
    """
    from pyfolio.include.linux.fs import FMODE

    if prot not in PROT:
        raise MmError(EINVAL, f"mmap: protection {prot!r} is not one of {', '.join(PROT)}")
    length &= ULONG_MASK
    if not length:
        raise MmError(EINVAL, "mmap: length 0")
    length = PAGE_ALIGN(length)
    if not length or length > TASK_SIZE:
        raise MmError(ENOMEM, "mmap: length larger than the address space")
    flags = PROT[prot] | VM.MAYREAD | VM.MAYWRITE | VM.MAYEXEC | VM.SOFTDIRTY
    if file is not None:
        if pgoff < 0:
            raise MmError(EINVAL, f"mmap: offset {pgoff << PAGE_SHIFT} is negative")
        if not file.f_mode & FMODE.READ:
            raise MmError(EACCES, "mmap: the file is not open for reading")
        if shared:
            if PROT[prot] & VM.WRITE and not file.f_mode & FMODE.WRITE:
                raise MmError(EACCES, "mmap: MAP_SHARED with PROT_WRITE of a file not "
                                      "open for writing")
            flags |= VM.SHARED | VM.MAYSHARE
            if not file.f_mode & FMODE.WRITE:
                flags &= ~(VM.MAYWRITE | VM.SHARED)
        if file.f_op.mmap is None:
            raise MmError(ENODEV, f"mmap: {file.f_op.name} files cannot be mapped")
    elif shared:
        flags |= VM.SHARED | VM.MAYSHARE
        pgoff = 0
    if fixed is not None:
        from pyfolio.sim.errors import EEXIST

        if not isinstance(fixed, int) or fixed & (PAGE_SIZE - 1):
            raise MmError(EINVAL, f"mmap: address {fixed!r} is not page aligned")
        if fixed < 0x10000 or fixed + length > TASK_SIZE:
            raise MmError(ENOMEM, f"mmap: [{fixed:#x}, +{length:#x}) is outside user space")
        if mm.vmas_between(fixed, fixed + length):
            raise MmError(EEXIST, f"mmap: MAP_FIXED_NOREPLACE at {fixed:#x}: range in use")
        addr = fixed
    else:
        addr = get_unmapped_area(mm, length, file, pgoff, shared)
    vma = VMA(mm, addr, addr + length, flags, pgoff if file is not None or shared
              else addr >> PAGE_SHIFT)
    if file is not None:
        vma.vm_file = get_file(file)
        file.f_op.mmap(file, vma)
    elif shared:
        from pyfolio.mm.shmem import shmem_zero_setup

        shmem_zero_setup(vma)
    if vma.vm_file is not None:
        vma.vm_file.f_mapping.i_mmap.add(vma)  # vma_link_file()
    mm.insert_vma(vma)
    vma_merge_range(mm, addr, addr + length)
    mm.m.trace.emit("do_mmap", changes={"vma": f"{addr:#x}-{addr + length:#x}"},
                    length=length, prot=prot, shared=shared,
                    file=file.f_path if file is not None else None)
    return addr


def get_file(f: File) -> File:
    """get_file() - take a reference on an open file (a VMA holds one).

    Models: include/linux/fs.h:get_file() (v6.18).
    """
    f.f_count += 1
    return f


def _unlink_file_vma(vma: VMA) -> None:
    """unlink_file_vma() + fput(): the VMA leaves its file's i_mmap and drops its file
    reference (mm/mmap.c:unlink_file_vma(), fs/file_table.c:fput())."""
    if vma.vm_file is None:
        return
    from pyfolio.fs.open import fput

    vma.vm_file.f_mapping.i_mmap.discard(vma)
    fput(vma.vm_file)


def split_vma(vma: VMA, addr: int, i: int | None = None) -> VMA:
    """__split_vma() - cut ``vma`` at ``addr``; returns the new upper part. ``i``: where
    ``vma`` sits in its mm's VMA list, when the caller knows (the kernel's vma iterator).

    Models: mm/vma.c:__split_vma() (v6.18): a PMD leaf straddling ``addr`` is split first
    (vma_adjust_trans_huge()); the new part is vm_area_dup()'s copy (mm/vma_init.c:
    vm_area_init_from(): flags, ops, the swap readahead state); both parts keep the
    anon_vma chains (anon_vma_clone()) and the file (each holds a reference and sits in the
    file's i_mmap).
    """
    vma_adjust_trans_huge(vma, vma.vm_start, addr)  # as __split_vma() calls it
    new = VMA(vma.vm_mm, addr, vma.vm_end, vma.vm_flags,
              vma.vm_pgoff + ((addr - vma.vm_start) >> 12))
    new.vm_ops, new.swap_readahead_info = vma.vm_ops, vma.swap_readahead_info
    anon_vma_clone(new, vma)
    if vma.vm_file is not None:  # get_file() and vma_link_file() for the new part
        new.vm_file = get_file(vma.vm_file)
        vma.vm_file.f_mapping.i_mmap.add(new)
    vma.vm_end = addr
    mm = vma.vm_mm
    if i is None:
        i = mm.vma_index(vma)
    assert mm.vmas[i] is vma, f"{vma!r} is not at index {i} of its mm's VMA list"
    mm.vmas.insert(i + 1, new)
    return new


def _vmas_in(mm: MMStruct, start: int, end: int) -> list[VMA]:
    """Split VMAs at start and end; return those inside [start, end)."""
    for addr in (start, end):
        vma = mm.find_vma(addr)
        if vma is not None and vma.vm_start < addr:
            split_vma(vma, addr)
    return mm.vmas_between(start, end)


def vma_merge_range(mm: MMStruct, start: int, end: int,
                    span: tuple[int, int] | None = None) -> None:
    """Merge VMAs touching [start, end) with equal neighbours (vma_merge_existing_range()).
    ``span``: ``mm.vma_span(start - 1, end + 1)`` (the VMAs touching the range), when the
    caller knows it.

    Models: mm/vma.c:vma_merge_existing_range() (v6.18).

    Mergeable: adjacent, same flags, same file and operations (is_mergeable_vma()),
    contiguous vm_pgoff, and the same anon_vma (or one side without any:
    is_mergeable_anon_vma()).
    """
    vmas = mm.vmas
    i, last = mm.vma_span(max(start - 1, 0), end + 1) if span is None else span
    while i + 1 < last:
        a, b = vmas[i], vmas[i + 1]
        if (a.vm_end == b.vm_start and a.vm_flags == b.vm_flags
                and (a.anon_vma is b.anon_vma or a.anon_vma is None or b.anon_vma is None)
                and a.vm_file is b.vm_file and a.vm_ops is b.vm_ops
                and b.vm_pgoff == a.vm_pgoff + ((a.vm_end - a.vm_start) >> 12)):
            if a.anon_vma is None and b.anon_vma is not None:
                anon_vma_clone(a, b)
            a.vm_end = b.vm_end
            unlink_anon_vmas(b)
            _unlink_file_vma(b)
            del vmas[i + 1]
            last -= 1
            continue
        i += 1


def do_munmap(mm: MMStruct, start: int, length: int) -> None:
    """do_munmap() - remove [start, start + length): zap pages, drop VMAs, free tables.

    Models: mm/vma.c:do_vmi_munmap() (v6.18). ``start`` is an unsigned long and
    ``length`` a size_t (a negative value is taken modulo 2**64): -EINVAL, nothing
    changed, when ``offset_in_page(start) || start > TASK_SIZE || len > TASK_SIZE -
    start`` or when the page-aligned length is 0. Secondary MMUs hear MMU_NOTIFY_UNMAP
    for the VMAs unmapped (unmap_vmas()). Unmapping part of a PMD-mapped THP splits
    the PMD; the folio, now partially mapped, goes on the deferred split queue. Unmapping
    a range with no mapping in it succeeds and does nothing.
    """
    start, length = start & ULONG_MASK, length & ULONG_MASK
    check_aligned(start, "munmap")
    if start > TASK_SIZE or length > TASK_SIZE - start:
        raise MmError(EINVAL, f"munmap: [{start:#x}, +{length:#x}) is not inside the user "
                      f"address space (TASK_SIZE {TASK_SIZE:#x})")
    end = start + PAGE_ALIGN(length)
    if end == start:
        raise MmError(EINVAL, "munmap: length 0")
    vmas = _vmas_in(mm, start, end)
    if vmas:  # unmap_region() -> unmap_vmas(): MMU_NOTIFY_UNMAP over the VMAs unmapped
        invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_UNMAP, mm, vmas[0].vm_start,
                                  vmas[-1].vm_end)
    batched = unmap_vmas_run(vmas)  # pyfolio.mm.memory_batch: all the zaps in one step
    for vma in vmas:
        if not batched:
            zap_page_range(vma, vma.vm_start, vma.vm_end)
        unlink_anon_vmas(vma)
        _unlink_file_vma(vma)
    if vmas:  # vms_complete_munmap_vmas(): the VMAs leave the tree (they are contiguous)
        i = mm.vma_index(vmas[0])
        del mm.vmas[i:i + len(vmas)]
    free_pgtables(mm, start, end)
    mm.m.trace.emit("do_munmap", start=start, end=end)


def exit_mmap(mm: MMStruct) -> None:
    """exit_mmap() - tear down an address space: zap everything, free every table.

    Models: mm/mmap.c:exit_mmap() (v6.18): secondary MMUs first hear the release
    (mmu_notifier_release(): MMU_NOTIFY_RELEASE over everything); lru_add_drain(), so
    folios this process left in the CPU's LRU batch are moved (and freed with the rest);
    then unmap_vmas() invalidates [0, ULONG_MAX) with MMU_NOTIFY_UNMAP. (Drivers remove
    their interval notifiers when their file closes, after the mm is gone; nothing of the
    mm is left then.)
    """
    from pyfolio.mm.swap import lru_add_drain

    mmu_notifier_release(mm)
    lru_add_drain(mm.m)
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_UNMAP, mm, 0, ULONG_MAX)
    batched = unmap_vmas_run(mm.vmas)
    for vma in list(mm.vmas):
        if not batched:
            zap_page_range(vma, vma.vm_start, vma.vm_end)
        unlink_anon_vmas(vma)
        _unlink_file_vma(vma)
    mm.vmas.clear()
    free_pgtables(mm, 0, 1 << 48)
    for pgtable in mm.pmd_huge_pte.values():
        pte_free(mm.m, pgtable)
    mm.pmd_huge_pte.clear()
    pte_free(mm.m, mm.pgd)
    mm.m.mms.remove(mm)
    mm.m.trace.emit("exit_mmap", mm=mm.id)
