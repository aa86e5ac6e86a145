"""The claims of chapters/10-migrating-a-thp.md, checked through the same pyfolio calls."""

from __future__ import annotations

from functools import partial

import pytest

from conftest import ROOT, glued
from pyfolio import KiB, MiB, System
from pyfolio.lib.dmirror import dmirror_migrate_alloc_and_copy, dmirror_migrate_finalize_and_map
from pyfolio.sim.errors import MmError
from pyfolio.mm.migrate_device import (
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    MIGRATE_PFN_SHIFT,
    MIGRATE_PFN_VALID,
    MIGRATE_PFN_WRITE,
    MIGRATE_VMA_SELECT,
    MigrateVma,
    migrate_pfn,
    migrate_vma_finalize,
    migrate_vma_pages,
    migrate_vma_setup,
)
from pyfolio.system import Process
from pyfolio.views.migration_cost import migration_cost, migration_frames, mpfn_str

V, M, W, C = MIGRATE_PFN_VALID, MIGRATE_PFN_MIGRATE, MIGRATE_PFN_WRITE, MIGRATE_PFN_COMPOUND
SELECT = MIGRATE_VMA_SELECT.SYSTEM | MIGRATE_VMA_SELECT.COMPOUND


def machine() -> tuple[System, Process]:
    m = System(ram="64M", thp="madvise", seed=0)
    m.add_device("dmirror0", memory="8M")
    return m, m.spawn()


def driver_steps(m: System, args: MigrateVma) -> list[tuple[str, partial[object]]]:
    drv = m.device.driver
    return [("setup", partial(migrate_vma_setup, args)),
            ("alloc and copy", partial(dmirror_migrate_alloc_and_copy, args, drv)),
            ("pages", partial(migrate_vma_pages, args)),
            ("map in the device", partial(dmirror_migrate_finalize_and_map, args, drv)),
            ("finalize", partial(migrate_vma_finalize, args))]


def test_small_migration_src_dst_flags() -> None:
    m, p = machine()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "nohugepage")
    p.write(a, 7)
    p.write(a + 4 * KiB, 8)
    p.read(a + 8 * KiB)
    pfn0 = p.pfn_at(a)
    args = MigrateVma(p.vma_at(a), a, a + 16 * KiB, pgmap_owner=m.device.driver, flags=SELECT)
    steps = driver_steps(m, args)
    steps[0][1]()
    src = list(args.src)
    assert [p.lookup(a + i * 4 * KiB).kind for i in range(4)] == [
        "migration", "migration", "zero", "none"]
    for _, fn in steps[1:]:
        fn()
    assert src[0] == migrate_pfn(pfn0) | M | W and src[1] & V
    assert src[2] == src[3] == M  # holes: no page, no VALID
    assert [bool(d & W) for d in args.dst] == [True, True, False, False]
    assert all(d & V and not d & C for d in args.dst) and args.cpages == 4
    after = [p.lookup(a + i * 4 * KiB) for i in range(4)]
    assert [e.kind for e in after] == ["device_private"] * 4
    assert [e.pfn for e in after] == [d >> 6 for d in args.dst]
    assert [m.device.read(p, a + i * 4 * KiB) for i in range(4)] == [7, 8, 0, 0]
    assert m.check() == []


def test_whole_thp_is_one_compound_entry_and_one_device_private_pmd() -> None:
    m, p = machine()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
    head = p.folio_at(a).pfn
    free = m.nr_free_pages()
    args = MigrateVma(p.vma_at(a), a, a + 2 * MiB, pgmap_owner=m.device.driver, flags=SELECT)
    frames = migration_frames(m, p, a, args, driver_steps(m, args))
    assert [f.pmd_kind for f in frames] == ["huge", "migration", "migration", "migration",
                                            "migration", "device_private"]
    assert args.src[0] == migrate_pfn(head) | M | W | C and args.src[1:] == [0] * 511
    assert args.dst[0] & (V | W | C) == V | W | C and args.dst[1:] == [0] * 511
    assert (args.npages, args.cpages) == (512, 1)
    e = p.lookup(a)
    assert (e.level, e.kind, e.write, e.pfn) == ("pmd", "device_private", True,
                                                 args.dst[0] >> 6)
    assert not e.raw & 1 and m.folio(e.pfn).order == 9
    assert m.nr_free_pages() - free == 512
    assert m.device.read(p, a + 20 * KiB) == (a >> 12) + 6
    assert m.check() == []
    back = m.device.migrate_to_system(p, a, 2 * MiB)
    home = p.lookup(a)
    assert sum(r.migrated for r in back) == 512
    assert (home.level, home.kind, home.write) == ("pmd", "huge", True)
    assert p.folio_at(a).order == 9 and p.read(a + 20 * KiB) == (a >> 12) + 6
    assert m.folio(e.pfn).refcount == 0 and m.device.read(p, a) is None
    assert m.check() == []


def test_pinned_thp_stays_where_it_is() -> None:
    m, p = machine()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
    p.pin(a, 4 * KiB)
    assert not any(r.migrated for r in m.device.migrate_to_device(p, a, 2 * MiB))
    assert (p.lookup(a).level, p.lookup(a).kind) == ("pmd", "huge")
    assert p.folio_at(a).order == 9 and m.check() == []


@pytest.mark.parametrize(("backing", "to_device", "to_system"), [
    # (PTE writes, PMD writes, TLB flushes, pages copied, pages migrated) per direction
    ("4k", (1024, 0, 513, 512, 512), (1024, 0, 0, 512, 512)),
    ("thp", (0, 2, 1, 512, 512), (0, 2, 0, 512, 512)),
])
def test_cost_model_for_2_mib(backing: str, to_device: tuple[int, ...],
                              to_system: tuple[int, ...]) -> None:
    there, back = migration_cost(2 * MiB, backing)
    for c, want in ((there, to_device), (back, to_system)):
        assert (c.pte_writes, c.pmd_writes, c.tlb_flushes, c.pages_copied, c.migrated) == want
        assert c.entries_written == want[0] + want[1]
    assert there.direction == "to device" and back.direction == "to system"


def test_cost_model_is_linear_in_2_mib_windows() -> None:
    for backing in ("4k", "thp"):
        one, four = migration_cost(2 * MiB, backing), migration_cost(4 * MiB, backing)
        for a, b in zip(one, four, strict=True):
            assert (2 * a.entries_written, 2 * a.tlb_flushes, 2 * a.pages_copied) == (
                b.entries_written, b.tlb_flushes, b.pages_copied)


def test_vmstat_migration_counters_do_not_count_device_migration() -> None:
    m, p = machine()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
    v0 = m.vmstat()
    m.device.migrate_to_device(p, a, 2 * MiB)
    v1 = m.vmstat()
    empty = p.mmap(2 * MiB)
    p.madvise(empty, 2 * MiB, "hugepage")
    m.device.migrate_to_device(p, empty, 2 * MiB)
    v2 = m.vmstat()
    for k in ("pgmigrate_success", "thp_migration_success", "thp_migration_fail",
              "thp_migration_split", "thp_split_page"):
        assert v0[k] == v1[k] == v2[k] == 0
    assert v1["nr_free_pages"] - v0["nr_free_pages"] == 512
    assert v2["thp_fault_alloc"] - v1["thp_fault_alloc"] == 1
    assert (p.lookup(empty).level, p.lookup(empty).kind) == ("pmd", "device_private")
    assert m.check() == []


def test_cost_model_rejects_bad_input() -> None:
    with pytest.raises(MmError) as e:
        migration_cost(1 * MiB, "thp")
    assert e.value.errname == "EINVAL"
    with pytest.raises(MmError) as e:
        migration_cost(2 * MiB, "2m")
    assert e.value.errname == "EINVAL"


CHAPTER = ROOT / "chapters/10-migrating-a-thp.md"


@pytest.mark.xdist_group("10-migrating-a-thp")
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    g = glued(CHAPTER)
    # The chapter's own sequence on one machine: 16 KiB of 4 KiB pages, then a THP, then back.
    m, p = machine()
    small = p.mmap(2 * MiB)
    p.madvise(small, 2 * MiB, "nohugepage")
    p.write(small, 7)
    p.write(small + 4 * KiB, 8)
    p.read(small + 8 * KiB)
    args = MigrateVma(p.vma_at(small), small, small + 16 * KiB, pgmap_owner=m.device.driver,
                      flags=SELECT)
    steps = driver_steps(m, args)
    steps[0][1]()
    src = list(args.src)
    for _, fn in steps[1:]:
        fn()
    assert (g["ch10_small_src0"], g["ch10_small_src2"], g["ch10_small_dst0"]) == (
        mpfn_str(src[0]), mpfn_str(src[2]), mpfn_str(args.dst[0]))
    assert (g["ch10_small_cpages"], g["ch10_shift"], g["ch10_small_dev0"]) == (
        args.cpages, MIGRATE_PFN_SHIFT, m.device.read(p, small))

    thp = p.mmap(2 * MiB)
    p.madvise(thp, 2 * MiB, "hugepage")
    p.touch(thp, 2 * MiB)
    free = m.nr_free_pages()
    targs = MigrateVma(p.vma_at(thp), thp, thp + 2 * MiB, pgmap_owner=m.device.driver,
                       flags=SELECT)
    migration_frames(m, p, thp, targs, driver_steps(m, targs))
    e = p.lookup(thp)
    assert (g["ch10_thp_src0"], g["ch10_thp_dst0"]) == (mpfn_str(targs.src[0]),
                                                        mpfn_str(targs.dst[0]))
    assert (g["ch10_thp_cpages"], g["ch10_thp_npages"], g["ch10_thp_empty"]) == (
        targs.cpages, targs.npages, sum(1 for s in targs.src[1:] if s == 0))
    assert (g["ch10_thp_freed"], g["ch10_thp_devorder"], g["ch10_thp_dev5"]) == (
        m.nr_free_pages() - free, m.folio(e.pfn).order, m.device.read(p, thp + 20 * KiB))
    assert g["ch10_pmd_raw"] == f"{e.raw:#018x}"
    back = m.device.migrate_to_system(p, thp, 2 * MiB)
    home = p.lookup(thp)
    assert g["ch10_back_migrated"] == sum(r.migrated for r in back)
    assert g["ch10_back_kind"] == f"{home.level.upper()} {home.kind}"
    assert g["ch10_back_same"] == f"PFN {home.pfn:#x}"

    # The cost sweep: 2 MiB each way, and 8 MiB to the device.
    k4, b4 = migration_cost(2 * MiB, "4k")
    kt, bt = migration_cost(2 * MiB, "thp")
    assert (g["ch10_4k_entries"], g["ch10_4k_flushes"], g["ch10_4k_copied"]) == (
        k4.entries_written, k4.tlb_flushes, k4.pages_copied)
    assert (g["ch10_thp_entries"], g["ch10_thp_flushes"], g["ch10_thp_copied"]) == (
        kt.entries_written, kt.tlb_flushes, kt.pages_copied)
    assert (g["ch10_4k_back_flushes"], g["ch10_thp_back_flushes"]) == (b4.tlb_flushes,
                                                                       bt.tlb_flushes)
    assert (g["ch10_4k_back_entries"], g["ch10_thp_back_entries"]) == (b4.entries_written,
                                                                       bt.entries_written)
    assert g["ch10_ratio_entries"] == k4.entries_written // kt.entries_written
    assert (g["ch10_8m_4k_flushes"], g["ch10_8m_thp_flushes"]) == (
        migration_cost(8 * MiB, "4k")[0].tlb_flushes, migration_cost(8 * MiB, "thp")[0].tlb_flushes)

    # The vmstat table: the THP (back in RAM) to the device again, then an empty 2 MiB.
    v0 = m.vmstat()
    m.device.migrate_to_device(p, thp, 2 * MiB)
    v1 = m.vmstat()
    empty = p.mmap(2 * MiB)
    p.madvise(empty, 2 * MiB, "hugepage")
    m.device.migrate_to_device(p, empty, 2 * MiB)
    v2 = m.vmstat()
    assert g["ch10_vm_free"] == v1["nr_free_pages"] - v0["nr_free_pages"]
    assert g["ch10_vm_fault_alloc"] == v2["thp_fault_alloc"] - v1["thp_fault_alloc"]
    assert g["ch10_empty_kind"] == p.lookup(empty).kind
    assert m.check() == []
