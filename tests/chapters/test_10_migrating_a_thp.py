"""The claims of chapters/10-migrating-a-thp.md, checked through the same pyfolio calls."""

from __future__ import annotations

from functools import partial

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.dmirror import dmirror_migrate_alloc_and_copy, dmirror_migrate_finalize_and_map
from pyfolio.errors import MmError
from pyfolio.migrate_device import (
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
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
from pyfolio.views.migration_cost import migration_cost, migration_frames

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
