"""mremap: grow, shrink or move a mapping, moving its page-table entries as they are.

Models: mm/mremap.c (read in the linux-mm tree, commit 00ce3d63; the 6.18 behaviour it
states, errnos, moves of several VMAs, the same-size no-op and PMD moves and splits, was
measured on Linux 6.18.44): do_mremap(), check_mremap_params(), check_prep_vma(),
remap_move(), mremap_to(), mremap_at(), expand_vma(), vma_expandable(), shrink_vma(),
move_vma(), copy_vma_and_data(), dontunmap_complete(), unmap_source_vma(),
move_page_tables(), get_extent(), try_realign_addr(), move_normal_pud(),
move_normal_pmd(), move_ptes(), move_soft_dirty_pte(); mm/vma.c:copy_vma().

A move never touches a folio: folio->index stays, the new VMA's vm_pgoff is the old one
plus the offset into the VMA (copy_vma_and_data()), so the rmap finds every page at its
new address; no refcount, mapcount, RSS or vmstat counter changes, except that a huge PMD
that cannot move whole (source and destination not both at a 2 MiB boundary with 2 MiB to
go) is split first (``thp_split_pmd``). Swap-format entries (migration, device-private,
device-exclusive) move unchanged.

Not modelled (the newest tree's VM_RESERVED_THP is not in 6.18): userfaultfd, mlock,
hugetlb, file and shared mappings (VM_ACCOUNT), mseal, the map-count limit, KSM, RLIMIT_AS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_SWP_SOFT_DIRTY,
    pgd_index,
    pmd_leaf,
    pte_index,
    pte_mksoft_dirty,
    pte_present,
    pud_index,
)
from pyfolio.include.linux.mm_types import TASK_SIZE, VMA, MMStruct
from pyfolio.mm.huge_memory import split_huge_pmd
from pyfolio.mm.huge_memory_move import move_huge_pmd
from pyfolio.mm.memory import pmd_slot, pte_slot, set_pte_at
from pyfolio.mm.mmap import do_munmap, get_unmapped_area, vma_merge_range
from pyfolio.mm.mmu_notifier import MMU_NOTIFY, invalidate_secondary_mmus
from pyfolio.mm.rmap import anon_vma_clone, unlink_anon_vmas
from pyfolio.sim.errors import EFAULT, EINVAL, ENOMEM, MmError
from pyfolio.sim.units import PAGE_SIZE, PMD_SIZE, PUD_SHIFT

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP", "VmaRemap",
           "PagetableMoveControl", "do_mremap", "check_mremap_params", "check_prep_vma",
           "remap_move", "mremap_to", "mremap_at", "expand_vma", "vma_expandable",
           "shrink_vma", "move_vma", "copy_vma", "move_page_tables", "get_extent",
           "move_normal_pmd", "move_normal_pud", "move_ptes", "move_soft_dirty_pte"]

#: include/uapi/linux/mman.h
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
PUD_SIZE = 1 << PUD_SHIFT
_ULONG = (1 << 64) - 1


def _page_align(n: int) -> int:
    """PAGE_ALIGN() of an unsigned long (wraps to 0 at the top)."""
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & _ULONG


@dataclass
class VmaRemap:
    """struct vma_remap_struct: what the caller asked for, and the state mremap keeps."""

    addr: int
    old_len: int
    new_len: int
    flags: int
    new_addr: int
    vma: VMA | None = None
    delta: int = 0
    remap_type: str = "invalid"  # no_resize, shrink, expand

    @property
    def implies_new_addr(self) -> bool:
        """vrm_implies_new_addr(): MREMAP_FIXED or MREMAP_DONTUNMAP."""
        return bool(self.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))


@dataclass
class PagetableMoveControl:
    """struct pagetable_move_control (PAGETABLE_MOVE()): move [old_addr, old_end) of
    ``old`` to ``new_addr`` in ``new``."""

    old: VMA
    new: VMA
    old_addr: int
    new_addr: int
    old_end: int
    len_in: int


def do_mremap(mm: MMStruct, addr: int, old_len: int, new_len: int, flags: int,
              new_addr: int = 0) -> int:
    """do_mremap() - the mremap(2) system call: the (possibly new) address of the mapping.

    Models: mm/mremap.c:do_mremap() and SYSCALL_DEFINE5(mremap) (v6.18): lengths are
    PAGE_ALIGN()ed, check_mremap_params() (-EINVAL); a move-only call (MREMAP_FIXED,
    same length) moves every VMA of the range (remap_move()); otherwise the VMA at
    ``addr`` (vma_lookup(), -EFAULT if none) is checked (check_prep_vma()) and moved
    (mremap_to()) or resized in place (mremap_at()). Raises MmError with the kernel's
    errno; a call that fails in these checks changes nothing.

    >>> from pyfolio import System, MiB
    >>> m = System(ram="64M"); p, a = m.spawn_with_thp(4 * MiB)
    >>> b = p.mmap(2 * MiB); p.munmap(b, 2 * MiB)
    >>> do_mremap(p.mm, a, 2 * MiB, 2 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, b) == b
    True
    >>> p.lookup(b).kind, m.vmstat()["thp_split_pmd"], p.status()["RssAnon"]
    ('huge', 0, 2048)
    """
    vrm = VmaRemap(addr & _ULONG, _page_align(old_len & _ULONG), _page_align(new_len & _ULONG),
                   flags, new_addr & _ULONG)
    check_mremap_params(vrm)
    if vrm.flags & MREMAP_FIXED and vrm.old_len == vrm.new_len:  # vrm_move_only()
        res = remap_move(mm, vrm)
    else:
        vrm.vma = mm.find_vma(vrm.addr)  # vma_lookup()
        check_prep_vma(mm, vrm)
        res = mremap_to(mm, vrm) if vrm.implies_new_addr else mremap_at(mm, vrm)
    mm.m.trace.emit("mremap", changes={"addr": f"{res:#x}"}, addr=addr, old_len=vrm.old_len,
                    new_len=vrm.new_len, flags=flags)
    return res


def check_mremap_params(vrm: VmaRemap) -> None:
    """check_mremap_params() - the argument checks made before anything is looked up.

    Models: mm/mremap.c:check_mremap_params() (v6.18): unknown flag bits, an unaligned
    ``addr``, a ``new_len`` of 0 or above TASK_SIZE; for MREMAP_FIXED/DONTUNMAP: a
    ``new_addr`` past TASK_SIZE - new_len or unaligned, no MREMAP_MAYMOVE, DONTUNMAP with
    a change of length, or the new range overlapping the old: all -EINVAL.
    """
    if vrm.flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP):
        raise MmError(EINVAL, f"mremap: unknown flags {vrm.flags:#x}")
    if vrm.addr & (PAGE_SIZE - 1):
        raise MmError(EINVAL, f"mremap: address {vrm.addr:#x} is not page aligned")
    if not vrm.new_len or vrm.new_len > TASK_SIZE:
        raise MmError(EINVAL, f"mremap: new length {vrm.new_len:#x} is 0 or too large")
    if not vrm.implies_new_addr:
        return
    if vrm.new_addr > TASK_SIZE - vrm.new_len or vrm.new_addr & (PAGE_SIZE - 1):
        raise MmError(EINVAL, f"mremap: new address {vrm.new_addr:#x} is not a page-aligned "
                      "user address")
    if not vrm.flags & MREMAP_MAYMOVE:
        raise MmError(EINVAL, "mremap: MREMAP_FIXED/MREMAP_DONTUNMAP need MREMAP_MAYMOVE")
    if vrm.flags & MREMAP_DONTUNMAP and vrm.old_len != vrm.new_len:
        raise MmError(EINVAL, "mremap: MREMAP_DONTUNMAP cannot resize")
    if vrm.addr + vrm.old_len > vrm.new_addr and vrm.new_addr + vrm.new_len > vrm.addr:
        raise MmError(EINVAL, "mremap: the new range overlaps the old one")


def check_prep_vma(mm: MMStruct, vrm: VmaRemap) -> None:
    """check_prep_vma() - the checks of the VMA at ``addr``; sets delta and the type.

    Models: mm/mremap.c:check_prep_vma() (v6.18): no VMA -> -EFAULT. Only a call that
    expands or moves checks more: ``old_len`` 0 on a private mapping -> -EINVAL; the
    range (for a shrink: the part kept) running past the VMA's end -> -EFAULT. So a
    same-size call without MREMAP_FIXED returns ``addr`` whatever the range covers
    (measured on 6.18.44).
    """
    vma = vrm.vma
    if vma is None:
        raise MmError(EFAULT, f"mremap: no mapping at {vrm.addr:#x}")
    vrm.delta = abs(vrm.old_len - vrm.new_len)
    vrm.remap_type = ("no_resize" if not vrm.delta else
                      "shrink" if vrm.old_len > vrm.new_len else "expand")
    if not vrm.implies_new_addr:
        vrm.new_addr = vrm.addr
    if vrm.remap_type != "expand" and not vrm.implies_new_addr:
        return  # !vrm_will_map_new()
    if not vrm.old_len:
        raise MmError(EINVAL, "mremap: old length 0 would duplicate a private mapping")
    old_len = vrm.new_len if vrm.remap_type == "shrink" else vrm.old_len
    if old_len > vma.vm_end - vrm.addr:
        raise MmError(EFAULT, f"mremap: [{vrm.addr:#x}, +{old_len:#x}) runs past the end of "
                      f"its VMA ({vma.vm_end:#x})")


def remap_move(mm: MMStruct, vrm: VmaRemap) -> int:
    """remap_move() - MREMAP_FIXED without resize: move every VMA in [addr, addr + old_len)
    (split at the edges), keeping the gaps between them.

    Models: mm/mremap.c:remap_move() (v6.18): a gap at the start of the range -> -EFAULT;
    each VMA part goes through check_prep_vma() and mremap_to() to ``new_addr`` plus the
    same offset. Returns the new address of the first.
    """
    start, end, target = vrm.addr, vrm.addr + vrm.old_len, vrm.new_addr
    parts = [(max(v.vm_start, start), min(end, v.vm_end)) for v in mm.vmas_between(start, end)]
    if not parts or parts[0][0] > start:
        raise MmError(EFAULT, f"mremap: no mapping at {start:#x}")
    res, last_end = -1, parts[0][0]
    for lo, hi in parts:  # addresses of the original VMAs; earlier moves leave them intact
        sub = VmaRemap(lo, hi - lo, hi - lo, vrm.flags, target + (lo - last_end))
        sub.vma = mm.find_vma(lo)
        check_prep_vma(mm, sub)
        got = mremap_to(mm, sub)
        res = got if res < 0 else res
        target, last_end = got + (hi - lo), hi
    return res


def mremap_to(mm: MMStruct, vrm: VmaRemap) -> int:
    """mremap_to() - move to ``new_addr`` (MREMAP_FIXED: unmapping whatever is there first)
    or to an address found for it (MREMAP_DONTUNMAP without FIXED: ``new_addr`` a hint).

    Models: mm/mremap.c:mremap_to() and vrm_set_new_addr() (v6.18): a shrink unmaps the
    tail in place first, then moves ``new_len``; then move_vma().
    """
    if vrm.flags & MREMAP_FIXED:
        do_munmap(mm, vrm.new_addr, vrm.new_len)
        vrm.vma = mm.find_vma(vrm.addr)
        if vrm.vma is None:
            raise MmError(EFAULT, f"mremap: no mapping at {vrm.addr:#x}")
    if vrm.remap_type == "shrink":
        shrink_vma(mm, vrm)
        vrm.old_len = vrm.new_len
    if vrm.flags & MREMAP_FIXED:
        return move_vma(mm, vrm)
    vrm.new_addr = get_unmapped_area(mm, vrm.new_len, hint=vrm.new_addr)
    return move_vma(mm, vrm)


def mremap_at(mm: MMStruct, vrm: VmaRemap) -> int:
    """mremap_at() - resize where the mapping is: the same size is a no-op, a shrink unmaps
    the tail (shrink_vma()), a growth goes to expand_vma().

    Models: mm/mremap.c:mremap_at() (v6.18).
    """
    if vrm.remap_type == "shrink":
        shrink_vma(mm, vrm)
    elif vrm.remap_type == "expand":
        return expand_vma(mm, vrm)
    return vrm.addr


def shrink_vma(mm: MMStruct, vrm: VmaRemap) -> None:
    """shrink_vma() - unmap [addr + new_len, addr + old_len), as munmap() does (a PMD
    straddling the cut is split, the THP queued for deferred split).

    Models: mm/mremap.c:shrink_vma() (v6.18).
    """
    do_munmap(mm, vrm.addr + vrm.new_len, vrm.delta)
    vrm.vma = mm.find_vma(vrm.addr)
    if vrm.vma is None:
        raise MmError(EFAULT, f"mremap: no mapping at {vrm.addr:#x}")


def vma_expandable(mm: MMStruct, vma: VMA, delta: int) -> bool:
    """vma_expandable() - may ``vma`` grow by ``delta`` where it is: nothing mapped in
    [vm_end, vm_end + delta), which must stay below TASK_SIZE.

    Models: mm/mremap.c:vma_expandable() (v6.18).
    """
    end = vma.vm_end + delta
    return end <= TASK_SIZE and not mm.vmas_between(vma.vm_end, end)


def expand_vma(mm: MMStruct, vrm: VmaRemap) -> int:
    """expand_vma() - grow in place when [addr, addr + old_len) ends at the VMA's end and
    the space after it is free (vma_merge_extend()); otherwise move with MREMAP_MAYMOVE
    (-ENOMEM without it) to a new address from get_unmapped_area() (2 MiB aligned for a
    length that is a multiple of 2 MiB).

    Models: mm/mremap.c:expand_vma() and expand_vma_in_place() (v6.18).
    """
    vma = vrm.vma
    assert vma is not None
    if vma.vm_end - vrm.addr == vrm.old_len and vma_expandable(mm, vma, vrm.delta):
        vma.vm_end += vrm.delta  # vma_merge_extend()
        vma_merge_range(mm, vma.vm_start, vma.vm_end)
        return vrm.addr
    if not vrm.flags & MREMAP_MAYMOVE:
        raise MmError(ENOMEM, f"mremap: cannot grow [{vrm.addr:#x}, +{vrm.old_len:#x}) in "
                      "place and MREMAP_MAYMOVE was not given")
    vrm.new_addr = get_unmapped_area(mm, vrm.new_len)
    return move_vma(mm, vrm)


def copy_vma(vma: VMA, addr: int, length: int, pgoff: int) -> VMA:
    """copy_vma() - a new VMA at [addr, addr + length) like ``vma``, with ``pgoff``, chained
    to the same anon_vmas (so the rmap finds the moved folios through it).

    Models: mm/vma.c:copy_vma() (v6.18); the merge with a neighbour (vma_merge_new_range())
    is done once the move is complete (vma_merge_range()), with the same result.
    """
    mm = vma.vm_mm
    new = VMA(mm, addr, addr + length, vma.vm_flags, pgoff)
    new.swap_readahead_info = vma.swap_readahead_info  # vm_area_dup(): vm_area_init_from()
    anon_vma_clone(new, vma)
    mm.insert_vma(new)
    return new


def move_vma(mm: MMStruct, vrm: VmaRemap) -> int:
    """move_vma() - copy the VMA part to ``new_addr``, move its page tables, then unmap
    the old part (or with MREMAP_DONTUNMAP keep it, empty: dontunmap_complete()).

    Models: mm/mremap.c:move_vma(), copy_vma_and_data(), dontunmap_complete() and
    unmap_source_vma() (v6.18): the old range is unmapped like munmap() (do_vmi_munmap():
    its VMA split at the edges, nothing left to zap, the empty tables freed); with
    DONTUNMAP the old VMA stays as it was, and loses its anon_vma links when the whole VMA
    moved.
    """
    vma = vrm.vma
    assert vma is not None
    new_pgoff = vma.vm_pgoff + ((vrm.addr - vma.vm_start) >> 12)
    whole = vma.vm_start == vrm.addr and vma.vm_end == vrm.addr + vrm.old_len
    new = copy_vma(vma, vrm.new_addr, vrm.new_len, new_pgoff)
    move_page_tables(PagetableMoveControl(vma, new, vrm.addr, vrm.new_addr,
                                          vrm.addr + vrm.old_len, vrm.old_len))
    if vrm.flags & MREMAP_DONTUNMAP:
        if whole:
            unlink_anon_vmas(vma)
    else:
        do_munmap(mm, vrm.addr, vrm.old_len)  # unmap_source_vma()
    vma_merge_range(mm, vrm.new_addr, vrm.new_addr + vrm.new_len)
    return vrm.new_addr


def get_extent(pmc: PagetableMoveControl, size: int) -> int:
    """get_extent() - bytes to the next ``size`` boundary of the old address, capped by the
    end of the range and by the next boundary of the new address.

    Models: mm/mremap.c:get_extent() (v6.18).
    """
    extent = ((pmc.old_addr + size) & ~(size - 1)) - pmc.old_addr
    extent = min(extent, pmc.old_end - pmc.old_addr)
    return min(extent, ((pmc.new_addr + size) & ~(size - 1)) - pmc.new_addr)


def _try_realign_addr(mm: MMStruct, pmc: PagetableMoveControl) -> None:
    """try_realign_addr(pmc, PMD_MASK): when both addresses have the same offset into their
    PMD, the range reaches the next PMD boundary and nothing is mapped below either VMA's
    start to that boundary (can_align_down()), align both down: the tables move whole."""
    off_old, off_new = pmc.old_addr & (PMD_SIZE - 1), pmc.new_addr & (PMD_SIZE - 1)
    if pmc.len_in < PMD_SIZE - off_old or not off_old or off_old != off_new:
        return
    for vma, addr in ((pmc.old, pmc.old_addr), (pmc.new, pmc.new_addr)):
        if vma.vm_start != addr or mm.vmas_between(addr & ~(PMD_SIZE - 1), addr):
            return
    pmc.old_addr -= off_old
    pmc.new_addr -= off_new


def move_page_tables(pmc: PagetableMoveControl) -> int:
    """move_page_tables() - move the entries of [old_addr, old_end) to ``new_addr``;
    returns the bytes moved.

    Models: mm/mremap.c:move_page_tables() (v6.18): per step, a whole PMD table moves
    when 1 GiB (move_normal_pud()) or 2 MiB (move_normal_pmd()) lines up on both sides;
    a huge PMD moves whole with move_huge_pmd() when the step is 2 MiB, else it is split
    (split_huge_pmd()) and its PTEs move with move_ptes(). Secondary MMUs hear
    MMU_NOTIFY_UNMAP over the old range first.
    """
    mm = pmc.old.vm_mm
    m = mm.m
    if not pmc.len_in:
        return 0
    _try_realign_addr(mm, pmc)
    # mmu_notifier_range_init(MMU_NOTIFY_UNMAP, old_addr, old_end): a device mirroring
    # the old addresses drops them (its entries are keyed by virtual address)
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_UNMAP, mm, pmc.old_addr, pmc.old_end)
    start = pmc.old_end - pmc.len_in
    while pmc.old_addr < pmc.old_end:
        extent = get_extent(pmc, PUD_SIZE)
        if extent == PUD_SIZE and move_normal_pud(m, mm, pmc):
            pmc.old_addr, pmc.new_addr = pmc.old_addr + extent, pmc.new_addr + extent
            continue
        extent = get_extent(pmc, PMD_SIZE)
        old_pmd = pmd_slot(mm, pmc.old_addr)
        raw = int(m.pgtables[old_pmd[0]][old_pmd[1]]) if old_pmd is not None else 0
        if raw:
            new_pmd = pmd_slot(mm, pmc.new_addr, alloc=True)
            assert old_pmd is not None and new_pmd is not None
            if pmd_leaf(raw) or not raw & _PAGE_PRESENT:  # pmd_is_huge()
                if extent == PMD_SIZE and move_huge_pmd(pmc.old, pmc.old_addr, pmc.new_addr,
                                                        old_pmd, new_pmd):
                    pmc.old_addr, pmc.new_addr = pmc.old_addr + extent, pmc.new_addr + extent
                    continue
                split_huge_pmd(pmc.old, old_pmd, pmc.old_addr)
            elif extent == PMD_SIZE and move_normal_pmd(m, old_pmd, new_pmd):
                pmc.old_addr, pmc.new_addr = pmc.old_addr + extent, pmc.new_addr + extent
                continue
            move_ptes(pmc, extent)
        pmc.old_addr, pmc.new_addr = pmc.old_addr + extent, pmc.new_addr + extent
    return max(0, pmc.old_addr - start)


def move_normal_pud(m: Machine, mm: MMStruct, pmc: PagetableMoveControl) -> bool:
    """move_normal_pud() - a whole PMD table (1 GiB) changes places: the PUD entry moves
    when the new one is empty (CONFIG_HAVE_MOVE_PUD).

    Models: mm/mremap.c:move_normal_pud() (v6.18).
    """
    from pyfolio.mm.memory import _next_table

    old_pud = _next_table(m, mm.pgd, pgd_index(pmc.old_addr), False)
    if old_pud is None or not int(m.pgtables[old_pud][pud_index(pmc.old_addr)]):
        return False
    new_pud = _next_table(m, mm.pgd, pgd_index(pmc.new_addr), True)
    assert new_pud is not None
    if int(m.pgtables[new_pud][pud_index(pmc.new_addr)]):
        return False  # WARN_ON_ONCE(!pud_none(*new_pud))
    oi, ni = pud_index(pmc.old_addr), pud_index(pmc.new_addr)
    m.pgtables[new_pud][ni] = m.pgtables[old_pud][oi]
    m.pgtables[old_pud][oi] = 0
    m.trace.cost("tlb_flushes")
    return True


def move_normal_pmd(m: Machine, old_pmd: tuple[int, int], new_pmd: tuple[int, int]) -> bool:
    """move_normal_pmd() - a whole PTE table (2 MiB) changes places: the PMD entry pointing
    at it moves when the new one is empty (CONFIG_HAVE_MOVE_PMD); the entries in it, and
    the pages they map, are untouched.

    Models: mm/mremap.c:move_normal_pmd() (v6.18).
    """
    raw = int(m.pgtables[old_pmd[0]][old_pmd[1]])
    if int(m.pgtables[new_pmd[0]][new_pmd[1]]) or not raw & _PAGE_PRESENT or raw & _PAGE_PSE:
        return False
    m.pgtables[old_pmd[0]][old_pmd[1]] = 0  # pmd_clear()
    m.pgtables[new_pmd[0]][new_pmd[1]] = raw  # pmd_populate()
    m.trace.cost("pmd_writes", 2)
    m.trace.cost("tlb_flushes")
    return True


def move_soft_dirty_pte(pte: int) -> int:
    """move_soft_dirty_pte() - mark a moved entry soft-dirty: pte_mksoft_dirty() on a
    present one, pte_swp_mksoft_dirty() on a swap-format one.

    Models: mm/mremap.c:move_soft_dirty_pte() (v6.18, CONFIG_MEM_SOFT_DIRTY=y).
    """
    if not pte:
        return pte
    return pte_mksoft_dirty(pte) if pte_present(pte) else pte | _PAGE_SWP_SOFT_DIRTY


def move_ptes(pmc: PagetableMoveControl, extent: int) -> None:
    """move_ptes() - move the PTEs of [old_addr, old_addr + extent) one by one (a batch of
    one large folio's PTEs at a time in the kernel: the same result), soft-dirty set; one
    TLB flush when a present entry moved. Swap-format entries move unchanged.

    Models: mm/mremap.c:move_ptes() (v6.18).
    """
    mm = pmc.old.vm_mm
    m = mm.m
    old = pte_slot(mm, pmc.old_addr)
    if old is None:
        return
    table = old[0]
    flush = False
    for k in range(extent // PAGE_SIZE):
        i = pte_index(pmc.old_addr) + k
        pte = int(m.pgtables[table][i])
        if not pte:
            continue
        new = pte_slot(mm, pmc.new_addr + k * PAGE_SIZE, alloc=True)
        assert new is not None
        flush |= pte_present(pte)
        m.pgtables[table][i] = 0  # get_and_clear_ptes()
        set_pte_at(m, new, move_soft_dirty_pte(pte))
    if flush:
        m.trace.cost("tlb_flushes")
