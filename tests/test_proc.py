"""Unit tests of pyfolio/fs/proc/task_mmu.py and internal.py: /proc/PID/smaps fields
(fs/proc/task_mmu.c:show_smap(), smaps_account()), folio_precise_page_mapcount() and
/proc/vmstat names and gauges (mm/vmstat.c) (v6.18)."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.fs.proc.internal import precise_page_mapcount
from pyfolio.fs.proc.task_mmu import SMAPS_FIELDS, smaps
from pyfolio.mm.migrate_device import MIGRATE_VMA_SELECT, MigrateVma, migrate_vma_setup
from pyfolio.mm.vmstat import vmstat
from pyfolio.sim.machine import VMSTAT_COUNTERS
from pyfolio.sim.memmap import PG

_ZERO = dict.fromkeys(SMAPS_FIELDS[3:], 0)  # all but Size, KernelPageSize, MMUPageSize


@pytest.fixture
def m() -> System:
    return System(ram="64M", thp="madvise", seed=0)


def _kb(d: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in d.items() if k not in ("Start", "End") + SMAPS_FIELDS[:3]}


def test_smaps_of_written_pages_is_private_dirty(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 12 * KiB)
    (d,) = smaps(p.mm)
    assert (d["Start"], d["End"], d["Size"]) == (a, a + 16 * KiB, 16)
    assert (d["KernelPageSize"], d["MMUPageSize"]) == (4, 4)
    assert list(d)[:len(SMAPS_FIELDS)] == list(SMAPS_FIELDS)  # show_smap()'s order
    assert _kb(d) == {**_ZERO, "Rss": 12, "Pss": 12, "Pss_Dirty": 12, "Private_Dirty": 12,
                      "Referenced": 12, "Anonymous": 12}


def test_smaps_counts_no_zero_page(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.read(a)
    p.read(a + 4 * KiB)  # vm_normal_page() gives no page for the zero page
    assert _kb(smaps(p.mm)[0]) == _ZERO
    b = p.mmap(2 * MiB)
    p.madvise(b, 2 * MiB, "hugepage")
    p.read(b)  # the huge zero page, PMD-mapped
    assert p.lookup(b).kind == "zero" and p.lookup(b).level == "pmd"
    assert all(_kb(d) == _ZERO for d in smaps(p.mm))


def test_smaps_after_fork_splits_pss_and_moves_pages_to_shared(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 8 * KiB)
    c = p.fork()
    for d in (smaps(p.mm)[0], smaps(c.mm)[0]):
        assert (d["Rss"], d["Pss"], d["Shared_Dirty"], d["Private_Dirty"], d["Anonymous"]) \
            == (8, 4, 8, 0, 8)  # dirty: SavedDirty after pte_wrprotect() still counts
    c.write(a, 1)  # COW: one page each becomes private again
    d = smaps(p.mm)[0]
    assert (d["Rss"], d["Pss"], d["Shared_Dirty"], d["Private_Dirty"]) == (8, 6, 4, 4)


def test_smaps_of_a_thp_counts_anonhugepages_only_while_pmd_mapped(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    thp = smaps(p.mm)[0]
    assert (thp["Start"], thp["Size"]) == (a, 2048)  # MADV_HUGEPAGE split the VMA
    assert _kb(thp) == {**_ZERO, "Rss": 2048, "Pss": 2048, "Pss_Dirty": 2048,
                        "Private_Dirty": 2048, "Referenced": 2048, "Anonymous": 2048,
                        "AnonHugePages": 2048}
    c = p.fork()
    for mm in (p.mm, c.mm):
        d = smaps(mm)[0]
        assert (d["AnonHugePages"], d["Shared_Dirty"], d["Pss"]) == (2048, 2048, 1024)
    c.exit()
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")  # split_huge_pmd(): same pages, now by PTEs
    assert sum(d["Rss"] for d in smaps(p.mm)) == 2048
    assert sum(d["AnonHugePages"] for d in smaps(p.mm)) == 0


def test_precise_page_mapcount_adds_the_entire_mapcount(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    f = p.folio_at(a)
    c = p.fork()
    assert [precise_page_mapcount(m.machine, f.pfn + i) for i in (0, 2, 511)] == [2, 2, 2]
    c.write(a + 8 * KiB, 1)  # child's PMD split, page 2 copied
    # page 0: parent's PMD + child's PTE; page 2: parent's PMD only
    assert [precise_page_mapcount(m.machine, f.pfn + i) for i in (0, 2, 511)] == [2, 1, 2]
    assert m.kpagecount([f.pfn, f.pfn + 2]) == [2, 1]
    assert precise_page_mapcount(m.machine, p.mm.pgd) == 0  # a page table has a type


def test_vmstat_uses_the_kernels_names(m: System) -> None:
    d = vmstat(m.machine)
    gauges = {"nr_free_pages", "nr_anon_pages", "nr_anon_transparent_hugepages",
              "nr_page_table_pages", "nr_swapcached", "nr_writeback", "nr_file_pages",
              "nr_shmem", "nr_shmem_hugepages", "nr_file_hugepages", "nr_shmem_pmdmapped",
              "nr_file_pmdmapped"}
    assert set(d) == set(VMSTAT_COUNTERS) | gauges
    # every counter name is one of mm/vmstat.c:vmstat_text[] (spot-check the THP ones)
    assert {"thp_fault_alloc", "thp_fault_fallback", "thp_split_pmd", "thp_split_page",
            "thp_split_page_failed", "thp_deferred_split_page", "thp_zero_page_alloc",
            "pgfault", "pgmigrate_success"} <= set(d)
    assert all(v == 0 for k, v in d.items() if k not in ("nr_free_pages",
                                                           "nr_page_table_pages"))
    assert d["nr_free_pages"] == m.nr_free_pages()


def test_vmstat_gauges_follow_faults_splits_and_unmaps(m: System) -> None:
    p = m.spawn()
    tables = vmstat(m.machine)["nr_page_table_pages"]
    a = p.mmap(16 * KiB)
    p.touch(a, 8 * KiB)
    d = vmstat(m.machine)
    assert d["pgfault"] == 2 and d["nr_anon_pages"] == 2
    assert d["nr_page_table_pages"] == tables + 3  # PUD, PMD and PTE tables
    q, b = m.spawn_with_thp(4 * MiB)
    d = vmstat(m.machine)
    assert (d["nr_anon_transparent_hugepages"], d["nr_anon_pages"], d["thp_fault_alloc"]) \
        == (1, 514, 1)
    q.mprotect(b + 4 * KiB, 4 * KiB, "r")
    d = vmstat(m.machine)
    assert (d["nr_anon_transparent_hugepages"], d["nr_anon_pages"], d["thp_split_pmd"]) \
        == (0, 514, 1)
    q.munmap(b + 1 * MiB, 1 * MiB)  # half the THP's pages are no longer mapped
    assert vmstat(m.machine)["nr_anon_pages"] == 2 + 256


@pytest.mark.parametrize("child_writes_at", [8 * KiB, 0])
def test_smaps_weighs_each_page_of_a_pmd_mapped_thp_by_its_own_mapcount(
        m: System, child_writes_at: int) -> None:
    """smaps_account() (CONFIG_PAGE_MAPCOUNT): the parent still maps the THP by its PMD,
    the child COW-copied one page, so 511 pages have mapcount 2 and one has 1. Measured on
    6.18.44 (both offsets): Pss 1026, Shared_Dirty 2044, Private_Dirty 4 in both."""
    p, a = m.spawn_with_thp(4 * MiB)
    c = p.fork()
    c.write(a + child_writes_at, 1)
    for who, huge in ((p, 2048), (c, 0)):
        d = smaps(who.mm)[0]
        assert (d["Rss"], d["Pss"], d["Pss_Dirty"], d["Shared_Dirty"], d["Private_Dirty"],
                d["Shared_Clean"], d["Private_Clean"], d["AnonHugePages"]) \
            == (2048, 1026, 1026, 2044, 4, 0, 0, huge)
    c.exit()  # refcount 1 again: the whole folio is private at once
    d = smaps(p.mm)[0]
    assert (d["Pss"], d["Shared_Dirty"], d["Private_Dirty"]) == (2048, 0, 2048)
    assert m.check() == []


def test_smaps_lazyfree_needs_a_clean_entry_and_folio(m: System) -> None:
    """LazyFree: anon, not PG_swapbacked, and neither the PMD nor the folio dirty
    (smaps_account()). Measured on 6.18.44: MADV_FREE of a whole THP gives LazyFree 2048,
    Private_Clean 2048; one write makes the PMD dirty: LazyFree 0, Private_Dirty 2048,
    although PG_swapbacked stays clear."""
    p, a = m.spawn_with_thp(4 * MiB)
    p.madvise(a, 2 * MiB, "free")
    d = smaps(p.mm)[0]
    assert (d["LazyFree"], d["Private_Clean"], d["Private_Dirty"], d["AnonHugePages"]) \
        == (2048, 2048, 0, 2048)
    p.write(a, 1)
    d = smaps(p.mm)[0]
    assert (d["LazyFree"], d["Private_Clean"], d["Private_Dirty"]) == (0, 0, 2048)
    assert not m.machine.mem.test(p.folio_at(a).pfn, PG.swapbacked)


def test_smaps_counts_a_migration_entry_as_shared_with_its_whole_size() -> None:
    """A non-present entry (here the PMD migration entry of a THP being migrated to a
    device) is "maybe shared": Rss and Pss take the whole folio, nothing is Private; an
    anon folio behind a PMD entry still counts in AnonHugePages (smaps_pmd_entry())."""
    m = System(ram="64M", device="16M")
    p, a = m.spawn_with_thp()
    migrate_vma_setup(MigrateVma(p.vma_at(a), a, a + 2 * MiB, pgmap_owner=m.device.driver,
                                 flags=MIGRATE_VMA_SELECT.SYSTEM | MIGRATE_VMA_SELECT.COMPOUND))
    assert p.lookup(a).kind == "migration" and p.lookup(a).level == "pmd"
    d = smaps(p.mm)[0]
    assert (d["Rss"], d["Pss"], d["Shared_Clean"] + d["Shared_Dirty"], d["Private_Clean"],
            d["Private_Dirty"], d["AnonHugePages"]) == (2048, 2048, 2048, 0, 0, 2048)
