"""The memmap: one ``struct page`` per page frame, held as NumPy arrays indexed by PFN.

Models: include/linux/mm_types.h (struct page, struct folio), include/linux/page-flags.h.
The kernel keeps folio-wide fields on the first pages of a large folio (the order in
page 1's ``_flags_1``; ``_large_mapcount``, ``_entire_mapcount``, ``_pincount`` and
``_nr_pages_mapped`` on page 1). The simulator keeps them in arrays indexed by the head
PFN: same values, one place to look. Per-page ``_mapcount`` and ``_refcount`` are stored
as the kernel stores them (``_mapcount`` biased by -1, so an unmapped page reads -1).
Simplification: one node, one RAM zone (ZONE_NORMAL) plus ZONE_DEVICE ranges.

Place: simulator machinery, not a kernel model: these arrays are the state every kernel
model acts on; the folio helpers of these headers are in :mod:`pyfolio.include.linux.mm`.
"""

from __future__ import annotations

import enum
from collections import Counter

import numpy as np

__all__ = ["PG", "PGTY", "ZONE_NORMAL", "ZONE_DEVICE", "ENTIRELY_MAPPED", "FOLIO_PAGES_MAPPED",
           "FOLIO_MAPPING_ANON", "FOLIO_MAPPING_FLAGS", "NO_HEAD", "Memmap"]


class PG(enum.IntFlag):
    """Page flags (include/linux/page-flags.h, enum pageflags). Names are the kernel's;
    bit positions are the simulator's own (/proc/kpageflags uses the stable KPF_* bits)."""

    locked = 1 << 0
    writeback = 1 << 1
    referenced = 1 << 2
    uptodate = 1 << 3
    dirty = 1 << 4
    lru = 1 << 5
    head = 1 << 6
    active = 1 << 7
    reserved = 1 << 8
    swapbacked = 1 << 9
    anon_exclusive = 1 << 10  # PG_anon_exclusive (aliases PG_mappedtodisk): per page
    mappedtodisk = 1 << 10  # PG_mappedtodisk: a page-cache folio's blocks are on disk
    large_rmappable = 1 << 11
    partially_mapped = 1 << 12  # on page 1 in the kernel (_flags_1)
    unevictable = 1 << 13
    mlocked = 1 << 14
    swapcache = 1 << 15
    private = 1 << 16
    reclaim = 1 << 17  # PG_reclaim: writeback started by reclaim
    readahead = 1 << 17  # PG_readahead = PG_reclaim: a readahead folio nobody used yet
    workingset = 1 << 18


class PGTY(enum.IntEnum):
    """Page types (include/linux/page-flags.h, enum pagetype) for pages that are not folios."""

    none = 0
    buddy = 1  # free, on a buddy free list (PageBuddy)
    table = 2  # a page-table page (PageTable)


ZONE_NORMAL = 0
ZONE_DEVICE = 1

#: include/linux/mm.h: ENTIRELY_MAPPED is added to _nr_pages_mapped while PMD-mapped.
ENTIRELY_MAPPED = 0x800000
FOLIO_PAGES_MAPPED = ENTIRELY_MAPPED - 1
#: include/linux/page-flags.h: the low bit of folio->mapping marks an anon folio.
FOLIO_MAPPING_ANON = 0x1
#: include/linux/page-flags.h: the low bits of folio->mapping that are flags, not pointer
FOLIO_MAPPING_FLAGS = 0x3
#: compound_head value of a page that is not a tail page.
NO_HEAD = -1


class Memmap:
    """Per-PFN ``struct page`` state for ``nr`` frames (RAM first, then device ranges)."""

    def __init__(self, nr: int) -> None:
        self.nr = nr
        self.flags = np.zeros(nr, np.uint32)
        self.page_type = np.zeros(nr, np.uint8)
        self._refcount = np.zeros(nr, np.int32)
        self._mapcount = np.full(nr, -1, np.int32)
        self.compound_head = np.full(nr, NO_HEAD, np.int64)
        #: folio order at the head (kernel: page 1's _flags_1); buddy order of a free block
        #: at its first page (kernel: page->private of a PageBuddy page).
        self.order = np.zeros(nr, np.int8)
        self._entire_mapcount = np.full(nr, -1, np.int32)
        self._large_mapcount = np.full(nr, -1, np.int32)
        self._nr_pages_mapped = np.zeros(nr, np.int32)
        self._pincount = np.zeros(nr, np.int32)
        #: folio->mapping: 0, or (anon_vma id << 1) | FOLIO_MAPPING_ANON for anon folios, or
        #: address_space id << 2 for page-cache folios (low bits clear, as a pointer's)
        self.mapping = np.zeros(nr, np.int64)
        #: folio->index: for anon, the linear page index of the VMA address it was faulted at;
        #: for a page-cache folio, its offset in the file in pages
        self.index = np.zeros(nr, np.int64)
        self.zone = np.zeros(nr, np.uint8)
        #: which dev_pagemap a ZONE_DEVICE page belongs to (-1: none)
        self.pgmap = np.full(nr, -1, np.int16)
        #: page contents: one 64-bit stamp per page (0 = all zeroes)
        self.stamp = np.zeros(nr, np.uint64)
        #: folio->swap (the union with folio->private): the swp_entry_t of the first slot
        #: while PG_swapcache is set (page i of the folio is at slot + i), else 0
        self.swap = np.zeros(nr, np.int64)
        #: where the folio sits on its LRU list: larger is newer (the list head), smaller
        #: older (the tail, where reclaim isolates); see pyfolio.mm.swap
        self.lru_seq = np.zeros(nr, np.float64)
        #: references held outside page tables and pins (an isolation, a driver, a caller),
        #: keyed by head PFN; the invariant checker adds them to the expected refcount.
        self.extra_refs: Counter[int] = Counter()

    def grow(self, extra: int) -> None:
        """Append ``extra`` frames in their initial state (memremap_pages() giving a new
        device range its struct pages)."""
        new = Memmap(extra)
        for name, arr in list(vars(self).items()):
            if isinstance(arr, np.ndarray):
                setattr(self, name, np.concatenate([arr, getattr(new, name)]))
        self.nr += extra

    def test(self, pfn: int, flag: PG) -> bool:
        return bool(int(self.flags[pfn]) & int(flag))

    def set(self, pfn: int | slice | np.ndarray, flag: PG) -> None:
        self.flags[pfn] |= np.uint32(flag)

    def clear(self, pfn: int | slice | np.ndarray, flag: PG) -> None:
        self.flags[pfn] &= np.uint32(~int(flag) & 0xFFFFFFFF)

    def reset(self, start: int, end: int) -> None:
        """Return frames [start, end) to the state of a freshly initialised struct page."""
        self.reset_frames(slice(start, end))

    def reset_frames(self, s: slice | np.ndarray) -> None:
        """:meth:`reset` for the frames a slice or an index array names."""
        self.flags[s] = 0
        self.page_type[s] = PGTY.none
        self._refcount[s] = 0
        self._mapcount[s] = -1
        self.compound_head[s] = NO_HEAD
        self.order[s] = 0
        self._entire_mapcount[s] = -1
        self._large_mapcount[s] = -1
        self._nr_pages_mapped[s] = 0
        self._pincount[s] = 0
        self.mapping[s] = 0
        self.index[s] = 0
        self.swap[s] = 0
        self.lru_seq[s] = 0
