"""Mounting the simulated disk file system.

Models: fs/ext4/super.c (v6.18): ext4_fill_super() reduced to what the page cache sees:
a superblock with 4 KiB blocks, data=ordered (so large folios are allowed), no verity,
no encryption, on a disk whose readahead window is the lab machine's (read_ahead_kb
8192, max_sectors_kb 4096: ``BackingDevInfo(ra_pages=2048, io_pages=1024)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import BackingDevInfo, SuperBlock

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["Ext4SbInfo", "ext4_fill_super", "ext4_root"]


@dataclass(frozen=True, slots=True)
class Ext4SbInfo:
    """struct ext4_sb_info, the mount options and features the page cache depends on:
    ``data`` ("ordered", "writeback" or "journal"), the verity and encrypt features, and
    the block size (``i_blkbits`` of every inode)."""

    data: str = "ordered"
    verity: bool = False
    encrypt: bool = False
    blkbits: int = 12


def ext4_fill_super(m: Machine, s_id: str = "/dev/vda", sbi: Ext4SbInfo | None = None,
                    bdi: BackingDevInfo | None = None) -> SuperBlock:
    """ext4_fill_super() - a mounted ext4 file system (the simulator's "/").

    Models: fs/ext4/super.c:ext4_fill_super() (v6.18).
    """
    sb = SuperBlock(m, "ext4", s_id, sbi or Ext4SbInfo(), bdi or BackingDevInfo())
    m.super_blocks["/"] = sb
    return sb


def ext4_root(m: Machine) -> SuperBlock:
    """The file system mounted at "/", mounted on first use."""
    return m.super_blocks.get("/") or ext4_fill_super(m)
