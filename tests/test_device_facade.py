"""The device and split facade: System.add_device, split_design, System.split, drop_caches."""

import pytest

from pyfolio import EEXIST, EINVAL, KiB, MiB, MmError, System
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.memmap import ZONE_DEVICE


def test_add_device_gives_each_device_its_own_aligned_range():
    m = System(ram="16M")
    d0 = m.add_device("dmirror0", memory="8M")
    d1 = m.add_device("dmirror1", memory="4M", large_pages=False)
    r0, r1 = d0.driver.pgmap.range, d1.driver.pgmap.range
    assert r0 == (4096, 4096 + 2048) and r1 == (r0[1], r0[1] + 1024)
    assert m.machine.mem.nr == r1[1]
    assert (m.machine.mem.zone[r0[0]:] == ZONE_DEVICE).all()
    assert (m.machine.mem.pgmap[r0[0]:r0[1]] == 0).all()
    assert (m.machine.mem.pgmap[r1[0]:r1[1]] == 1).all()
    assert d0.large_pages and not d1.large_pages
    assert (d0.free_large, d1.free_large, d1.free_small) == (4, 2, 0)  # carved alike; allocs fail
    assert m.device is d0 and list(m.devices) == ["dmirror0", "dmirror1"]
    assert m.check() == []


def test_add_device_rejects_bad_input_and_changes_nothing():
    m = System(ram="16M")
    m.add_device("gpu", memory="4M")
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        m.add_device("gpu", memory="4M")
    assert e.value.errno == EEXIST and "gpu" in str(e.value)
    for bad in ("3M", "4K", 0):
        with pytest.raises(MmError) as e:
            m.add_device("other", memory=bad)
        assert e.value.errno == EINVAL and "2 MiB" in str(e.value)
    assert snapshot(m.machine) == before and list(m.devices) == ["gpu"]


def test_a_device_without_large_pages_takes_the_split_fallback():
    m = System(ram="16M")
    dev = m.add_device("dmirror0", memory="8M", large_pages=False)
    p, a = m.spawn_with_thp(4 * MiB)
    res = dev.migrate_to_device(p, a, 2 * MiB)
    assert all(r.migrated for r in res) and len(res) == 512
    # mm/migrate_device.c counts no THP_MIGRATION_SPLIT (mm/migrate.c's batch migration does)
    assert m.vmstat()["thp_migration_split"] == 0
    assert dev.free_large == 3  # one free 2 MiB chunk was broken into the 512 small pages
    assert {p.folio_at(a + i * 4 * KiB).order for i in range(512)} == {0}
    assert p.lookup(a).kind == "device_private" and p.lookup(a).level == "pte"
    assert m.check() == []


@pytest.mark.parametrize("name, switch", [("split-unmapped-folio", "b"), ("unmapped-param", "a")])
def test_split_design_reaches_every_device(name, switch):
    m = System(ram="16M", split_design=name)
    dev = m.add_device("d", memory="4M")
    assert m.split_design == name and dev.driver.split_design == switch
    m.split_design = "split-unmapped-folio"
    assert dev.driver.split_design == "b"
    with pytest.raises(MmError) as e:
        m.split_design = "flag"
    assert e.value.errno == EINVAL and "'flag'" in str(e.value)
    assert m.split_design == "split-unmapped-folio"
    with pytest.raises(MmError):
        System(ram="16M", split_design="c")


def test_system_split_uniform_and_non_uniform():
    m = System(ram="16M")
    p, a = m.spawn_with_thp(4 * MiB)
    head = p.folio_at(a).pfn
    m.split(head, 0, uniform=False, at=257)
    # buddy-style around page 257: 256 stays order 8; 258-259 an order-1 piece is skipped
    # for anon (order 2 splits to 0), so 256..259 are order 0, then 260 (2), 264 (3) ...
    orders = {i: p.folio_at(a + i * 4 * KiB).order for i in (0, 256, 257, 258, 259, 260, 264, 272)}
    assert orders == {0: 8, 256: 0, 257: 0, 258: 0, 259: 0, 260: 2, 264: 3, 272: 4}
    assert m.check() == []
    q, b = m.spawn_with_thp(4 * MiB)
    m.split(q.folio_at(b).pfn, 3)
    assert {q.folio_at(b + i * 4 * KiB).order for i in range(0, 512, 8)} == {3}
    assert m.check() == []


def test_system_split_of_a_pinned_folio_fails_with_eagain_and_changes_nothing():
    m = System(ram="16M")
    p, a = m.spawn_with_thp(4 * MiB)
    p.pin(a, 4 * KiB)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        m.split(p.folio_at(a).pfn, 0)
    assert e.value.errno == 11  # EAGAIN
    assert m.vmstat()["thp_split_page_failed"] == 1
    assert m.mthp_stats("2048kB")["split_failed"] == 1  # __folio_split()'s out: counts both
    after = snapshot(m.machine)
    assert after.keys() == before.keys()
    assert {k: v for k, v in after.items() if k not in ("vmstat", "mthp_stats")} == \
        {k: v for k, v in before.items() if k not in ("vmstat", "mthp_stats")}


def test_drop_caches_runs_the_deferred_split_shrinker():
    m = System(ram="16M")
    p, a = m.spawn_with_thp(4 * MiB)
    p.munmap(a + 1 * MiB, 1 * MiB)
    assert p.folio_at(a).order == 9
    assert m.drop_caches() == 1
    assert p.folio_at(a).order == 0 and m.vmstat()["thp_split_page"] == 1
    assert m.drop_caches() == 0
    assert m.check() == []


def test_splitting_the_pmd_migration_entry_flushes_no_tlb():
    """Only the present PMD's replacement by a migration entry is flushed
    (set_pmd_migration_entry: pmdp_invalidate); splitting that non-present PMD into PTE
    migration entries is not (__split_huge_pmd_locked reads it without pmdp_invalidate),
    nor are the device-private PTEs that replace the migration entries."""
    m = System(ram="16M")
    dev = m.add_device("dmirror0", memory="8M", large_pages=False)
    p, a = m.spawn_with_thp(4 * MiB)
    before = m.trace.costs["tlb_flushes"]
    mark = m.trace.mark()
    dev.migrate_to_device(p, a, 2 * MiB)
    assert [e.name for e in m.trace.since(mark)].count("split_huge_pmd") == 1
    assert m.trace.costs["tlb_flushes"] - before == 1


def test_migration_results_are_one_per_page_read_from_src_and_dst():
    """MigrationResults: a THP migrated whole is its head's entry plus 511 migrated tail
    pages; a pinned 4 KiB page is not collected (folio_try_share_anon_rmap_pte() fails)."""
    from pyfolio.device import MigrationResults, PageResult

    m = System(ram="64M", device="16M", thp="madvise")
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 4 * MiB)
    pinned = a + 2 * MiB + 5 * 4 * KiB
    p.pin(pinned, 4 * KiB)
    head, last = p.folio_at(a).pfn, p.folio_at(a + 4 * MiB - 4 * KiB).pfn
    res = m.device.migrate_to_device(p, a, 4 * MiB)
    assert isinstance(res, MigrationResults) and len(res) == 1024 and res.migrated == 1023
    assert res[0].src_pfn == head and p.lookup(a).pfn == res[0].dst_pfn
    assert res[1] == PageResult(a + 4 * KiB, True, None, None)
    assert res[517] == PageResult(pinned, False, None, None, "not collected")
    assert res[-1] == res[1023] and res[-1].src_pfn == last
    assert res[-1].dst_pfn == p.lookup(a + 4 * MiB - 4 * KiB).pfn
    assert [r.address for r in res] == [a + i * 4 * KiB for i in range(1024)]
    assert res[510:514] == list(res)[510:514] and res == list(res) and res != list(res)[:-1]
    assert repr(res) == "<MigrationResults: 1023 of 1024 pages migrated>"
    with pytest.raises(IndexError, match="1024"):
        res[1024]
