"""Readahead: which folios, of which orders, a read() or a fault brings into the page cache.

Models: mm/readahead.c (the linux-mm tree as read for issue 17; its behaviour matches
every sequence measured on Linux 6.18.44 with ext4): page_cache_sync_ra(),
page_cache_async_ra(), page_cache_ra_order(), ra_alloc_folio(), do_page_cache_ra(),
page_cache_ra_unbounded(), get_init_ra_size(), get_next_ra_size(), ractl_max_pages();
and mm/filemap.c:page_cache_prev_miss() / page_cache_next_miss().

The window (``struct file_ra_state``: start, size, async_size, order) starts with order-0
folios; each asynchronous step (a read reaching the folio marked PG_readahead) moves the
window forward, ramps its size (x4, x2, up to ra_pages) and raises ``ra->order`` by 2,
so a long sequential read of a large-folio file climbs 0, 2, 4, 6, 8, 9. The I/O itself
completes at once (each new folio is read from the file's data on disk and uptodate).
Not modelled: FMODE_RANDOM, POSIX_FADV_WILLNEED/readahead(2) (force_page_cache_ra()),
the mmap_miss back-off.

>>> get_init_ra_size(1, 2048), get_init_ra_size(32, 2048), get_init_ra_size(600, 2048)
(4, 128, 2048)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import i_size_read
from pyfolio.include.linux.mm import Folio, folio_nr_pages, folio_unlock
from pyfolio.include.linux.pagemap import (
    mapping_large_folio_support,
    mapping_max_folio_order,
    mapping_min_folio_order,
)
from pyfolio.lib.xarray import xa_load
from pyfolio.mm.filemap import filemap_add_folio, filemap_alloc_folio, fill_folio_from_disk
from pyfolio.sim.memmap import PG

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace, File, FileRaState

__all__ = ["get_init_ra_size", "get_next_ra_size", "ractl_max_pages", "page_cache_prev_miss",
           "page_cache_next_miss", "ra_alloc_folio", "page_cache_ra_unbounded",
           "do_page_cache_ra", "page_cache_ra_order", "page_cache_sync_ra",
           "page_cache_async_ra"]

_ULONG_MAX = (1 << 64) - 1


def get_init_ra_size(size: int, max_: int) -> int:
    """get_init_ra_size() - the first window for a read of ``size`` pages: the size
    rounded up to a power of two, x4 while small (<= max/32), x2 while medium (<= max/4),
    else ``max_``.

    Models: mm/readahead.c:get_init_ra_size() (v6.18).
    """
    newsize = 1 << (size - 1).bit_length() if size > 1 else 1
    if newsize <= max_ // 32:
        return newsize * 4
    if newsize <= max_ // 4:
        return newsize * 2
    return max_


def get_next_ra_size(ra: FileRaState, max_: int) -> int:
    """get_next_ra_size() - the next window: x4 below max/16, x2 up to max/2, else max.

    Models: mm/readahead.c:get_next_ra_size() (v6.18).
    """
    cur = ra.size
    if cur < max_ // 16:
        return 4 * cur
    if cur <= max_ // 2:
        return 2 * cur
    return max_


def ractl_max_pages(mapping: AddressSpace, ra: FileRaState, req_size: int) -> int:
    """ractl_max_pages() - ``ra->ra_pages``, or up to the device's optimal I/O size for a
    request larger than that.

    Models: mm/readahead.c:ractl_max_pages() (v6.18).
    """
    max_pages = ra.ra_pages
    io_pages = mapping.host.i_sb.s_bdi.io_pages
    if req_size > max_pages and io_pages > max_pages:
        max_pages = min(req_size, io_pages)
    return max_pages


def page_cache_prev_miss(mapping: AddressSpace, index: int, max_scan: int) -> int:
    """page_cache_prev_miss() - the first index at or below ``index`` (looking at most
    ``max_scan`` back) with no folio; ULONG_MAX if the cache reaches index 0.

    Models: mm/filemap.c:page_cache_prev_miss() (v6.18).
    """
    while max_scan > 0:
        if index < 0:
            return _ULONG_MAX
        if xa_load(mapping.i_pages, index) is None:
            return index
        index -= 1
        max_scan -= 1
    return index


def page_cache_next_miss(mapping: AddressSpace, index: int, max_scan: int) -> int:
    """page_cache_next_miss() - the first index at or above ``index`` with no folio.

    Models: mm/filemap.c:page_cache_next_miss() (v6.18).
    """
    while max_scan > 0 and xa_load(mapping.i_pages, index) is not None:
        index += 1
        max_scan -= 1
    return index


def ra_alloc_folio(mapping: AddressSpace, index: int, mark: int, order: int) -> int:
    """ra_alloc_folio() - allocate an order-``order`` folio at ``index``, mark it
    PG_readahead if it holds ``mark`` (rounded down to its size), add it to the page
    cache and read it; 0 or -errno.

    Models: mm/readahead.c:ra_alloc_folio() (v6.18), with read_pages() done at once.
    """
    m = mapping.host.i_sb.m
    folio = filemap_alloc_folio(m, order)
    if folio is None:
        return -12
    mark &= ~((1 << order) - 1)
    err = filemap_add_folio(mapping, folio, index)
    if err:
        from pyfolio.include.linux.mm import folio_put

        folio_put(folio)
        return err
    if index == mark:
        m.mem.set(folio.pfn, PG.readahead)
    _read_and_put(folio)
    return 0


def _read_and_put(folio: Folio) -> None:
    """read_pages(): the file system reads the folio (here at once), unlocks it, and the
    allocation reference is dropped (the page cache keeps its own)."""
    from pyfolio.include.linux.mm import folio_put

    fill_folio_from_disk(folio)
    folio_unlock(folio)
    folio_put(folio)


def page_cache_ra_unbounded(file: File | None, mapping: AddressSpace, index: int,
                            nr_to_read: int, lookahead_size: int) -> None:
    """page_cache_ra_unbounded() - read ``nr_to_read`` pages from ``index`` in folios of
    the mapping's minimum order, skipping pages already cached; the page
    ``nr_to_read - lookahead_size`` in is marked PG_readahead.

    Models: mm/readahead.c:page_cache_ra_unbounded() (v6.18).
    """
    del file
    m = mapping.host.i_sb.m
    min_order = mapping_min_folio_order(mapping)
    min_nr = 1 << min_order
    mark = nr_to_read - lookahead_size
    index &= ~(min_nr - 1)
    for i in range(0, nr_to_read, min_nr):
        if xa_load(mapping.i_pages, index + i) is not None:
            continue
        folio = filemap_alloc_folio(m, min_order)
        if folio is None:
            break
        if filemap_add_folio(mapping, folio, index + i):
            from pyfolio.include.linux.mm import folio_put

            folio_put(folio)
            continue
        if i == mark:
            m.mem.set(folio.pfn, PG.readahead)
        _read_and_put(folio)


def do_page_cache_ra(file: File | None, mapping: AddressSpace, index: int, nr_to_read: int,
                     lookahead_size: int) -> None:
    """do_page_cache_ra() - page_cache_ra_unbounded() limited to the file's last page.

    Models: mm/readahead.c:do_page_cache_ra() (v6.18).
    """
    isize = i_size_read(mapping.host)
    if not isize:
        return
    end_index = (isize - 1) >> 12
    if index > end_index:
        return
    nr_to_read = min(nr_to_read, end_index - index + 1)
    page_cache_ra_unbounded(file, mapping, index, nr_to_read, lookahead_size)


def page_cache_ra_order(file: File | None, mapping: AddressSpace, index: int,
                        ra: FileRaState) -> None:
    """page_cache_ra_order() - fill the window [index, index + ra->size) with folios of
    order ``min(ra->order, mapping max, ilog2(ra->size))``, smaller at unaligned indices
    (__ffs(index)) and where a folio would pass the window's end or EOF; the folio
    holding ``index + size - async_size`` gets PG_readahead. A cached page stops the
    loop; do_page_cache_ra() reads what is left of the window in small folios.

    Models: mm/readahead.c:page_cache_ra_order() (v6.18).
    """
    start = index
    isize = i_size_read(mapping.host)
    if not isize:
        return
    limit = (isize - 1) >> 12
    mark = index + ra.size - ra.async_size
    if not mapping_large_folio_support(mapping):
        ra.order = 0
        if ra.size > index - start:
            do_page_cache_ra(file, mapping, index, ra.size - (index - start), ra.async_size)
        return
    min_order = mapping_min_folio_order(mapping)
    limit = min(limit, index + ra.size - 1)
    new_order = min(mapping_max_folio_order(mapping), ra.order)
    new_order = max(min(new_order, ra.size.bit_length() - 1), min_order)
    ra.order = new_order
    index &= ~((1 << min_order) - 1)
    err = 0
    while index <= limit:
        order = new_order
        if index & ((1 << order) - 1):
            order = (index & -index).bit_length() - 1
        while order > min_order and index + (1 << order) - 1 > limit:
            order -= 1
        err = ra_alloc_folio(mapping, index, mark, order)
        if err:
            break
        index += 1 << order
    if err and ra.size > index - start:
        do_page_cache_ra(file, mapping, index, ra.size - (index - start), ra.async_size)


def page_cache_sync_ra(file: File, mapping: AddressSpace, index: int, req_count: int) -> None:
    """page_cache_sync_ra() - a read missed the page cache at ``index``: start a window.

    Models: mm/readahead.c:page_cache_sync_ra() (v6.18): at the start of the file, for an
    oversized read, or right after the previous read (``index - prev_index <= 1``): a
    new window of get_init_ra_size(req_count) with ``async_size = size - req_count``; a
    read preceded by cached pages (page_cache_prev_miss()) grows from them; a lone small
    read is read as it is (do_page_cache_ra(), no window). Every new window reads order
    0 first (``ra->order = 0``).
    """
    ra = file.f_ra
    if not ra.ra_pages:
        do_page_cache_ra(file, mapping, index, 1, 0)  # force_page_cache_ra(1)
        return
    max_pages = ractl_max_pages(mapping, ra, req_count)
    prev_index = (ra.prev_pos & _ULONG_MAX) >> 12
    if not index or req_count > max_pages or (index - prev_index) & _ULONG_MAX <= 1:
        ra.start = index
        ra.size = get_init_ra_size(req_count, max_pages)
        ra.async_size = ra.size - req_count if ra.size > req_count else ra.size >> 1
    else:
        miss = page_cache_prev_miss(mapping, index - 1, max_pages)
        contig_count = (index - miss - 1) & _ULONG_MAX
        if contig_count <= req_count:
            do_page_cache_ra(file, mapping, index, req_count, 0)
            return
        if miss == _ULONG_MAX:
            contig_count *= 2
        ra.start = index
        ra.size = min(contig_count + req_count, max_pages)
        ra.async_size = 1
    ra.order = 0
    page_cache_ra_order(file, mapping, ra.start, ra)


def page_cache_async_ra(file: File, mapping: AddressSpace, folio: Folio,
                        req_count: int) -> None:
    """page_cache_async_ra() - a read reached ``folio``, marked PG_readahead: move the
    window on.

    Models: mm/readahead.c:page_cache_async_ra() (v6.18): the mark is cleared; if the
    folio is where the window expects it (``round_down(start + size - async_size,
    nr_pages)``), the next window starts at ``start + size`` with the next size; else the
    window is rebuilt from the cached run after the folio (interleaved reads). Then
    ``ra->order += 2``, the end is trimmed to a multiple of ``1 << min(order,
    ffs(max_pages) - 1)``, the whole window is asynchronous, and page_cache_ra_order()
    reads it.
    """
    ra, m = file.f_ra, folio.m
    if not ra.ra_pages or m.mem.test(folio.pfn, PG.writeback):
        return
    m.mem.clear(folio.pfn, PG.readahead)
    index = int(m.mem.index[folio.pfn])
    max_pages = ractl_max_pages(mapping, ra, req_count)
    nr = folio_nr_pages(folio)
    expected = (ra.start + ra.size - ra.async_size) & ~(nr - 1)
    if index == expected:
        ra.start += ra.size
        ra.size = max(ra.size, get_next_ra_size(ra, max_pages))
    else:
        start = page_cache_next_miss(mapping, index + 1, max_pages)
        if not start or start - index > max_pages:
            return
        ra.start = start
        ra.size = start - index + req_count
        ra.size = get_next_ra_size(ra, max_pages)
    ra.order += 2
    align = 1 << min(ra.order, (max_pages & -max_pages).bit_length() - 1)
    end = ra.start + ra.size
    aligned_end = end & ~(align - 1)
    if aligned_end > ra.start:
        ra.size -= end - aligned_end
    ra.async_size = ra.size
    page_cache_ra_order(file, mapping, ra.start, ra)
