"""The child process the kernel backend starts: runs one scenario on real memory.

Run as ``python -m pyfolio.kernel_lab._child`` with ``{"steps": [...], "counters": [...],
"root": "/"}`` on stdin; prints one JSON document ``{"base": addr, "observations": [...]}``
on stdout. It touches only memory it maps itself (and, for a fork step, its own child's copy of it);
the only global action is ``drop_caches``, which writes 2 to /proc/sys/vm/drop_caches
(runs the shrinkers: reclaimable slab caches are dropped, no setting changes). A ``pin``
step registers the pages as io_uring fixed buffers (io_sqe_buffer_register() pins them
with FOLL_PIN | FOLL_LONGTERM); ``unpin`` unregisters them and closes the rings. A
``split`` step writes ``PID,0xSTART,0xEND,ORDER`` for this process to debugfs
``split_huge_pages`` (mm/huge_memory.c:split_huge_pages_write()). The child pins itself to
one CPU for the run, so its per-CPU LRU batches are that CPU's; an ``lru_add_drain`` step
drains them with ``madvise(MADV_COLD)`` of a page it maps for that and never touches
(mm/madvise.c:madvise_cold() calls lru_add_drain() before it walks the range, which holds
nothing). A swap scenario gets the path of the area its parent prepared (``"swap":
{"path", "kind"}``): ``swapon`` and ``swapoff`` switch it on and off (swapon(2),
swapoff(2)), and the run ends with a swapoff whatever happened; after each step that can
start swap writeback the process waits for it to finish. The steps on a file (a memfd, a
file of its own on the disk file system, MAP_SHARED|MAP_ANONYMOUS) are in
:mod:`pyfolio.kernel_lab._files`.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

from pyfolio.kernel_lab import readers, swap_area
from pyfolio.kernel_lab.scenarios import (
    MTHP_SIZES,
    Step,
    mremap_args,
    mthp_delta,
    observe,
    observe_swap,
    vmstat_delta,
)

__all__ = ["run_steps", "main"]

PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 0x02, 0x10, 0x20, 0x4000
#: include/uapi/asm-generic/mman-common.h
MADV = {"dontneed": 4, "free": 8, "remove": 9, "dontfork": 10, "dofork": 11, "hugepage": 14,
        "nohugepage": 15, "wipeonfork": 18, "keeponfork": 19, "cold": 20,
        "pageout": 21, "collapse": 25}
PMD = 2 << 20
PAGE = 4096
#: include/uapi/asm-generic/unistd.h (the same numbers on every architecture)
SYS_IO_URING_SETUP, SYS_IO_URING_REGISTER = 425, 427
IORING_REGISTER_BUFFERS, IORING_UNREGISTER_BUFFERS = 0, 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
for _name in ("munmap", "madvise", "mprotect"):
    getattr(_libc, _name).argtypes = [ctypes.c_void_p, ctypes.c_size_t] + (
        [ctypes.c_int] if _name != "munmap" else [])
_libc.syscall.restype = ctypes.c_long
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                         ctypes.c_void_p]
#: include/uapi/linux/mman.h
MREMAP = {"maymove": 1, "fixed": 2, "dontunmap": 4}


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {errno.errorcode.get(e, e)}")


def _map_region(length: int) -> int:
    """A 2 MiB aligned private anonymous region between PROT_NONE guards (so it never
    merges with another VMA of this process)."""
    reserve = _libc.mmap(None, length + 2 * PMD, PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    if reserve in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap of the reservation failed")
    base = (reserve + PMD + PMD - 1) & ~(PMD - 1)
    got = _libc.mmap(base, length, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    if got != base:
        raise OSError(ctypes.get_errno(), "mmap MAP_FIXED inside the reservation failed")
    return int(base)


class _Run:
    """State of one scenario run in this process."""

    def __init__(self, counters: list[str], root: str | Path = "/",
                 swap: dict[str, str] | None = None, backing: str = "anon",
                 sizes: tuple[str, ...] = MTHP_SIZES) -> None:
        self.counters, self.root, self.swap = counters, Path(root), swap
        self.backing, self.sizes = backing, tuple(sizes)
        self.base = self.length = 0
        self.child_pid = 0
        self.hold_fd = self.ack_fd = -1
        self.drain_base = 0  # an empty 2 MiB region MADV_COLLAPSE drains LRU batches with
        self.rings: list[int] = []  # io_uring fds holding pins
        self.scratch = 0  # an untouched page for the lru_add_drain step
        self.fd, self.dir = -1, ""  # the scenario's file, and the ext4 directory

    def do(self, s: Step) -> None:
        a = self.base + s.off
        if self.backing != "anon":  # a file scenario: its steps are in _files
            from pyfolio.kernel_lab import _files

            if s.op in _files.FILE_OPS or s.op == "mmap":
                _files.do_file_step(self, s)
                return
        if s.op == "mmap":
            self.length, self.base = s.length, _map_region(s.length)
        elif s.op == "write":
            ctypes.memset(a, 0x5A, s.length)
        elif s.op == "read":
            for i in range(s.length // PAGE):
                ctypes.c_char.from_address(a + i * PAGE).value  # noqa: B018
        elif s.op == "madvise":
            _check(_libc.madvise(a, s.length, MADV[s.arg]), f"madvise {s.arg}")
        elif s.op == "mprotect":
            prot = {"none": PROT_NONE, "r": PROT_READ, "rw": PROT_READ | PROT_WRITE}[s.arg]
            _check(_libc.mprotect(a, s.length, prot), "mprotect")
        elif s.op == "mremap":
            self._mremap(a, s)
        elif s.op == "munmap":
            _check(_libc.munmap(a, s.length), "munmap")
        elif s.op == "fork_and_write_in_child":
            self._fork_and_write(a)
        elif s.op == "child_exit":
            self._child_exit()
        elif s.op == "drop_caches":
            (self.root / "proc/sys/vm/drop_caches").write_text("2")
        elif s.op == "lru_add_drain":
            self._lru_add_drain()
        elif s.op == "pin":
            self._pin(a, s.length)
        elif s.op == "unpin":
            self._unpin()
        elif s.op == "split":
            (self.root / "sys/kernel/debug/split_huge_pages").write_text(
                f"{os.getpid()},{a:#x},{a + s.length:#x},{int(s.arg or 0)}")
        elif s.op in ("swapon", "swapoff"):
            assert self.swap is not None, "a swap step without a swap area"
            e = (swap_area.swapon if s.op == "swapon" else swap_area.swapoff)(self.swap["path"])
            if e:
                raise OSError(e, f"{s.op}: {errno.errorcode.get(e, e)}")
        elif s.op == "fork":
            self._fork(a, write=False)
        elif s.op == "child_read":
            self._tell_child(b"r", a, s.length)
        elif s.op == "zero":
            ctypes.memset(a, 0, s.length)
        else:
            raise ValueError(f"unknown step {s.op!r}")
        if s.op in ("madvise", "swapoff", "munmap", "child_exit"):
            self._settle()

    def _lru_add_drain(self) -> None:
        """lru_add_drain() on this CPU: MADV_COLD of an untouched page of its own."""
        if not self.scratch:
            self.scratch = _map_region(PAGE)
        _check(_libc.madvise(self.scratch, PAGE, MADV["cold"]), "madvise cold (drain)")

    def _mremap(self, addr: int, s: Step) -> None:
        """mremap(2) through libc; the destination is an offset into the region."""
        new_len, flags, dst = mremap_args(s)
        bits = sum(MREMAP[f] for f in flags)
        got = _libc.mremap(addr, s.length, new_len, bits,
                           self.base + dst if dst is not None else None)
        if got == ctypes.c_void_p(-1).value:
            e = ctypes.get_errno()
            raise OSError(e, f"mremap: {errno.errorcode.get(e, e)}")

    def _fork_and_write(self, addr: int) -> None:
        self._fork(addr, write=True)

    def _fork(self, addr: int, write: bool) -> None:
        """Fork a child that (with ``write``) writes one byte at ``addr``, reports, then
        serves read commands (``r`` + offset and length) until the parent closes the pipe."""
        ack_r, ack_w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ack_r)
            os.close(hold_w)
            if write:
                ctypes.memset(addr, 0x77, 1)
            os.write(ack_w, b"w")
            while True:
                cmd = os.read(hold_r, 17)
                if len(cmd) != 17:
                    os._exit(0)
                start, length = struct.unpack("<QQ", cmd[1:])
                for i in range(length // PAGE):
                    ctypes.c_char.from_address(start + i * PAGE).value  # noqa: B018
                os.write(ack_w, b"k")
        os.close(ack_w)
        os.close(hold_r)
        os.read(ack_r, 1)
        self.child_pid, self.hold_fd, self.ack_fd = pid, hold_w, ack_r

    def _tell_child(self, cmd: bytes, start: int, length: int) -> None:
        os.write(self.hold_fd, cmd + struct.pack("<QQ", start, length))
        os.read(self.ack_fd, 1)

    def _settle(self) -> None:
        """Wait (at most 3 s) until no page is under writeback (vmstat nr_writeback), so
        that a swap write started by this step has finished before the record is made;
        then empty every CPU's LRU folio batches (lru_add_drain_all(), which
        MADV_COLLAPSE of an empty 2 MiB region runs first, and which then finds nothing to
        collapse): a folio the completed write queued for rotation on another CPU holds a
        reference there until drained, and would keep a write fault from freeing its
        slot (should_try_to_free_swap())."""
        if self.swap is None:
            return
        for _ in range(300):
            if not readers.vmstat(self.root).get("nr_writeback", 0):
                break
            time.sleep(0.01)
        if not self.drain_base:
            self.drain_base = _map_region(PMD)
        _libc.madvise(self.drain_base, PMD, MADV["collapse"])

    def _pin(self, addr: int, length: int) -> None:
        """Pin [addr, addr + length) as the fixed buffer of a new io_uring."""
        params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
        fd = _libc.syscall(SYS_IO_URING_SETUP, 1, params)
        if fd < 0:
            e = ctypes.get_errno()
            raise readers.Unavailable(f"unavailable: pin needs io_uring: io_uring_setup "
                                      f"failed ({errno.errorcode.get(e, e)})")
        self.rings.append(fd)
        iov = _Iovec(addr, length)
        _check(_libc.syscall(SYS_IO_URING_REGISTER, fd, IORING_REGISTER_BUFFERS,
                             ctypes.byref(iov), 1), "io_uring_register buffers")

    def _unpin(self) -> None:
        """Unregister every fixed buffer (unpin_user_folio()) and close the rings."""
        for fd in self.rings:
            _libc.syscall(SYS_IO_URING_REGISTER, fd, IORING_UNREGISTER_BUFFERS, None, 0)
            os.close(fd)
        self.rings = []

    def _child_exit(self) -> None:
        if self.child_pid:
            os.close(self.hold_fd)
            os.waitpid(self.child_pid, 0)
            os.close(self.ack_fd)
            self.child_pid, self.hold_fd, self.ack_fd = 0, -1, -1

    def look(self, pid: int | str) -> dict[str, object] | None:
        if not self.base:
            return None
        n = self.length // PAGE
        entries = readers.pagemap(pid, self.base, n, self.root)
        readers.require_pfns(entries)
        pfns = sorted({e.pfn for e in entries if e.present})
        flags = dict(zip(pfns, readers.kpageflags(pfns, self.root), strict=True))
        counts = dict(zip(pfns, readers.kpagecount(pfns, self.root), strict=True))
        vmas = readers.smaps_all(pid, self.root)
        out = observe(entries, flags, counts, vmas, self.base, self.base + self.length)
        if self.swap is not None:
            out.update(observe_swap(entries, flags, vmas, self.base, self.base + self.length))
        return out

    def swap_used_kb(self) -> int:
        """Used (kB) of this run's swap area in /proc/swaps (0 when it is off)."""
        assert self.swap is not None
        for line in (self.root / "proc/swaps").read_text().splitlines()[1:]:
            f = line.split()
            if f and f[0] == self.swap["path"]:
                return int(f[3])
        return 0

    def rss_anon(self) -> int:
        """RssAnon (kB) of this process, read twice so the read's own allocations are done
        before the value that counts is taken."""
        readers.status("self", self.root)
        return readers.status("self", self.root).get("RssAnon", 0)

    def rss(self) -> dict[str, int]:
        """RssAnon, RssFile, RssShmem (kB) of this process, as :meth:`rss_anon` reads."""
        readers.status("self", self.root)
        got = readers.status("self", self.root)
        return {k: got.get(k, 0) for k in ("RssAnon", "RssFile", "RssShmem")}

    def step(self, s: Step) -> dict[str, Any]:
        before = readers.vmstat(self.root)
        mthp_before = readers.mthp_stats(self.sizes, self.root)
        rss_before = self.rss()
        status = "ok"
        try:
            self.do(s)
        except OSError as e:
            status = f"error: {errno.errorcode.get(e.errno or 0, e.errno)}"
        rss_after = self.rss()
        after = readers.vmstat(self.root)
        mthp_after = readers.mthp_stats(self.sizes, self.root)
        rec: dict[str, Any] = {"step": s.label, "status": status, "proc": self.look("self"),
               "child": self.look(self.child_pid) if self.child_pid else None,
               "vmstat": vmstat_delta(before, after, self.counters),
               "mthp": mthp_delta(mthp_before, mthp_after),
               "rss_anon_kb": rss_after["RssAnon"] - rss_before["RssAnon"]}
        if self.swap is not None:
            rec["swap_used_kb"] = self.swap_used_kb()
        if self.backing != "anon":
            from pyfolio.kernel_lab import _files
            from pyfolio.kernel_lab.scenarios import rle

            if self.swap is None:
                rec["cache"] = _files.cache_of(self)
            else:  # reading the cache would fault swap-cache pages back: mincore only
                rec["cache"] = None
                rec["incore"] = rle(readers.mincore(self.base, self.length)) \
                    if self.base else None
            rec.update(
                       rss_file_kb=rss_after["RssFile"] - rss_before["RssFile"],
                       rss_shmem_kb=rss_after["RssShmem"] - rss_before["RssShmem"])
        return rec


def _warm_heap() -> None:
    """Touch (and give back) some of the interpreter's small-object heap before the first
    step, so that a step's own Python allocations land on pages already resident and do
    not show in the process's RssAnon delta (the region's pages are what it measures)."""
    warm = [str(i) * 4 for i in range(50_000)]
    del warm


def run_steps(steps: list[Step], counters: list[str], root: str = "/",
              swap: dict[str, str] | None = None, backing: str = "anon",
              sizes: tuple[str, ...] = MTHP_SIZES) -> dict[str, Any]:
    """Run the steps here, pinned to one CPU, and return ``{"base", "observations"}``; a
    swap area is switched off, and a scenario's file removed, at the end whatever
    happened."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    run = _Run(counters, root, swap, backing, sizes)
    _warm_heap()
    if backing != "anon":  # imported only for file scenarios (the anonymous ones' RssAnon
        from pyfolio.kernel_lab import _files  # deltas include the interpreter's own heap)

        _files.warm_up(run)
    try:
        obs = [run.step(s) for s in steps]
    finally:
        run._unpin()
        run._child_exit()
        if swap is not None:
            swap_area.swapoff(swap["path"])
        if backing != "anon":
            _files.cleanup(run)
    return {"base": run.base, "observations": obs}


def main() -> int:
    spec = json.load(sys.stdin)
    steps = [Step(**s) for s in spec["steps"]]
    try:
        out = run_steps(steps, spec["counters"], spec.get("root", "/"), spec.get("swap"),
                        spec.get("backing", "anon"), tuple(spec.get("sizes", MTHP_SIZES)))
    except readers.Unavailable as e:
        out = {"unavailable": e.reason}
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
