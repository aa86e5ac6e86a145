"""Evicting device memory by device PFN: the migrate_device_* family.

Models: mm/migrate_device.c (with the 2025 THP series, read in balbirs-nv/linux commit
107424c6; the COMPOUND handling of migrate_device_range() and migrate_device_pfns() is the
series', 6.18 mainline has none): migrate_device_pfn_lock(), migrate_device_range(),
migrate_device_pfns(), migrate_device_pages() and migrate_device_finalize(). A driver that
must give its memory back (unload, unbind, eviction) does not know which virtual addresses
map its pages: it names device PFNs instead of a VMA range. Every mapping of every process
is unmapped to a migration entry (try_to_migrate() through the rmap), the driver copies into
system pages, and finalize maps those where the device pages were.

A continuation of :mod:`pyfolio.mm.migrate_device` (the migrate_vma half), kept apart for
size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import (
    folio_lock,
    folio_nr_pages,
    folio_test_locked,
    page_folio,
)
from pyfolio.mm.memremap import folio_is_device_private
from pyfolio.mm.migrate import (
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    folio_migrate_flags,
    folio_migrate_mapping,
    migrate_pfn,
    migrate_pfn_to_page,
    ref_hold,
)
from pyfolio.mm.migrate_device import __migrate_device_finalize, migrate_device_unmap
from pyfolio.sim.memmap import NO_HEAD, ZONE_DEVICE

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["migrate_device_pfn_lock", "migrate_device_range", "migrate_device_pfns",
           "migrate_device_pages", "migrate_device_finalize"]


def migrate_device_pfn_lock(m: Machine, pfn: int) -> int:
    """migrate_device_pfn_lock() - reference and lock the folio at ``pfn``:
    ``migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE``, or 0 for a free page (refcount 0), a tail
    page (folio_get_nontail_page()) or a folio someone else has locked.

    Models: mm/migrate_device.c:migrate_device_pfn_lock() (the series).
    """
    if int(m.mem.compound_head[pfn]) != NO_HEAD or int(m.mem._refcount[pfn]) <= 0:
        return 0
    folio = page_folio(m, pfn)
    if folio_test_locked(folio):
        return 0
    ref_hold(folio)
    folio_lock(folio)
    return migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE


def _lock_and_unmap(m: Machine, src: list[int], pfns: list[int]) -> None:
    """The loop both entry points share: lock each folio, COMPOUND for a large one (its
    tail entries 0), then migrate_device_unmap()."""
    i = 0
    while i < len(pfns):
        nr = folio_nr_pages(page_folio(m, pfns[i]))
        src[i] = migrate_device_pfn_lock(m, pfns[i])
        if nr > 1:
            src[i] |= MIGRATE_PFN_COMPOUND
            src[i + 1: i + nr] = [0] * (nr - 1)
        i += nr
    migrate_device_unmap(src, len(src), None, m)


def migrate_device_range(m: Machine, src_pfns: list[int], start: int, npages: int) -> int:
    """migrate_device_range() - lock and unmap the device pages [start, start + npages):
    fills ``src_pfns`` (one entry per page; a large folio is one COMPOUND entry with its
    tail entries 0; free and locked pages 0) and replaces every mapping of each folio, in
    every process, with a migration entry (a pinned or still-mapped folio loses MIGRATE
    and is restored). Returns 0.

    Models: mm/migrate_device.c:migrate_device_range() (the series).
    """
    pfns = list(range(start, start + npages))
    src_pfns[:] = [0] * npages
    _lock_and_unmap(m, src_pfns, pfns)
    m.trace.emit("migrate_device_range", start=start, npages=npages)
    return 0


def migrate_device_pfns(m: Machine, src_pfns: list[int]) -> int:
    """migrate_device_pfns() - as migrate_device_range() for a pre-filled array of device
    PFNs (not necessarily contiguous; a large folio's pages must follow its head).

    Models: mm/migrate_device.c:migrate_device_pfns() (the series).
    """
    pfns = list(src_pfns)
    _lock_and_unmap(m, src_pfns, pfns)
    m.trace.emit("migrate_device_pfns", npages=len(pfns))
    return 0


def migrate_device_pages(m: Machine, src_pfns: list[int], dst_pfns: list[int],
                         npages: int) -> None:
    """migrate_device_pages() - struct-page state from each src to its dst, without a
    migrate_vma: no dst -> not migrated; a COMPOUND src with a small dst is not split
    here (MIGRATE and COMPOUND cleared: the folio stays on the device); a COMPOUND dst
    with a small src -> not migrated; folio_migrate_mapping() (-EAGAIN for an unexpected
    reference) and folio_migrate_flags() otherwise.

    Models: mm/migrate_device.c:migrate_device_pages() = __migrate_device_pages(src, dst,
    npages, NULL) (the series).
    """
    for i in range(npages):
        newpage, page = migrate_pfn_to_page(dst_pfns[i]), migrate_pfn_to_page(src_pfns[i])
        if newpage is None:
            src_pfns[i] &= ~MIGRATE_PFN_MIGRATE
            continue
        if page is None:
            continue  # no hole to fill without a VMA
        s = src_pfns[i]
        if s & MIGRATE_PFN_MIGRATE and s & MIGRATE_PFN_COMPOUND and \
                not dst_pfns[i] & MIGRATE_PFN_COMPOUND:
            src_pfns[i] &= ~(MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND)
            continue
        if s & MIGRATE_PFN_MIGRATE and dst_pfns[i] & MIGRATE_PFN_COMPOUND and \
                not s & MIGRATE_PFN_COMPOUND:
            src_pfns[i] &= ~MIGRATE_PFN_MIGRATE
        newfolio, folio = page_folio(m, newpage), page_folio(m, page)
        if int(m.mem.zone[newfolio.pfn]) == ZONE_DEVICE and not folio_is_device_private(newfolio):
            src_pfns[i] &= ~MIGRATE_PFN_MIGRATE
            continue
        if not src_pfns[i] & MIGRATE_PFN_MIGRATE:
            continue
        if folio_migrate_mapping(None, newfolio, folio, 0):
            src_pfns[i] &= ~MIGRATE_PFN_MIGRATE
        else:
            folio_migrate_flags(newfolio, folio)
    m.trace.emit("migrate_device_pages", npages=npages)


def migrate_device_finalize(m: Machine, src_pfns: list[int], dst_pfns: list[int],
                            npages: int) -> None:
    """migrate_device_finalize() - migration entries to mappings of the new system pages
    (or, where migration failed, of the old device pages); unlock and release both.

    Models: mm/migrate_device.c:migrate_device_finalize() =
    __migrate_device_finalize(src, dst, npages, NULL).
    """
    __migrate_device_finalize(src_pfns, dst_pfns, npages, None, m)
    m.trace.emit("migrate_device_finalize", npages=npages)
