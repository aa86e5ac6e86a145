"""The page cache: adding, finding and removing folios; buffered read() and write().

Models: mm/filemap.c (v6.18): __filemap_add_folio(), filemap_add_folio(),
__filemap_remove_folio(), filemap_remove_folio(), __filemap_get_folio(),
generic_perform_write(), filemap_read() with filemap_get_pages(),
filemap_release_folio() and file_write_and_wait_range(). Page faults on file mappings
(filemap_fault(), filemap_map_pages()) are in :mod:`pyfolio.mm.filemap_fault`.

A page-cache folio holds one reference per page for the page cache (folio_ref_add(nr) in
__filemap_add_folio()), ``folio->mapping`` points at the address_space and
``folio->index`` is its first page's offset in the file; the XArray holds it as one
multi-index entry of its order (:mod:`pyfolio.lib.xarray`).

Simplifications: I/O completes at once (a folio read from disk is uptodate when the read
returns; writeback finishes inside fsync()); no memcg, no LRU lists beyond PG_lru, no
shadow entries (workingset), no locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import File, i_size_read
from pyfolio.include.linux.mm import (
    Folio,
    folio_get,
    folio_lock,
    folio_mapped,
    folio_nr_pages,
    folio_order,
    folio_put,
    folio_put_refs,
    folio_ref_add,
    folio_test_dirty,
    folio_test_uptodate,
    folio_unlock,
)
from pyfolio.include.linux.pagemap import (
    FGF_GET_ORDER,
    FGP,
    folio_mapping,
    folio_test_private,
    mapping_max_folio_order,
    mapping_max_folio_size,
    mapping_min_folio_order,
)
from pyfolio.lib.xarray import (
    XaState,
    XaValue,
    xa_load,
    xas_find_conflict,
    xas_set_order,
    xas_store,
)
from pyfolio.sim.errors import EEXIST, ENOENT, ENOMEM, MmError, VmWarning
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace
    from pyfolio.sim.machine import Machine

__all__ = ["filemap_alloc_folio", "__filemap_add_folio", "filemap_add_folio",
           "__filemap_remove_folio", "filemap_free_folio", "filemap_remove_folio",
           "filemap_get_entry", "__filemap_get_folio", "filemap_get_folio",
           "generic_perform_write", "filemap_read", "filemap_release_folio",
           "file_write_and_wait_range", "folio_mark_dirty", "page_cache_folios",
           "fill_folio_from_disk"]


def filemap_alloc_folio(m: Machine, order: int) -> Folio | None:
    """filemap_alloc_folio() - a new folio of ``order`` for the page cache, or None.

    Models: mm/filemap.c:filemap_alloc_folio() (v6.18) through folio_alloc(): a large
    folio is prepared rmappable (page_rmappable_folio(): PG_large_rmappable).
    """
    from pyfolio.mm.page_alloc import alloc_pages

    try:
        pfn = alloc_pages(m, order)
    except MmError:
        return None
    if order:
        m.mem.set(pfn, PG.large_rmappable)
    return Folio(m, pfn)


def __filemap_add_folio(mapping: AddressSpace, folio: Folio, index: int) -> int:
    """__filemap_add_folio() - insert a locked folio at ``index``; 0 or -EEXIST.

    Models: mm/filemap.c:__filemap_add_folio() (v6.18): one reference per page for the
    page cache (folio_ref_add(nr)), ``folio->mapping`` and ``folio->index`` set, and one
    multi-index entry of the folio's order stored unless some entry already lies in its
    range (xas_find_conflict(): -EEXIST, nothing changed). ``nrpages`` grows by nr.
    """
    m, nr = folio.m, folio_nr_pages(folio)
    if index & (nr - 1):
        raise VmWarning(f"__filemap_add_folio: index {index:#x} not aligned to order "
                        f"{folio_order(folio)}")
    xas = XaState(mapping.i_pages, index)
    xas_set_order(xas, index, folio_order(folio))
    if xas_find_conflict(xas) is not None:
        return -EEXIST
    folio_ref_add(folio, nr)
    m.mem.mapping[folio.pfn] = mapping.id << 2
    m.mem.index[folio.pfn] = index
    xas_store(xas, folio.pfn)
    mapping.nrpages += nr
    m.trace.emit("mm_filemap_add_to_page_cache", pfn=folio.pfn, index=index,
                 order=folio_order(folio), ino=mapping.host.i_ino)
    return 0


def filemap_add_folio(mapping: AddressSpace, folio: Folio, index: int) -> int:
    """filemap_add_folio() - lock a new folio, add it to the page cache and the LRU.

    Models: mm/filemap.c:filemap_add_folio() (v6.18): __folio_set_locked(), then
    __filemap_add_folio(), then folio_add_lru(); on failure the lock is dropped again.
    """
    folio_lock(folio)
    ret = __filemap_add_folio(mapping, folio, index)
    if ret:
        folio_unlock(folio)
        return ret
    folio.m.mem.set(folio.pfn, PG.lru)
    return 0


def __filemap_remove_folio(folio: Folio, shadow: object = None) -> None:
    """__filemap_remove_folio() - take a folio out of its page cache (page_cache_delete()):
    the XArray entry goes, ``folio->mapping`` is cleared, ``nrpages`` drops. The page
    cache's references are the caller's to drop (filemap_free_folio()).

    Models: mm/filemap.c:__filemap_remove_folio() (v6.18); no shadow entries are kept.
    The folio must not be mapped (filemap_unaccount_folio() warns).
    """
    mapping = folio_mapping(folio)
    if mapping is None:
        raise VmWarning(f"__filemap_remove_folio of {folio!r}: not in a page cache")
    if folio_mapped(folio):
        raise VmWarning(f"__filemap_remove_folio of mapped {folio!r}")
    m, nr = folio.m, folio_nr_pages(folio)
    index = int(m.mem.index[folio.pfn])
    xas = XaState(mapping.i_pages, index)
    xas_set_order(xas, index, folio_order(folio))
    xas_store(xas, None)
    m.mem.mapping[folio.pfn] = 0
    mapping.nrpages -= nr
    m.trace.emit("mm_filemap_delete_from_page_cache", pfn=folio.pfn, index=index,
                 order=folio_order(folio), ino=mapping.host.i_ino)


def filemap_free_folio(mapping: AddressSpace, folio: Folio) -> None:
    """filemap_free_folio() - drop the page cache's references (one per page).

    Models: mm/filemap.c:filemap_free_folio() (v6.18).
    """
    del mapping
    folio_put_refs(folio, folio_nr_pages(folio))


def filemap_remove_folio(folio: Folio) -> None:
    """filemap_remove_folio() - remove a folio from the page cache and drop its references.

    Models: mm/filemap.c:filemap_remove_folio() (v6.18). The caller still holds its own
    reference (and the folio lock).
    """
    mapping = folio_mapping(folio)
    assert mapping is not None
    __filemap_remove_folio(folio)
    folio.m.mem.clear(folio.pfn, PG.dirty | PG.readahead)  # filemap_unaccount_folio()
    filemap_free_folio(mapping, folio)


def filemap_get_entry(mapping: AddressSpace, index: int) -> Folio | XaValue | None:
    """filemap_get_entry() - the folio holding ``index``, with a reference; or the value
    entry there (shmem keeps a swapped-out folio's swap entry so), or None.

    Models: mm/filemap.c:filemap_get_entry() (v6.18).
    """
    pfn = xa_load(mapping.i_pages, index)
    if pfn is None or isinstance(pfn, XaValue):
        return pfn
    folio = Folio(mapping.host.i_sb.m, pfn)
    folio_get(folio)
    return folio


def __filemap_get_folio(mapping: AddressSpace, index: int, fgp_flags: int) -> Folio | int:
    """__filemap_get_folio() - find, and with FGP_CREAT create, the folio at ``index``;
    the folio (referenced; locked with FGP_LOCK) or -ENOENT / -ENOMEM.

    Models: mm/filemap.c:__filemap_get_folio() (v6.18; __filemap_get_folio_mpol() in
    newer trees): a new folio is of order max(min order, FGF_GET_ORDER(fgp_flags)),
    capped at mapping_max_folio_order(), reduced to __ffs(index) at an index not aligned
    to it; filemap_add_folio() is tried order by order downwards (a conflicting entry,
    -EEXIST, or a failed allocation move to the next lower order); ending with -EEXIST
    means another folio is there: look it up again. With FGP_FOR_MMAP the new folio is
    returned unlocked.
    """
    m = mapping.host.i_sb.m
    folio = filemap_get_entry(mapping, index)
    if isinstance(folio, XaValue):  # xa_is_value(): a swapped-out shmem page
        folio = None
        if fgp_flags & FGP.CREAT:
            raise VmWarning(f"__filemap_get_folio(FGP_CREAT) over a value entry at {index}")
    if folio is not None:
        if fgp_flags & FGP.LOCK:
            folio_lock(folio)
        if fgp_flags & FGP.ACCESSED:
            m.mem.set(folio.pfn, PG.referenced)
        return folio
    if not fgp_flags & FGP.CREAT:
        return -ENOENT
    min_order = mapping_min_folio_order(mapping)
    order = min(max(min_order, FGF_GET_ORDER(fgp_flags)), mapping_max_folio_order(mapping))
    index &= ~((1 << min_order) - 1)  # mapping_align_index()
    if index & ((1 << order) - 1):
        order = (index & -index).bit_length() - 1  # __ffs(index)
    err = -ENOMEM
    while order >= min_order:
        new = filemap_alloc_folio(m, order)
        if new is not None:
            if fgp_flags & FGP.ACCESSED:
                m.mem.set(new.pfn, PG.referenced)
            err = filemap_add_folio(mapping, new, index & ~((1 << order) - 1))
            if not err:
                folio = new
                break
            folio_put(new)
        order -= 1
    if err == -EEXIST:
        return __filemap_get_folio(mapping, index, fgp_flags)
    if folio is None:
        return err
    if fgp_flags & FGP.FOR_MMAP or not fgp_flags & FGP.LOCK:
        folio_unlock(folio)
    return folio


def filemap_get_folio(mapping: AddressSpace, index: int) -> Folio | None:
    """filemap_get_folio() - the cached folio at ``index`` (referenced), or None.

    Models: include/linux/pagemap.h:filemap_get_folio() (v6.18).
    """
    got = __filemap_get_folio(mapping, index, 0)
    return got if isinstance(got, Folio) else None


def fill_folio_from_disk(folio: Folio) -> None:
    """Read a new folio's pages from the file's data on disk (``i_data``; holes read as
    zeroes) and mark it uptodate: what ->read_folio() or ->readahead() leaves behind, the
    I/O done at once. A folio whose every block is on disk is PG_mappedtodisk (ext4's
    mpage readahead sets it; /proc/kpageflags shows it as OWNER_2)."""
    m = folio.m
    mapping = folio_mapping(folio)
    assert mapping is not None
    first, data = int(m.mem.index[folio.pfn]), mapping.host.i_data
    on_disk = True
    for i in range(folio_nr_pages(folio)):
        m.mem.stamp[folio.pfn + i] = data.get(first + i, 0)
        on_disk = on_disk and first + i in data
    m.mem.set(folio.pfn, PG.uptodate | (PG.mappedtodisk if on_disk else 0))


def generic_perform_write(file: File, pos: int, count: int, value: int) -> int:
    """generic_perform_write() - copy ``count`` bytes at ``pos`` into the page cache,
    folio by folio; returns the bytes written.

    Models: mm/filemap.c:generic_perform_write() (v6.18): each step writes at most to the
    end of the current mapping_max_folio_size() chunk (``bytes = min(chunk - pos % chunk,
    left)``), through ``a_ops->write_begin`` (which finds or creates the folio; ext4 asks
    __filemap_get_folio() for a folio of that many bytes, tmpfs follows its huge policy)
    and ``a_ops->write_end``; a step that meets an existing folio is cut at its end. The
    data is a 64-bit stamp: every page the write touches gets ``value``.
    """
    mapping = file.f_mapping
    chunk = mapping_max_folio_size(mapping)
    a_ops = mapping.a_ops
    assert a_ops.write_begin is not None and a_ops.write_end is not None
    written, m = 0, mapping.host.i_sb.m
    while written < count:
        nbytes = min(chunk - (pos & (chunk - 1)), count - written)
        folio = a_ops.write_begin(file, mapping, pos, nbytes)
        fpos = int(m.mem.index[folio.pfn]) << PAGE_SHIFT
        offset = pos - fpos
        nbytes = min(nbytes, (folio_nr_pages(folio) << PAGE_SHIFT) - offset)
        first, last = offset >> PAGE_SHIFT, (offset + nbytes - 1) >> PAGE_SHIFT
        m.mem.stamp[folio.pfn + first: folio.pfn + last + 1] = value & (1 << 64) - 1
        a_ops.write_end(file, mapping, pos, nbytes, folio)
        pos += nbytes
        written += nbytes
    m.trace.emit("generic_perform_write", pos=pos - written, count=written,
                 ino=mapping.host.i_ino)
    return written


def filemap_read(file: File, pos: int, count: int) -> list[int]:
    """filemap_read() - a buffered read of ``count`` bytes at ``pos``: the stamp of each
    page read (nothing at or past EOF).

    Models: mm/filemap.c:filemap_read() and filemap_get_pages() (v6.18): the folios from
    ``pos`` are looked up (filemap_get_read_batch(): contiguous uptodate folios, up to and
    including the first marked PG_readahead); none cached: synchronous readahead
    (page_cache_sync_ra() for the pages still to read) and a second lookup; the last folio
    of a batch marked PG_readahead starts asynchronous readahead (page_cache_async_ra()).
    ``ra->prev_pos`` is the end of the read.
    """
    from pyfolio.mm.readahead import page_cache_async_ra, page_cache_sync_ra

    mapping, ra = file.f_mapping, file.f_ra
    inode, m = mapping.host, mapping.host.i_sb.m
    isize = i_size_read(inode)
    out: list[int] = []
    end = min(pos + count, isize)
    while pos < end:
        index, last_index = pos >> PAGE_SHIFT, -(-end // PAGE_SIZE)
        batch = _read_batch(mapping, index, last_index)
        if not batch:
            page_cache_sync_ra(file, mapping, index, last_index - index)
            batch = _read_batch(mapping, index, last_index)
        if not batch:
            break  # filemap_create_folio(): only when readahead is off, not modelled
        tail = batch[-1]
        if m.mem.test(tail.pfn, PG.readahead):
            page_cache_async_ra(file, mapping, tail, last_index - int(m.mem.index[tail.pfn]))
        for folio in batch:
            first = int(m.mem.index[folio.pfn])
            stop = min(end, (first + folio_nr_pages(folio)) << PAGE_SHIFT)
            while pos < stop:
                out.append(int(m.mem.stamp[folio.pfn + (pos >> PAGE_SHIFT) - first]))
                pos = ((pos >> PAGE_SHIFT) + 1) << PAGE_SHIFT
            m.mem.set(folio.pfn, PG.referenced)  # folio_mark_accessed()
            folio_put(folio)
        pos = min(pos, end)
        ra.prev_pos = pos
    return out


def _read_batch(mapping: AddressSpace, index: int, last_index: int) -> list[Folio]:
    """filemap_get_read_batch(): the cached folios from ``index`` on, contiguous, up to
    ``last_index`` (exclusive), stopping after one marked PG_readahead or at one not
    uptodate; each referenced."""
    out: list[Folio] = []
    m = mapping.host.i_sb.m
    while index < last_index:
        folio = filemap_get_entry(mapping, index)
        if not isinstance(folio, Folio):
            break
        if not folio_test_uptodate(folio):
            folio_put(folio)
            break
        out.append(folio)
        if m.mem.test(folio.pfn, PG.readahead):
            break
        index = int(m.mem.index[folio.pfn]) + folio_nr_pages(folio)
    return out


def filemap_release_folio(folio: Folio) -> bool:
    """filemap_release_folio() - ask the file system to drop the folio's private data
    (buffer heads) before the folio is split or freed; True when none is left.

    Models: mm/filemap.c:filemap_release_folio() (v6.18): a folio without PG_private is
    fine; a folio under writeback is not; otherwise ``a_ops->release_folio`` decides (ext4
    refuses while buffers are dirty: ext4_release_folio() -> try_to_free_buffers()).
    """
    if not folio_test_private(folio):
        return True
    if folio.m.mem.test(folio.pfn, PG.writeback):
        return False
    mapping = folio_mapping(folio)
    if mapping is not None and mapping.a_ops.release_folio is not None:
        return mapping.a_ops.release_folio(folio)
    return False


def folio_mark_dirty(folio: Folio) -> bool:
    """folio_mark_dirty() - set PG_dirty (``a_ops->dirty_folio``); True if it was clean.

    Models: mm/page-writeback.c:folio_mark_dirty() (v6.18), with the dirty accounting
    (NR_FILE_DIRTY) left out.
    """
    if folio_test_dirty(folio):
        return False
    folio.m.mem.set(folio.pfn, PG.dirty)
    return True


def page_cache_folios(mapping: AddressSpace, start: int = 0,
                      end: int | None = None) -> list[Folio]:
    """The folios of the page cache meeting [start, end) (page indices), in index order
    (the walk filemap_get_folios() makes: value entries, shmem's swapped-out pages, are
    skipped)."""
    from pyfolio.lib.xarray import xa_entries

    m = mapping.host.i_sb.m
    return [Folio(m, pfn) for _, _, pfn in xa_entries(mapping.i_pages, start, end)
            if not isinstance(pfn, XaValue)]


def file_write_and_wait_range(file: File, lstart: int = 0, lend: int = -1) -> int:
    """file_write_and_wait_range() - write every dirty folio back (fsync()); 0.

    Models: mm/filemap.c:file_write_and_wait_range() (v6.18) with do_writepages() and
    mm/page-writeback.c:folio_clear_dirty_for_io() (v6.18): each dirty folio is first
    made clean in the page tables (folio_mkclean(): its shared mappings are
    write-protected, so the next write faults and dirties it again), then its pages
    below EOF are written to the disk file (``i_data``) and PG_dirty is cleared. The
    writeback completes at once (PG_writeback never seen).
    """
    from pyfolio.mm.rmap_file import folio_mkclean

    mapping = file.f_mapping
    inode, m = mapping.host, mapping.host.i_sb.m
    last = -(-i_size_read(inode) // PAGE_SIZE)
    hi = None if lend < 0 else (lend >> PAGE_SHIFT) + 1
    n = 0
    for folio in page_cache_folios(mapping, lstart >> PAGE_SHIFT, hi):
        if not folio_test_dirty(folio):
            continue
        folio_mkclean(folio)
        m.mem.clear(folio.pfn, PG.dirty)
        first = int(m.mem.index[folio.pfn])
        for i in range(folio_nr_pages(folio)):
            if first + i < last:
                inode.i_data[first + i] = int(m.mem.stamp[folio.pfn + i])
        n += 1
    m.trace.emit("file_write_and_wait_range", changes={"folios": n}, ino=inode.i_ino)
    return 0
