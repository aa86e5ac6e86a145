"""Evicting a device: migrate_device_range() / migrate_device_pfns() and HMM_DMIRROR_RELEASE.

Expected values: mm/migrate_device.c and lib/test_hmm.c (the 2025 THP series; research notes
device_api §3, R6) and hmm-tests ``migrate_release`` (migrate; RELEASE -> 0; the CPU reads
the data back). No device memory on the lab machine: source only.
"""

from __future__ import annotations

from pyfolio import KiB, MiB, System
from pyfolio.include.linux.mm import folio_unlock, page_folio
from pyfolio.mm.migrate import (
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    migrate_pfn_to_page,
    ref_drop,
)
from pyfolio.mm.migrate_device_range import (
    migrate_device_finalize,
    migrate_device_pages,
    migrate_device_pfns,
    migrate_device_range,
)


def test_migrate_release() -> None:
    # hmm-tests migrate_release: migrate 1024 pages (0, cpages 1024); RELEASE -> 0; the CPU
    # reads the first half back and sees i
    m = System(ram="64M", device="16M")
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.touch(a, 4 * MiB)
    want = [p.read(a + i * 4 * KiB) for i in range(512)]
    assert m.device.migrate_to_device(p, a, 4 * MiB).migrated == 1024
    assert m.device.release() == 1024
    assert all(p.lookup(a + i * 4 * KiB).kind == "page" for i in range(0, 1024, 97))
    assert [p.read(a + i * 4 * KiB) for i in range(512)] == want
    assert p.status()["RssAnon"] == 4096 and m.check() == []


def test_large_device_folios_come_back_large_in_every_process() -> None:
    # dmirror_device_evict_chunk(): a COMPOUND entry gets a folio of the same order;
    # finalize maps it back in every mm that mapped the device folio (here after fork)
    m = System(ram="64M", device="16M")
    p, a = m.spawn_with_thp(4 * MiB)
    data = p.read(a + 8 * KiB)
    assert m.device.migrate_to_device(p, a, 2 * MiB).migrated == 512
    assert p.lookup(a).level == "pmd" and p.lookup(a).kind == "device_private"
    child = p.fork()  # copy_huge_pmd(): both map the device THP (read-only now)
    assert child.lookup(a).kind == "device_private"
    rss = (p.status()["RssAnon"], child.status()["RssAnon"])
    assert m.device.release() >= 512
    for proc in (p, child):
        e = proc.lookup(a)
        assert e.kind in ("huge", "page") and m.machine.is_ram(e.pfn)
        assert proc.read(a + 8 * KiB) == data
    assert (p.status()["RssAnon"], child.status()["RssAnon"]) == rss and m.check() == []


def test_a_device_thp_is_evicted_as_one_order_9_folio() -> None:
    m = System(ram="64M", device="16M")
    p, a = m.spawn_with_thp()
    data = [p.read(a + i * 4 * KiB) for i in (0, 7, 511)]
    assert m.device.migrate_to_device(p, a, 2 * MiB).migrated == 512
    dev = p.lookup(a)
    assert (dev.level, dev.kind) == ("pmd", "device_private")
    thp_fault = m.vmstat()["thp_fault_alloc"]
    assert m.device.release() == 512
    e = p.lookup(a)
    assert (e.level, e.kind) == ("pmd", "huge") and p.folio_at(a).order == 9
    assert [p.read(a + i * 4 * KiB) for i in (0, 7, 511)] == data
    assert m.vmstat()["thp_fault_alloc"] == thp_fault and m.check() == []


def test_the_device_works_again_after_release() -> None:
    m = System(ram="64M", device="16M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.touch(a, 64 * KiB)
    m.device.migrate_to_device(p, a, 64 * KiB)
    m.device.release()
    assert m.device.free_large == m.device.free_small == 0  # no chunk left
    assert m.device.migrate_to_device(p, a, 64 * KiB).migrated == 16  # a new chunk
    assert m.check() == []


def test_migrate_device_pfns_evicts_a_chosen_set() -> None:
    # migrate_device_pfns(): a pre-filled, non-contiguous array of device PFNs; the driver
    # copies and calls migrate_device_pages() and migrate_device_finalize() itself
    m = System(ram="64M", device="16M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.touch(a, 64 * KiB)
    m.device.migrate_to_device(p, a, 64 * KiB)
    dev = [p.lookup(a + i * 4 * KiB).pfn for i in (1, 5, 9)]
    src = list(dev)
    migrate_device_pfns(m.machine, src)
    assert all(s & MIGRATE_PFN_MIGRATE and not s & MIGRATE_PFN_COMPOUND for s in src)
    assert [p.lookup(a + i * 4 * KiB).kind for i in (1, 5, 9)] == ["migration"] * 3
    from pyfolio.lib.dmirror import _copy, _lock_new
    from pyfolio.mm.migrate import migrate_pfn
    from pyfolio.mm.page_alloc import alloc_pages

    dst = []
    for s in src:
        d = alloc_pages(m.machine, 0)
        _lock_new(m.machine, d)
        _copy(m.machine, d, migrate_pfn_to_page(s), 1)
        dst.append(migrate_pfn(d))
    migrate_device_pages(m.machine, src, dst, 3)
    migrate_device_finalize(m.machine, src, dst, 3)
    assert [p.lookup(a + i * 4 * KiB).kind for i in range(4)] == [
        "device_private", "page", "device_private", "device_private"]
    assert p.read(a + 5 * 4 * KiB) == ((a + 20 * KiB) >> 12) + 1 and m.check() == []


def test_free_and_locked_device_pages_are_skipped() -> None:
    # migrate_device_pfn_lock(): a free page (refcount 0) or a folio someone else has
    # locked gives src 0; migrate_device_pages() without a dst clears nothing else
    m = System(ram="64M", device="16M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 16 * KiB)
    m.device.migrate_to_device(p, a, 16 * KiB)
    used = p.lookup(a).pfn
    folio = page_folio(m.machine, used)
    from pyfolio.include.linux.mm import folio_lock
    from pyfolio.mm.migrate import ref_hold

    ref_hold(folio)
    folio_lock(folio)  # "someone else" holds the folio lock
    start, end = m.device.driver.pgmap.range
    src = [0] * (end - start)
    migrate_device_range(m.machine, src, start, end - start)
    assert src[used - start] == 0
    assert sum(bool(s) for s in src) == 3  # the other three pages of the range
    migrate_device_pages(m.machine, src, [0] * len(src), len(src))  # no destinations
    migrate_device_finalize(m.machine, src, [0] * len(src), len(src))
    assert [p.lookup(a + i * 4 * KiB).kind for i in range(4)] == ["device_private"] * 4
    folio_unlock(folio)
    ref_drop(folio)
    assert m.check() == []
