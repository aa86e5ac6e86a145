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
    dmirror_migrate_to_system,
    dmirror_read,
)
from pyfolio.mm.migrate_device import (
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    MigrateVma,
    migrate_pfn_to_page,
)
from pyfolio.sim.errors import EINVAL, MmError
from pyfolio.sim.units import HPAGE_PMD_NR, PAGE_SIZE, to_size, to_ulong

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
        return MigrationResults(done, ret)

    def migrate_to_system(self, p: Process, addr: int, length: int | str) -> MigrationResults:
        """HMM_DMIRROR_MIGRATE_TO_SYS over [addr, addr + length)."""
        _process(p)._live()
        done = dmirror_migrate_to_system(self.driver, p.mm, to_ulong(addr), to_size(length))
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
        return dmirror_read(self.driver, p.mm, to_ulong(addr))


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
