"""ext4's fallocate().

Models: fs/ext4/extents.c (v6.18): ext4_fallocate(), of which the simulator has hole
punching (ext4_punch_hole()) and plain allocation (the blocks are reserved: i_size grows
unless FALLOC_FL_KEEP_SIZE; the page cache is not touched).
"""

from __future__ import annotations

from pyfolio.include.linux.fs import File, i_size_read, i_size_write
from pyfolio.sim.errors import EOPNOTSUPP, MmError

__all__ = ["ext4_fallocate"]

_KEEP_SIZE, _PUNCH_HOLE = 0x01, 0x02


def ext4_fallocate(file: File, mode: int, offset: int, length: int) -> None:
    """ext4_fallocate() - FALLOC_FL_PUNCH_HOLE goes to ext4_punch_hole(); mode 0 or
    FALLOC_FL_KEEP_SIZE allocates blocks (i_size grows without KEEP_SIZE); other modes
    EOPNOTSUPP.

    Models: fs/ext4/extents.c:ext4_fallocate() (v6.18).
    """
    from pyfolio.fs.ext4.inode import ext4_punch_hole

    if mode & ~(_KEEP_SIZE | _PUNCH_HOLE):
        raise MmError(EOPNOTSUPP, f"fallocate mode {mode:#x} is not supported by ext4 here")
    if mode & _PUNCH_HOLE:
        ext4_punch_hole(file, offset, length)
        return
    inode = file.f_inode
    if not mode & _KEEP_SIZE and offset + length > i_size_read(inode):
        i_size_write(inode, offset + length)
