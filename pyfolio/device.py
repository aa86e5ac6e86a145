"""The device facade: a dmirror-like device with device-private memory, as a chapter uses it.

``m = System(ram="64M", device="64M"); dev = m.device`` gives a :class:`Device` whose
methods read like the story (``dev.migrate_to_device(p, addr, length)``); each is a thin
call into :mod:`pyfolio.lib.dmirror` (lib/test_hmm.c) and :mod:`pyfolio.mm.migrate_device`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING, overload

from pyfolio.lib.dmirror import (
    HMM_DMIRROR_FLAG_FAIL_ALLOC,
    Dmirror,
    dmirror_migrate_to_device,
    dmirror_peek,
)
from pyfolio.lib.dmirror_cmds import (
    HMM_DMIRROR_CHECK_EXCLUSIVE,
    HMM_DMIRROR_EXCLUSIVE,
    HMM_DMIRROR_READ,
    HMM_DMIRROR_SNAPSHOT,
    HMM_DMIRROR_WRITE,
    HmmDmirrorCmd,
    dmirror_fops_unlocked_ioctl,
)
from pyfolio.lib.dmirror_to_system import dmirror_migrate_to_system
from pyfolio.mm.migrate_device import (
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    MIGRATE_PFN_VALID,
    MigrateVma,
    migrate_pfn_to_page,
)
from pyfolio.sim.errors import EINVAL, EPERM, MmError
from pyfolio.sim.units import HPAGE_PMD_NR, PAGE_SIZE, to_size, to_stamp, to_ulong

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine
    from pyfolio.system import Process

__all__ = ["DESIGNS", "Device", "MigrationResults", "PageResult", "split_design"]


@dataclass(frozen=True, slots=True)
class PageResult:
    """What happened to one page of a migration: ``migrated`` and, if not, ``why``."""

    address: int
    migrated: bool
    src_pfn: int | None
    dst_pfn: int | None
    why: str = ""


#: the split-fallback designs by name -> the simulator's switch (migrate_device.SPLIT_DESIGNS):
#: "unmapped-param" is the v7 patch 11/16 (Oct 2025: an ``unmapped`` flag through
#: __folio_split()); "split-unmapped-folio" is what was merged in Nov 2025
#: (folio_split_unmapped(), called from migrate_vma_split_unmapped_folio()).
DESIGNS = {"unmapped-param": "a", "split-unmapped-folio": "b", "a": "a", "b": "b"}


def split_design(name: str) -> str:
    """The simulator's switch ("a"/"b") for a design name; MmError(EINVAL) if unknown."""
    if name not in DESIGNS:
        raise MmError(EINVAL, f"split design {name!r} is not one of "
                              f"'split-unmapped-folio', 'unmapped-param'")
    return DESIGNS[name]


class Device:
    """A device with device-private memory (a dmirror instance) on machine ``m``.

    ``frames``: the device range it owns (default: the machine's device frames);
    ``large_pages=False``: every order-9 device allocation fails (the split fallback).
    """

    def __init__(self, m: Machine, name: str = "dmirror0", frames: tuple[int, int] | None = None,
                 large_pages: bool = True, design: str = "split-unmapped-folio") -> None:
        self.driver = Dmirror(m, frames=frames)
        self.driver.fail_large_alloc = not large_pages
        self.driver.split_design = split_design(design)
        self.m = m
        self.name = name
        #: struct hmm_dmirror_cmd's ``cpages`` and ``faults`` after the last command that
        #: succeeded (read_range(), write_range(), snapshot(), make_exclusive(),
        #: check_exclusive(), migrate_to_device(), migrate_to_system()); a failed ioctl
        #: copies nothing back
        self.cpages = 0
        self.faults = 0

    def __repr__(self) -> str:
        start, end = self.driver.pgmap.range
        return (f"<Device {self.name}: {(end - start) * PAGE_SIZE >> 20} MiB of device-private "
                f"memory, large pages {'on' if self.large_pages else 'off'}>")

    @property
    def large_pages(self) -> bool:
        """False: every 2 MiB device allocation fails (the split fallback path)."""
        return not self.driver.fail_large_alloc

    @large_pages.setter
    def large_pages(self, value: bool) -> None:
        self.driver.fail_large_alloc = not value

    @property
    def fail_large_alloc(self) -> bool:
        """True: every 2 MiB device allocation fails (the split fallback path)."""
        return self.driver.fail_large_alloc

    @fail_large_alloc.setter
    def fail_large_alloc(self, value: bool) -> None:
        self.driver.fail_large_alloc = bool(value)

    def fail_next_alloc(self) -> None:
        """HMM_DMIRROR_FLAG_FAIL_ALLOC: the driver's next allocation, of any size, fails
        (once; the allocation clears the flag). Migrating to the device, a 2 MiB one falls
        back to single pages and a single page is not migrated (``ret`` -ENOENT); on the
        way back, a 2 MiB one falls back to single pages and a single page fails the
        fault with VM_FAULT_OOM."""
        self.driver.flags |= HMM_DMIRROR_FLAG_FAIL_ALLOC

    def fragment(self) -> int:
        """Break every free 2 MiB device folio into single pages; returns how many."""
        return self.driver.fragment()

    @property
    def free_large(self) -> int:
        return len(self.driver.free_folios)

    @property
    def free_small(self) -> int:
        return len(self.driver.free_pages)

    def migrate_to_device(self, p: Process, addr: int, length: int | str,
                          design: str | None = None) -> MigrationResults:
        """HMM_DMIRROR_MIGRATE_TO_DEV over [addr, addr + length); ``design`` picks the
        split fallback for this call only ("unmapped-param" or "split-unmapped-folio";
        default: the System's ``split_design``). The results' ``ret`` is what the ioctl
        returns: 0, or -ENOENT when some page of the range is not on the device afterwards.
        MmError(EINVAL), nothing changed, for an unknown design, an exited process or a bad
        range."""
        switch = None if design is None else split_design(design)
        _process(p)._live()
        done, ret = dmirror_migrate_to_device(self.driver, p.mm, to_ulong(addr),
                                              to_size(length), switch)
        res = MigrationResults(done, ret)
        if ret == 0:  # the driver read every page back (dmirror_do_read()): cpages
            self.cpages, self.faults = len(res), 0
        return res

    def migrate_to_system(self, p: Process, addr: int, length: int | str) -> MigrationResults:
        """HMM_DMIRROR_MIGRATE_TO_SYS over [addr, addr + length). ``cpages`` counts, as
        dmirror_successful_migrated_pages() does, the ``src`` entries with
        MIGRATE_PFN_VALID and MIGRATE_PFN_MIGRATE (a COMPOUND entry is one)."""
        _process(p)._live()
        done = dmirror_migrate_to_system(self.driver, p.mm, to_ulong(addr), to_size(length))
        self.cpages = sum(1 for args in done for s in args.src[:args.npages]
                          if s & MIGRATE_PFN_VALID and s & MIGRATE_PFN_MIGRATE)
        self.faults = 0
        return MigrationResults(done)

    def release(self) -> int:
        """HMM_DMIRROR_RELEASE: evict all of the device's memory back to RAM (every
        process's device-private mappings become present mappings of new system pages,
        large device folios as large system folios); returns the pages evicted.
        dmirror_device_remove_chunks() (lib/test_hmm.c, the series)."""
        from pyfolio.lib.dmirror import dmirror_device_remove_chunks

        return dmirror_device_remove_chunks(self.driver)

    def read(self, p: Process, addr: int) -> int | None:
        """The device reads the page at ``addr`` through its own page table, without a
        CPU fault; None when the device holds no copy there."""
        _process(p)._live()
        return dmirror_peek(self.driver, p.mm, to_ulong(addr))

    # -- the mirror: the device uses the process's memory through its own page table ------
    def _ioctl(self, what: str, command: int, p: Process, addr: int, npages: int,
               ptr: list[int] | None = None, allowed: tuple[int, ...] = (0,)
               ) -> tuple[int, HmmDmirrorCmd]:
        """One dmirror ioctl: (its return value, the command as copied back). A return
        value not in ``allowed`` raises MmError(-ret); ``cpages``/``faults`` are kept from
        a command that returned 0 (a failed ioctl copies nothing back)."""
        _process(p)._live()
        if isinstance(npages, bool) or not isinstance(npages, int):
            raise TypeError(f"{what}: npages must be an int, not {type(npages).__name__}")
        cmd = HmmDmirrorCmd(to_ulong(addr), npages, list(ptr or []))
        ret = dmirror_fops_unlocked_ioctl(self.driver, p.mm, command, cmd)
        if ret not in allowed:
            raise MmError(-ret, f"{what}: [{cmd.addr:#x}, +{npages} pages) of pid {p.pid}: "
                          f"the ioctl returned {ret}")
        if not ret:
            self.cpages, self.faults = cmd.cpages, cmd.faults
        return ret, cmd

    def read_range(self, p: Process, addr: int, npages: int) -> list[int]:
        """HMM_DMIRROR_READ: the device reads ``npages`` pages from ``addr`` through its
        own page table (dmirror_read()); what it has no entry for is faulted in first with
        hmm_range_fault() (a missing page allocated, a device-private page of another device
        brought back, a device-exclusive entry restored; this device's own pages are used
        where they are). Returns each page's value. ``cpages`` = pages read, ``faults`` =
        rounds of faulting (0 when the device already mirrored the range).

        MmError, nothing changed: EINVAL for an unaligned ``addr`` or ``npages`` < 1,
        EFAULT for a hole or a PROT_NONE page in the range."""
        return self._ioctl("read_range", HMM_DMIRROR_READ, p, addr, npages)[1].ptr

    def write_range(self, p: Process, addr: int, values: Sequence[int]) -> None:
        """HMM_DMIRROR_WRITE: the device writes ``values`` (one per page) from ``addr``
        (dmirror_write()); a page the device may not write yet is faulted in for writing
        (HMM_PFN_REQ_WRITE: copy-on-write broken first). ``cpages``/``faults`` as for
        read_range().

        TypeError/ValueError for a value that is not a 64-bit int; MmError, nothing
        changed: EINVAL (unaligned, no values), EFAULT (a hole or PROT_NONE), EPERM (a
        page of a VMA without write permission)."""
        vals = [to_stamp(v) for v in values]
        self._ioctl("write_range", HMM_DMIRROR_WRITE, p, addr, len(vals), vals)

    def snapshot(self, p: Process, addr: int, npages: int) -> bytes:
        """HMM_DMIRROR_SNAPSHOT: what the CPU page tables say of each page, without
        faulting anything or touching the device's table (dmirror_snapshot(),
        dmirror_mkentry()): a byte per page, HMM_DMIRROR_PROT_ERROR 0xFF (no VMA, or
        PROT_NONE), 0x00 (not present), else READ 0x01 or WRITE 0x02, or-ed with ZERO
        0x10 (the zero page), DEV_PRIVATE_LOCAL 0x20 / _REMOTE 0x30 (a device-private page
        of this / another device) and PMD 0x04 (mapped by a PMD). MmError(EINVAL) for an
        unaligned ``addr`` or ``npages`` < 1."""
        return bytes(self._ioctl("snapshot", HMM_DMIRROR_SNAPSHOT, p, addr, npages)[1].ptr)

    def make_exclusive(self, p: Process, addr: int, npages: int) -> list[int]:
        """HMM_DMIRROR_EXCLUSIVE: take each page for the device's atomic access
        (make_device_exclusive(): faulted in writable, a PMD-mapped THP PMD-split, the PTE
        replaced by a device-exclusive entry the CPU faults on), then read the range back.
        Returns the values. MmError, nothing changed: EINVAL (unaligned, ``npages`` < 1),
        EFAULT (a hole, a read-only or PROT_NONE VMA)."""
        return self._ioctl("make_exclusive", HMM_DMIRROR_EXCLUSIVE, p, addr, npages)[1].ptr

    def check_exclusive(self, p: Process, addr: int, npages: int) -> int:
        """HMM_DMIRROR_CHECK_EXCLUSIVE: what the ioctl returns, -EPERM while the device
        still holds some page of the range atomically (no CPU access since
        make_exclusive()), else 0. MmError(EINVAL) for an unaligned ``addr`` or
        ``npages`` < 1."""
        return self._ioctl("check_exclusive", HMM_DMIRROR_CHECK_EXCLUSIVE, p, addr, npages,
                           allowed=(0, -EPERM))[0]


def _process(p: Process) -> Process:
    """TypeError unless ``p`` is a Process (a System.spawn() result; told by its mm and
    liveness check, as this module does not import the System side)."""
    if not (hasattr(p, "mm") and callable(getattr(p, "_live", None))):
        raise TypeError(f"expected a Process, not {type(p).__name__} {p!r}")
    return p


class MigrationResults(Sequence[PageResult]):
    """The per-page results of one migrate_to_device() / migrate_to_system() call: a
    read-only sequence of :class:`PageResult`, one per page of the range, worked out on
    access from each window's ``src``/``dst`` arrays (1 GiB is 262,144 pages: building
    them all up front cost more than the migration). The 511 empty entries after a
    migrated COMPOUND head (src and dst both COMPOUND) are migrated pages of that THP.
    """

    def __init__(self, done: list[MigrateVma], ret: int = 0) -> None:
        self._windows = done
        #: the ioctl's return value: 0, or a negative errno (-ENOENT from
        #: dmirror_migrate_to_device() when a page of the range did not reach the device)
        self.ret = ret
        self._first = list(accumulate((args.npages for args in done), initial=0))
        self._tails = [_thp_tails(args) for args in done]

    def __len__(self) -> int:
        return self._first[-1]

    @overload
    def __getitem__(self, k: int) -> PageResult: ...

    @overload
    def __getitem__(self, k: slice) -> list[PageResult]: ...

    def __getitem__(self, k: int | slice) -> PageResult | list[PageResult]:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(f"page result {k} out of range (the call covered {len(self)} pages)")
        w = bisect_right(self._first, k) - 1
        args, i = self._windows[w], k - self._first[w]
        address = args.start + i * PAGE_SIZE
        if any(i in tail for tail in self._tails[w]):
            return PageResult(address, True, None, None)
        s, d = args.src[i], args.dst[i]
        ok = bool(s & MIGRATE_PFN_MIGRATE) and migrate_pfn_to_page(d) is not None
        why = "" if ok else ("not collected" if not s else
                             "no destination page" if not d else "not migrated")
        return PageResult(address, ok, migrate_pfn_to_page(s), migrate_pfn_to_page(d), why)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    @property
    def migrated(self) -> int:
        """How many pages migrated."""
        return sum(r.migrated for r in self)

    def __repr__(self) -> str:
        return f"<MigrationResults: {self.migrated} of {len(self)} pages migrated>"


def _thp_tails(args: MigrateVma) -> list[range]:
    """The window indexes that are the tail pages of a THP migrated whole."""
    src, dst, n = args.src, args.dst, args.npages
    tails = []
    for i in [i for i, s in enumerate(src) if s & MIGRATE_PFN_COMPOUND]:
        stop = min(i + HPAGE_PMD_NR, n)
        if (src[i] & MIGRATE_PFN_MIGRATE and dst[i] & MIGRATE_PFN_COMPOUND
                and migrate_pfn_to_page(dst[i]) is not None and not any(src[i + 1:stop])):
            tails.append(range(i + 1, stop))
    return tails
