"""Batched runs of the MADV_FREE LRU batch: many order-0 folios in one step.

Models: mm/swap.c (v6.18) folio_mark_lazyfree() over a run of order-0 folios, and
folio_batch_move_lru() with lru_lazyfree() over a batch of distinct order-0 folios (see
:mod:`pyfolio.mm.swap`).

The per-folio path (:mod:`pyfolio.mm.swap`) is the model the chapters teach; these
batches are taken only where they are sure to repeat its steps, with ``Machine.batch``
on. What a batch promises (the same state, counters, trace events and costs;
tests/test_batch.py checks): see :mod:`pyfolio.mm.memory_batch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.mm.memory_batch import BATCH_MIN
from pyfolio.sim.memmap import FOLIO_MAPPING_ANON, NO_HEAD, PG

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["folio_batch_move_lru_run", "folio_mark_lazyfree_run", "lazyfree_candidates"]

_U32 = np.uint32
_HEAD = _U32(PG.head)
#: folio_mark_lazyfree() / lru_lazyfree() take a folio with PG_lru and PG_swapbacked,
#: without PG_swapcache or PG_unevictable (and anon: folio->mapping's low bit)
_LAZY_TESTS = _U32(PG.lru | PG.swapbacked | PG.swapcache | PG.unevictable)
_LAZY_WANTS = _U32(PG.lru | PG.swapbacked)
_LAZYFREE_CLEARS = _U32(~int(PG.active | PG.referenced | PG.swapbacked) & 0xFFFFFFFF)


def lazyfree_candidates(m: Machine, pfns: np.ndarray, flags: np.ndarray | None = None
                        ) -> np.ndarray:
    """Which of the order-0 folios ``pfns`` folio_mark_lazyfree() would queue (and
    lru_lazyfree() would move): anon, PG_swapbacked, on the LRU, not in the swap cache
    nor unevictable. ``flags``: their page flags, if the caller has them."""
    fl = m.mem.flags[pfns] if flags is None else flags
    return ((fl & _LAZY_TESTS) == _LAZY_WANTS) \
        & ((m.mem.mapping[pfns] & FOLIO_MAPPING_ANON) != 0)


def folio_mark_lazyfree_run(m: Machine, pfns: list[int]) -> None:
    """folio_mark_lazyfree() on each of the order-0 folios ``pfns`` in turn, every one of
    them a candidate (:func:`lazyfree_candidates`) holding references: each gets the
    batch's reference (ref_hold()) and a place in ``m.lru_lazyfree`` with its
    ``folio_mark_lazyfree`` event; the batch is moved (folio_batch_move_lru()) each time
    it reaches FOLIO_BATCH_SIZE, between the same events as one folio at a time."""
    from pyfolio.mm.swap import FOLIO_BATCH_SIZE, folio_batch_move_lru

    mem, i = m.mem, 0
    while i < len(pfns):
        start = len(m.lru_lazyfree)
        chunk = pfns[i: i + FOLIO_BATCH_SIZE - start]
        mem._refcount[chunk] += 1  # folio_get()
        mem.extra_refs.update(chunk)  # each + 1
        m.lru_lazyfree.extend(chunk)
        m.trace.emit_run(("folio_mark_lazyfree", (("pfn", pfn), ("batched", start + k)), ())
                         for k, pfn in enumerate(chunk, 1))
        if len(m.lru_lazyfree) == FOLIO_BATCH_SIZE:
            folio_batch_move_lru(m)
        i += len(chunk)


def folio_batch_move_lru_run(m: Machine) -> bool:
    """folio_batch_move_lru() of the lazyfree batch in one step, when it holds at least
    BATCH_MIN distinct order-0 folios each referenced beyond the batch (none is freed by
    the batch's put); False (nothing done) otherwise. lru_lazyfree() on each still on the
    LRU and lazy-free-able: PG_active, PG_referenced, PG_swapbacked cleared, a new place
    at the list head in batch order, ``pglazyfree``; then the batch's references are
    dropped and the ``folio_batch_move_lru`` event emitted."""
    batch = m.lru_lazyfree
    if not m.batch or len(batch) < BATCH_MIN or len(set(batch)) != len(batch):
        return False
    mem = m.mem
    b = np.array(batch, dtype=np.int64)
    fl = mem.flags[b]
    refs = mem.extra_refs
    held = [refs[p] for p in batch]
    if min(held) < 1 or ((mem.compound_head[b] != NO_HEAD) | ((fl & _HEAD) != 0)
                         | (mem._refcount[b] < 2)).any():
        return False
    m.lru_lazyfree = []
    q = lazyfree_candidates(m, b, fl)
    lazy = b[q]
    if len(lazy):
        mem.flags[lazy] = fl[q] & _LAZYFREE_CLEARS
        mem.lru_seq[lazy] = m.lru_clock + np.arange(1, len(lazy) + 1, dtype=np.float64)
        m.lru_clock += float(len(lazy))
        m.vmstat["pglazyfree"] += len(lazy)
    for pfn, h in zip(batch, held, strict=True):  # ref_drop(): each - 1, gone at 0
        if h > 1:
            refs[pfn] = h - 1
        else:
            del refs[pfn]
    mem._refcount[b] -= 1
    m.trace.emit("folio_batch_move_lru", changes={"lazyfree": len(batch)}, pfns=batch)
    return True
