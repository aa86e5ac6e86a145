"""mprotect: change the protection of a range.

Models: mm/mprotect.c (v6.18): mprotect_fixup() splits VMAs at the range edges (and does
nothing to a VMA whose flags stay the same), change_protection() walks the range with the
VMA's new vm_page_prot; change_pmd_range() changes a PMD leaf whole when the range covers
it (change_huge_pmd(), counted in ``numa_huge_pte_updates`` whatever the protection) and
splits it first when it covers only part. PROT_NONE ("none") keeps every page mapped:
the entries become PROT_NONE entries (present to core mm, faulting for the CPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    _PAGE_SWP_SOFT_DIRTY,
    _PAGE_SWP_UFFD_WP,
    PTE_PFN_MASK,
    pte_dirty,
    pte_index,
    pte_mkwrite,
    pte_modify,
    pte_pfn,
    swp_offset,
)
from pyfolio.include.linux.mm import PAGE_ALIGN, ULONG_MASK, folio_test_anon, page_folio
from pyfolio.include.linux.mm_types import VM, VMA, MMStruct
from pyfolio.mm.huge_memory import __split_huge_pmd, change_huge_pmd
from pyfolio.mm.memory import pmd_slot, set_pte_at
from pyfolio.mm.memory_file import vma_page_prot
from pyfolio.mm.mmap import PROT, check_aligned, split_vma, vma_merge_range
from pyfolio.mm.mmu_notifier import MMU_NOTIFY, invalidate_secondary_mmus
from pyfolio.sim.errors import EACCES, EINVAL, ENOMEM, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_NR, PAGE_SHIFT, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["do_mprotect", "mprotect_fixup", "change_protection", "change_nonpresent_entry",
           "can_change_pte_writable"]

# vm_flags bits as plain ints (IntFlag arithmetic is slow in a syscall's hot path)
_RW, _WRITE, _MAYWRITE = int(VM.READ | VM.WRITE), int(VM.WRITE), int(VM.MAYWRITE)
_SHARED = int(VM.SHARED)
#: pte_present(): P or PROTNONE; pmd_present(): P, PROTNONE or PSE
_PTE_PRESENT = _PAGE_PRESENT | _PAGE_PROTNONE
_PMD_PRESENT = _PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE
_PROTECTION_VMA = MMU_NOTIFY.MMU_NOTIFY_PROTECTION_VMA
#: PROT's protections as VM_READ|VM_WRITE bits (ints)
_PROT_BITS = {name: int(flags) for name, flags in PROT.items()}
#: the VM value of each vm_flags int met so far (VM(x) costs an enum lookup per call)
_VM_OF: dict[int, VM] = {}


def do_mprotect(mm: MMStruct, start: int, length: int, prot: str) -> None:
    """do_mprotect_pkey() - set ``prot`` ("none", "r" or "rw") on [start, start + length).

    Models: mm/mprotect.c:do_mprotect_pkey() (v6.18), unsigned arithmetic: EINVAL for an
    unaligned start; a length of 0 does nothing; ENOMEM when the page-aligned end wraps
    (``end <= start``); EINVAL for a bad protection (arch_validate_prot()); ENOMEM when
    part of the range is not mapped; EACCES for PROT_WRITE where VM_MAYWRITE is clear
    (mprotect_fixup()'s VM_MAY* check); nothing changes in any of these cases.
    """
    start, length = start & ULONG_MASK, length & ULONG_MASK
    check_aligned(start, "mprotect")
    if not length:
        return  # do_mprotect_pkey(): "if (!len) return 0;"
    end = (start + PAGE_ALIGN(length)) & ULONG_MASK
    if end <= start:
        raise MmError(ENOMEM, f"mprotect: [{start:#x}, +{length:#x}) wraps around")
    if prot not in PROT:
        raise MmError(EINVAL, f"mprotect: protection {prot!r} is not 'none', 'r' or 'rw'")
    new = _PROT_BITS[prot]
    i, j = mm.vma_span(start, end, mm.vma_hint)
    vmas = mm.vmas[i:j]
    covered = 0
    for v in vmas:  # min(vm_end, end) - max(vm_start, start), without the calls
        covered += (v.vm_end if v.vm_end < end else end) - (
            v.vm_start if v.vm_start > start else start)
    if covered != end - start:
        raise MmError(ENOMEM, f"mprotect: [{start:#x}, {end:#x}) is not fully mapped")
    if new & _WRITE and any(not int(v.vm_flags) & _MAYWRITE for v in vmas):
        raise MmError(EACCES, "mprotect: PROT_WRITE on a mapping that may not be written "
                              "(a shared mapping of a file not open for writing)")
    first = -1
    for vma in vmas:
        i = mprotect_fixup(vma, vma.vm_start if vma.vm_start > start else start,
                           vma.vm_end if vma.vm_end < end else end,
                           int(vma.vm_flags) & ~_RW | new, i)
        if first < 0:
            first = i - 1  # where the range's first VMA now sits
    mm.vma_hint = i
    # the VMAs touching [start, end) (vma_span(start - 1, end + 1)): the range's, and the
    # neighbours that end at start and start at end
    all_ = mm.vmas
    vma_merge_range(mm, start, end, (
        first - 1 if first and all_[first - 1].vm_end == start else first,
        i + 1 if i < len(all_) and all_[i].vm_start == end else i))
    mm.m.trace.emit("mprotect", start=start, end=end, prot=prot)


def mprotect_fixup(vma: VMA, start: int, end: int, newflags: int, i: int | None = None) -> int:
    """mprotect_fixup() - give [start, end) of ``vma`` the vm_flags ``newflags``; ``i`` is
    where ``vma`` sits in its mm's VMA list (the kernel's vma iterator; looked up when
    None). Returns the index of the VMA after the part in the range.

    Models: mm/mprotect.c:mprotect_fixup() (v6.18): nothing at all when the flags stay the
    same (no split either); else vma_modify_flags() cuts the VMA at ``start`` and ``end``
    where they fall inside it (__split_vma(), the lower cut first), the part in the range
    takes the new flags (vm_flags_reset()) and change_protection() applies them to its
    entries. The simulator tries the merge with the neighbours after every VMA of the range
    is done (do_mprotect()'s vma_merge_range()), not before the cuts.
    """
    if i is None:
        i = vma.vm_mm.vma_index(vma)
    if vma.vm_flags == newflags:  # an IntFlag equals the int of its value
        return i + 1
    if vma.vm_start < start:
        vma = split_vma(vma, start, i)
        i += 1
    if end < vma.vm_end:
        split_vma(vma, end, i)
    flags = _VM_OF.get(newflags)
    if flags is None:
        flags = _VM_OF[newflags] = VM(newflags)
    vma.vm_flags = flags
    change_protection(vma, vma.vm_start, vma.vm_end)
    return i + 1


def change_protection(vma: VMA, start: int, end: int) -> None:
    """change_protection() - apply the VMA's protection to the entries in [start, end).

    Models: mm/mprotect.c:change_protection() and change_pte_range() (v6.18).

    Secondary MMUs hear MMU_NOTIFY_PROTECTION_VMA from the first PMD that holds anything
    (change_pmd_range() starts the range lazily). Each present PTE (pte_present():
    PROT_NONE ones too) gets pte_modify() with the VMA's protection (a private mapping's
    vm_page_prot has no RW, so RW goes and a dirty writable PTE's D moves to SavedDirty; a
    shared mapping's has RW unless the file wants write notification; PAGE_NONE clears P,
    sets PROTNONE and inverts the PFN); where a private VMA is writable, pte_mkwrite() (RW
    back, SavedDirty back to D) only on anon pages that are PG_anon_exclusive
    (can_change_pte_writable()): shared pages keep COW; in a shared mapping that wants
    write notification, on dirty PTEs (the file system already saw their first write).
    Whatever the new protection, a writable device-private entry becomes readable
    (soft-dirty dropped, uffd-wp kept) and a writable migration entry readable-exclusive
    (anon); a non-present PMD (device-private or migration) the same way in
    change_huge_pmd(), or split first when the range covers it only in part, as a PMD leaf is.
    """
    mm = vma.vm_mm
    m = mm.m
    pgtables = m.pgtables
    flags = int(vma.vm_flags)
    writable = (flags & _WRITE) != 0  # vma.writable
    shared = flags & _SHARED
    newprot = vma_page_prot(vma)
    notified = False
    addr = start
    while addr < end:  # change_pmd_range(): PMD by PMD
        nxt = (addr | (PMD_SIZE - 1)) + 1
        if nxt > end:
            nxt = end
        slot = pmd_slot(mm, addr)
        if slot is None:
            addr = nxt
            continue
        raw = pgtables[slot[0]].item(slot[1])
        if raw and not notified:  # if (!range.start) mmu_notifier_range_init(...)
            if mm.notifier_subscriptions is not None:  # mm_has_notifiers(), as the inline
                invalidate_secondary_mmus(_PROTECTION_VMA, mm, addr, end)
            notified = True
        if raw & _PAGE_PSE or (raw and not raw & _PMD_PRESENT):  # pmd_leaf(), swap PMD
            if addr & (PMD_SIZE - 1) == 0 and nxt - addr == PMD_SIZE:
                if change_huge_pmd(vma, slot, addr, writable) == HPAGE_PMD_NR:
                    m.vmstat["numa_huge_pte_updates"] += 1  # count_vm_numa_events()
                addr = nxt
                continue
            __split_huge_pmd(vma, slot, addr, False)
            raw = pgtables[slot[0]].item(slot[1])
        if raw & _PAGE_PRESENT:  # a PTE table: pte_pfn() of a present entry, inverted never
            table = (raw & PTE_PFN_MASK) >> PAGE_SHIFT
            tbl = pgtables[table]
            first = pte_index(addr)
            for i in range(first, first + ((nxt - addr) >> PAGE_SHIFT)):
                pte = tbl.item(i)
                if not pte & _PTE_PRESENT:  # pte_present()
                    if pte:
                        new = change_nonpresent_entry(m, pte)
                        if new != pte:
                            set_pte_at(m, (table, i), new)
                    continue
                new = pte_modify(pte, newprot)
                if writable and not new & (_PAGE_RW | _PAGE_SPECIAL) and (
                        pte_dirty(pte) if shared else
                        folio_test_anon(page_folio(m, pte_pfn(pte)))
                        and m.mem.test(pte_pfn(pte), PG.anon_exclusive)):
                    new = pte_mkwrite(new)
                if new != pte:
                    set_pte_at(m, (table, i), new)
            m.trace.costs["tlb_flushes"] += 1  # trace.cost("tlb_flushes")
        addr = nxt


def change_nonpresent_entry(m: Machine, entry: int) -> int:
    """The swap-format branch of change_pte_range() (and of change_huge_pmd()): a writable
    migration entry becomes readable-exclusive (an anon folio's) or readable, keeping
    soft-dirty; a writable device-private entry becomes readable, keeping uffd-wp but not
    soft-dirty ("We do not preserve soft-dirtiness"); anything else stays.

    Models: mm/mprotect.c:change_pte_range() (v6.18) and the swap-PMD branch of
    mm/huge_memory.c:change_huge_pmd() (the device-private series).
    """
    from pyfolio.include.linux.swapops import (
        is_writable_device_private_entry,
        is_writable_migration_entry,
        make_readable_device_private_entry,
        make_readable_exclusive_migration_entry,
        make_readable_migration_entry,
    )

    if is_writable_migration_entry(entry):
        pfn = swp_offset(entry)
        make = make_readable_exclusive_migration_entry if folio_test_anon(
            page_folio(m, pfn)) else make_readable_migration_entry
        return make(pfn) | (entry & _PAGE_SWP_SOFT_DIRTY)
    if is_writable_device_private_entry(entry):
        return make_readable_device_private_entry(swp_offset(entry)) | (
            entry & _PAGE_SWP_UFFD_WP)
    return entry


def can_change_pte_writable(vma: VMA, addr: int, pte: int) -> bool:
    """can_change_pte_writable() - may a read-only PTE of a writable private VMA be made
    writable without a write fault: not PROT_NONE, and the page anon and exclusive.

    Models: mm/mprotect.c:can_change_pte_writable() (v6.18; VM_SOFTDIRTY set, no uffd-wp).
    """
    from pyfolio.arch.x86.pgtable import pte_protnone

    if not vma.writable or pte_protnone(pte) or pte & _PAGE_SPECIAL:
        return False
    m = vma.vm_mm.m
    pfn = pte_pfn(pte)
    return folio_test_anon(page_folio(m, pfn)) and m.mem.test(pfn, PG.anon_exclusive)
