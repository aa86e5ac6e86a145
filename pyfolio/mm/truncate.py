"""Truncating the page cache: ftruncate() and hole punching inside large folios.

Models: mm/truncate.c (v6.18): truncate_inode_pages_range(),
truncate_inode_partial_folio(), truncate_inode_folio(), truncate_cleanup_folio(),
folio_invalidate(), truncate_pagecache(), truncate_setsize(), truncate_pagecache_range()
and mapping_evict_folio() / invalidate_mapping_pages() (POSIX_FADV_DONTNEED).

A range [lstart, lend] (bytes, inclusive) is truncated in three passes: folios wholly
inside it go first; then the folio holding ``lstart`` and the one holding ``lend`` are
*partial*: the range is zeroed in them and, if large, they are split buddy-style at the
range's first page (try_folio_split(), a non-uniform split to the mapping's minimum
order) and, when the range ends inside the folio, again at its last page; last, every
folio now inside the range is removed. So a one-page hole in an order-9 folio leaves
nine folios of orders 8 down to 0 around it instead of 511 pages.

Simplification: a page's data is a 64-bit stamp, so zeroing part of a page leaves its
stamp as it was; a page zeroed whole reads as 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import Inode, i_size_read, i_size_write
from pyfolio.include.linux.mm import (
    Folio,
    folio_get,
    folio_lock,
    folio_mapped,
    folio_nr_pages,
    folio_put,
    folio_ref_count,
    folio_test_dirty,
    folio_test_large,
    folio_test_locked,
    folio_unlock,
    page_folio,
)
from pyfolio.include.linux.pagemap import (
    FGP,
    folio_mapping,
    folio_next_index,
    folio_pos,
    folio_test_private,
)
from pyfolio.mm.filemap import (
    __filemap_get_folio,
    filemap_release_folio,
    filemap_remove_folio,
    page_cache_folios,
)
from pyfolio.sim.errors import EIO
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace

__all__ = ["folio_invalidate", "truncate_cleanup_folio", "truncate_inode_folio",
           "folio_zero_range", "truncate_inode_partial_folio", "truncate_inode_pages_range",
           "truncate_inode_pages", "truncate_pagecache", "truncate_setsize",
           "truncate_pagecache_range", "mapping_evict_folio", "invalidate_mapping_pages",
           "LLONG_MAX"]

#: lend of "to the end of the file" (the kernel passes (loff_t)-1)
LLONG_MAX = (1 << 63) - 1


def folio_invalidate(folio: Folio, offset: int, length: int) -> None:
    """folio_invalidate() - tell the file system that bytes [offset, offset + length) of
    the folio are going away (``a_ops->invalidate_folio``: ext4 drops the buffer heads
    there, and all of them, PG_private too, when the range is the whole folio).

    Models: mm/truncate.c:folio_invalidate() (v6.18).
    """
    mapping = folio_mapping(folio)
    if mapping is not None and mapping.a_ops.invalidate_folio is not None:
        mapping.a_ops.invalidate_folio(folio, offset, length)


def truncate_cleanup_folio(folio: Folio) -> None:
    """truncate_cleanup_folio() - unmap a folio about to leave the page cache, drop its
    private data, cancel its dirtiness.

    Models: mm/truncate.c:truncate_cleanup_folio() (v6.18).
    """
    from pyfolio.mm.memory_file import unmap_mapping_folio

    if folio_mapped(folio):
        unmap_mapping_folio(folio)
    if folio_test_private(folio):
        folio_invalidate(folio, 0, folio_nr_pages(folio) << PAGE_SHIFT)
    folio.m.mem.clear(folio.pfn, PG.dirty)  # folio_cancel_dirty()


def truncate_inode_folio(mapping: AddressSpace, folio: Folio) -> int:
    """truncate_inode_folio() - remove one (locked) folio from the page cache; 0, or -EIO
    if it is no longer in ``mapping``.

    Models: mm/truncate.c:truncate_inode_folio() (v6.18).
    """
    if folio_mapping(folio) is not mapping:
        return -EIO
    truncate_cleanup_folio(folio)
    filemap_remove_folio(folio)
    return 0


def folio_zero_range(folio: Folio, offset: int, length: int) -> None:
    """folio_zero_range() - zero bytes [offset, offset + length) of the folio (each page
    covered whole reads 0 afterwards; see the module docstring).

    Models: include/linux/highmem.h:folio_zero_range() (v6.18).
    """
    first = -(-offset // PAGE_SIZE)
    last = (offset + length) // PAGE_SIZE
    if first < last:
        folio.m.mem.stamp[folio.pfn + first: folio.pfn + last] = 0


def truncate_inode_partial_folio(folio: Folio, start: int, end: int) -> bool:
    """truncate_inode_partial_folio() - truncate the part of a locked folio that lies in
    the byte range [start, end]; False if the folio must stay (a dirty folio that could
    not be split), True otherwise.

    Models: mm/truncate.c:truncate_inode_partial_folio() (v6.18): the whole folio in the
    range is removed (truncate_inode_folio()); else the range is zeroed, the file system
    invalidates it (private data), and a large folio is split non-uniformly at the page
    holding ``PAGE_ALIGN_DOWN(offset)`` (try_folio_split()); if that worked and the
    range stops inside the folio, the (large) piece holding ``PAGE_ALIGN_DOWN(offset +
    length)`` is split there too, if it can be locked (its result does not matter). If
    the first split fails, a dirty folio stays whole (False) and a clean one is removed
    whole (True).

    >>> from pyfolio import System, MiB
    >>> m = System(ram="32M"); m.set_shmem_thp("always"); p = m.spawn()
    >>> fd = p.memfd_create("doc"); _ = p.pwrite(fd, 0, 2 * MiB, 7)
    >>> p.fallocate(fd, "punch_hole", 200 * 4096, 4096)
    >>> [order for _, order in p.page_cache(fd)]
    [7, 6, 3, 0, 1, 2, 4, 5, 8]
    """
    from pyfolio.mm.huge_memory_split import try_folio_split

    mapping = folio_mapping(folio)
    assert mapping is not None
    pos, size = folio_pos(folio), folio_nr_pages(folio) << PAGE_SHIFT
    offset = start - pos if pos < start else 0
    length = size - offset if pos + size <= end else end + 1 - pos - offset
    if length == size:
        truncate_inode_folio(mapping, folio)
        return True
    folio_zero_range(folio, offset, length)
    if folio_test_private(folio):
        folio_invalidate(folio, offset, length)
    if not folio_test_large(folio):
        return True
    split_at = folio.pfn + (offset >> PAGE_SHIFT)
    if not try_folio_split(folio, split_at, None):
        if offset + length == size:
            return True
        split_at2 = folio.pfn + ((offset + length) >> PAGE_SHIFT)
        folio2 = page_folio(folio.m, split_at2)
        folio_get(folio2)  # folio_try_get()
        if folio_test_large(folio2) and not folio_test_locked(folio2):
            folio_lock(folio2)  # folio_trylock()
            if folio_mapping(folio2) is mapping:
                try_folio_split(folio2, split_at2, None)  # folio2 stays locked
            folio_unlock(folio2)
        folio_put(folio2)
        return True
    if folio_test_dirty(folio):
        return False
    truncate_inode_folio(mapping, folio)
    return True


def truncate_inode_pages_range(mapping: AddressSpace, lstart: int, lend: int) -> None:
    """truncate_inode_pages_range() - remove the page cache of bytes [lstart, lend]
    (``lend`` LLONG_MAX: to the end), splitting the folios at its edges.

    Models: mm/truncate.c:truncate_inode_pages_range() (v6.18): (1) folios wholly inside
    the pages ``[ceil(lstart), (lend + 1) >> PAGE_SHIFT)`` are removed
    (find_lock_entries() returns only those); (2) the folio holding ``lstart`` and, if
    another, the one holding ``lend`` go through truncate_inode_partial_folio() (a folio
    kept whole moves the range's start past it, or its end before it); (3) every folio
    left in the range is removed (find_get_entries()).
    """
    if not mapping.nrpages:
        return
    start = (lstart + PAGE_SIZE - 1) >> PAGE_SHIFT
    end = LLONG_MAX if lend >= LLONG_MAX else (lend + 1) >> PAGE_SHIFT
    m = mapping.host.i_sb.m
    for folio in page_cache_folios(mapping, start, end):
        first = int(m.mem.index[folio.pfn])
        if first >= start and first + folio_nr_pages(folio) <= end:
            _remove_locked(mapping, folio)
    same_folio = (lstart >> PAGE_SHIFT) == (lend >> PAGE_SHIFT)
    got = __filemap_get_folio(mapping, lstart >> PAGE_SHIFT, FGP.LOCK)
    if isinstance(got, Folio):
        same_folio = lend < folio_pos(got) + (folio_nr_pages(got) << PAGE_SHIFT)
        if not truncate_inode_partial_folio(got, lstart, lend):
            start = folio_next_index(got)
            if same_folio:
                end = int(m.mem.index[got.pfn])
        _unlock_put(got)
    if not same_folio:
        got = __filemap_get_folio(mapping, lend >> PAGE_SHIFT, FGP.LOCK)
        if isinstance(got, Folio):
            if not truncate_inode_partial_folio(got, lstart, lend):
                end = int(m.mem.index[got.pfn])
            _unlock_put(got)
    if start < end:
        for folio in page_cache_folios(mapping, start, end):
            _remove_locked(mapping, folio)


def _remove_locked(mapping: AddressSpace, folio: Folio) -> None:
    """folio_get(); folio_lock(); truncate_inode_folio(); folio_unlock(); folio_put()."""
    folio_get(folio)
    folio_lock(folio)
    truncate_inode_folio(mapping, folio)
    folio_unlock(folio)
    folio_put(folio)


def _unlock_put(folio: Folio) -> None:
    """folio_unlock() and folio_put() of the folio a lookup returned (after a split, the
    first piece: folio_split() leaves it locked and holding the caller's reference)."""
    folio_unlock(folio)
    folio_put(folio)


def truncate_inode_pages(mapping: AddressSpace, lstart: int) -> None:
    """truncate_inode_pages() - truncate everything from byte ``lstart`` on.

    Models: mm/truncate.c:truncate_inode_pages() (v6.18).
    """
    truncate_inode_pages_range(mapping, lstart, LLONG_MAX)


def truncate_pagecache(inode: Inode, newsize: int) -> None:
    """truncate_pagecache() - unmap the pages past the new size from every process (private
    COW copies too), truncate the page cache there, unmap again.

    Models: mm/truncate.c:truncate_pagecache() (v6.18).
    """
    from pyfolio.mm.memory_file import unmap_mapping_range

    mapping = inode.i_mapping
    holebegin = -(-newsize // PAGE_SIZE) * PAGE_SIZE
    unmap_mapping_range(mapping, holebegin, 0, True)
    truncate_inode_pages(mapping, newsize)
    unmap_mapping_range(mapping, holebegin, 0, True)


def truncate_setsize(inode: Inode, newsize: int) -> None:
    """truncate_setsize() - set i_size; if it shrank, truncate the page cache.

    Models: mm/truncate.c:truncate_setsize() (v6.18).
    """
    oldsize = i_size_read(inode)
    i_size_write(inode, newsize)
    if newsize < oldsize:
        truncate_pagecache(inode, newsize)


def truncate_pagecache_range(inode: Inode, lstart: int, lend: int) -> None:
    """truncate_pagecache_range() - a hole punched in [lstart, lend]: unmap the whole pages
    in it (file pages only: even_cows false keeps private COW copies), then truncate.

    Models: mm/truncate.c:truncate_pagecache_range() (v6.18).
    """
    from pyfolio.mm.memory_file import unmap_mapping_range

    unmap_start = -(-lstart // PAGE_SIZE) * PAGE_SIZE
    unmap_end = ((1 + lend) // PAGE_SIZE) * PAGE_SIZE - 1
    if unmap_end > unmap_start:
        unmap_mapping_range(inode.i_mapping, unmap_start, 1 + unmap_end - unmap_start, False)
    truncate_inode_pages_range(inode.i_mapping, lstart, lend)


def mapping_evict_folio(mapping: AddressSpace, folio: Folio) -> bool:
    """mapping_evict_folio() - drop a clean, unmapped, unused folio from the page cache.

    Models: mm/truncate.c:mapping_evict_folio() (v6.18): a dirty, writeback or mapped
    folio stays, as does one with more references than the page cache's, the caller's
    and PG_private's (or whose private data cannot be released).
    """
    if folio_test_dirty(folio) or folio.m.mem.test(folio.pfn, PG.writeback):
        return False
    refs = folio_nr_pages(folio) + folio_test_private(folio) + 1
    if folio_mapped(folio) or folio_ref_count(folio) > refs:
        return False
    if not filemap_release_folio(folio):
        return False
    filemap_remove_folio(folio)
    return True


def invalidate_mapping_pages(mapping: AddressSpace, start: int, end: int) -> int:
    """invalidate_mapping_pages() - evict the clean, unmapped folios of page indices
    [start, end] (what POSIX_FADV_DONTNEED does after writing them back); how many went.

    Models: mm/truncate.c:invalidate_mapping_pages() (v6.18).
    """
    n = 0
    for folio in page_cache_folios(mapping, start, end + 1):
        folio_get(folio)
        folio_lock(folio)
        n += mapping_evict_folio(mapping, folio)
        folio_unlock(folio)
        folio_put(folio)
    return n
