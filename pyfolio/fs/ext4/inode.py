"""ext4 inodes and their page cache: large folios, buffered writes, releasing buffers,
page_mkwrite, hole punching and truncation.

Models: fs/ext4/inode.c (v6.18): ext4_should_enable_large_folio() and
ext4_set_inode_mapping_order() (large folios for regular files since 6.16, commit
7ac67301e82f "ext4: enable large folio for regular file", up to
EXT4_MAX_PAGECACHE_ORDER = min(MAX_PAGECACHE_ORDER, 11 + i_blkbits - PAGE_SHIFT): order
9 on x86-64 with 4 KiB blocks), ext4_da_write_begin() / ext4_da_write_end() (delayed
allocation: the write's folio gets buffer heads, PG_private, and is dirty until
written back), ext4_release_folio() (refused while the buffers are dirty: the reason a
dirty large folio cannot be split by a hole punch, inferred from __folio_split()'s
filemap_release_folio() -EBUSY and measured on 6.18.44; fs/ext4's own code was not
read), ext4_invalidate_folio(), ext4_page_mkwrite(), ext4_punch_hole(), ext4_setattr()
and ext4_evict_inode().

Simplifications: no journal, no extents or block allocation (a block is "on disk" once
written back: ``Inode.i_data``), a folio's buffers are all dirty or all clean (PG_dirty
stands for them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.fs.ext4.super import Ext4SbInfo
from pyfolio.include.linux.fs import (
    AddressSpaceOperations,
    File,
    Inode,
    InodeOperations,
    SuperBlock,
    i_size_read,
    i_size_write,
    new_inode,
)
from pyfolio.include.linux.mm import (
    Folio,
    VmFault,
    folio_nr_pages,
    folio_put,
    folio_test_dirty,
    folio_test_uptodate,
    folio_unlock,
)
from pyfolio.include.linux.pagemap import (
    FGP,
    MAX_PAGECACHE_ORDER,
    fgf_set_order,
    folio_attach_private,
    folio_detach_private,
    folio_test_private,
    mapping_set_folio_order_range,
)
from pyfolio.mm.filemap import __filemap_get_folio, folio_mark_dirty
from pyfolio.sim.errors import ENOMEM, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace

__all__ = ["EXT4_MAX_PAGECACHE_ORDER", "ext4_should_enable_large_folio",
           "ext4_set_inode_mapping_order", "ext4_da_write_begin", "ext4_da_write_end",
           "ext4_release_folio", "ext4_invalidate_folio", "ext4_page_mkwrite",
           "ext4_punch_hole", "ext4_setattr", "ext4_evict_inode", "ext4_aops",
           "ext4_inode_operations", "ext4_new_file"]


def EXT4_MAX_PAGECACHE_ORDER(inode: Inode) -> int:
    """EXT4_MAX_PAGECACHE_ORDER() - the largest folio order of an ext4 file: 2048 blocks,
    at most MAX_PAGECACHE_ORDER.

    Models: fs/ext4/inode.c:EXT4_MAX_PAGECACHE_ORDER() (v6.18, "ext4: limit the maximum
    folio order").
    """
    return min(MAX_PAGECACHE_ORDER, 11 + _sbi(inode.i_sb).blkbits - PAGE_SHIFT)


def _sbi(sb: SuperBlock) -> Ext4SbInfo:
    info = sb.s_fs_info
    assert isinstance(info, Ext4SbInfo)
    return info


def ext4_should_enable_large_folio(inode: Inode) -> bool:
    """ext4_should_enable_large_folio() - regular files get large folios unless data is
    journalled (data=journal), or the file system has verity or encryption.

    Models: fs/ext4/inode.c:ext4_should_enable_large_folio() (v6.18).
    """
    sbi = _sbi(inode.i_sb)
    return not (sbi.data == "journal" or sbi.verity or sbi.encrypt)


def ext4_set_inode_mapping_order(inode: Inode) -> None:
    """ext4_set_inode_mapping_order() - allow folio orders 0..EXT4_MAX_PAGECACHE_ORDER in
    the inode's page cache where large folios are enabled (else order 0 only).

    Models: fs/ext4/inode.c:ext4_set_inode_mapping_order() (v6.18).
    """
    if ext4_should_enable_large_folio(inode):
        mapping_set_folio_order_range(inode.i_mapping, 0, EXT4_MAX_PAGECACHE_ORDER(inode))


def ext4_da_write_begin(file: File, mapping: AddressSpace, pos: int, length: int) -> Folio:
    """ext4_da_write_begin() - the folio a write step goes into: write_begin_get_folio(),
    i.e. __filemap_get_folio(FGP_WRITEBEGIN | fgf_set_order(len)), so a new folio is as
    large as the step (reduced at an unaligned index or where the cache has folios);
    then ext4_block_write_begin(): buffer heads (PG_private), and a new folio's pages
    outside the write read from disk (holes as zeroes).

    Models: fs/ext4/inode.c:ext4_da_write_begin() (v6.18) with
    include/linux/pagemap.h:write_begin_get_folio().
    """
    from pyfolio.mm.filemap import fill_folio_from_disk

    got = __filemap_get_folio(mapping, pos >> PAGE_SHIFT, FGP.WRITEBEGIN | fgf_set_order(length))
    if not isinstance(got, Folio):
        raise MmError(ENOMEM, f"ext4 write at {pos}: no memory for a folio")
    if not folio_test_private(got):
        folio_attach_private(got)  # create_empty_buffers()
    if not folio_test_uptodate(got):
        fill_folio_from_disk(got)
        got.m.mem.clear(got.pfn, PG.mappedtodisk)
    return got


def ext4_da_write_end(file: File, mapping: AddressSpace, pos: int, copied: int,
                      folio: Folio) -> None:
    """ext4_da_write_end() - the buffers are dirty (folio_mark_dirty()), i_size grows,
    the folio is unlocked and put.

    Models: fs/ext4/inode.c:ext4_da_write_end() (v6.18) with fs/buffer.c:block_write_end().
    """
    inode = mapping.host
    folio_mark_dirty(folio)
    if pos + copied > i_size_read(inode):
        i_size_write(inode, pos + copied)
    folio_unlock(folio)
    folio_put(folio)


def ext4_release_folio(folio: Folio) -> bool:
    """ext4_release_folio() - free the folio's buffer heads: refused while they are dirty
    (delayed allocation: written, not yet written back) or under writeback; then
    PG_private and its reference go.

    Models: fs/ext4/inode.c:ext4_release_folio() (v6.18) ->
    fs/buffer.c:try_to_free_buffers() (a busy buffer keeps them all).
    """
    if folio_test_dirty(folio) or folio.m.mem.test(folio.pfn, PG.writeback):
        return False
    folio_detach_private(folio)
    return True


def ext4_invalidate_folio(folio: Folio, offset: int, length: int) -> None:
    """ext4_invalidate_folio() - part of the folio is truncated: the buffers there are
    discarded; if it is the whole folio, the buffers are released (PG_private goes).

    Models: fs/ext4/inode.c:ext4_invalidate_folio() (v6.18) ->
    fs/buffer.c:block_invalidate_folio().
    """
    if offset == 0 and length == folio_nr_pages(folio) << PAGE_SHIFT:
        folio.m.mem.clear(folio.pfn, PG.dirty)
        folio_detach_private(folio)


def ext4_page_mkwrite(vmf: VmFault, folio: Folio) -> int:
    """ext4_page_mkwrite() - a shared mapping is about to write the page: attach buffers
    (delayed allocation) and dirty the folio; 0.

    Models: fs/ext4/inode.c:ext4_page_mkwrite() (v6.18) -> block_page_mkwrite().
    """
    if not folio_test_private(folio):
        folio_attach_private(folio)
    folio_mark_dirty(folio)
    return 0


def ext4_punch_hole(file: File, offset: int, length: int) -> None:
    """ext4_punch_hole() - FALLOC_FL_PUNCH_HOLE: nothing past i_size; a hole reaching past
    i_size ends after the page holding it; the page cache of the hole is truncated
    (truncate_pagecache_range(): no write-back first in data=ordered mode, so a dirty
    large folio cannot be split and is only zeroed) and the blocks of the whole pages in
    it are freed.

    Models: fs/ext4/inode.c:ext4_punch_hole() (v6.18) with
    ext4_truncate_page_cache_block_range().
    """
    from pyfolio.mm.truncate import truncate_pagecache_range

    inode = file.f_inode
    size = i_size_read(inode)
    if offset >= size:
        return
    if offset + length > size:
        length = size + PAGE_SIZE - (size & (PAGE_SIZE - 1)) - offset
    truncate_pagecache_range(inode, offset, offset + length - 1)
    first, last = -(-offset // PAGE_SIZE), (offset + length) // PAGE_SIZE
    for index in range(first, last):
        inode.i_data.pop(index, None)  # ext4_ext_remove_space()


def ext4_setattr(inode: Inode, newsize: int) -> None:
    """ext4_setattr() - ftruncate(): set i_size, truncate the page cache from it
    (truncate_pagecache(), called for every size change, an unchanged size too: a dirty
    large folio straddling it cannot be split and stays whole, pages past EOF included;
    once written back, the same ftruncate() splits it) and, unless it grew, free the
    blocks past it (ext4_truncate()).

    Models: fs/ext4/inode.c:ext4_setattr() (v6.18) with ext4_truncate().
    """
    from pyfolio.mm.truncate import truncate_pagecache

    oldsize = i_size_read(inode)
    i_size_write(inode, newsize)
    truncate_pagecache(inode, newsize)
    if newsize <= oldsize:
        first = -(-newsize // PAGE_SIZE)
        for index in [i for i in inode.i_data if i >= first]:
            del inode.i_data[index]


def ext4_evict_inode(inode: Inode) -> None:
    """ext4_evict_inode() - an unlinked inode's last reference went: drop its page cache.

    Models: fs/ext4/inode.c:ext4_evict_inode() (v6.18) -> truncate_inode_pages_final().
    """
    from pyfolio.mm.truncate import truncate_inode_pages

    truncate_inode_pages(inode.i_mapping, 0)


def ext4_new_file(sb: SuperBlock, path: str) -> Inode:
    """A new regular file at ``path`` (the part of fs/ext4/namei.c:ext4_create() and
    __ext4_new_inode() the page cache sees: a fresh inode, its folio order range set)."""
    from pyfolio.fs.ext4.file import ext4_file_operations

    inode = new_inode(sb, ext4_inode_operations, ext4_file_operations, ext4_aops)
    ext4_set_inode_mapping_order(inode)
    sb.files[path] = inode
    return inode


ext4_aops = AddressSpaceOperations("ext4_da_aops", write_begin=ext4_da_write_begin,
                                   write_end=ext4_da_write_end,
                                   release_folio=ext4_release_folio,
                                   invalidate_folio=ext4_invalidate_folio)
ext4_inode_operations = InodeOperations("ext4_file_inode_operations", setattr=ext4_setattr,
                                        evict_inode=ext4_evict_inode)
