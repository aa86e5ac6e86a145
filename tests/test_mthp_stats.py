"""Per-size mTHP statistics (hugepages-<size>kB/stats/): the kernel's item list, the value
each counted path gives (mm/huge_memory.c, mm/memory.c, mm/rmap.c, mm/page_alloc.c,
mm/migrate.c, v6.18; the deltas measured on 6.18.44 in the fidelity research notes, item 9),
the facade's bad inputs, and the invariant that catches a wrong gauge."""

from __future__ import annotations

import pytest

from pyfolio import EINVAL, KiB, MiB, MmError, System
from pyfolio.include.linux.huge_mm import MTHP_STAT, mod_mthp_stat, mthp_stat_name
from pyfolio.mm.debug_vm import snapshot
from pyfolio.system import Process

BIG, SMALL = "2048kB", "64kB"
#: enum mthp_stat_item of include/linux/huge_mm.h (v6.18), in order
KERNEL_ITEMS = ("anon_fault_alloc", "anon_fault_fallback", "anon_fault_fallback_charge",
                "zswpout", "swpin", "swpin_fallback", "swpin_fallback_charge", "swpout",
                "swpout_fallback", "shmem_alloc", "shmem_fallback", "shmem_fallback_charge",
                "split", "split_failed", "split_deferred", "nr_anon",
                "nr_anon_partially_mapped")


def moved(m: System, size: str, before: dict[str, int]) -> dict[str, int]:
    now = m.mthp_stats(size)
    return {k: now[k] - before[k] for k in now if now[k] != before[k]}


def thp(m: System, length: int = 2 * MiB) -> tuple[Process, int]:
    p = m.spawn()
    a = p.mmap(length)
    p.madvise(a, length, "hugepage")
    return p, a


@pytest.fixture
def m() -> System:
    return System(ram="64M")


# -- the files ----------------------------------------------------------------------------
def test_items_are_the_kernels_in_the_kernels_order(m: System) -> None:
    assert tuple(mthp_stat_name(i) for i in MTHP_STAT) == KERNEL_ITEMS
    assert tuple(m.mthp_stats(BIG)) == KERNEL_ITEMS == tuple(m.mthp_stats("16kB"))
    # order 1 is a file-only size: any_stats + file_stats, no anon_* / nr_anon files
    assert tuple(m.mthp_stats("8kB")) == tuple(i for i in KERNEL_ITEMS if i not in (
        "anon_fault_alloc", "anon_fault_fallback", "anon_fault_fallback_charge",
        "split_deferred", "nr_anon", "nr_anon_partially_mapped"))
    assert set(m.mthp_stats(SMALL).values()) == {0}


def test_mod_mthp_stat_ignores_order_0_and_orders_above_pmd(m: System) -> None:
    for order in (0, -1, 10):
        mod_mthp_stat(m.machine, order, MTHP_STAT.MTHP_STAT_SPLIT, 1)
    assert not m.machine.mthp_stats


@pytest.mark.parametrize("size", ["4kB", "4096kB", "64KB", "64k", "", "2M"])
def test_a_size_x86_64_does_not_have_is_einval_and_changes_nothing(m: System,
                                                                    size: str) -> None:
    p, a = thp(m)
    p.touch(a, 2 * MiB)  # some state that must stay as it is
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        m.mthp_stats(size)
    assert e.value.errno == EINVAL and "8kB" in str(e.value) and "2048kB" in str(e.value)
    assert snapshot(m.machine) == before


def test_a_size_that_is_not_a_string_is_einval(m: System) -> None:
    with pytest.raises(MmError) as e:
        m.mthp_stats(64)  # type: ignore[arg-type]
    assert e.value.errno == EINVAL and "not a string" in str(e.value)


# -- anon faults ----------------------------------------------------------------------------
def test_thp_fault_counts_alloc_and_nr_anon(m: System) -> None:
    p, a = thp(m)
    b = m.mthp_stats(BIG)
    p.touch(a, 2 * MiB)
    assert moved(m, BIG, b) == {"anon_fault_alloc": 1, "nr_anon": 1}  # map_anon_folio_pmd()
    assert m.check() == []


def test_thp_fallback_counts_anon_fault_fallback_only_where_the_kernel_does(m: System) -> None:
    m.fragment()  # no order-9 block left
    p, a = thp(m)
    b = m.mthp_stats(BIG)
    p.write(a, 1)  # vma_alloc_anon_folio_pmd() fails
    assert moved(m, BIG, b) == {"anon_fault_fallback": 1}
    assert m.vmstat()["thp_fault_fallback"] == 1
    q, c = thp(m)
    q.read(c)
    # a read whose huge zero folio cannot be allocated counts only thp_fault_fallback
    assert m.vmstat()["thp_fault_fallback"] == 2 and moved(m, BIG, b) == {
        "anon_fault_fallback": 1}
    assert m.check() == []


def test_huge_zero_page_read_counts_nothing_write_allocates(m: System) -> None:
    p, a = thp(m)
    b = m.mthp_stats(BIG)
    p.read(a)
    assert moved(m, BIG, b) == {}
    p.write(a, 1)  # do_huge_zero_wp_pmd() -> map_anon_folio_pmd()
    assert moved(m, BIG, b) == {"anon_fault_alloc": 1, "nr_anon": 1}


def test_mthp_fault_counts_per_folio_and_falls_back_per_order(m: System) -> None:
    m.set_mthp(SMALL, "madvise")
    m.set_mthp("32kB", "madvise")
    p, a = thp(m, 256 * KiB)
    b = m.mthp_stats(SMALL)
    p.touch(a, 256 * KiB)
    assert moved(m, SMALL, b) == {"anon_fault_alloc": 4, "nr_anon": 4}  # alloc_anon_folio()
    from pyfolio.mm.page_alloc import fragment

    fragment(m.machine, 16)  # no free order-4 block, order-3 blocks left
    q, c = thp(m, 256 * KiB)
    b64, b32 = m.mthp_stats(SMALL), m.mthp_stats("32kB")
    q.write(c, 1)
    assert moved(m, SMALL, b64) == {"anon_fault_fallback": 1}
    assert moved(m, "32kB", b32) == {"anon_fault_alloc": 1, "nr_anon": 1}
    assert m.check() == []


def test_use_zero_page_off_makes_a_read_allocate_a_thp(m: System) -> None:
    m.set_use_zero_page(False)
    p, a = thp(m)
    b = m.mthp_stats(BIG)
    p.read(a)
    assert moved(m, BIG, b) == {"anon_fault_alloc": 1, "nr_anon": 1}
    assert p.lookup(a).kind == "huge" and m.use_zero_page is False
    m.set_use_zero_page(True)
    assert m.machine.thp_use_zero_page is True


@pytest.mark.parametrize("value", [1, 0, "1", "true", None, 1.0])
def test_use_zero_page_takes_a_bool_only(m: System, value: object) -> None:
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        m.set_use_zero_page(value)  # type: ignore[arg-type]
    assert e.value.errno == EINVAL and "True or False" in str(e.value)
    assert m.use_zero_page is True and snapshot(m.machine) == before


# -- partial unmaps, the shrinker, splits ---------------------------------------------------
def test_partial_munmap_then_shrinker(m: System) -> None:
    p, a = thp(m)
    p.touch(a, 2 * MiB)
    b = m.mthp_stats(BIG)
    p.munmap(a + 1 * MiB, 1 * MiB)
    assert moved(m, BIG, b) == {"split_deferred": 1, "nr_anon_partially_mapped": 1}
    b = m.mthp_stats(BIG)
    m.drop_caches()
    assert moved(m, BIG, b) == {"split": 1, "nr_anon": -1, "nr_anon_partially_mapped": -1}
    assert m.check() == []


def test_madv_free_of_a_pmd_mapped_thp_splits_without_split_deferred(m: System) -> None:
    p, a = thp(m)
    p.touch(a, 2 * MiB)
    b = m.mthp_stats(BIG)
    p.madvise(a, 40 * KiB, "free")
    assert moved(m, BIG, b) == {"split": 1, "nr_anon": -1}


def test_splitting_a_pte_mapped_thp_passes_through_partially_mapped(m: System) -> None:
    """try_to_migrate() replaces the PTEs one by one: after the first, the folio is
    partially mapped (split_deferred +1), and the split unqueues it (nets 0)."""
    p, a = thp(m)
    p.touch(a, 2 * MiB)
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    b = m.mthp_stats(BIG)
    p.madvise(a + 64 * KiB, 40 * KiB, "free")
    assert moved(m, BIG, b) == {"split": 1, "split_deferred": 1, "nr_anon": -1}
    assert m.vmstat()["thp_deferred_split_page"] == 1 and m.check() == []


def test_mthp_partial_unmap_free_and_munmap(m: System) -> None:
    m.set_mthp(SMALL, "madvise")
    p, a = thp(m, 256 * KiB)
    p.touch(a, 256 * KiB)
    b = m.mthp_stats(SMALL)
    p.munmap(a + 16 * KiB, 4 * KiB)
    assert moved(m, SMALL, b) == {"split_deferred": 1, "nr_anon_partially_mapped": 1}
    b = m.mthp_stats(SMALL)
    p.madvise(a + 64 * KiB, 8 * KiB, "free")
    assert moved(m, SMALL, b) == {"split": 1, "split_deferred": 1, "nr_anon": -1}
    b = m.mthp_stats(SMALL)
    m.drop_caches()
    assert moved(m, SMALL, b) == {"split": 1, "nr_anon": -1, "nr_anon_partially_mapped": -1}
    b = m.mthp_stats(SMALL)
    p.munmap(a, 256 * KiB)
    assert moved(m, SMALL, b) == {"nr_anon": -2}  # free_pages_prepare(), per large folio
    assert m.check() == []


def test_uniform_and_buddy_splits_move_nr_anon_per_new_folio(m: System) -> None:
    p, a = thp(m, 4 * MiB)
    p.touch(a, 4 * MiB)
    big, small = m.mthp_stats(BIG), m.mthp_stats(SMALL)
    m.split(p.folio_at(a).pfn, 4)  # type: ignore[union-attr]
    assert moved(m, BIG, big) == {"split": 1, "nr_anon": -1}
    assert moved(m, SMALL, small) == {"nr_anon": 32}  # __split_unmapped_folio(): +1 each
    before = {s: m.mthp_stats(s) for s in ("1024kB", "512kB", "256kB", "128kB", "64kB",
                                            "32kB", "16kB")}
    m.split(p.folio_at(a + 2 * MiB).pfn, 0, uniform=False, at=257)  # type: ignore[union-attr]
    assert {s: moved(m, s, b) for s, b in before.items()} == {
        "1024kB": {"nr_anon": 1}, "512kB": {"nr_anon": 1}, "256kB": {"nr_anon": 1},
        "128kB": {"nr_anon": 1}, "64kB": {"nr_anon": 1}, "32kB": {"nr_anon": 1},
        "16kB": {"nr_anon": 1}}
    assert m.mthp_stats(BIG)["split"] == 2 and m.check() == []


def test_failed_split_counts_split_failed_early_einval_does_not(m: System) -> None:
    p, a = thp(m)
    p.touch(a, 2 * MiB)
    pfn = p.folio_at(a).pfn  # type: ignore[union-attr]
    b = m.mthp_stats(BIG)
    with pytest.raises(MmError):
        m.split(pfn, 1)  # order 1: uniform_split_supported() false, a plain return
    assert moved(m, BIG, b) == {}
    p.pin(a, 4 * KiB)
    with pytest.raises(MmError):
        m.split(pfn, 0)  # can_split_folio() false: goto out_unlock, counted
    assert moved(m, BIG, b) == {"split_failed": 1}


# -- folios that move, are copied or are collapsed -----------------------------------------
def test_fork_exit_and_munmap_keep_nr_anon_the_live_thps(m: System) -> None:
    p, a = thp(m)
    p.touch(a, 2 * MiB)
    c = p.fork()
    assert m.mthp_stats(BIG)["nr_anon"] == 1  # shared, not copied
    c.write(a + 8 * KiB, 1)  # the child's PMD split and one COW page
    c.exit()
    assert m.mthp_stats(BIG)["nr_anon"] == 1
    p.munmap(a, 2 * MiB)
    assert m.mthp_stats(BIG)["nr_anon"] == 0 and m.check() == []


def test_collapse_counts_nr_anon_not_anon_fault_alloc(m: System) -> None:
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.touch(a, 2 * MiB)
    b = m.mthp_stats(BIG)
    p.madvise(a, 2 * MiB, "collapse")
    assert moved(m, BIG, b) == {"nr_anon": 1} and m.check() == []


def test_device_thp_counts_in_nr_anon_while_on_the_device() -> None:
    m = System(ram="64M", device="16M")
    p, a = thp(m)
    p.touch(a, 2 * MiB)
    m.device.migrate_to_device(p, a, 2 * MiB)
    assert p.lookup(a).kind == "device_private"
    # __folio_migrate_mapping() +1 for the device folio, free_pages_prepare() -1 for RAM's
    assert m.mthp_stats(BIG)["nr_anon"] == 1 and m.check() == []
    p.read(a)  # back to RAM; free_zone_device_folio() -1
    assert m.mthp_stats(BIG)["nr_anon"] == 1 and m.check() == []
    p.exit()
    assert m.mthp_stats(BIG)["nr_anon"] == 0 and m.check() == []


# -- the invariant ------------------------------------------------------------------------
@pytest.mark.parametrize("item", [MTHP_STAT.MTHP_STAT_NR_ANON,
                                  MTHP_STAT.MTHP_STAT_NR_ANON_PARTIALLY_MAPPED])
def test_the_invariant_catches_a_wrong_gauge(m: System, item: MTHP_STAT) -> None:
    p, a = thp(m)
    p.touch(a, 2 * MiB)
    p.munmap(a + 1 * MiB, 1 * MiB)
    assert m.check() == []
    m.machine.mthp_stats[(9, int(item))] -= 1
    bad = m.check()
    assert [(v.kind, v.where) for v in bad] == [("mthp-stat", 9)] and item.name in bad[0].detail
