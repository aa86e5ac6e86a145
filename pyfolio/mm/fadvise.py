"""posix_fadvise(): what a program tells the kernel about its use of a file.

Models: mm/fadvise.c (v6.18): generic_fadvise() for POSIX_FADV_DONTNEED (start writeback
of the range, then drop its clean, unmapped folios from the page cache). tmpfs has no
backing device (noop_backing_dev_info): the advice is accepted and ignored there.
"""

from __future__ import annotations

from pyfolio.include.linux.fs import File
from pyfolio.sim.errors import EINVAL, MmError
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE

__all__ = ["FADV", "generic_fadvise"]

#: include/uapi/linux/fadvise.h (the advice the simulator knows)
FADV = {"normal": 0, "random": 1, "sequential": 2, "willneed": 3, "dontneed": 4,
        "noreuse": 5}


def generic_fadvise(file: File, offset: int, length: int, advice: str) -> None:
    """generic_fadvise() - act on ``advice`` for bytes [offset, offset + length) (length 0:
    to the end). Only ``dontneed`` does anything here: the range is written back
    (__filemap_fdatawrite_range(), done at once) and its clean, unmapped folios are
    evicted (invalidate_mapping_pages()); the rest are accepted and not modelled.
    EINVAL for unknown advice or a negative offset or length.

    Models: mm/fadvise.c:generic_fadvise() (v6.18).
    """
    from pyfolio.mm.filemap import file_write_and_wait_range
    from pyfolio.mm.truncate import invalidate_mapping_pages

    if advice not in FADV:
        raise MmError(EINVAL, f"fadvise: advice {advice!r} is not one of {', '.join(FADV)}")
    if offset < 0 or length < 0:
        raise MmError(EINVAL, f"fadvise: offset {offset} and length {length} must be >= 0")
    from pyfolio.mm.shmem import shmem_mapping

    if advice != "dontneed" or shmem_mapping(file.f_mapping):
        return  # tmpfs: noop_backing_dev_info, "no bad return value, but ignore advice"
    end = (1 << 62) if not length else offset + length - 1
    file_write_and_wait_range(file, offset, end)
    start_index = (offset + PAGE_SIZE - 1) >> PAGE_SHIFT
    invalidate_mapping_pages(file.f_mapping, start_index, end >> PAGE_SHIFT)
