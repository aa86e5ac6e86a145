"""mprotect: change the protection of a range.

Models: mm/mprotect.c (v6.18): mprotect_fixup() splits VMAs at the range edges,
change_protection() walks the range; change_pmd_range() changes a PMD leaf whole when the
range covers it (change_huge_pmd()) and splits it first when it covers only part.
"""

from __future__ import annotations

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_RW,
    _PAGE_SPECIAL,
    pmd_leaf,
    pte_index,
    pte_mkwrite,
    pte_modify,
    pte_pfn,
    vm_page_prot,
)
from pyfolio.include.linux.mm_types import VM, VMA, MMStruct
from pyfolio.mm.huge_memory import __split_huge_pmd, change_huge_pmd
from pyfolio.mm.memory import set_pte_at
from pyfolio.mm.mmap import PROT, _vmas_in, check_range, vma_merge_range
from pyfolio.mm.rmap import pmd_chunks
from pyfolio.sim.errors import ENOMEM, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SIZE, PMD_SIZE

__all__ = ["do_mprotect", "change_protection"]


def do_mprotect(mm: MMStruct, start: int, length: int, prot: str) -> None:
    """do_mprotect_pkey() - set ``prot`` ("r" or "rw") on [start, start + length).

    Models: mm/mprotect.c:do_mprotect_pkey() (v6.18).

    Raises EINVAL for a bad protection or alignment and ENOMEM when part of the range is
    not mapped (as the kernel does), changing nothing in either case.
    """
    from pyfolio.sim.errors import EINVAL

    if prot not in ("r", "rw", "w"):
        raise MmError(EINVAL, f"mprotect: protection {prot!r} is not 'r' or 'rw'")
    length = check_range(start, length, "mprotect", empty_ok=True)
    if not length:
        return  # do_mprotect_pkey(): "if (!len) return 0;"
    end = start + length
    covered = sum(min(v.vm_end, end) - max(v.vm_start, start)
                  for v in mm.vmas_between(start, end))
    if covered != length:
        raise MmError(ENOMEM, f"mprotect: [{start:#x}, {end:#x}) is not fully mapped")
    for vma in _vmas_in(mm, start, end):
        vma.vm_flags = (vma.vm_flags & ~(VM.READ | VM.WRITE)) | PROT[prot]
        change_protection(vma, vma.vm_start, vma.vm_end)
    vma_merge_range(mm, start, end)
    mm.m.trace.emit("mprotect", start=start, end=end, prot=prot)


def change_protection(vma: VMA, start: int, end: int) -> None:
    """change_protection() - apply the VMA's protection to the entries in [start, end).

    Models: mm/mprotect.c:change_protection() and change_pte_range() (v6.18).

    Each present PTE gets pte_modify() with the VMA's protection (a private mapping's
    vm_page_prot has no RW, so RW goes and a dirty writable PTE's D moves to SavedDirty);
    where the VMA is writable, pte_mkwrite() (RW back, SavedDirty back to D) only on pages
    that are PG_anon_exclusive (can_change_pte_writable()): shared pages keep COW.
    """
    m = vma.vm_mm.m
    writable = vma.writable
    newprot = vm_page_prot(writable)
    for addr, nxt, slot in pmd_chunks(vma, start, end):
        raw = int(m.pgtables[slot[0]][slot[1]])
        if pmd_leaf(raw):
            if addr & (PMD_SIZE - 1) == 0 and nxt - addr == PMD_SIZE:
                change_huge_pmd(vma, slot, addr, writable)
                continue
            __split_huge_pmd(vma, slot, addr, False)
            raw = int(m.pgtables[slot[0]][slot[1]])
        if raw & _PAGE_PRESENT:
            tbl = m.pgtables[pte_pfn(raw)]
            for a in range(addr, nxt, PAGE_SIZE):
                i = pte_index(a)
                pte = int(tbl[i])
                if not pte & _PAGE_PRESENT:
                    continue
                new = pte_modify(pte, newprot)
                if writable and not new & (_PAGE_RW | _PAGE_SPECIAL) and \
                        m.mem.test(pte_pfn(pte), PG.anon_exclusive):
                    new = pte_mkwrite(new)
                if new != pte:
                    set_pte_at(m, (pte_pfn(raw), i), new)
            m.trace.cost("tlb_flushes")
