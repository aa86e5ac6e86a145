"""Batched zap of PTE-mapped large folios: the folio_pte_batch() runs of a whole munmap or
exit in one vectorised step.

Models: mm/memory.c (v6.18): unmap_vmas() -> zap_pte_range() -> zap_present_ptes() ->
zap_present_folio_ptes() over the PTEs of anon large folios (a THP whose PMD a split
left behind, an mTHP) in every VMA of one munmap or exit, one folio_pte_batch() run at a
time: mm/rmap.c:folio_remove_rmap_ptes() (a folio left partially mapped queued by
mm/huge_memory.c:deferred_split_folio()), then folio_put_refs(), whose last reference
frees the folio (mm/swap.c:__folio_put(): off the deferred split queue, then
mm/page_alloc.c:__free_pages()).

Not a kernel function: an implementation of the per-run steps
(pyfolio.mm.memory.zap_pte_range(), the model the chapters teach) for all the runs at
once, leaving exactly the state, counters and trace events those calls leave, in their
order (tests/test_batch.py compares both ways). The runs are found and checked over all
the entries at once; per folio only its total matters, except where a run makes it
partially mapped (queued) or drops its last reference (freed): those steps are placed at
their run. The kernel frees the folios later, from the mmu_gather's batch after the TLB
flush (tlb_finish_mmu() -> free_pages_and_swap_cache()); the simulator frees each where
its last reference goes, as its per-page path does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pyfolio.arch.x86.pgtable import _PAGE_PRESENT, _PAGE_SPECIAL, PTE_PFN_MASK
from pyfolio.include.linux.huge_mm import MTHP_STAT, mod_mthp_stat
from pyfolio.include.linux.mm import add_mm_counter
from pyfolio.include.linux.mm_types import MM_ANONPAGES, VMA
from pyfolio.mm.page_alloc import free_large_pages_run
from pyfolio.sim.memmap import ENTIRELY_MAPPED, FOLIO_MAPPING_ANON, NO_HEAD, PG, ZONE_NORMAL
from pyfolio.sim.units import HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine
    from pyfolio.sim.memmap import Memmap

__all__ = ["unmap_large_runs"]

_KIND = np.uint64(_PAGE_PRESENT | _PAGE_SPECIAL)
_PRESENT = np.uint64(_PAGE_PRESENT)
_PFN = np.uint64(PTE_PFN_MASK)
_SHIFT = np.uint64(PAGE_SHIFT)
_HEAD_ONLY = np.uint32(PG.head | PG.swapcache)
_EventItem = tuple[str, tuple[tuple[str, Any], ...], tuple[tuple[str, Any], ...]]


def unmap_large_runs(vmas: list[VMA], segs: list[np.ndarray], ends: list[int],
                     seg: np.ndarray) -> bool:
    """zap_page_range() over each of ``vmas`` in turn, where every entry of their PTE
    tables (``segs``, each VMA's part ending at its ``ends`` position of ``seg``, their
    concatenation: a copy, which this call uses up) is none or a present PTE (not
    PROT_NONE, not special) of a page in RAM mapped once (``_mapcount`` 0) of an anon
    large folio outside the swap cache, no folio losing more references than it holds;
    else False, nothing done.

    Per folio_pte_batch() run (consecutive pages of one folio in one table of one VMA),
    in order, what zap_pte_range() does (mm/memory.c, v6.18): the entries cleared
    (``pte_writes``), ``rss[MM_ANONPAGES] -= nr``, folio_remove_rmap_ptes() (each page's
    ``_mapcount`` -1, the folio's ``_large_mapcount`` and ``_nr_pages_mapped`` - nr; left
    partially mapped, an order >= 2 folio not yet flagged is queued:
    deferred_split_folio(folio, true), with PG_partially_mapped, ``thp_deferred_split_page``
    for order 9, ``split_deferred`` and ``nr_anon_partially_mapped`` +1 and its event),
    folio_put_refs(nr) (the last reference frees the folio: __folio_put() takes it off
    the deferred split queue, emits ``free_folio``, and __free_pages() gives the block
    back, ``nr_anon`` -1, ``mm_page_free``); ``tlb_flushes`` one per table part; each
    VMA's ``zap_page_range`` event after its runs' events.
    """
    mm = vmas[0].vm_mm
    m: Machine = mm.m
    mem = m.mem
    found = _folio_runs(m, segs, seg)
    if found is None:
        return False
    at, pfn, head, nr, pf = found
    if mem._mapcount[pf].any():
        return False
    folios, inv = np.unique(head, return_inverse=True)
    total = np.bincount(inv, weights=nr).astype(np.int64)  # PTEs per folio
    refs = mem._refcount[folios].astype(np.int64)
    if (total > refs).any():
        return False  # more PTEs than references: the per-page path warns
    done = _running_total(inv, nr)  # per run: the folio's pages unmapped up to it
    left = mem._nr_pages_mapped[head] - done
    order = mem.order[head].astype(np.int64)
    can_queue = (left < ENTIRELY_MAPPED) & (left != 0) & (order > 1) \
        & (mem.flags[head] & np.uint32(PG.partially_mapped) == 0)
    cand = np.flatnonzero(can_queue)
    queued = np.sort(cand[np.unique(head[cand], return_index=True)[1]])  # first per folio
    freed = np.flatnonzero(refs[inv] == done)  # the run that drops the last reference

    for part in segs:
        part[:] = 0
    m.trace.cost("tlb_flushes", len(segs))
    m.trace.cost("pte_writes", len(pf))
    add_mm_counter(mm, MM_ANONPAGES, -len(pf))
    gone = np.zeros(len(folios), bool)
    gone[inv[freed]] = True
    _remove_rmap_survivors(mem, folios[~gone], total[~gone], (~gone)[inv], pfn, nr)
    qh, fh = head[queued].tolist(), head[freed].tolist()
    was_flagged = (mem.flags[head[freed]] & np.uint32(PG.partially_mapped) != 0).tolist()
    _deferred_split_folios(m, qh, order[queued])
    fo = order[freed].tolist()
    _unqueue_deferred_split(m, fh, fo, was_flagged, set(qh))
    keep = m.trace.keeps_events()
    blocks = free_large_pages_run(m, fh, fo, keep)
    if keep:
        owner = np.searchsorted(ends, at, side="right")
        m.trace.emit_run(_events(vmas, owner.tolist(), queued.tolist(), qh, freed.tolist(),
                                 fh, fo, blocks))
    return True


def _folio_runs(m: Machine, segs: list[np.ndarray], seg: np.ndarray
                ) -> tuple[np.ndarray, ...] | None:
    """The folio_pte_batch() runs of ``seg`` as zap_pte_range() walks them part by part:
    (position in ``seg`` of each run's first entry, its first PFN, its folio's head, its
    length, and the PFN of every present entry: ``seg`` itself, its entries turned into
    PFNs, where none is none); None unless every present entry is a
    present, not special PTE of a page in RAM of an anon large folio outside the swap
    cache in ZONE_NORMAL.

    A run is the longest stretch of present entries mapping consecutive pages of one
    folio inside one part (mm/internal.h:folio_pte_batch(): the other PTE bits may
    differ). Stretches whose entries differ by exactly one page, bits alike, are found in
    one pass over the entries; the per-run checks then look at one entry each."""
    mem = m.mem
    count = int(np.count_nonzero(seg))
    if not count:
        return None
    pos = None if count == len(seg) else np.flatnonzero(seg)
    raw = seg if pos is None else seg[pos]
    n = len(raw)
    sizes = np.fromiter((len(x) for x in segs), np.int64, len(segs))
    hard = np.cumsum(sizes) - sizes  # where each part begins (a run never crosses one)
    if pos is not None:
        hard = np.concatenate((np.searchsorted(pos, hard), np.flatnonzero(np.diff(pos) != 1) + 1))
    hard = _distinct(hard[hard < n])
    step = np.flatnonzero(np.diff(raw.view(np.int64)) != PAGE_SIZE) + 1
    first = _distinct(np.concatenate((step, hard)))
    if ((raw[first] & _KIND) != _PRESENT).any():
        return None  # (inside a stretch every entry has the bits of its first)
    pfn, head, nr = _stretches(mem, raw, first, n)
    if (pfn + nr > m.nr_ram).any():
        return None
    size = np.left_shift(1, mem.order[head].astype(np.int64))
    over = np.flatnonzero(pfn + nr > head + size)
    if len(over):  # stretches that run into the next folio: cut at each folio's end
        ix = _ranges(first[over], nr[over])
        heads = _head_of(mem, ((raw[ix] & _PFN) >> _SHIFT).view(np.int64))
        first = _distinct(np.concatenate((first, ix[1:][np.diff(heads) != 0])))
        pfn, head, nr = _stretches(mem, raw, first, n)
    join = np.ones(len(first), bool)  # a stretch that continues the one before: one run
    join[0] = False
    join[1:] = (pfn[1:] == pfn[:-1] + nr[:-1]) & (head[1:] == head[:-1])
    join[np.searchsorted(first, hard)] = False  # (hard is in first)
    first, pfn, head = first[~join], pfn[~join], head[~join]
    nr = np.diff(np.append(first, n))
    folios = _distinct(head)
    if not ((mem.flags[folios] & _HEAD_ONLY == np.uint32(PG.head))
            & (mem.zone[folios] == ZONE_NORMAL)
            & (mem.mapping[folios] & FOLIO_MAPPING_ANON != 0)).all():
        return None
    at = first if pos is None else pos[first]
    np.bitwise_and(raw, _PFN, out=raw)  # (in place: seg or its copy is used up here)
    np.right_shift(raw, _SHIFT, out=raw)
    return at, pfn, head, nr, raw.view(np.int64)


def _stretches(mem: Memmap, raw: np.ndarray, first: np.ndarray, n: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First PFN, its folio's head and the length of the stretches starting at ``first``."""
    pfn = ((raw[first] & _PFN) >> _SHIFT).view(np.int64)
    return pfn, _head_of(mem, pfn), np.diff(np.append(first, n))


def _distinct(a: np.ndarray) -> np.ndarray:
    """np.unique(a) (sorted, each value once) without np.unique's first call in a process,
    which imports numpy.ma (~5 ms)."""
    a = np.sort(a)
    return a[np.append(True, a[1:] != a[:-1])] if len(a) else a


def _head_of(mem: Memmap, pfn: np.ndarray) -> np.ndarray:
    """page_folio() for many PFNs: each one's head (itself where it is no tail)."""
    head = mem.compound_head[pfn]
    return np.where(head == NO_HEAD, pfn, head)


def _ranges(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, s + l)`` for each start and length."""
    offset = np.cumsum(length) - length
    return np.repeat(start - offset, length) + np.arange(int(length.sum()), dtype=np.int64)


def _running_total(group: np.ndarray, nr: np.ndarray) -> np.ndarray:
    """For each item, the sum of ``nr`` over the items of its group up to it (inclusive)."""
    order = np.argsort(group, kind="stable")
    total = np.cumsum(nr[order])
    starts = np.flatnonzero(np.diff(group[order], prepend=-1))
    before = total[starts] - nr[order][starts]
    total -= np.repeat(before, np.diff(np.append(starts, len(order))))
    out = np.empty_like(total)
    out[order] = total
    return out


def _remove_rmap_survivors(mem: Memmap, folios: np.ndarray, total: np.ndarray,
                           runs: np.ndarray, pfn: np.ndarray, nr: np.ndarray) -> None:
    """folio_remove_rmap_ptes() and folio_put_refs() summed over the runs of the folios
    that stay (``runs`` marks theirs); a freed folio's struct pages are reset instead."""
    if not len(folios):
        return
    mem._mapcount[_ranges(pfn[runs], nr[runs])] -= 1
    mem._large_mapcount[folios] -= total.astype(np.int32)
    mem._nr_pages_mapped[folios] -= total.astype(np.int32)
    mem._refcount[folios] -= total.astype(np.int32)


def _deferred_split_folios(m: Machine, heads: list[int], orders: np.ndarray) -> None:
    """deferred_split_folio(folio, true) for each of ``heads`` in turn (none flagged yet,
    none in the swap cache, order >= 2)."""
    if not heads:
        return
    m.mem.flags[heads] |= np.uint32(PG.partially_mapped)
    sizes, counts = np.unique(orders, return_counts=True)
    for order, nr in zip(sizes.tolist(), counts.tolist(), strict=True):
        if order == HPAGE_PMD_ORDER:
            m.vmstat["thp_deferred_split_page"] += nr
        mod_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_SPLIT_DEFERRED, nr)
        mod_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_NR_ANON_PARTIALLY_MAPPED, nr)
    for pfn in heads:
        m.deferred_split_queue.setdefault(pfn, None)


def _unqueue_deferred_split(m: Machine, heads: list[int], orders: list[int],
                            flagged: list[bool], queued: set[int]) -> None:
    """__folio_put()'s folio_unqueue_deferred_split() for each freed folio of order >= 2
    (its struct pages are reset after, so only the queue and the counter change)."""
    queue = m.deferred_split_queue
    for pfn, order, flag in zip(heads, orders, flagged, strict=True):
        if order > 1 and queue.pop(pfn, False) is not False and (flag or pfn in queued):
            mod_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_NR_ANON_PARTIALLY_MAPPED, -1)


def _events(vmas: list[VMA], owner: list[int], queued: list[int], qh: list[int],
            freed: list[int], fh: list[int], fo: list[int], blocks: list[tuple[int, int]]
            ) -> Iterator[_EventItem]:
    """The per-run path's events in its order: per run, deferred_split_folio() then
    __folio_put()'s free_folio and __free_pages()'s mm_page_free; each VMA's
    zap_page_range after its runs'."""
    none: tuple[tuple[str, Any], ...] = ()
    marks = sorted([(r, 0, k) for k, r in enumerate(queued)]
                   + [(r, 1, k) for k, r in enumerate(freed)])
    done = 0
    for run, kind, k in marks:
        while done < owner[run]:
            yield "zap_page_range", (("start", vmas[done].vm_start),
                                     ("end", vmas[done].vm_end)), none
            done += 1
        if kind == 0:
            yield "deferred_split_folio", (("pfn", qh[k]), ("partially_mapped", True)), none
        else:
            yield "free_folio", (("pfn", fh[k]), ("order", fo[k])), (("freed_pages",
                                                                     1 << fo[k]),)
            yield "mm_page_free", (("pfn", blocks[k][0]), ("order", blocks[k][1])), none
    for vma in vmas[done:]:
        yield "zap_page_range", (("start", vma.vm_start), ("end", vma.vm_end)), none
