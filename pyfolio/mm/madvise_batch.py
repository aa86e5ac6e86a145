"""Batched runs of MADV_FREE's PTE walk: many order-0 folios in one step.

Models: mm/madvise.c (v6.18) madvise_free_pte_range() over a run of present PTEs that
each map an order-0 anon folio mapped nowhere else (not in the swap cache): each folio
made clean, its PTE clean and old (clear_young_dirty_ptes()), and handed to
folio_mark_lazyfree() (:func:`pyfolio.mm.swap_batch.folio_mark_lazyfree_run`).

The walk goes PTE by PTE elsewhere (:mod:`pyfolio.mm.madvise`, the model the chapters
teach); this batch is taken only where :func:`madvise_free_pte_run` is sure to repeat
those steps, with ``Machine.batch`` on. What a batch promises (the same state, counters,
trace events and costs; tests/test_batch.py checks): see :mod:`pyfolio.mm.memory_batch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.arch.x86.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY_BITS,
    _PAGE_PRESENT,
    _PAGE_SPECIAL,
    PAGE_SHIFT,
    PTE_PFN_MASK,
)
from pyfolio.mm.memory_batch import BATCH_MIN
from pyfolio.mm.swap_batch import folio_mark_lazyfree_run, lazyfree_candidates
from pyfolio.sim.memmap import NO_HEAD, PG

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA
    from pyfolio.sim.machine import Machine

__all__ = ["madvise_free_pte_run"]

_U64 = np.uint64
_SMALL_EXCLUDES = int(PG.head | PG.swapcache)
_PRESENT_SPECIAL, _PRESENT = _U64(_PAGE_PRESENT | _PAGE_SPECIAL), _U64(_PAGE_PRESENT)
_PFN_MASK, _PFN_SHIFT = _U64(PTE_PFN_MASK), _U64(PAGE_SHIFT)
_NOT_YOUNG_DIRTY = _U64(~(_PAGE_ACCESSED | _PAGE_DIRTY_BITS) & 0xFFFFFFFFFFFFFFFF)
_NOT_DIRTY = np.uint32(~int(PG.dirty) & 0xFFFFFFFF)


def _small_once(m: Machine, pte: int) -> bool:
    """Does a PTE (present, not special) map an order-0 folio, outside the swap cache,
    that no other entry maps?"""
    if not pte & _PAGE_PRESENT or pte & _PAGE_SPECIAL:
        return False
    mem, pfn = m.mem, (pte & PTE_PFN_MASK) >> PAGE_SHIFT
    return int(mem.compound_head[pfn]) == NO_HEAD and not int(mem.flags[pfn]) \
        & _SMALL_EXCLUDES and int(mem._mapcount[pfn]) == 0


def _run_length(ok: np.ndarray) -> int:
    """How many leading entries of a boolean array are true."""
    return len(ok) if ok.all() else int(np.argmin(ok))


def madvise_free_pte_run(vma: VMA, table: int, i: int, n: int) -> int:
    """madvise_free_pte_range() over the entries [i, i + run) of the PTE table ``table``
    (at most ``n``) that each map an order-0 folio as :func:`_small_once` says; returns
    the run's length, 0 (nothing done) when the batch is off or it is shorter than
    BATCH_MIN. Each folio loses PG_dirty, each PTE its young and dirty bits (written and
    counted where that changes it), and each folio folio_mark_lazyfree() would take is
    queued, in address order."""
    m = vma.vm_mm.m
    tbl = m.pgtables[table]
    if not m.batch or n < BATCH_MIN or not _small_once(m, int(tbl[i])) \
            or not _small_once(m, int(tbl[i + 1])):
        return 0
    mem = m.mem
    ents = tbl[i: i + n]
    run = _run_length((ents & _PRESENT_SPECIAL) == _PRESENT)
    ents = ents[:run]
    pfns = ((ents & _PFN_MASK) >> _PFN_SHIFT).astype(np.intp)
    fl = mem.flags[pfns]
    run = _run_length((mem.compound_head[pfns] == NO_HEAD)
                      & ((fl & np.uint32(_SMALL_EXCLUDES)) == 0) & (mem._mapcount[pfns] == 0))
    if run < len(pfns):
        pfns, ents, fl = pfns[:run], ents[:run], fl[:run]
    mem.flags[pfns] = fl & _NOT_DIRTY  # folio_clear_dirty()
    new = ents & _NOT_YOUNG_DIRTY  # pte_mkold(pte_mkclean())
    changed = int(np.count_nonzero(new != ents))
    if changed:  # set_pte_at() where that changes the entry (the others stay as they are)
        tbl[i: i + run] = new
        m.trace.cost("pte_writes", changed)
    marked = pfns[lazyfree_candidates(m, pfns, fl)].tolist()
    if marked:
        folio_mark_lazyfree_run(m, marked)
    return run
