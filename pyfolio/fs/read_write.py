"""pread() and pwrite(): the VFS read and write entry points.

Models: fs/read_write.c (v6.18): ksys_pread64() / vfs_read() and ksys_pwrite64() /
vfs_write(), which check the descriptor's mode and the offset and call the file
system's ``read_iter`` / ``write_iter``. The data is a 64-bit stamp per page (see
:mod:`pyfolio.mm.filemap`).
"""

from __future__ import annotations

from pyfolio.fs.open import MAX_LFS_FILESIZE
from pyfolio.include.linux.fs import FMODE, File
from pyfolio.sim.errors import EBADF, EFBIG, EINVAL, MmError

__all__ = ["ksys_pread64", "ksys_pwrite64"]


def _check_pos(what: str, pos: int, count: int) -> None:
    for name, v in (("offset", pos), ("length", count)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise MmError(EINVAL, f"{what}: {name} {v!r} must be a non-negative int")


def ksys_pread64(file: File, pos: int, count: int) -> list[int]:
    """ksys_pread64() - read ``count`` bytes at ``pos``: the stamps of the pages read
    (none at or past EOF). EINVAL for a negative offset, EBADF for a file not open for
    reading.

    Models: fs/read_write.c:ksys_pread64() and vfs_read() (v6.18).
    """
    _check_pos("pread", pos, count)
    if not file.f_mode & FMODE.READ:
        raise MmError(EBADF, "pread: the file is not open for reading")
    return file.f_op.read_iter(file, pos, count)


def ksys_pwrite64(file: File, pos: int, count: int, value: int) -> int:
    """ksys_pwrite64() - write ``count`` bytes stamped ``value`` at ``pos``; the bytes
    written. EINVAL for a negative offset or length, EBADF for a file not open for
    writing, EFBIG past the largest file.

    Models: fs/read_write.c:ksys_pwrite64() and vfs_write() (v6.18).
    """
    _check_pos("pwrite", pos, count)
    if not file.f_mode & FMODE.WRITE:
        raise MmError(EBADF, "pwrite: the file is not open for writing")
    if pos + count > MAX_LFS_FILESIZE:
        raise MmError(EFBIG, f"pwrite: {pos + count} is past the largest file")
    if not count:
        return 0
    return file.f_op.write_iter(file, pos, count, value)
