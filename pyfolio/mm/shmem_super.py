"""tmpfs mounts of one's own, with the ``huge=`` option, and files on them.

Models: mm/shmem.c (v6.18): shmem_fill_super() (a new tmpfs superblock whose
``shmem_sb_info.huge`` is the mount's ``huge=``, parsed by shmem_parse_one(): never,
always, within_size or advise; ``deny`` and ``force`` are sysfs-only values) and
shmem_create() / shmem_mknod() (a linked regular file on it). A file's folio orders then
follow its mount's policy for write() and fallocate(), and, while it is linked, for faults
too (only the PMD order for a fault: :func:`pyfolio.mm.shmem.shmem_huge_global_enabled`);
a file unlinked before it is mapped is anonymous shared memory
(:func:`pyfolio.mm.shmem.shmem_mmap`). Measured on 6.18.44 with mounts of the research's
own (issue 17's notes, section 1.8); the simulator has no directories, so a mount point is
a path prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import BackingDevInfo, SuperBlock, new_inode
from pyfolio.include.linux.pagemap import mapping_set_large_folios
from pyfolio.include.linux.shmem_fs import SHMEM_MOUNT_POLICIES, ShmemInodeInfo, ShmemSbInfo
from pyfolio.sim.errors import EBUSY, EINVAL, MmError

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import Inode
    from pyfolio.sim.machine import Machine

__all__ = ["shmem_fill_super", "shmem_create", "tmpfs_mount_of", "TMPFS_KEY"]

#: how a tmpfs mounted at ``path`` is keyed in ``Machine.super_blocks``
TMPFS_KEY = "tmpfs:{}"


def shmem_fill_super(m: Machine, mountpoint: str, huge: str = "never") -> SuperBlock:
    """shmem_fill_super() - ``mount -t tmpfs -o huge=<huge> tmpfs <mountpoint>``.

    Models: mm/shmem.c:shmem_fill_super() with the ``huge=`` option of shmem_parse_one()
    (v6.18). MmError(EINVAL) for a value tmpfs does not take (``deny`` and ``force``
    included) or a mount point that is not an absolute directory path other than "/",
    MmError(EBUSY) if a tmpfs is already mounted there; nothing changes then.
    """
    if not isinstance(huge, str) or huge not in SHMEM_MOUNT_POLICIES:
        raise MmError(EINVAL, f"tmpfs: huge={huge!r} is not one of "
                              f"{', '.join(SHMEM_MOUNT_POLICIES)}")
    if not isinstance(mountpoint, str) or not mountpoint.startswith("/") or \
            mountpoint.rstrip("/") == "" or "," in mountpoint:
        raise MmError(EINVAL, f"mount: {mountpoint!r} is not an absolute directory path "
                              f"other than '/' (such as '/mnt/huge')")
    key = TMPFS_KEY.format(mountpoint.rstrip("/"))
    if key in m.super_blocks:
        raise MmError(EBUSY, f"mount: a tmpfs is already mounted on {mountpoint}")
    sb = SuperBlock(m, "tmpfs", mountpoint.rstrip("/"), ShmemSbInfo(huge=huge))
    sb.s_bdi = BackingDevInfo(ra_pages=0, io_pages=0)  # noop_backing_dev_info
    m.super_blocks[key] = sb
    m.trace.emit("shmem_fill_super", changes={"mounted": sb.s_id}, huge=huge)
    return sb


def tmpfs_mount_of(m: Machine, path: str) -> SuperBlock | None:
    """The tmpfs mounted on the longest prefix directory of ``path``, or None (then the
    path is on the disk file system)."""
    best: SuperBlock | None = None
    for sb in m.super_blocks.values():
        if sb.s_type == "tmpfs" and sb.s_id != "shm_mnt" and path.startswith(sb.s_id + "/") \
                and (best is None or len(sb.s_id) > len(best.s_id)):
            best = sb
    return best


def shmem_create(sb: SuperBlock, path: str) -> Inode:
    """shmem_create() - a new, linked regular file at ``path`` on the tmpfs ``sb``.

    Models: mm/shmem.c:shmem_create() -> shmem_mknod() -> __shmem_get_inode() (v6.18):
    a fresh inode whose mapping takes large folios (mapping_set_large_folios()), link
    count 1.
    """
    from pyfolio.mm.shmem import shmem_aops, shmem_file_operations
    from pyfolio.mm.shmem_truncate import shmem_inode_operations

    inode = new_inode(sb, shmem_inode_operations, shmem_file_operations, shmem_aops)
    inode.i_private = ShmemInodeInfo()
    mapping_set_large_folios(inode.i_mapping)
    inode.i_nlink = 1
    sb.files[path] = inode
    return inode
