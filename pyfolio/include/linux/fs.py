"""Files, inodes and the page cache's address_space: the VFS structures.

Models: include/linux/fs.h (v6.18): struct super_block, struct inode, struct
address_space, struct file, struct file_ra_state, struct file_operations,
struct inode_operations and struct address_space_operations (the few operations the
simulator's file systems have), i_size_read() and i_size_write().

Simplifications: no dentries or directories (a superblock keeps its files by absolute
path), no locks, no writeback control; a disk file's data on "disk" is one 64-bit stamp
per page index (``Inode.i_data``), written by writeback and read by readahead.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyfolio.lib.xarray import XArray
from pyfolio.sim.errors import VmWarning

if TYPE_CHECKING:
    from pyfolio.include.linux.mm import Folio
    from pyfolio.include.linux.mm_types import VMA
    from pyfolio.sim.machine import Machine

__all__ = ["FMODE", "BackingDevInfo", "SuperBlock", "Inode", "AddressSpace", "File", "FileRaState",
           "FileOperations", "InodeOperations", "AddressSpaceOperations", "i_size_read",
           "i_size_write", "file_inode", "new_inode", "i_mmap_lock_read", "i_mmap_unlock_read"]


class FMODE(enum.IntFlag):
    """include/linux/fs.h: the file's access mode (f_mode)."""

    READ = 0x1
    WRITE = 0x2


@dataclass(frozen=True, slots=True)
class AddressSpaceOperations:
    """struct address_space_operations: what the page cache asks the file system.

    ``write_begin(file, mapping, pos, len) -> folio`` finds or creates the locked,
    referenced folio a write step goes into and ``write_end(file, mapping, pos, len,
    folio)`` finishes the step (marks it dirty, grows i_size, unlocks and puts it);
    ``release_folio(folio) -> bool``: drop the folio's private data (buffer heads), False
    if it cannot now (filemap_release_folio() then fails); ``invalidate_folio(folio,
    offset, length)``: a range of the folio is being truncated."""

    name: str
    write_begin: Callable[..., Folio] | None = None
    write_end: Callable[..., None] | None = None
    release_folio: Callable[[Folio], bool] | None = None
    invalidate_folio: Callable[[Folio, int, int], None] | None = None


@dataclass(frozen=True, slots=True)
class FileOperations:
    """struct file_operations: the calls the VFS makes on an open file (each takes the
    ``File`` first, as the kernel's do)."""

    name: str
    read_iter: Callable[..., list[int]]
    write_iter: Callable[..., int]
    mmap: Callable[[File, VMA], None]
    fallocate: Callable[[File, int, int, int], None]
    fsync: Callable[[File], None]
    get_unmapped_area: Callable[..., int] | None = None


@dataclass(frozen=True, slots=True)
class InodeOperations:
    """struct inode_operations: ``setattr(inode, size)`` changes i_size (truncate);
    ``evict_inode(inode)`` (struct super_operations' in the kernel) frees the page cache
    of an inode whose last link and reference are gone."""

    name: str
    setattr: Callable[[Inode, int], None]
    evict_inode: Callable[[Inode], None]


@dataclass(frozen=True, slots=True)
class BackingDevInfo:
    """struct backing_dev_info (include/linux/backing-dev-defs.h): the device's readahead
    maximum ``ra_pages`` (read_ahead_kb / 4) and optimal I/O size ``io_pages``
    (max_sectors_kb / 4), in pages. The defaults are the lab machine's virtio disk:
    read_ahead_kb 8192, max_sectors_kb 4096 (the kernel's usual default is 128 KiB)."""

    ra_pages: int = 2048
    io_pages: int = 1024


@dataclass(eq=False)
class SuperBlock:
    """struct super_block: one mounted file system. ``s_fs_info`` is the file system's
    own (struct shmem_sb_info for tmpfs); ``s_bdi`` its device (readahead sizes; tmpfs
    has none: ra_pages 0); ``files`` stands in for the dentry tree."""

    m: Machine
    s_type: str
    s_id: str
    s_fs_info: Any = None
    s_bdi: BackingDevInfo = field(default_factory=BackingDevInfo)
    files: dict[str, Inode] = field(default_factory=dict)


@dataclass(eq=False)
class Inode:
    """struct inode: size in bytes, link count (0 for a memfd or an unlinked file), its
    page cache, the file system's operations and private info (``i_private``: struct
    shmem_inode_info for tmpfs), and the data on disk (``i_data``: stamp per page index,
    disk file systems only)."""

    i_ino: int
    i_sb: SuperBlock
    i_op: InodeOperations
    i_fop: FileOperations
    i_size: int = 0
    i_nlink: int = 1
    #: references from open files (struct file holds one, iput() drops it)
    i_count: int = 0
    i_private: Any = None
    i_data: dict[int, int] = field(default_factory=dict)
    i_mapping: AddressSpace = field(init=False)

    def __hash__(self) -> int:
        return self.i_ino


@dataclass(eq=False)
class AddressSpace:
    """struct address_space: the page cache of one inode. ``i_pages`` holds the folios
    (their head PFNs) as multi-index entries; ``i_mmap`` is the set of VMAs mapping the
    file (the kernel's interval tree, which rmap_walk_file() searches); ``flags`` holds
    the AS_* bits, among them the folio order range (include/linux/pagemap.h);
    ``i_mmap_readers`` counts the holders of ``i_mmap_rwsem`` for read (0 between
    operations: a reader left behind would make the next i_mmap_lock_write(), in mmap()
    or munmap() of this file, wait forever)."""

    id: int
    host: Inode
    a_ops: AddressSpaceOperations
    i_pages: XArray = field(default_factory=XArray)
    i_mmap: set[VMA] = field(default_factory=set)
    nrpages: int = 0
    flags: int = 0
    i_mmap_readers: int = 0

    def __hash__(self) -> int:
        return self.id


@dataclass(eq=False)
class FileRaState:
    """struct file_ra_state: the readahead window of an open file (mm/readahead.c):
    ``start``, ``size``, ``async_size`` in pages, the folio ``order`` it reads with,
    ``ra_pages`` its maximum, ``mmap_miss`` and ``prev_pos`` (the last read's end)."""

    start: int = 0
    size: int = 0
    async_size: int = 0
    ra_pages: int = 0
    order: int = 0
    mmap_miss: int = 0
    prev_pos: int = -1


@dataclass(eq=False)
class File:
    """struct file: an open file. ``f_count`` counts the references (file descriptors
    and mappings: a VMA holds one, get_file())."""

    f_inode: Inode
    f_mode: FMODE
    f_path: str = ""
    f_ra: FileRaState = field(default_factory=FileRaState)
    f_count: int = 1

    @property
    def f_mapping(self) -> AddressSpace:
        return self.f_inode.i_mapping

    @property
    def f_op(self) -> FileOperations:
        return self.f_inode.i_fop


def file_inode(f: File) -> Inode:
    """file_inode() - the inode an open file refers to.

    Models: include/linux/fs.h:file_inode() (v6.18).
    """
    return f.f_inode


def i_size_read(inode: Inode) -> int:
    """i_size_read() - the file's size in bytes.

    Models: include/linux/fs.h:i_size_read() (v6.18).
    """
    return inode.i_size


def i_size_write(inode: Inode, i_size: int) -> None:
    """i_size_write() - set the file's size in bytes.

    Models: include/linux/fs.h:i_size_write() (v6.18).
    """
    inode.i_size = i_size


def i_mmap_lock_read(mapping: AddressSpace) -> None:
    """i_mmap_lock_read() - take the mapping's i_mmap_rwsem for read (rmap walks of the
    file, and __folio_split() of a page-cache folio, hold it).

    Models: include/linux/fs.h:i_mmap_lock_read() (v6.18): down_read(&mapping->i_mmap_rwsem).
    """
    mapping.i_mmap_readers += 1


def i_mmap_unlock_read(mapping: AddressSpace) -> None:
    """i_mmap_unlock_read() - release a read hold of the mapping's i_mmap_rwsem.

    Models: include/linux/fs.h:i_mmap_unlock_read() (v6.18): up_read(&mapping->i_mmap_rwsem).
    """
    if mapping.i_mmap_readers <= 0:
        raise VmWarning("i_mmap_unlock_read() of an i_mmap_rwsem not held for read")
    mapping.i_mmap_readers -= 1


def new_inode(sb: SuperBlock, i_op: InodeOperations, i_fop: FileOperations,
              a_ops: AddressSpaceOperations) -> Inode:
    """new_inode() - a fresh inode on ``sb`` with an empty page cache.

    Models: fs/inode.c:new_inode() (v6.18), with inode_init_always() setting up
    ``i_mapping`` (the inode's own i_data address_space).
    """
    m = sb.m
    inode = Inode(m.next_ino, sb, i_op, i_fop)
    m.next_ino += 1
    inode.i_mapping = AddressSpace(m.next_mapping_id, inode, a_ops)
    m.mappings[m.next_mapping_id] = inode.i_mapping
    m.next_mapping_id += 1
    return inode
