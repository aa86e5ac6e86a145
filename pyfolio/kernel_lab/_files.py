"""The kernel lab child's steps on a file: create it, write and read it, map it, punch
holes, truncate it, and read its page cache after each step.

Used by :mod:`pyfolio.kernel_lab._child` for scenarios of
:mod:`pyfolio.kernel_lab.file_scenarios`. The file is the run's own: a memfd, or a file in
a directory of its own on the disk file system (removed with the directory when the run
ends), or the object behind a MAP_SHARED|MAP_ANONYMOUS mapping. Nothing else is touched.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyfolio.kernel_lab import readers
from pyfolio.kernel_lab.file_scenarios import EXT4_DIR_NAME, cache_record

if TYPE_CHECKING:
    from pyfolio.kernel_lab._child import _Run
    from pyfolio.kernel_lab.scenarios import Step

__all__ = ["FILE_OPS", "do_file_step", "cache_of", "cleanup", "ext4_dir", "warm_up"]

#: the steps this module runs
FILE_OPS = ("create", "pwrite", "pread", "fsync", "evict", "punch", "ftruncate",
            "fork_and_read_in_child")
PAGE, PMD = 4096, 2 << 20
PROT_READ, PROT_WRITE = 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 1, 2, 0x10, 0x20, 0x4000
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 0x01, 0x02

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def ext4_dir(root: str | Path = "/") -> str:
    """A new directory of this process on the disk file system (ext4), or Unavailable."""
    base = Path(tempfile.gettempdir())
    kind = readers.fs_type(base, root)
    if kind != "ext4":
        raise readers.Unavailable(f"unavailable: {base} is on {kind or 'an unknown file '}"
                                  "system, not ext4: no disk file to experiment on")
    path = base / f"{EXT4_DIR_NAME}-{os.getpid()}"
    path.mkdir(mode=0o700)
    return str(path)


def _map_file(run: _Run, s: Step) -> None:
    """Map the file (or shared anonymous memory) at a 2 MiB-aligned address of a PROT_NONE
    reservation: arg "shared" / "private", with ",r" for PROT_READ only."""
    shared = s.arg.startswith("shared")
    prot = PROT_READ | (0 if s.arg.endswith(",r") else PROT_WRITE)
    reserve = _libc.mmap(None, s.length + 2 * PMD, 0, MAP_PRIVATE | MAP_ANONYMOUS
                         | MAP_NORESERVE, -1, 0)
    if reserve in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap of the reservation failed")
    base = (reserve + PMD + PMD - 1) & ~(PMD - 1)
    flags = (MAP_SHARED if shared else MAP_PRIVATE) | MAP_FIXED
    fd = run.fd
    if run.backing == "shared_anon":
        flags, fd = flags | MAP_ANONYMOUS, -1
    got = _libc.mmap(base, s.length, prot, flags, fd, s.off)
    if got != base:
        raise OSError(ctypes.get_errno(), "mmap MAP_FIXED of the file failed")
    run.length, run.base = s.length, int(base)


def do_file_step(run: _Run, s: Step) -> None:
    """One step on the scenario's file (see :data:`FILE_OPS`, and ``mmap``)."""
    if s.op == "create":
        if run.backing == "memfd":
            run.fd = os.memfd_create("lab", 0)
        elif run.backing == "ext4":
            run.dir = ext4_dir(run.root)
            run.fd = os.open(f"{run.dir}/file", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        if s.length and run.fd >= 0:
            os.ftruncate(run.fd, s.length)
    elif s.op == "mmap":
        _map_file(run, s)
    elif s.op == "pwrite":
        os.pwrite(run.fd, b"\x5a" * s.length, s.off)
    elif s.op == "pread":
        chunk = int(s.arg or s.length)
        for pos in range(s.off, s.off + s.length, chunk):
            os.pread(run.fd, min(chunk, s.off + s.length - pos), pos)
    elif s.op == "fsync":
        os.fsync(run.fd)
    elif s.op == "evict":
        os.fsync(run.fd)
        os.posix_fadvise(run.fd, 0, 0, os.POSIX_FADV_DONTNEED)
    elif s.op == "punch":
        if _libc.fallocate(run.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s.off,
                           s.length):
            e = ctypes.get_errno()
            raise OSError(e, f"fallocate: {errno.errorcode.get(e, e)}")
    elif s.op == "ftruncate":
        os.ftruncate(run.fd, s.length)
    elif s.op == "fork_and_read_in_child":
        _fork_and_read(run, run.base + s.off, s.length)
    else:
        raise ValueError(f"unknown file step {s.op!r}")


def _fork_and_read(run: _Run, addr: int, length: int) -> None:
    """fork(); the child reads one byte of every page of [addr, addr + length), reports,
    and waits until the parent says exit (child_exit): the child process of
    ``_Run._fork()``, told to read (``_Run._tell_child()``)."""
    run._fork(addr, write=False)
    run._tell_child(b"r", addr, length)


def cache_of(run: _Run) -> Any:
    """The page cache record of the scenario's file (None without a file descriptor)."""
    if run.fd < 0:
        return None
    size = os.fstat(run.fd).st_size
    return cache_record(readers.page_cache_orders(run.fd, size, run.root),
                        (size + PAGE - 1) // PAGE)


def warm_up(run: _Run) -> None:
    """Run the code paths of the steps once on a throwaway memfd before the first step, so
    that the interpreter's own first-use allocations (a few kB of RssAnon) do not land in
    the first step's record."""
    fd = os.memfd_create("warm-up", 0)
    try:
        os.ftruncate(fd, PAGE)
        os.pwrite(fd, b"\x5a", 0)
        os.pread(fd, PAGE, 0)
        os.fstat(fd)
        readers.page_cache_orders(fd, PAGE, run.root)
        run.rss()
    finally:
        os.close(fd)
    if run.backing == "ext4":  # the same paths on the disk: a directory, a file, fsync
        path = ext4_dir(run.root)
        try:
            fd = os.open(f"{path}/file", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.pwrite(fd, b"\x5a", 0)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        finally:
            shutil.rmtree(path, ignore_errors=True)


def cleanup(run: _Run) -> None:
    """Close the file and remove the run's directory (and file) on the disk."""
    if run.fd >= 0:
        os.close(run.fd)
        run.fd = -1
    if run.dir:
        shutil.rmtree(run.dir, ignore_errors=True)
        run.dir = ""
