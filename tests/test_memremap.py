"""memremap_pages and device-private struct pages (include/linux/memremap.h, mm/memremap.c)."""

import pytest

from pyfolio import EBUSY, EINVAL, MmError, System
from pyfolio.include.linux.mm import Folio
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.memremap import (
    MEMORY_TYPE,
    DevPagemap,
    DevPagemapOps,
    folio_is_device_private,
    is_device_private_page,
    memremap_pages,
    zone_device_folio_init,
)
from pyfolio.sim.memmap import PG, ZONE_DEVICE


def _ops() -> DevPagemapOps:
    return DevPagemapOps(page_free=lambda pfn, order: None,
                         migrate_to_ram=lambda *a: 0)


def test_device_registers_one_pgmap_over_the_device_frames():
    m = System(ram="16M", device="8M")
    mm = m.machine
    dev = m.device
    assert mm.pgmaps == [dev.driver.pgmap] and dev.driver.pgmap.id == 0
    assert dev.driver.pgmap.range == (mm.device_base, mm.mem.nr)
    assert mm.mem.nr - mm.device_base == 2048
    assert (mm.mem.zone[mm.device_base:] == ZONE_DEVICE).all()
    assert (mm.mem.pgmap[mm.device_base:] == 0).all()
    assert (mm.mem.pgmap[:mm.device_base] == -1).all()
    assert is_device_private_page(mm, mm.device_base) and not is_device_private_page(mm, 5)
    assert dev.free_large == 4 and dev.free_small == 0
    assert (mm.mem._refcount[mm.device_base:] == 0).all()
    assert m.check() == []


def test_memremap_pages_rejects_bad_ranges_and_changes_nothing():
    m = System(ram="16M", device="4M")
    mm = m.machine
    m.device  # noqa: B018 - registers the pgmap
    before = snapshot(mm)
    with pytest.raises(MmError) as e:
        memremap_pages(mm, DevPagemap((mm.device_base, mm.device_base + 8),
                                      MEMORY_TYPE.MEMORY_DEVICE_PRIVATE, _ops()))
    assert e.value.errno == EBUSY
    with pytest.raises(MmError) as e:
        memremap_pages(mm, DevPagemap((0, 8), MEMORY_TYPE.MEMORY_DEVICE_PRIVATE, _ops()))
    assert e.value.errno == EINVAL
    assert snapshot(mm) == before and len(mm.pgmaps) == 1


def test_no_device_memory_means_no_device():
    m = System(ram="16M")
    with pytest.raises(MmError) as e:
        m.device  # noqa: B018
    assert e.value.errno == EINVAL


def test_zone_device_folio_init_gives_a_locked_referenced_compound_folio():
    m = System(ram="16M", device="4M")
    mm = m.machine
    d = m.device.driver
    head = d.free_folios[-1]
    folio = Folio(mm, head)
    zone_device_folio_init(folio, d.pgmap, 9)
    assert folio.order == 9 and folio.refcount == 1 and mm.mem.test(head, PG.locked)
    assert mm.mem.test(head, PG.large_rmappable) and folio_is_device_private(folio)
    assert (mm.mem.compound_head[head + 1: head + 512] == head).all()
