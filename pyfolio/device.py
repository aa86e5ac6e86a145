"""The device facade: a dmirror-like device with device-private memory, as a chapter uses it.

``m = System(ram="64M", device="64M"); dev = m.device`` gives a :class:`Device` whose
methods read like the story (``dev.migrate_to_device(p, addr, length)``); each is a thin
call into :mod:`pyfolio.dmirror` (lib/test_hmm.c) and :mod:`pyfolio.migrate_device`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .dmirror import (
    HMM_DMIRROR_FLAG_FAIL_ALLOC,
    Dmirror,
    dmirror_migrate_to_device,
    dmirror_migrate_to_system,
    dmirror_read,
)
from .errors import EINVAL, MmError
from .migrate_device import MIGRATE_PFN_MIGRATE, SPLIT_DESIGNS, MigrateVma, migrate_pfn_to_page
from .units import PAGE_SIZE, parse_size

if TYPE_CHECKING:
    from .machine import Machine
    from .system import Process

__all__ = ["Device", "PageResult"]


@dataclass(frozen=True, slots=True)
class PageResult:
    """What happened to one page of a migration: ``migrated`` and, if not, ``why``."""

    address: int
    migrated: bool
    src_pfn: int | None
    dst_pfn: int | None
    why: str = ""


class Device:
    """A device with device-private memory (a dmirror instance) on machine ``m``."""

    def __init__(self, m: Machine) -> None:
        self.driver = Dmirror(m)
        self.m = m

    @property
    def fail_large_alloc(self) -> bool:
        """True: every 2 MiB device allocation fails (the split fallback path)."""
        return self.driver.fail_large_alloc

    @fail_large_alloc.setter
    def fail_large_alloc(self, value: bool) -> None:
        self.driver.fail_large_alloc = bool(value)

    def fail_next_alloc(self) -> None:
        """HMM_DMIRROR_FLAG_FAIL_ALLOC: the next large allocation fails (once)."""
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
                          design: str = "b") -> list[PageResult]:
        """HMM_DMIRROR_MIGRATE_TO_DEV over [addr, addr + length); ``design`` picks the
        split fallback ("a": v7 ``unmapped`` flag, "b": ``folio_split_unmapped``)."""
        if design not in SPLIT_DESIGNS:
            raise MmError(EINVAL, f"design {design!r} is not one of {SPLIT_DESIGNS}")
        p._live()
        self.driver.split_design = design
        return _results(dmirror_migrate_to_device(self.driver, p.mm, addr, parse_size(length)))

    def migrate_to_system(self, p: Process, addr: int, length: int | str) -> list[PageResult]:
        """HMM_DMIRROR_MIGRATE_TO_SYS over [addr, addr + length)."""
        p._live()
        return _results(dmirror_migrate_to_system(self.driver, p.mm, addr, parse_size(length)))

    def read(self, p: Process, addr: int) -> int | None:
        """The device reads the page at ``addr`` through its own page table, without a
        CPU fault; None when the device holds no copy there."""
        return dmirror_read(self.driver, p.mm, addr)


def _results(done: list[MigrateVma]) -> list[PageResult]:
    out = []
    for args in done:
        for i in range(args.npages):
            s, d = args.src[i], args.dst[i]
            ok = bool(s & MIGRATE_PFN_MIGRATE) and migrate_pfn_to_page(d) is not None
            why = "" if ok else ("not collected" if not s else
                                 "no destination page" if not d else "not migrated")
            if not ok and not s and i and _in_compound(args, i):
                ok, why = True, ""
            out.append(PageResult(args.start + i * PAGE_SIZE, ok, migrate_pfn_to_page(s),
                                  migrate_pfn_to_page(d), why))
    return out


def _in_compound(args: MigrateVma, i: int) -> bool:
    """Entry i is one of the 511 empty entries after a migrated COMPOUND head."""
    from .migrate_device import MIGRATE_PFN_COMPOUND

    head = i - i % 512
    return bool(args.src[head] & MIGRATE_PFN_COMPOUND and args.src[head] & MIGRATE_PFN_MIGRATE
                and args.dst[head] & MIGRATE_PFN_COMPOUND)
