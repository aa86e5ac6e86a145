"""One exception hierarchy for the simulator; each error carries the kernel errno.

A failed operation leaves the simulated machine exactly as it was.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "EINVAL", "EBUSY", "EAGAIN", "ENOMEM", "EFAULT", "ENOENT", "EPERM", "EEXIST", "EBADF",
    "EACCES", "ENODEV", "EOPNOTSUPP", "EFBIG", "EMFILE", "EIO",
    "MmError", "SegmentationFault", "BusError", "VmWarning", "KernelBug",
]

EINVAL = _errno.EINVAL
EBUSY = _errno.EBUSY
EAGAIN = _errno.EAGAIN
ENOMEM = _errno.ENOMEM
EFAULT = _errno.EFAULT
ENOENT = _errno.ENOENT
EPERM = _errno.EPERM
EEXIST = _errno.EEXIST
EBADF = _errno.EBADF
EACCES = _errno.EACCES
ENODEV = _errno.ENODEV
EOPNOTSUPP = _errno.EOPNOTSUPP
EFBIG = _errno.EFBIG
EMFILE = _errno.EMFILE
EIO = _errno.EIO


#: the names Linux uses where Python's errno.errorcode picks an alias (95 is ENOTSUP there)
_NAMES = {EOPNOTSUPP: "EOPNOTSUPP"}


class MmError(Exception):
    """An operation the kernel would refuse; ``errno`` is the kernel's (positive) errno."""

    def __init__(self, errno: int, message: str) -> None:
        self.errno = errno
        self.errname = _NAMES.get(errno) or _errno.errorcode.get(errno, str(errno))
        super().__init__(f"{self.errname}: {message}")


class SegmentationFault(MmError):
    """An access outside any VMA or against its protection: the kernel sends SIGSEGV."""

    def __init__(self, message: str) -> None:
        super().__init__(EFAULT, f"SIGSEGV: {message}")


class BusError(MmError):
    """An access to a file mapping beyond the end of its file (VM_FAULT_SIGBUS): the kernel
    sends SIGBUS. Carries EFAULT, as a read() into such memory would fail."""

    def __init__(self, message: str) -> None:
        super().__init__(EFAULT, f"SIGBUS: {message}")


class VmWarning(AssertionError):
    """A VM_WARN_ON-style guard fired: the simulator's state or a caller broke a kernel rule."""


class KernelBug(VmWarning):
    """The modelled kernel code itself goes wrong here: a VM_BUG_ON that a CONFIG_DEBUG_VM
    kernel would hit on this path (a kernel bug, not a misuse of the simulator). The
    machine is left as the kernel would leave it at the BUG: mid-operation, not
    consistent; start a new System."""
