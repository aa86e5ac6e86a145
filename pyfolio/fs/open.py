"""Opening, closing, truncating and fallocating files: the VFS entry points.

Models: fs/open.c (v6.18): do_sys_open() (the part that finds or creates a regular file
on the disk file system and opens it), filp_close(), do_ftruncate() and vfs_fallocate();
with fs/file_table.c:fput() and fs/inode.c:iput(), which evict an unlinked inode (a
memfd, a MAP_SHARED|MAP_ANONYMOUS object) once nothing refers to it. Each checks its
arguments first and changes nothing when it fails, with the kernel's errno.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import FMODE, File, Inode
from pyfolio.sim.errors import EBADF, EFBIG, EINVAL, ENOENT, EOPNOTSUPP, MmError

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["FALLOC_FL_KEEP_SIZE", "FALLOC_FL_PUNCH_HOLE", "MAX_LFS_FILESIZE", "do_sys_open",
           "filp_close", "fput", "iput", "do_ftruncate", "vfs_fallocate"]

#: include/uapi/linux/falloc.h
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
#: include/linux/fs.h: the largest file offset on a 64-bit kernel (s_maxbytes of ext4
#: with 4 KiB blocks is 16 TiB; the simulator uses that)
MAX_LFS_FILESIZE = 16 << 40


def do_sys_open(m: Machine, path: str, create: bool, mode: FMODE) -> File:
    """do_sys_open() - open the regular file ``path`` on the disk file system ("/"), or
    on a tmpfs mounted on a directory above it (``System.mount_tmpfs``), creating it with
    ``create`` (O_CREAT); ENOENT if it does not exist, EINVAL for a
    path that is not absolute or names a directory.

    Models: fs/open.c:do_sys_open() (v6.18) with the lookup reduced to the superblock's
    table of files (the simulator has no directories).
    """
    from pyfolio.fs.ext4.inode import ext4_new_file
    from pyfolio.fs.ext4.super import ext4_root

    if not isinstance(path, str) or not path.startswith("/") or path.endswith("/"):
        raise MmError(EINVAL, f"open: {path!r} is not an absolute path to a file "
                              "(such as '/data/f')")
    from pyfolio.mm.shmem_super import shmem_create, tmpfs_mount_of

    tmpfs = tmpfs_mount_of(m, path)
    sb = tmpfs or ext4_root(m)
    inode = sb.files.get(path)
    if inode is None:
        if not create:
            raise MmError(ENOENT, f"open: {path} does not exist")
        inode = shmem_create(sb, path) if tmpfs is not None else ext4_new_file(sb, path)
    inode.i_count += 1
    f = File(inode, mode, path)
    f.f_ra.ra_pages = sb.s_bdi.ra_pages  # file_ra_state_init()
    return f


def iput(inode: Inode) -> None:
    """iput() - drop a reference to an inode; an unlinked one with none left is evicted
    (its page cache freed, ``i_op->evict_inode``) and its mapping forgotten.

    Models: fs/inode.c:iput() (v6.18) with iput_final() and evict().
    """
    inode.i_count -= 1
    if inode.i_count == 0 and inode.i_nlink == 0:
        inode.i_op.evict_inode(inode)
        inode.i_sb.m.mappings.pop(inode.i_mapping.id, None)


def fput(file: File) -> None:
    """fput() - drop a reference to an open file (a descriptor or a VMA); the last one
    releases it (__fput(): iput() of its inode).

    Models: fs/file_table.c:fput() (v6.18).
    """
    file.f_count -= 1
    if file.f_count == 0:
        iput(file.f_inode)


def filp_close(file: File) -> None:
    """filp_close() - close(): the descriptor's reference goes (mappings keep theirs).

    Models: fs/open.c:filp_close() (v6.18).
    """
    fput(file)


def do_ftruncate(file: File, length: int) -> None:
    """do_ftruncate() - ftruncate(): EINVAL for a negative length or a file not open for
    writing, EFBIG past the maximum file size; then ``i_op->setattr``.

    Models: fs/open.c:do_ftruncate() (v6.18).
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise MmError(EINVAL, f"ftruncate: length {length!r} must be a non-negative int")
    if not file.f_mode & FMODE.WRITE:
        raise MmError(EINVAL, "ftruncate: the file is not open for writing")
    if length > MAX_LFS_FILESIZE:
        raise MmError(EFBIG, f"ftruncate: {length} is larger than the largest file")
    file.f_inode.i_op.setattr(file.f_inode, length)


def vfs_fallocate(file: File, mode: int, offset: int, length: int) -> None:
    """vfs_fallocate() - fallocate(): EINVAL for a negative offset or a length <= 0,
    EOPNOTSUPP for an unknown mode or a hole punch without FALLOC_FL_KEEP_SIZE, EBADF for
    a file not open for writing, EFBIG past the maximum file size; then ``f_op->fallocate``.

    Models: fs/open.c:vfs_fallocate() (v6.18).
    """
    if offset < 0 or length <= 0:
        raise MmError(EINVAL, f"fallocate: offset {offset} must be >= 0 and length {length}"
                              " > 0")
    if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
        raise MmError(EOPNOTSUPP, f"fallocate: mode {mode:#x} is not supported")
    if mode & FALLOC_FL_PUNCH_HOLE and not mode & FALLOC_FL_KEEP_SIZE:
        raise MmError(EOPNOTSUPP, "fallocate: FALLOC_FL_PUNCH_HOLE needs FALLOC_FL_KEEP_SIZE")
    if not file.f_mode & FMODE.WRITE:
        raise MmError(EBADF, "fallocate: the file is not open for writing")
    if offset + length > MAX_LFS_FILESIZE:
        raise MmError(EFBIG, f"fallocate: {offset + length} is past the largest file")
    file.f_op.fallocate(file, mode, offset, length)
