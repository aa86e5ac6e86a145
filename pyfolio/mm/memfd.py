"""memfd_create(): an anonymous file in memory.

Models: mm/memfd.c (v6.18): memfd_create() makes an unlinked shmem file of size 0 named
"memfd:<name>" (shmem_file_setup()); it follows the top-level shmem_enabled for writes
and, being unlinked, the per-size shmem_enabled knobs for faults in its mappings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import File
from pyfolio.mm.shmem import shmem_file_setup
from pyfolio.sim.errors import EINVAL, MmError

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["MFD_NAME_MAX_LEN", "memfd_create"]

#: mm/memfd.c: NAME_MAX - strlen("memfd:")
MFD_NAME_MAX_LEN = 255 - 6


def memfd_create(m: Machine, name: str) -> File:
    """memfd_create() - a new, empty, unlinked shmem file; EINVAL for a name that is not a
    string or longer than MFD_NAME_MAX_LEN.

    Models: mm/memfd.c:memfd_create() (v6.18).
    """
    if not isinstance(name, str) or len(name) > MFD_NAME_MAX_LEN:
        raise MmError(EINVAL, f"memfd_create: name {name!r} is not a string of at most "
                              f"{MFD_NAME_MAX_LEN} characters")
    return shmem_file_setup(m, "memfd:" + name, 0)
