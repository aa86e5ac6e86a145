"""madvise: MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_DONTNEED, MADV_FREE, MADV_COLD,
MADV_PAGEOUT, MADV_COLLAPSE, MADV_REMOVE, MADV_DONTFORK, MADV_DOFORK, MADV_WIPEONFORK,
MADV_KEEPONFORK.

Models: mm/madvise.c (v6.18): madvise_update_vma() splits VMAs for the flag-setting
advice (HUGEPAGE/NOHUGEPAGE: VM_HUGEPAGE, VM_NOHUGEPAGE; DONTFORK/DOFORK: VM_DONTCOPY;
WIPEONFORK/KEEPONFORK: VM_WIPEONFORK, which fork reads in dup_mmap()); MADV_DONTNEED
zaps (zap_page_range_single()); MADV_FREE marks exclusively mapped anonymous pages clean
and lazy-free (madvise_free_single_vma(), madvise_free_pte_range(); a small folio only
when this CPU's LRU batch drains, see :mod:`pyfolio.mm.swap`), splitting a large folio it
covers only in part; MADV_COLD deactivates exclusively mapped pages
(madvise_cold_or_pageout_pte_range()), splitting the same way; MADV_PAGEOUT walks the same
way and hands the folios to reclaim (:mod:`pyfolio.mm.vmscan`: swapped out where a swap
area is active); MADV_COLLAPSE goes VMA by VMA to mm/khugepaged.c:madvise_collapse()
(:mod:`pyfolio.mm.khugepaged`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_SPECIAL,
    pmd_leaf,
    pmd_present,
    pte_index,
    pte_mkclean,
    pte_mkold,
    pte_pfn,
    pte_present,
    pte_young,
)
from pyfolio.include.linux.mm import (
    PAGE_ALIGN,
    ULONG_MASK,
    Folio,
    folio_get,
    folio_is_zone_device,
    folio_lock,
    folio_mapcount,
    folio_put,
    folio_test_large,
    folio_unlock,
    page_folio,
)
from pyfolio.include.linux.mm_types import VM, VMA, MMStruct
from pyfolio.include.linux.swapops import is_swap_entry
from pyfolio.mm.huge_memory import _set_pmd_at, madvise_free_huge_pmd
from pyfolio.mm.huge_memory_split import split_folio
from pyfolio.mm.khugepaged import madvise_collapse
from pyfolio.mm.madvise_batch import madvise_free_pte_run
from pyfolio.mm.memory import folio_pte_batch, set_pte_at, zap_page_range
from pyfolio.mm.memory_swap import zap_nonpresent_swap_ptes
from pyfolio.mm.migrate import folio_isolate_lru
from pyfolio.mm.mmap import _vmas_in, check_aligned, vma_merge_range
from pyfolio.mm.mmu_notifier import MMU_NOTIFY, invalidate_secondary_mmus
from pyfolio.mm.rmap import folio_mms, pmd_chunks
from pyfolio.mm.swap import folio_deactivate, folio_mark_lazyfree, lru_add_drain
from pyfolio.mm.swapfile import folio_free_swap
from pyfolio.mm.vmscan import reclaim_pages
from pyfolio.sim.errors import EACCES, EINVAL, ENOMEM, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["do_madvise", "ADVICE", "madvise_free_single_vma", "madvise_cold_page_range",
           "madvise_pageout_page_range", "madvise_remove"]

ADVICE = ("hugepage", "nohugepage", "dontneed", "free", "cold", "pageout", "collapse",
          "remove", "dontfork", "dofork", "wipeonfork", "keeponfork")
#: the flag-setting advice: (flags set, flags cleared) (madvise_vma_behavior())
_VMA_FLAGS = {"hugepage": (VM.HUGEPAGE, VM.NOHUGEPAGE),
              "nohugepage": (VM.NOHUGEPAGE, VM.HUGEPAGE),
              "dontfork": (VM.DONTCOPY, VM(0)), "dofork": (VM(0), VM.DONTCOPY),
              "wipeonfork": (VM.WIPEONFORK, VM(0)), "keeponfork": (VM(0), VM.WIPEONFORK)}


def do_madvise(mm: MMStruct, start: int, length: int, advice: str) -> None:
    """do_madvise() - apply ``advice`` to [start, start + length).

    Models: mm/madvise.c:do_madvise() (v6.18).

    Raises EINVAL for unknown advice, a misaligned start, a length that PAGE_ALIGN() wraps
    to 0 or a range that wraps (is_valid_madvise(); the values are unsigned), and does
    nothing for an empty range (madvise_should_skip()); ENOMEM when part of the range
    is unmapped (the kernel applies the advice to the mapped parts and then returns
    -ENOMEM; the simulator checks first and changes nothing). ``collapse`` calls
    madvise_collapse() for each VMA in turn (madvise_walk_vmas()) and stops at the first
    that fails, raising its errno (EINVAL, EAGAIN, ENOMEM): a range over several VMAs is
    collapsed VMA by VMA, and a VMA holding no whole aligned 2 MiB block is refused.
    """
    start, len_in = start & ULONG_MASK, length & ULONG_MASK
    check_aligned(start, "madvise")
    length = PAGE_ALIGN(len_in)
    if (len_in and not length) or start + length > ULONG_MASK:
        raise MmError(EINVAL, f"madvise: [{start:#x}, +{len_in:#x}) wraps around")
    if advice not in ADVICE:
        raise MmError(EINVAL, f"madvise: advice {advice!r} is not one of {', '.join(ADVICE)}")
    if not length:
        return  # madvise_should_skip(): start + len == start, 0
    end = start + length
    covered = sum(min(v.vm_end, end) - max(v.vm_start, start)
                  for v in mm.vmas_between(start, end))
    if covered != length:
        raise MmError(ENOMEM, f"madvise: [{start:#x}, {end:#x}) is not fully mapped")
    _check_file_advice(mm, start, end, advice)
    if advice == "remove":
        for vma in mm.vmas_between(start, end):
            madvise_remove(vma, max(vma.vm_start, start), min(vma.vm_end, end))
    elif advice in _VMA_FLAGS:
        add, drop = _VMA_FLAGS[advice]
        for vma in _vmas_in(mm, start, end):
            vma.vm_flags = (vma.vm_flags & ~drop) | add
        vma_merge_range(mm, start, end)
    else:
        for vma in mm.vmas_between(start, end):
            lo, hi = max(vma.vm_start, start), min(vma.vm_end, end)
            if lo < hi:
                if advice == "dontneed":  # madvise_dontneed_single_vma()
                    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_CLEAR, mm, lo, hi)
                    zap_page_range(vma, lo, hi, reclaim_pt=True)
                elif advice == "collapse":
                    madvise_collapse(vma, lo, hi)
                elif advice == "cold":
                    madvise_cold_page_range(vma, lo, hi)
                elif advice == "pageout":
                    madvise_pageout_page_range(vma, lo, hi)
                else:
                    madvise_free_single_vma(vma, lo, hi)
    mm.m.trace.emit("madvise", start=start, end=end, advice=advice)


def _check_file_advice(mm: MMStruct, start: int, end: int, advice: str) -> None:
    """The refusals that depend on the VMA's kind, made before anything changes:
    MADV_FREE only for anonymous memory (madvise_free_single_vma(): -EINVAL);
    MADV_REMOVE only in a shared writable file or shmem mapping (madvise_remove():
    -EINVAL without a file, -EACCES unless VM_SHARED and VM_WRITE); MADV_COLLAPSE and
    MADV_COLD of a file or shmem mapping, and MADV_PAGEOUT of a file mapping that is not
    shmem, are not modelled by the simulator (EINVAL, said so). MADV_PAGEOUT of shmem is
    (madvise_pageout(): can_do_file_pageout() holds for the owner of a memfd or of shared
    anonymous memory, which every simulated process is)."""
    from pyfolio.include.linux.mm import vma_is_anonymous
    from pyfolio.include.linux.mm_types import VM
    from pyfolio.mm.shmem import vma_is_shmem

    for vma in mm.vmas_between(start, end):
        if advice == "free" and not vma_is_anonymous(vma):
            raise MmError(EINVAL, "madvise: MADV_FREE of a file or shmem mapping")
        if advice == "remove":
            if vma.vm_file is None:
                raise MmError(EINVAL, "madvise: MADV_REMOVE of anonymous memory")
            if not (vma.vm_flags & VM.SHARED and vma.vm_flags & VM.WRITE):
                raise MmError(EACCES, "madvise: MADV_REMOVE needs a shared writable mapping")
        if advice == "cold" and not vma_is_anonymous(vma) or \
                advice == "pageout" and not vma_is_anonymous(vma) and not vma_is_shmem(vma):
            raise MmError(EINVAL, f"madvise: MADV_{advice.upper()} of a file or shmem mapping "
                                  f"is not modelled by the simulator (reclaim of page-cache "
                                  f"folios is not)")
        if advice == "collapse" and not vma_is_anonymous(vma):
            raise MmError(EINVAL, "madvise: MADV_COLLAPSE of a file or shmem mapping is not "
                                  "modelled by the simulator")


def madvise_remove(vma: VMA, start: int, end: int) -> None:
    """madvise_remove() - MADV_REMOVE: punch a hole in the mapped file where [start, end)
    maps it (vfs_fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)).

    Models: mm/madvise.c:madvise_remove() (v6.18).
    """
    from pyfolio.fs.open import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, vfs_fallocate

    assert vma.vm_file is not None
    offset = (start - vma.vm_start) + (vma.vm_pgoff << 12)
    vfs_fallocate(vma.vm_file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, end - start)


def madvise_free_single_vma(vma: VMA, start: int, end: int) -> None:
    """madvise_free_single_vma() - MADV_FREE over [start, end) of one VMA.

    Models: mm/madvise.c:madvise_free_single_vma() (v6.18): lru_add_drain() first (the
    folios an earlier MADV_FREE left in this CPU's batch become lazy-free now), secondary
    MMUs hear MMU_NOTIFY_CLEAR for the range, then the walk; each folio it frees goes
    into the batch again (:mod:`pyfolio.mm.swap`).
    """
    lru_add_drain(vma.vm_mm.m)
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_CLEAR, vma.vm_mm, start, end)
    _walk_page_range(vma, start, end, madvise_free_huge_pmd, _madvise_free_pte_range)


def _walk_page_range(vma: VMA, start: int, end: int,
                     huge_pmd: Callable[[VMA, tuple[int, int], int, int], bool],
                     pte_range: Callable[[VMA, int, int, int], None]) -> None:
    """walk_page_range_vma() with a pmd_entry callback: ``huge_pmd(vma, slot, addr, next)``
    for a PMD leaf (True: handled there), else ``pte_range(vma, table, addr, next)``."""
    m = vma.vm_mm.m
    for addr, nxt, slot in pmd_chunks(vma, start, end):
        raw = int(m.pgtables[slot[0]][slot[1]])
        if pmd_leaf(raw) and huge_pmd(vma, slot, addr, nxt):
            continue
        raw = int(m.pgtables[slot[0]][slot[1]])
        if raw & _PAGE_PRESENT and not pmd_leaf(raw):
            pte_range(vma, pte_pfn(raw), addr, nxt)


def _madvise_free_pte_range(vma: VMA, table: int, start: int, end: int) -> None:
    """madvise_free_pte_range(): a swapped-out page is simply dropped (its swap entries
    freed: free_swap_and_cache_nr(), MM_SWAPENTS down); a large folio not wholly inside
    the range is split (split_folio()); if that fails (a pin) its PTEs are left alone and
    the walk moves past them; a page another process maps is skipped; a folio in the swap
    cache leaves it (folio_free_swap()) or, still referenced from swap, is skipped; the
    rest are made clean (folio_clear_dirty()) and old, and handed to
    folio_mark_lazyfree(): a small folio waits in the per-CPU batch with PG_swapbacked
    still set, a large one is lazy-free at once."""
    m = vma.vm_mm.m
    tbl = m.pgtables[table]
    shared: dict[int, bool] = {}  # folio_maybe_mapped_shared() per folio, until a split
    addr = start
    while addr < end:
        i = pte_index(addr)
        run = madvise_free_pte_run(vma, table, i, (end - addr) // PAGE_SIZE)  # batched
        if run:
            addr += run * PAGE_SIZE
            continue
        pte = int(tbl[i])
        if is_swap_entry(pte):
            addr += PAGE_SIZE * zap_nonpresent_swap_ptes(vma, tbl, i, i + (end - addr)
                                                         // PAGE_SIZE)
            continue
        if not pte_present(pte) or pte & _PAGE_SPECIAL:
            addr += PAGE_SIZE
            continue
        folio = page_folio(m, pte_pfn(pte))
        if folio.pfn not in shared:  # a small folio mapped once is mapped by this PTE only
            shared[folio.pfn] = (folio_test_large(folio) or m.mem._mapcount[folio.pfn] != 0) \
                and bool(folio_mms(folio) - {vma.vm_mm.id})
        if shared[folio.pfn]:
            addr += PAGE_SIZE
            continue
        if folio_test_large(folio):
            first = vma.address_of(int(m.mem.index[folio.pfn]))
            if first < start or first + folio.nr_pages * PAGE_SIZE > end:
                err = _split_locked(folio)
                shared.clear()
                if err:  # "leave it in place and advance to the next pte" past the folio
                    addr = max(addr + PAGE_SIZE, min(end, first + folio.nr_pages * PAGE_SIZE))
                continue  # else look at the same address again: now a small folio
        if m.mem.test(folio.pfn, PG.swapcache) and not folio_free_swap(folio):
            addr += PAGE_SIZE  # still referenced from swap: left alone
            continue
        m.mem.clear(folio.pfn, PG.dirty)
        new = pte_mkold(pte_mkclean(pte))  # clear_young_dirty_ptes(): D and SavedDirty
        if new != pte:
            set_pte_at(m, (table, i), new)
        folio_mark_lazyfree(folio)
        addr += PAGE_SIZE


def madvise_cold_page_range(vma: VMA, start: int, end: int) -> None:
    """madvise_cold_page_range() - MADV_COLD over [start, end) of one VMA: the walk of
    madvise_cold_or_pageout_pte_range() with ``pageout`` false.

    Models: mm/madvise.c:madvise_cold_or_pageout_pte_range() (v6.18). A PMD-mapped THP the
    range covers whole is made old and deactivated without a split; one covered in part is
    split (split_folio(): the PMD split, then the folio) and its pages are handled at the PTE
    level. A folio another process maps is left alone. madvise_cold() drains this CPU's
    LRU batches first (lru_add_drain()).
    """
    lru_add_drain(vma.vm_mm.m)
    _walk_page_range(vma, start, end, _madvise_cold_huge_pmd, _madvise_cold_pte_range)
    vma.vm_mm.m.trace.emit("madvise_cold", start=start, end=end)


def _split_locked(folio: Folio) -> int:
    """folio_get(); folio_lock(); split_folio(); folio_unlock(); folio_put()."""
    folio_get(folio)
    folio_lock(folio)
    err = split_folio(folio)
    folio_unlock(folio)
    folio_put(folio)
    return err


def _deactivate(m: Machine, folio: Folio) -> None:
    """folio_clear_referenced(), then folio_deactivate(): to the inactive list's head."""
    m.mem.clear(folio.pfn, PG.referenced)
    folio_deactivate(folio)


def _madvise_cold_huge_pmd(vma: VMA, slot: tuple[int, int], addr: int, nxt: int) -> bool:
    """The pmd_trans_huge() branch of MADV_COLD; True when the PMD was handled."""
    return _cold_or_pageout_huge_pmd(vma, slot, addr, nxt, None)


def _madvise_cold_pte_range(vma: VMA, table: int, start: int, end: int) -> None:
    """The PTE loop of MADV_COLD."""
    _cold_or_pageout_pte_range(vma, table, start, end, None)


def _madvise_pageout_huge_pmd(vma: VMA, slot: tuple[int, int], addr: int, nxt: int) -> bool:
    """The pmd_trans_huge() branch of MADV_PAGEOUT: the isolated THP is reclaimed at once
    (reclaim_pages() at ``huge_unlock``)."""
    folio_list: list[Folio] = []
    handled = _cold_or_pageout_huge_pmd(vma, slot, addr, nxt, folio_list)
    reclaim_pages(vma.vm_mm.m, folio_list)
    return handled


def _madvise_pageout_pte_range(vma: VMA, table: int, start: int, end: int) -> None:
    """The PTE loop of MADV_PAGEOUT: the folios isolated in this PTE table are reclaimed
    together at the end (reclaim_pages())."""
    folio_list: list[Folio] = []
    _cold_or_pageout_pte_range(vma, table, start, end, folio_list)
    reclaim_pages(vma.vm_mm.m, folio_list)


def _mark_cold_or_isolate(folio: Folio, folio_list: list[Folio] | None) -> None:
    """The tail of both loops: referenced cleared, an active folio marked workingset; then
    MADV_COLD deactivates it, MADV_PAGEOUT isolates it onto ``folio_list``."""
    m = folio.m
    if folio_list is None:
        _deactivate(m, folio)
        return
    m.mem.clear(folio.pfn, PG.referenced)
    if m.mem.test(folio.pfn, PG.active):
        m.mem.set(folio.pfn, PG.workingset)
    if folio_isolate_lru(folio):
        folio_list.append(folio)


def _cold_or_pageout_huge_pmd(vma: VMA, slot: tuple[int, int], addr: int, nxt: int,
                              folio_list: list[Folio] | None) -> bool:
    """The pmd_trans_huge() branch of madvise_cold_or_pageout_pte_range(): True when the
    PMD was handled (or left alone), False when the folio was split and the PTE loop
    should run."""
    m = vma.vm_mm.m
    pmd = int(m.pgtables[slot[0]][slot[1]])
    if not pmd_present(pmd) or pmd & _PAGE_SPECIAL:  # not present, or the huge zero page
        return True
    folio = page_folio(m, pte_pfn(pmd))
    if folio_is_zone_device(folio) or folio_mms(folio) - {vma.vm_mm.id}:
        return True  # folio_maybe_mapped_shared(): goto huge_unlock
    if nxt - addr != PMD_SIZE:
        return bool(_split_locked(folio))  # on success: the regular (PTE) walk
    if folio_list is None and pte_young(pmd):  # MADV_PAGEOUT leaves the young bit alone
        _set_pmd_at(m, slot, pte_mkold(pmd))  # pmdp_invalidate(), pmd_mkold()
    _mark_cold_or_isolate(folio, folio_list)
    return True


def _cold_or_pageout_pte_range(vma: VMA, table: int, start: int, end: int,
                               folio_list: list[Folio] | None) -> None:
    """The PTE loop: a large folio not wholly inside the range is split (if that fails, or
    another process maps it, the walk moves past its PTEs); an exclusively mapped LRU folio
    is made cold (MADV_COLD: its PTEs made old, deactivated) or isolated (MADV_PAGEOUT)."""
    m = vma.vm_mm.m
    tbl = m.pgtables[table]
    addr = start
    while addr < end:
        pte = int(tbl[pte_index(addr)])
        if not pte_present(pte) or pte & _PAGE_SPECIAL:
            addr += PAGE_SIZE
            continue
        folio = page_folio(m, pte_pfn(pte))
        if folio_is_zone_device(folio):
            addr += PAGE_SIZE
            continue
        i = pte_index(addr)
        nr = folio_pte_batch(m, tbl, i, i + min((end - addr) // PAGE_SIZE, 512 - i),
                             pte_pfn(pte))
        if folio_test_large(folio) and nr < folio.nr_pages:
            if folio_mms(folio) - {vma.vm_mm.id} or _split_locked(folio):
                addr += nr * PAGE_SIZE
            continue  # split: look at the same address again, now a small folio
        if m.mem.test(folio.pfn, PG.lru) and folio_mapcount(folio) == folio.nr_pages:
            if folio_list is None:
                for i in range(pte_index(addr), pte_index(addr) + nr):
                    if pte_young(int(tbl[i])):
                        set_pte_at(m, (table, i), pte_mkold(int(tbl[i])))
            _mark_cold_or_isolate(folio, folio_list)
        addr += nr * PAGE_SIZE


def madvise_pageout_page_range(vma: VMA, start: int, end: int) -> None:
    """madvise_pageout_page_range() - MADV_PAGEOUT over [start, end) of one VMA: the walk of
    madvise_cold_or_pageout_pte_range() with ``pageout`` true.

    Models: mm/madvise.c:madvise_pageout_page_range() and
    madvise_cold_or_pageout_pte_range() (v6.18): the same choices as MADV_COLD (a
    PMD-mapped THP covered whole is taken whole, with its PMD; one covered in part is split
    first; a folio another process maps is left alone: folio_maybe_mapped_shared(),
    ``folio_mapcount() != folio_nr_pages()``), but the young bits are left alone (since
    6.9 reclaim is told to ignore references instead), and each exclusively mapped LRU
    folio is isolated and handed to reclaim_pages(): per PMD for a THP, per PTE table for
    the rest. In a shmem VMA the same walk hands page-cache folios to reclaim (swapped out
    by shmem_writeout(): :mod:`pyfolio.mm.shmem_swap`); a shmem THP covered only in part
    is split, which unmaps it (a page-cache folio is not remapped after a split), so the
    PTE walk then finds nothing to page out. Only present mappings are visited. With no
    swap area anonymous folios come back (a THP split on the way: ``thp_swpout_fallback``),
    still resident; shmem folios come back unmapped (shmem_writeout() redirties them).
    madvise_pageout() drains this CPU's LRU batches first (lru_add_drain()).
    """
    lru_add_drain(vma.vm_mm.m)
    _walk_page_range(vma, start, end, _madvise_pageout_huge_pmd, _madvise_pageout_pte_range)
    vma.vm_mm.m.trace.emit("madvise_pageout", start=start, end=end)
