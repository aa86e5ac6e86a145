"""ZONE_DEVICE memory: struct dev_pagemap, its ops, and device-private folios.

Models: include/linux/memremap.h and mm/memremap.c (v6.18, with the 2025 series
"mm: support THP migration for zone device private pages", which adds the ``folio_split``
op and zone_device_private_split_cb()). A driver describes a PFN range with a
:class:`DevPagemap` (type, owner, ops) and registers it with :func:`memremap_pages`; the
frames get ZONE_DEVICE struct pages the CPU cannot address (MEMORY_DEVICE_PRIVATE).

Simplifications: the device PFN range is the one the :class:`~pyfolio.sim.machine.Machine`
reserves after RAM (``m.device_base .. m.mem.nr``); no percpu ``pgmap->ref``; the
``page_free`` op (6.18 name; ``folio_free`` in newer trees) receives ``(pfn, order)``;
``migrate_to_ram`` receives ``(vma, address, pfn, via_pte)`` instead of a ``vm_fault``
(``via_pte`` False is the kernel's ``vmf->pte == NULL``, a fault on a device-private PMD).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import Folio, folio_is_zone_device, folio_lock
from pyfolio.mm.page_alloc import prep_compound_page
from pyfolio.sim.errors import EBUSY, EINVAL, MmError
from pyfolio.sim.memmap import PG, ZONE_DEVICE

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["MEMORY_TYPE", "DevPagemapOps", "DevPagemap", "memremap_pages",
           "folio_is_device_private", "is_device_private_page", "page_pgmap",
           "zone_device_folio_init", "zone_device_private_split_cb"]


class MEMORY_TYPE(enum.IntEnum):
    """enum memory_type (include/linux/memremap.h)."""

    MEMORY_DEVICE_PRIVATE = 1
    MEMORY_DEVICE_COHERENT = 2
    MEMORY_DEVICE_FS_DAX = 3
    MEMORY_DEVICE_GENERIC = 4
    MEMORY_DEVICE_PCI_P2PDMA = 5


@dataclass
class DevPagemapOps:
    """struct dev_pagemap_ops: the driver's callbacks.

    ``page_free(pfn, order)`` when a device folio's refcount reaches zero;
    ``migrate_to_ram(vma, address, pfn, via_pte) -> VM_FAULT_*`` on a CPU fault;
    ``folio_split(head, new | None)`` (folios) for each new folio of a device-private
    split, and once with None at the end (the series' op).
    """

    page_free: Callable[[int, int], None]
    migrate_to_ram: Callable[..., int]
    folio_split: Callable[[Folio, Folio | None], None] | None = None


@dataclass(eq=False)
class DevPagemap:
    """struct dev_pagemap: ``range`` as [start_pfn, end_pfn), ``type``, ``ops``, ``owner``
    (the value migrate_vma's ``pgmap_owner`` must match); ``id`` is its index in
    ``m.pgmaps`` (what ``m.mem.pgmap[pfn]`` stores)."""

    range: tuple[int, int]
    type: MEMORY_TYPE
    ops: DevPagemapOps
    owner: object = None
    id: int = -1
    vmemmap_shift: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def memremap_pages(m: Machine, pgmap: DevPagemap) -> DevPagemap:
    """memremap_pages() - create ZONE_DEVICE struct pages for ``pgmap.range``.

    Models: mm/memremap.c:memremap_pages() (v6.18). The range must lie in the device frames
    the machine reserved and must not overlap another pgmap (-EINVAL / -EBUSY, nothing
    changed). The frames start as free device pages: refcount 0, in ZONE_DEVICE, pointing
    at the pgmap.
    """
    start, end = pgmap.range
    if not m.device_base or not m.device_base <= start < end <= m.mem.nr:
        raise MmError(EINVAL, f"memremap_pages: range [{start:#x}, {end:#x}) is not inside "
                      f"the device frames [{m.device_base:#x}, {m.mem.nr:#x})")
    if (m.mem.pgmap[start:end] >= 0).any():
        raise MmError(EBUSY, f"memremap_pages: range [{start:#x}, {end:#x}) overlaps a pgmap")
    pgmap.id = len(m.pgmaps)
    m.pgmaps.append(pgmap)
    m.mem.reset(start, end)
    m.mem.zone[start:end] = ZONE_DEVICE
    m.mem.pgmap[start:end] = pgmap.id
    m.trace.emit("memremap_pages", changes={"device_pages": end - start},
                 start=start, end=end, type=pgmap.type.name)
    return pgmap


def page_pgmap(m: Machine, pfn: int) -> DevPagemap:
    """page_pgmap() - the dev_pagemap a ZONE_DEVICE page belongs to.

    Models: include/linux/mmzone.h:page_pgmap() (v6.18; MmError(EINVAL) for a page that
    is not ZONE_DEVICE, where the kernel's VM_WARN_ON_ONCE_PAGE fires).
    """
    idx = int(m.mem.pgmap[pfn])
    if idx < 0:
        raise MmError(EINVAL, f"pfn {pfn:#x} is not a ZONE_DEVICE page")
    pgmap = m.pgmaps[idx]
    assert isinstance(pgmap, DevPagemap)
    return pgmap


def is_device_private_page(m: Machine, pfn: int) -> bool:
    """is_device_private_page() - a ZONE_DEVICE page of a MEMORY_DEVICE_PRIVATE pgmap.

    Models: include/linux/memremap.h:is_device_private_page().
    """
    if int(m.mem.zone[pfn]) != ZONE_DEVICE or int(m.mem.pgmap[pfn]) < 0:
        return False
    return page_pgmap(m, pfn).type == MEMORY_TYPE.MEMORY_DEVICE_PRIVATE


def folio_is_device_private(folio: Folio) -> bool:
    """folio_is_device_private() - a folio of MEMORY_DEVICE_PRIVATE memory.

    Models: include/linux/memremap.h:folio_is_device_private().
    """
    return folio_is_zone_device(folio) and is_device_private_page(folio.m, folio.pfn)


def zone_device_folio_init(folio: Folio, pgmap: DevPagemap, order: int) -> None:
    """zone_device_folio_init() - hand a free device folio to its driver's user.

    Models: mm/memremap.c:zone_device_page_init() and include/linux/memremap.h:
    zone_device_folio_init() (the series): refcount 1, locked, made compound and
    large_rmappable for ``order`` > 0.
    """
    m = folio.m
    m.mem._refcount[folio.pfn] = 1
    folio_lock(folio)
    if order:
        prep_compound_page(m.mem, folio.pfn, order)
        m.mem.set(folio.pfn, PG.large_rmappable)


def zone_device_private_split_cb(original: Folio, new: Folio | None) -> None:
    """zone_device_private_split_cb() - tell the driver about one new folio of a split.

    Models: include/linux/memremap.h:zone_device_private_split_cb() (the series; a static
    inline in the header): called by the split
    for each new folio and once with ``new`` None at the end. Without a ``folio_split`` op
    the new folio just inherits ``pgmap`` and ``mapping``.
    """
    if not folio_is_device_private(original):
        return
    m = original.m
    pgmap = page_pgmap(m, original.pfn)
    if pgmap.ops.folio_split is None:
        if new is not None:
            m.mem.pgmap[new.pfn] = m.mem.pgmap[original.pfn]
            m.mem.mapping[new.pfn] = m.mem.mapping[original.pfn]
        return
    pgmap.ops.folio_split(original, new)
