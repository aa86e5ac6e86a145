"""Removing a file's name: unlink().

Models: fs/namei.c (v6.18): do_unlinkat() -> vfs_unlink() (the file system's ``unlink``
drops the link count) and the final iput() of the dentry's inode reference: an inode with
no name left and nothing holding it open or mapped is evicted (its page cache freed); one
still open or mapped lives on, unlinked, until the last fput(). The simulator has no
directories: a file's name is its absolute path in its superblock's table of files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.sim.errors import EINVAL, ENOENT, MmError

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["do_unlinkat"]


def do_unlinkat(m: Machine, path: str) -> None:
    """do_unlinkat() - remove the name ``path`` (on a tmpfs mounted with
    ``System.mount_tmpfs`` if one is mounted above it, else on the disk file system).

    Models: fs/namei.c:do_unlinkat() (v6.18). MmError(ENOENT) if there is no such file,
    MmError(EINVAL) for a path that is not absolute; nothing changes then.
    """
    from pyfolio.fs.ext4.super import ext4_root
    from pyfolio.mm.shmem_super import tmpfs_mount_of

    if not isinstance(path, str) or not path.startswith("/") or path.endswith("/"):
        raise MmError(EINVAL, f"unlink: {path!r} is not an absolute path to a file")
    sb = tmpfs_mount_of(m, path) or ext4_root(m)
    inode = sb.files.get(path)
    if inode is None:
        raise MmError(ENOENT, f"unlink: {path} does not exist")
    del sb.files[path]
    inode.i_nlink = 0  # shmem_unlink() / ext4_unlink(): drop_nlink()
    if inode.i_count == 0:  # iput() of the dentry's reference: iput_final() -> evict()
        inode.i_op.evict_inode(inode)
        m.mappings.pop(inode.i_mapping.id, None)
    m.trace.emit("do_unlinkat", changes={"nlink": 0}, path=path, ino=inode.i_ino)
