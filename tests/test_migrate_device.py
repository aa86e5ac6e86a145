"""migrate_vma: setup/pages/finalize, COMPOUND THP migration, the split fallback (a and b)."""

import pytest

from pyfolio import EINVAL, KiB, MiB, MmError, System
from pyfolio.include.linux.mm import Folio
from pyfolio.lib.dmirror import dmirror_devmem_alloc_page, dmirror_migrate_finalize_and_map
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.migrate_device import (
    MIGRATE_PFN,
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    MIGRATE_PFN_SHIFT,
    MIGRATE_PFN_WRITE,
    MIGRATE_VMA_SELECT,
    MigrateVma,
    migrate_pfn,
    migrate_vma_finalize,
    migrate_vma_pages,
    migrate_vma_setup,
)
from pyfolio.sim.memmap import PG


def _thp(dev_size="16M"):
    m = System(ram="64M", device=dev_size)
    p, a = m.spawn_with_thp()
    return m, p, a


def test_flag_values_are_the_kernels():
    assert (MIGRATE_PFN.VALID, MIGRATE_PFN.MIGRATE, MIGRATE_PFN.WRITE, MIGRATE_PFN.COMPOUND) \
        == (1, 2, 8, 16)
    assert MIGRATE_PFN_SHIFT == 6 and migrate_pfn(3) == (3 << 6) | 1
    assert [int(f) for f in MIGRATE_VMA_SELECT] == [1, 2, 4, 8]


def test_4k_round_trip_keeps_data_and_counts():
    m = System(ram="64M", device="16M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    for i in range(16):
        p.write(a + i * 4 * KiB, 1000 + i)
    old = [p.pfn_at(a + i * 4 * KiB) for i in range(16)]
    free0 = m.nr_free_pages()
    r = m.device.migrate_to_device(p, a, 64 * KiB)
    assert [x.migrated for x in r] == [True] * 16
    e = p.lookup(a)
    assert e.kind == "device_private" and e.write and e.level == "pte"
    assert m.nr_free_pages() == free0 + 16  # the old frames went back to the buddy
    assert all(int(m.machine.mem._refcount[pfn]) == 0 for pfn in old)
    f = p.folio_at(a)
    assert f.order == 0 and f.refcount == 1 and f.mapcount == 1
    assert [m.device.read(p, a + i * 4 * KiB) for i in range(16)] == [1000 + i for i in range(16)]
    assert m.check() == []
    m.device.migrate_to_system(p, a, 64 * KiB)
    assert [p.lookup(a + i * 4 * KiB).kind for i in range(16)] == ["page"] * 16
    assert [p.read(a + i * 4 * KiB) for i in range(16)] == [1000 + i for i in range(16)]
    assert m.device.free_small + 512 * m.device.free_large == 4096
    back = [p.pfn_at(a + i * 4 * KiB) for i in range(16)]  # 16 distinct RAM frames again
    assert len(set(back)) == 16 and all(m.machine.is_ram(pfn) for pfn in back)
    assert m.nr_free_pages() == free0  # as many frames in use as before the round trip
    assert m.check() == []


def test_thp_to_device_with_large_pages_is_one_compound_entry():
    m, p, a = _thp()
    src = p.folio_at(a)
    dev = m.device.driver
    args = MigrateVma(p.vma_at(a), a, a + 2 * MiB, pgmap_owner=dev,
                      flags=MIGRATE_VMA_SELECT.SYSTEM | MIGRATE_VMA_SELECT.COMPOUND)
    migrate_vma_setup(args)
    assert args.npages == 512 and args.cpages == 1
    assert args.src[0] == migrate_pfn(src.pfn) | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND \
        | MIGRATE_PFN_WRITE
    assert args.src[1:] == [0] * 511
    assert p.lookup(a).kind == "migration" and p.lookup(a).level == "pmd"
    assert (src.refcount, src.mapcount) == (1, 0) and not m.machine.mem.test(src.pfn, PG.lru)
    assert m.check() == []
    d = dmirror_devmem_alloc_page(dev, True)
    assert d is not None
    args.dst[0] = migrate_pfn(d) | MIGRATE_PFN_WRITE | MIGRATE_PFN_COMPOUND
    migrate_vma_pages(args)
    assert args.src[0] & MIGRATE_PFN_MIGRATE and m.check() == []
    dmirror_migrate_finalize_and_map(args, dev)
    migrate_vma_finalize(args)
    e = p.lookup(a)
    assert (e.level, e.kind, e.pfn, e.write) == ("pmd", "device_private", d, True)
    f = p.folio_at(a)
    assert (f.order, f.refcount, f.mapcount, f.entire_mapcount) == (9, 1, 1, 1)
    assert m.machine.mem._refcount[src.pfn] == 0  # the source THP was freed
    assert m.vmstat()["thp_split_pmd"] == 0 and m.check() == []


def _walk_fallback(design):
    """kernel-reference §6.8: PMD-mapped THP -> device that gives only small pages."""
    m, p, a = _thp()
    src = p.folio_at(a)
    dev = m.device.driver
    steps = {"start": (src.refcount, src.mapcount)}
    args = MigrateVma(p.vma_at(a), a, a + 2 * MiB, pgmap_owner=dev, split_design=design,
                      flags=MIGRATE_VMA_SELECT.SYSTEM | MIGRATE_VMA_SELECT.COMPOUND)
    migrate_vma_setup(args)
    steps["setup"] = (Folio(m.machine, src.pfn).refcount, Folio(m.machine, src.pfn).mapcount)
    assert m.check() == []
    for i in range(512):
        d = dmirror_devmem_alloc_page(dev, False)
        assert d is not None
        m.machine.mem.stamp[d] = m.machine.mem.stamp[src.pfn + i]  # the driver's copy
        args.dst[i] = migrate_pfn(d) | MIGRATE_PFN_WRITE
    assert m.check() == []
    migrate_vma_pages(args)
    pieces = [Folio(m.machine, src.pfn + i) for i in range(512)]
    steps["split"] = sorted({(f.order, f.refcount, f.mapcount) for f in pieces})
    assert all(m.machine.mem.test(f.pfn, PG.locked) for f in pieces)
    assert p.lookup(a + 4 * KiB).kind == "migration" and p.lookup(a).level == "pte"
    assert all(args.src[i] & MIGRATE_PFN_MIGRATE for i in range(512))
    assert m.check() == []
    migrate_vma_finalize(args)
    dst = p.folio_at(a + 4 * KiB)
    steps["finalize"] = (dst.order, dst.refcount, dst.mapcount)
    assert int(m.machine.mem._refcount[src.pfn]) == 0 and m.check() == []
    return m, p, a, steps


@pytest.mark.parametrize("design", ["a", "b"])
def test_split_fallback_refcounts_follow_the_walk_through(design):
    m, p, a, steps = _walk_fallback(design)
    assert steps == {"start": (1, 1), "setup": (1, 0), "split": [(0, 1, 0)],
                     "finalize": (0, 1, 1)}
    assert [p.lookup(a + i * 4 * KiB).kind for i in range(512)] == ["device_private"] * 512
    assert m.vmstat()["thp_split_pmd"] == 1
    assert m.vmstat()["thp_migration_split"] == 0  # mm/migrate.c only, not migrate_device.c
    assert p.read(a + 77 * 4 * KiB) == (a >> 12) + 78


def test_both_designs_leave_identical_state():
    ma, _, _, _ = _walk_fallback("a")
    mb, _, _, _ = _walk_fallback("b")
    assert snapshot(ma.machine) == snapshot(mb.machine)
    assert ma.machine.trace.costs == mb.machine.trace.costs


@pytest.mark.parametrize("design", ["a", "b"])
def test_facade_fallback_with_large_allocations_failing(design):
    m, p, a = _thp()
    m.device.fail_large_alloc = True
    r = m.device.migrate_to_device(p, a, 2 * MiB, design=design)
    assert sum(x.migrated for x in r) == 512
    pfns = {p.lookup(a + i * 4 * KiB).pfn for i in range(512)}
    assert len(pfns) == 512 and all(p.folio_at(a + i * 4 * KiB).order == 0 for i in (0, 300))
    assert m.device.free_large == 7 and m.check() == []


def test_bad_input_changes_nothing():
    m, p, a = _thp()
    m.device  # noqa: B018 - the driver registers its memory on first use
    before = snapshot(m.machine)
    for addr, length in ((a + 1, 4 * KiB), (a + 4 * MiB, 4 * KiB), (a, 0)):
        with pytest.raises(MmError) as e:
            m.device.migrate_to_device(p, addr, length)
        assert e.value.errno == EINVAL
    with pytest.raises(MmError):
        m.device.migrate_to_device(p, a, 2 * MiB, design="c")
    with pytest.raises(MmError) as e:
        migrate_vma_setup(MigrateVma(p.vma_at(a), a, a + 4 * MiB))
    assert e.value.errno == EINVAL
    assert snapshot(m.machine) == before and m.check() == []


def test_migrating_device_memory_again_migrates_nothing():
    m, p, a = _thp()
    m.device.migrate_to_device(p, a, 2 * MiB)
    before = snapshot(m.machine)
    r = m.device.migrate_to_device(p, a, 2 * MiB)
    assert not any(x.migrated for x in r) and r[0].why == "not collected"
    assert snapshot(m.machine) == before


def _small_pages_then_an_mthp():
    """Four order-0 pages, then a 64 KiB mTHP at +64 KiB, in one PMD of one VMA."""
    m = System(ram="64M", device="16M")
    p = m.spawn()
    a = p.mmap(4 * MiB)
    a = (a + 2 * MiB - 1) & ~(2 * MiB - 1)
    p.touch(a, 16 * KiB)
    m.set_mthp("64kB", "always")
    m.thp = "always"
    p.touch(a + 64 * KiB, 64 * KiB)
    assert p.folio_at(a).order == 0 and p.folio_at(a + 64 * KiB).order == 4
    return m, p, a


def test_collect_flushes_once_at_the_end_when_it_splits_a_folio_on_the_way():
    """migrate_vma_collect_pmd() (merged series): ``unmapped`` is set once, above
    ``again:``, so after migrate_vma_split_folio() succeeds the walk goes on and a single
    flush_tlb_range() at the end covers the PTEs cleared before and after the split; only
    the failure path flushes early. Besides it: one ptep_clear_flush() per anon-exclusive
    page (4 + 16) and whatever the split itself flushes."""
    m, p, a = _small_pages_then_an_mthp()
    before = m.trace.costs["tlb_flushes"]
    m.split(p.folio_at(a + 64 * KiB).pfn)  # what the split alone costs
    split_cost = m.trace.costs["tlb_flushes"] - before
    m, p, a = _small_pages_then_an_mthp()
    before = m.trace.costs["tlb_flushes"]
    args = MigrateVma(p.vma_at(a), a, a + 128 * KiB, pgmap_owner=m.device.driver,
                      flags=MIGRATE_VMA_SELECT.SYSTEM)
    migrate_vma_setup(args)
    assert [p.lookup(a + i * 4 * KiB).kind for i in (0, 3, 16, 31)] == ["migration"] * 4
    assert m.trace.costs["tlb_flushes"] - before == 20 + split_cost + 1
    assert m.check() == []
