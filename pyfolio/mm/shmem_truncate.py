"""tmpfs truncation: ftruncate(), FALLOC_FL_PUNCH_HOLE, fallocate(), eviction, and the
shrinker of huge folios past EOF.

Models: mm/shmem.c (v6.18): shmem_undo_range(), shmem_truncate_range(),
shmem_setattr(), shmem_fallocate(), shmem_evict_inode() and shmem_unused_huge_shrink()
(the superblock shrinker ``echo 2 > /proc/sys/vm/drop_caches`` runs). The same file's
allocation side is :mod:`pyfolio.mm.shmem`. A one-page hole in a shmem THP splits it
buddy-style (truncate_inode_partial_folio()), exactly as for a disk file; pieces past
``max(EOF, fallocend)`` are dropped by the split itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import File, Inode, InodeOperations, i_size_read, i_size_write
from pyfolio.include.linux.mm import (
    Folio,
    folio_get,
    folio_lock,
    folio_nr_pages,
    folio_put,
    folio_test_large,
    folio_test_locked,
    folio_test_uptodate,
    folio_unlock,
)
from pyfolio.include.linux.pagemap import FGP, folio_next_index, folio_pos
from pyfolio.include.linux.shmem_fs import SHMEM_I, SHMEM_SB
from pyfolio.lib.xarray import XaValue, xa_entries, xa_load
from pyfolio.mm.filemap import __filemap_get_folio, folio_mark_dirty, page_cache_folios
from pyfolio.mm.shmem import SGP, shmem_fallocend, shmem_get_folio_gfp, shmem_recalc_inode
from pyfolio.mm.truncate import LLONG_MAX, truncate_inode_folio, truncate_inode_partial_folio
from pyfolio.sim.errors import ENOMEM, EOPNOTSUPP, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_NR, PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace, SuperBlock

__all__ = ["FALLOC_FL_KEEP_SIZE", "FALLOC_FL_PUNCH_HOLE", "shmem_undo_range",
           "shmem_truncate_range", "shmem_setattr", "shmem_fallocate", "shmem_evict_inode",
           "shmem_unused_huge_shrink", "shmem_inode_operations"]

#: include/uapi/linux/falloc.h
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


def shmem_undo_range(inode: Inode, lstart: int, lend: int) -> None:
    """shmem_undo_range() - free the page cache of bytes [lstart, lend] (``lend``
    LLONG_MAX: to the end), splitting the folios at its edges.

    Models: mm/shmem.c:shmem_undo_range() (v6.18, ``unfalloc`` false): ``fallocend``
    drops to the range's start if it ended inside it; folios wholly inside the range go;
    the partial folios at ``lstart`` and ``lend`` are marked dirty and go through
    truncate_inode_partial_folio() (zero, split buddy-style); then whatever large folio
    is still met in the range is truncated partially again, small ones removed; the
    charge is recalculated (shmem_recalc_inode()). Swap entries (swapped-out pages) wholly
    inside the range are freed (shmem_free_swap(): their slots at once); one that crosses
    an edge is swapped back in by the partial-folio lookup there
    (shmem_get_partial_folio()) and truncated as a folio.
    """
    mapping, m = inode.i_mapping, inode.i_sb.m
    info = SHMEM_I(inode)
    start = (lstart + PAGE_SIZE - 1) >> PAGE_SHIFT
    end = LLONG_MAX if lend >= LLONG_MAX else (lend + 1) >> PAGE_SHIFT
    if start < info.fallocend <= end:
        info.fallocend = start
    swaps_freed = _free_swap_entries(mapping, start, end)
    for folio in page_cache_folios(mapping, start, end):
        first = int(m.mem.index[folio.pfn])
        if first >= start and first + folio_nr_pages(folio) <= end:
            _locked(folio, lambda f: truncate_inode_folio(mapping, f))
    same_folio = (lstart >> PAGE_SHIFT) == (lend >> PAGE_SHIFT)
    part = _partial(inode, lstart >> PAGE_SHIFT)
    if part is not None:
        same_folio = lend < folio_pos(part) + (folio_nr_pages(part) << PAGE_SHIFT)
        folio_mark_dirty(part)
        if not truncate_inode_partial_folio(part, lstart, lend):
            start = folio_next_index(part)
            if same_folio:
                end = int(m.mem.index[part.pfn])
        folio_unlock(part)
        folio_put(part)
    if not same_folio:
        part = _partial(inode, lend >> PAGE_SHIFT)
        if part is not None:
            folio_mark_dirty(part)
            if not truncate_inode_partial_folio(part, lstart, lend):
                end = int(m.mem.index[part.pfn])
            folio_unlock(part)
            folio_put(part)
    index = start
    while index < end:
        swaps_freed += _free_swap_entries(mapping, index, end)
        batch = page_cache_folios(mapping, index, end)
        if not batch:
            break
        for folio in batch:
            folio_get(folio)
            folio_lock(folio)
            if not folio_test_large(folio):
                truncate_inode_folio(mapping, folio)
            elif truncate_inode_partial_folio(folio, lstart, lend) and \
                    not folio_test_large(folio):
                folio_unlock(folio)
                folio_put(folio)
                index = start  # split: start over to meet the pieces
                break
            folio_unlock(folio)
            folio_put(folio)
        else:
            index = end
    shmem_recalc_inode(inode, 0, -swaps_freed)


def _free_swap_entries(mapping: AddressSpace, start: int, end: int) -> int:
    """The value-entry branch of shmem_undo_range()'s loops (find_lock_entries() keeps
    only entries wholly inside [start, end)): shmem_free_swap() each; pages freed."""
    from pyfolio.mm.shmem_swap import shmem_free_swap

    freed = 0
    for head, order, e in xa_entries(mapping.i_pages, start, end):
        if isinstance(e, XaValue) and head >= start and head + (1 << order) <= end:
            freed += shmem_free_swap(mapping, head, e)
    return freed


def _partial(inode: Inode, index: int) -> Folio | None:
    """shmem_get_partial_folio(): the cached folio holding ``index``, locked and
    referenced (no allocation); a swapped-out page is read back (shmem_swapin_folio()),
    so that a large swap entry the edge cuts is truncated as a folio.

    6.18 reads it back only within i_size (SGP_READ), and 6.18.44 was measured to
    livelock, unkillable, in shmem_undo_range() when ftruncate() cut a swapped-out order-9
    entry of a memfd (loop device; it ended when another process read page 0 through
    /proc/PID/fd). The simulator does what the later fix describes ("mm/shmem, swap: fix
    race of truncate and swap entry split", Jan 2026, cc stable): it swaps the crossing
    entry in whatever i_size says."""
    from pyfolio.mm.shmem_swap import shmem_swapin_folio

    got = __filemap_get_folio(inode.i_mapping, index, FGP.LOCK)
    if isinstance(got, Folio):
        return got
    entry = xa_load(inode.i_mapping.i_pages, index)
    if isinstance(entry, XaValue):
        back = shmem_swapin_folio(inode, index, entry, SGP.SGP_READ, None, False)
        return back if isinstance(back, Folio) else None
    return None


def _locked(folio: Folio, fn: object) -> None:
    """folio_get(), folio_lock(), ``fn(folio)``, folio_unlock(), folio_put()."""
    folio_get(folio)
    folio_lock(folio)
    fn(folio)  # type: ignore[operator]
    folio_unlock(folio)
    folio_put(folio)


def shmem_truncate_range(inode: Inode, lstart: int, lend: int) -> None:
    """shmem_truncate_range() - shmem_undo_range() (and the inode's times).

    Models: mm/shmem.c:shmem_truncate_range() (v6.18).
    """
    shmem_undo_range(inode, lstart, lend)


def shmem_setattr(inode: Inode, newsize: int) -> None:
    """shmem_setattr() - ftruncate() of a tmpfs file: set i_size; if it shrank, unmap the
    pages past it (private COW copies too), truncate from ``newsize`` on, unmap again.

    Models: mm/shmem.c:shmem_setattr() (v6.18).
    """
    from pyfolio.mm.memory_file import unmap_mapping_range

    oldsize = i_size_read(inode)
    i_size_write(inode, newsize)
    if newsize <= oldsize:
        holebegin = -(-newsize // PAGE_SIZE) * PAGE_SIZE
        if oldsize > holebegin:
            unmap_mapping_range(inode.i_mapping, holebegin, 0, True)
        if SHMEM_I(inode).alloced:
            shmem_truncate_range(inode, newsize, LLONG_MAX)
        if oldsize > holebegin:
            unmap_mapping_range(inode.i_mapping, holebegin, 0, True)


def shmem_fallocate(file: File, mode: int, offset: int, length: int) -> None:
    """shmem_fallocate() - FALLOC_FL_PUNCH_HOLE (with KEEP_SIZE): unmap the whole pages of
    the hole from every process (file pages only; private COW copies stay), then
    shmem_truncate_range(); otherwise allocate the range's folios (SGP_FALLOC, the
    mount's huge policy with the range's end as within_size hint), extend i_size unless
    KEEP_SIZE, and move ``fallocend`` past the range.

    Models: mm/shmem.c:shmem_fallocate() (v6.18). Simplification: the new folios are
    zeroed and uptodate at once (the kernel leaves them !uptodate, to be cleared on first
    use, and undoes them if the call fails).
    """
    from pyfolio.mm.memory_file import unmap_mapping_range

    inode = file.f_inode
    if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
        raise MmError(EOPNOTSUPP, f"fallocate mode {mode:#x} is not supported by tmpfs")
    if mode & FALLOC_FL_PUNCH_HOLE:
        unmap_start = -(-offset // PAGE_SIZE) * PAGE_SIZE
        unmap_end = ((offset + length) // PAGE_SIZE) * PAGE_SIZE - 1
        if unmap_end > unmap_start:
            unmap_mapping_range(inode.i_mapping, unmap_start, 1 + unmap_end - unmap_start,
                                False)
        shmem_truncate_range(inode, offset, offset + length - 1)
        return
    start, end = offset >> PAGE_SHIFT, (offset + length + PAGE_SIZE - 1) >> PAGE_SHIFT
    info = SHMEM_I(inode)
    info.fallocend = max(info.fallocend, end)
    index = start
    while index < end:
        got = shmem_get_folio_gfp(inode, index, offset + length, SGP.SGP_FALLOC)
        if not isinstance(got, Folio):
            raise MmError(ENOMEM, f"fallocate: no memory for page {index}")
        if not folio_test_uptodate(got):  # cleared at once (see above)
            got.m.mem.stamp[got.pfn: got.pfn + folio_nr_pages(got)] = 0
            got.m.mem.set(got.pfn, PG.uptodate)
        folio_mark_dirty(got)
        index = folio_next_index(got)
        folio_unlock(got)
        folio_put(got)
    if not mode & FALLOC_FL_KEEP_SIZE and offset + length > i_size_read(inode):
        i_size_write(inode, offset + length)


def shmem_evict_inode(inode: Inode) -> None:
    """shmem_evict_inode() - the last reference to an unlinked tmpfs inode went: free its
    page cache (shmem_truncate_range(inode, 0, -1)) and take it off the shrinklist.

    Models: mm/shmem.c:shmem_evict_inode() (v6.18).
    """
    shmem_truncate_range(inode, 0, LLONG_MAX)
    sbinfo = SHMEM_SB(inode)
    if inode in sbinfo.shrinklist:
        sbinfo.shrinklist.remove(inode)


def shmem_unused_huge_shrink(sb: SuperBlock) -> int:
    """shmem_unused_huge_shrink() - split the huge folios that reach past EOF (and past
    fallocend) of the inodes on the superblock's shrinklist, so the pages beyond EOF are
    freed; returns how many folios were split.

    Models: mm/shmem.c:shmem_unused_huge_shrink() (v6.18; run by the superblock
    shrinker, e.g. ``echo 2 > /proc/sys/vm/drop_caches``): for each inode, the folio at
    ``round_down(i_size, 2 MiB)``; nothing to gain (small, or EOF not inside it) drops
    the inode from the list; a locked folio or a failed split keeps it there. The split is
    split_folio(): uniform, to order 0; its pieces past EOF leave the page cache.
    """
    from pyfolio.mm.huge_memory_split import split_folio

    sbinfo = sb.s_fs_info
    split = 0
    for inode in list(sbinfo.shrinklist):
        index = (i_size_read(inode) & ~((HPAGE_PMD_NR << PAGE_SHIFT) - 1)) >> PAGE_SHIFT
        folio = _partial_unlocked(inode, index)
        keep = False
        if folio is not None:
            first = int(folio.m.mem.index[folio.pfn])
            end = shmem_fallocend(inode, -(-i_size_read(inode) // PAGE_SIZE))
            if folio_test_large(folio) and first < end < folio_next_index(folio):
                if folio_test_locked(folio):  # folio_trylock() failed
                    keep = True
                else:
                    folio_lock(folio)
                    ret = split_folio(folio)
                    folio_unlock(folio)
                    keep, split = bool(ret), split + (not ret)
            folio_put(folio)
        if not keep:
            sbinfo.shrinklist.remove(inode)
            shmem_recalc_inode(inode, 0, 0)
    return split


def _partial_unlocked(inode: Inode, index: int) -> Folio | None:
    got = __filemap_get_folio(inode.i_mapping, index, 0)
    return got if isinstance(got, Folio) else None


shmem_inode_operations = InodeOperations("shmem_inode_operations", setattr=shmem_setattr,
                                         evict_inode=shmem_evict_inode)
