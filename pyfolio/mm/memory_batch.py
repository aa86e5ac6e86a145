"""Batched runs of mm/memory.c's PTE-level steps: many pages in one vectorised step.

Models: mm/memory.c (v6.18): do_anonymous_page() reached from handle_mm_fault() and
handle_pte_fault(), over a run of write faults at consecutive none PTEs of one PTE table;
zap_pte_range() over a run of PTEs that map order-0 anon folios; unmap_vmas() over all
the VMAs of one munmap or exit (order-0 pages here; PTE-mapped large folios in
folio_pte_batch() runs in pyfolio.mm.memory_batch_large); free_pgtables()' walk of a PMD
table's PTE tables (free_pmd_range() -> free_pte_range()) and its pte_free() calls.

The kernel takes one fault per 4 KiB page of a memset(); so does the simulator's
per-page path (pyfolio.mm.memory), the model the chapters teach. A batch here is not a
kernel function: it is an implementation of the same steps for a whole run at once,
leaving exactly the state, counters and trace events the per-page calls leave, in the
same order (tests/test_batch.py compares both ways on random scenarios). It is selected
only where it is sure to be that same sequence (see :func:`do_anonymous_page_run`) and
``Machine.batch`` (``System.batch``) is on; anywhere else the caller takes the per-page
path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_SPECIAL,
    PTE_PFN_MASK,
    pfn_pte,
    pte_index,
    pte_mkdirty,
    pte_pfn,
)
from pyfolio.include.linux.mm import add_mm_counter, vma_is_anonymous
from pyfolio.include.linux.mm_types import MM_ANONPAGES, VM, VMA, MMStruct
from pyfolio.mm import huge_memory as hm
from pyfolio.mm.memory import maybe_mkwrite, pmd_slot
from pyfolio.mm.memory_batch_large import _ranges, unmap_large_runs
from pyfolio.mm.page_alloc import alloc_pages_run, free_pages_run
from pyfolio.sim.memmap import FOLIO_MAPPING_ANON, NO_HEAD, PG, ZONE_NORMAL
from pyfolio.sim.units import (
    HPAGE_PMD_ORDER,
    PAGE_SHIFT,
    PAGE_SIZE,
    PMD_SHIFT,
    PMD_SIZE,
    PTRS_PER_TABLE,
    PUD_SHIFT,
)

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["BATCH_MIN", "anon_run_vma", "do_anonymous_page_run", "zap_pte_run", "zap_pte_ranges",
           "unmap_vmas_run", "pte_free_run", "free_pte_tables_run"]

#: the shortest run a batch takes; shorter ones go page by page
BATCH_MIN = 2
_NEW_ANON = np.uint32(PG.swapbacked | PG.uptodate | PG.anon_exclusive | PG.lru)
_EventItem = tuple[str, tuple[tuple[str, Any], ...], tuple[tuple[str, Any], ...]]


def anon_run_vma(vma: VMA) -> bool:
    """Whether write faults in ``vma`` can ever be batched (while the settings stay): the
    batch on, a private anonymous, readable and writable VMA, no mTHP size allowed
    (alloc_anon_folio() then takes order 0)."""
    return vma.vm_mm.m.batch and vma_is_anonymous(vma) \
        and vma.vm_flags & (VM.WRITE | VM.READ) == VM.WRITE | VM.READ \
        and not hm.thp_vma_allowable_orders(vma, (1 << HPAGE_PMD_ORDER) - 1)


def _anon_run_table(vma: VMA, address: int) -> tuple[int, int] | None:
    """The PTE table and index of ``address`` when a write fault there, and at the pages
    after it, is sure to reach do_anonymous_page() for an order-0 folio: a VMA
    :func:`anon_run_vma` accepts that has its anon_vma; a PMD that points to a PTE table
    (not none: a THP or the table's allocation would come first; not a leaf). Else None."""
    if vma.anon_vma is None or not anon_run_vma(vma):
        return None
    slot = pmd_slot(vma.vm_mm, address)
    if slot is None:
        return None
    pmd = int(vma.vm_mm.m.pgtables[slot[0]][slot[1]])
    if not pmd & _PAGE_PRESENT or pmd & _PAGE_PSE:
        return None
    return pte_pfn(pmd), pte_index(address)


def do_anonymous_page_run(vma: VMA, address: int, end: int) -> tuple[int, int, np.ndarray]:
    """Write faults at every page from ``address`` on, while the PTEs are none, in one
    step: ``(table, first index, pfns)`` of the pages mapped (no pfns when the run cannot
    be batched or is shorter than :data:`BATCH_MIN`: take the per-page path).

    What ``len(pfns)`` successive handle_mm_fault(FAULT_FLAG_WRITE) calls do there, each
    going handle_pte_fault() -> do_anonymous_page() -> alloc_anon_folio() for an order-0
    folio (mm/memory.c, v6.18): ``pgfault``; the frame from alloc_pages(0)
    (:func:`~pyfolio.mm.page_alloc.alloc_pages_run`) zeroed (``pages_zeroed``); one page
    in MM_ANONPAGES; folio_add_new_anon_rmap(RMAP_EXCLUSIVE) (mapping = the VMA's
    anon_vma, index, _mapcount 0, PG_swapbacked, PG_uptodate, PG_anon_exclusive);
    folio_add_lru_vma() (PG_lru, the next LRU places in turn); the PTE
    maybe_mkwrite(pte_mkdirty()) (``pte_writes``); the events ``mm_page_alloc`` and
    ``do_anonymous_page`` per page, interleaved as the per-page path emits them. The run
    stops at ``end``, the VMA's end, the table's end, the first PTE that is not none, and
    the last free frame (the next fault then fails page by page, VM_FAULT_OOM).
    """
    none = (0, 0, np.zeros(0, np.int64))
    mm = vma.vm_mm
    m: Machine = mm.m
    if not m.batch:
        return none
    where = _anon_run_table(vma, address)
    if where is None:
        return none
    table, first = where
    stop = min(end, vma.vm_end, (address & ~(PMD_SIZE - 1)) + PMD_SIZE)
    hi = first + -(-(stop - address) // PAGE_SIZE)
    tbl = m.pgtables[table]
    used = np.flatnonzero(tbl[first:hi])
    n = min(int(used[0]) if len(used) else hi - first, m.free_area.nr_free)
    if n < BATCH_MIN:
        return none
    pfns = alloc_pages_run(m, n)
    mem = m.mem
    m.vmstat["pgfault"] += n
    mem.stamp[pfns] = 0
    m.trace.cost("pages_zeroed", n)
    add_mm_counter(mm, MM_ANONPAGES, n)
    assert vma.anon_vma is not None
    steps = np.arange(n, dtype=np.int64)
    mem.mapping[pfns] = (vma.anon_vma.id << 1) | FOLIO_MAPPING_ANON  # __folio_set_anon()
    mem.index[pfns] = vma.linear_page_index(address) + steps
    mem.flags[pfns] |= _NEW_ANON
    mem._mapcount[pfns] = 0
    mem.lru_seq[pfns] = m.lru_clock + 1.0 + steps  # folio_add_lru(): lruvec_add_folio()
    m.lru_clock += n
    first_pte = maybe_mkwrite(pte_mkdirty(pfn_pte(int(pfns[0]), vma.vm_page_prot)), vma)
    ptes = np.uint64(first_pte & ~PTE_PFN_MASK) | (pfns.astype(np.uint64) << np.uint64(PAGE_SHIFT))
    last = maybe_mkwrite(pte_mkdirty(pfn_pte(int(pfns[-1]), vma.vm_page_prot)), vma)
    assert int(ptes[-1]) == last, "a run's PTEs differ only in their PFN"
    tbl[first: first + n] = ptes
    m.trace.cost("pte_writes", n)
    if m.trace.keeps_events():
        m.trace.emit_run(_fault_events(pfns.tolist(), address))
    return table, first, pfns


def _fault_events(pfns: list[int], address: int) -> Iterator[_EventItem]:
    """The per-page path's events, in its order: alloc_pages() then do_anonymous_page()."""
    none: tuple[tuple[str, Any], ...] = ()
    order0 = (("folio_order", 0),)
    for k, pfn in enumerate(pfns):
        yield "mm_page_alloc", (("pfn", pfn), ("order", 0)), none
        yield "do_anonymous_page", (("address", address + k * PAGE_SIZE), ("pfn", pfn)), order0


_NOT_SMALL_ANON = np.uint32(PG.head | PG.swapcache)


def zap_pte_run(vma: VMA, tbl: np.ndarray, i: int, hi: int) -> int:
    """zap_pte_range()'s loop from slot ``i`` (before ``hi``) in one step, as far as every
    entry is none or a present (not PROT_NONE, not special) PTE of an order-0 anon folio
    in RAM that is not in the swap cache; the slots done (0 when fewer than
    :data:`BATCH_MIN` such PTEs lead: take the per-page loop). Only for a zap without
    ``details`` (munmap, MADV_DONTNEED, exit), and ``Machine.batch`` on.

    Per PTE what the per-page loop does there (mm/memory.c:zap_pte_range() ->
    zap_present_folio_ptes(), v6.18; folio_pte_batch() gives 1 for an order-0 folio):
    the entry cleared (``pte_writes``), ``rss[MM_ANONPAGES]--``, folio_remove_rmap_ptes()
    (_mapcount - 1), folio_put_refs(1); each folio whose last reference that was is
    freed in turn (__folio_put(): ``free_folio``, then __free_pages() with its
    ``mm_page_free``; the merges by :func:`~pyfolio.mm.page_alloc.free_pages_run`).
    """
    m: Machine = vma.vm_mm.m
    if not m.batch:
        return 0
    if hi - i < BATCH_MIN or not _small_anon_at(m, int(tbl[i])):  # decided cheaply
        return 0
    seg = tbl[i:hi]
    ok, pf = _small_anon(m, seg)
    bad = np.flatnonzero(~ok & (seg != 0))
    stop = int(bad[0]) if len(bad) else hi - i
    idx = np.flatnonzero(ok[:stop])
    if len(idx) < BATCH_MIN or not _once_each(m, pf[idx]):
        return 0
    tbl[i + idx] = 0
    _zap_small_anon(vma, pf[idx])
    return stop


def zap_pte_ranges(vma: VMA, chunks: list[tuple[int, int, int]]) -> None:
    """zap_pte_range(vma, table, start, end) for each ``(table, start, end)`` in turn
    (consecutive PMD chunks of one zap without ``details``): in one step when every entry
    of every chunk is none or what :func:`zap_pte_run` takes (then ``tlb_flushes`` counts
    one per table, as each call does), else call by call."""
    from pyfolio.mm.memory import zap_pte_range

    m: Machine = vma.vm_mm.m
    segs = [m.pgtables[t][pte_index(a): pte_index(a) + (e - a) // PAGE_SIZE]
            for t, a, e in chunks]
    first = next((int(x[k[0]]) for x in segs if len(k := np.flatnonzero(x))), 0)
    if m.batch and first and _small_anon_at(m, first):
        seg = np.concatenate(segs)
        ok, pf = _small_anon(m, seg)
        idx = np.flatnonzero(ok)
        if not (~ok & (seg != 0)).any() and len(idx) >= BATCH_MIN and _once_each(m, pf[idx]):
            for part in segs:
                part[:] = 0
            _zap_small_anon(vma, pf[idx])
            m.trace.cost("tlb_flushes", len(chunks))
            return
    for t, a, e in chunks:
        zap_pte_range(vma, t, a, e)


def _small_anon_at(m: Machine, raw: int) -> bool:
    """The scalar first test of :func:`_small_anon` for one entry (no reference check)."""
    pfn = (raw & PTE_PFN_MASK) >> PAGE_SHIFT
    return raw & (_PAGE_PRESENT | _PAGE_SPECIAL) == _PAGE_PRESENT and pfn < m.nr_ram \
        and m.mem.compound_head[pfn] == NO_HEAD and not m.mem.flags[pfn] & _NOT_SMALL_ANON


def _small_anon(m: Machine, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which entries are present PTEs of order-0 anon RAM folios outside the swap cache
    (with a reference), and their PFNs (0 elsewhere)."""
    mem = m.mem
    cand = (seg & np.uint64(_PAGE_PRESENT | _PAGE_SPECIAL)) == np.uint64(_PAGE_PRESENT)
    pf = np.where(cand, (seg & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT),
                  np.uint64(0)).astype(np.int64)
    cand &= pf < m.nr_ram
    pf[~cand] = 0
    ok = cand & (mem.compound_head[pf] == NO_HEAD) & (mem.flags[pf] & _NOT_SMALL_ANON == 0) \
        & (mem.zone[pf] == ZONE_NORMAL) & (mem.mapping[pf] & FOLIO_MAPPING_ANON != 0) \
        & (mem._refcount[pf] > 0)
    return ok, pf


def _once_each(m: Machine, pfns: np.ndarray) -> bool:
    """No page appears twice (each mapped once cannot)."""
    return bool((m.mem._mapcount[pfns] == 0).all()) or len(np.unique(pfns)) == len(pfns)


def _zap_small_anon(vma: VMA, pfns: np.ndarray) -> None:
    """What zap_pte_range() does after clearing PTEs of ``pfns`` (in that order)."""
    m: Machine = vma.vm_mm.m
    _, freed, blocks = _put_small_anon(vma.vm_mm, pfns)
    if m.trace.keeps_events():
        m.trace.emit_run(_free_events(freed, blocks))


def _put_small_anon(mm: MMStruct, pfns: np.ndarray) -> tuple[np.ndarray, list[int],
                                                             list[tuple[int, int]]]:
    """The state part of :func:`_zap_small_anon`: which of ``pfns`` were freed (a mask),
    those PFNs, and the blocks they ended in (none unless the trace keeps events)."""
    m = mm.m
    mem, n = m.mem, len(pfns)
    m.trace.cost("pte_writes", n)
    add_mm_counter(mm, MM_ANONPAGES, -n)
    mem._mapcount[pfns] -= 1
    mem._refcount[pfns] -= 1
    gone = mem._refcount[pfns] == 0
    freed = pfns[gone].tolist()
    return gone, freed, free_pages_run(m, freed, m.trace.keeps_events())


def unmap_vmas_run(vmas: list[VMA]) -> bool:
    """zap_page_range(vma, vma.vm_start, vma.vm_end) for each of ``vmas`` in turn (the
    VMAs of one munmap or exit, in address order) in one step; False, nothing done, where
    that is not sure to be the same: fewer than two VMAs, ``Machine.batch`` off, a VMA
    that is not private anonymous, a PMD that is a leaf or not present (a THP:
    zap_huge_pmd() or a split would come), or an entry :func:`zap_pte_run` would not take
    where the entries are not all those of large folios
    (pyfolio.mm.memory_batch_large.unmap_large_runs() takes those).

    Models what unmap_vmas() -> unmap_single_vma() -> zap_pte_range() do per VMA and
    per PTE table (mm/memory.c, v6.18): the frees come VMA by VMA, table by table, entry
    by entry (the order of the concatenated tables), each VMA's ``zap_page_range`` event
    after its own frees' events, ``tlb_flushes`` one per PTE table per VMA.
    """
    if len(vmas) < 2:
        return False
    mm = vmas[0].vm_mm
    m: Machine = mm.m
    if not m.batch or any(v.vm_ops is not None or v.vm_file is not None for v in vmas):
        return False
    got = _table_parts(mm, vmas)
    if got is None:
        return False
    segs, ends = got
    seg = np.concatenate(segs) if segs else np.zeros(0, np.uint64)
    first = next((int(x[k[0]]) for x in segs if len(k := np.flatnonzero(x))), 0)
    if first and not _small_anon_at(m, first):
        return unmap_large_runs(vmas, segs, ends, seg)  # pyfolio.mm.memory_batch_large
    ok, pf = _small_anon(m, seg)
    idx = np.flatnonzero(ok)
    if (~ok & (seg != 0)).any():
        return unmap_large_runs(vmas, segs, ends, seg)
    if not _once_each(m, pf[idx]):
        return False
    for part in segs:
        part[:] = 0
    m.trace.cost("tlb_flushes", len(segs))
    gone, freed, blocks = _put_small_anon(mm, pf[idx])
    if m.trace.keeps_events():
        cut = np.searchsorted(idx[gone], ends).tolist()
        m.trace.emit_run(_unmap_events(vmas, freed, blocks, cut))
    return True


def pte_free_run(m: Machine, pfns: list[int]) -> None:
    """pte_free() for each of ``pfns`` in turn, whose ``m.pgtables`` entries the caller
    already dropped: the frames back to the buddy allocator with their ``mm_page_free``
    events (include/asm-generic/pgalloc.h:pte_free() -> __free_pages(), v6.18)."""
    keep = m.trace.keeps_events()
    blocks = free_pages_run(m, pfns, keep)
    if keep:
        m.trace.emit_run(("mm_page_free", (("pfn", pfn), ("order", order)), ())
                         for pfn, order in blocks)


def free_pte_tables_run(mm: MMStruct, table: int, base: int, start: int, end: int,
                        freed: list[int]) -> bool:
    """free_pgtables()' walk of the PMD table ``table`` (mapping from ``base``) in one
    step: each entry inside [start, end) that points to a PTE table whose 2 MiB meets no
    VMA and that has no entry left is cleared, its table dropped from ``m.pgtables`` and
    appended to ``freed`` (in entry order, for :func:`pte_free_run`); whether ``table``
    is left empty. What the per-entry walk (pyfolio.mm.memory.free_pgtables()) does
    there, entry by entry (mm/memory.c:free_pgd_range() -> free_pmd_range() ->
    free_pte_range(), v6.18)."""
    pgt = mm.m.pgtables
    tbl = pgt[table]
    idx = np.flatnonzero(tbl)
    raw = tbl[idx]
    lo = base + (idx << PMD_SHIFT)
    take = (lo < end) & (lo + PMD_SIZE > start) & (raw & np.uint64(_PAGE_PRESENT) != 0) \
        & (raw & np.uint64(_PAGE_PSE) == 0)
    idx, raw, lo = idx[take], raw[take], lo[take]
    near = mm.vmas_between(int(lo[0]), int(lo[-1]) + PMD_SIZE) if len(lo) else []
    if near:  # the entries whose span meets a VMA stay
        vs = np.fromiter((v.vm_start for v in near), np.int64, len(near))
        ve = np.fromiter((v.vm_end for v in near), np.int64, len(near))
        k = np.searchsorted(ve, lo, side="right")  # the first VMA ending after lo
        meets = k < len(near)
        meets[meets] = vs[k[meets]] < lo[meets] + PMD_SIZE
        idx, raw = idx[~meets], raw[~meets]
    children = ((raw & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT)).tolist()
    empty = [not np.count_nonzero(pgt[child]) for child in children]
    for child, gone in zip(children, empty, strict=True):
        if gone:
            del pgt[child]
            freed.append(child)
    tbl[idx[np.array(empty, bool)]] = 0
    return not tbl.any()


def _table_parts(mm: MMStruct, vmas: list[VMA]) -> tuple[list[np.ndarray], list[int]] | None:
    """The PTE-table slices each VMA's zap would hand zap_pte_range(), in order (views
    into the tables), and per VMA the position in their concatenation after its last
    entry; None where a PMD is a leaf or not present. The chunks (one per VMA and 2 MiB)
    and their PMD entries are found for all the VMAs at once, one PMD table per GiB."""
    pgt = mm.m.pgtables
    vs = np.fromiter((v.vm_start for v in vmas), np.int64, len(vmas))
    ve = np.fromiter((v.vm_end for v in vmas), np.int64, len(vmas))
    count = ((ve - 1) >> PMD_SHIFT) - (vs >> PMD_SHIFT) + 1  # the PMDs each VMA meets
    pmd = _ranges(vs >> PMD_SHIFT, count)
    owner = np.repeat(np.arange(len(vmas)), count)
    lo = np.maximum(pmd << PMD_SHIFT, vs[owner])
    size = (np.minimum((pmd + 1) << PMD_SHIFT, ve[owner]) - lo) >> PAGE_SHIFT
    raw = np.zeros(len(pmd), np.uint64)
    pud = pmd >> (PUD_SHIFT - PMD_SHIFT)
    for gib in sorted(set(pud.tolist())):  # one PMD table per GiB: walk to it once
        slot = pmd_slot(mm, gib << PUD_SHIFT)
        if slot is not None:
            here = pud == gib
            raw[here] = pgt[slot[0]][pmd[here] & (PTRS_PER_TABLE - 1)]
    if ((raw & np.uint64(_PAGE_PSE) != 0)
            | ((raw != 0) & (raw & np.uint64(_PAGE_PRESENT) == 0))).any():
        return None
    size[raw == 0] = 0
    used = np.flatnonzero(size)
    tables = ((raw[used] & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT)).tolist()
    first = ((lo[used] >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1)).tolist()
    segs = [pgt[t][i: i + n] for t, i, n in zip(tables, first, size[used].tolist(), strict=True)]
    return segs, np.cumsum(size)[np.cumsum(count) - 1].tolist()


def _unmap_events(vmas: list[VMA], freed: list[int], blocks: list[tuple[int, int]],
                  cut: list[int]) -> Iterator[_EventItem]:
    """Per VMA: its frees' events, then its ``zap_page_range``."""
    lo = 0
    for vma, hi in zip(vmas, cut, strict=True):
        yield from _free_events(freed[lo:hi], blocks[lo:hi])
        yield "zap_page_range", (("start", vma.vm_start), ("end", vma.vm_end)), ()
        lo = hi


def _free_events(freed: list[int], blocks: list[tuple[int, int]]) -> Iterator[_EventItem]:
    """__folio_put()'s ``free_folio`` and __free_pages()'s ``mm_page_free`` per folio."""
    freed1 = (("freed_pages", 1),)
    for pfn, (head, order) in zip(freed, blocks, strict=True):
        yield "free_folio", (("pfn", pfn), ("order", 0)), freed1
        yield "mm_page_free", (("pfn", head), ("order", order)), ()
