"""tmpfs's per-mount and per-inode information.

Models: include/linux/shmem_fs.h (v6.18): struct shmem_sb_info (the mount's ``huge=``
policy) and struct shmem_inode_info (``fallocend``, the end of the last fallocate() that
kept the size, and the inode's place on the superblock's list of inodes with huge folios
past EOF, ``shrinklist``). Policies are kept as the names sysfs and the ``huge=`` mount
option use ("never", "always", "within_size", "advise"; the SHMEM_HUGE_* values of
mm/shmem.c).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import Inode

__all__ = ["ShmemSbInfo", "ShmemInodeInfo", "SHMEM_I", "SHMEM_SB", "SHMEM_MOUNT_POLICIES"]

#: the values of the tmpfs ``huge=`` mount option (mm/shmem.c: shmem_parse_huge())
SHMEM_MOUNT_POLICIES = ("never", "always", "within_size", "advise")


@dataclass(eq=False)
class ShmemSbInfo:
    """struct shmem_sb_info: ``huge`` is the mount's policy (for the internal mount
    ``shm_mnt`` it follows the top-level shmem_enabled); ``shrinklist`` holds the
    inodes whose last folio is a huge one reaching past EOF (shmem_unused_huge_shrink())."""

    huge: str = "never"
    shrinklist: list[Inode] = field(default_factory=list)


@dataclass(eq=False)
class ShmemInodeInfo:
    """struct shmem_inode_info: ``alloced`` is the pages charged to the inode (in the page
    cache or swapped; shmem_recalc_inode() keeps it), ``swapped`` those in swap;
    ``fallocend`` (pages) is how far fallocate() allocated past i_size with
    FALLOC_FL_KEEP_SIZE: a folio split keeps pieces below it."""

    alloced: int = 0
    swapped: int = 0
    fallocend: int = 0
    flags: int = 0


def SHMEM_I(inode: Inode) -> ShmemInodeInfo:
    """SHMEM_I() - the shmem_inode_info of a tmpfs inode.

    Models: include/linux/shmem_fs.h:SHMEM_I() (v6.18).
    """
    info = inode.i_private
    assert isinstance(info, ShmemInodeInfo), "not a shmem inode"
    return info


def SHMEM_SB(inode: Inode) -> ShmemSbInfo:
    """SHMEM_SB() - the shmem_sb_info of the inode's superblock.

    Models: include/linux/shmem_fs.h:SHMEM_SB() (v6.18), given an inode instead of a
    super_block.
    """
    sbinfo = inode.i_sb.s_fs_info
    assert isinstance(sbinfo, ShmemSbInfo), "not a tmpfs superblock"
    return sbinfo
