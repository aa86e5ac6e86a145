"""MADV_COLD (mm/madvise.c:madvise_cold_or_pageout_pte_range(), v6.18, pageout false)."""

from __future__ import annotations

from pyfolio import KiB, MiB, System
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.memmap import PG


def _split_counts(m: System, before: dict[str, int]) -> tuple[int, int]:
    v = m.vmstat()
    return v["thp_split_pmd"] - before["thp_split_pmd"], \
        v["thp_split_page"] - before["thp_split_page"]


def test_cold_on_part_of_a_thp_splits_it_and_ages_the_covered_ptes() -> None:
    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp()
    v0 = m.vmstat()
    p.madvise(a, 40 * KiB, "cold")
    assert _split_counts(m, v0) == (1, 1)  # the PMD, then the folio (split_folio())
    assert {p.folio_at(a + i * 4 * KiB).order for i in range(512)} == {0}
    assert [p.lookup(a + i * 4 * KiB).accessed for i in (0, 9, 10, 511)] == \
        [False, False, True, True]  # only the covered PTEs are made old
    assert not m.machine.mem.test(p.pfn_at(a), PG.referenced | PG.active)
    assert m.check() == []


def test_cold_on_a_whole_thp_ages_the_pmd_without_a_split() -> None:
    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp()
    v0 = m.vmstat()
    assert p.lookup(a).accessed
    p.madvise(a, 2 * MiB, "cold")
    e = p.lookup(a)
    assert _split_counts(m, v0) == (0, 0) and (e.level, e.kind, e.accessed) == ("pmd", "huge",
                                                                                False)
    assert p.folio_at(a).order == 9 and m.check() == []


def test_cold_leaves_a_folio_another_process_maps_and_a_pinned_one_alone() -> None:
    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp()
    child = p.fork()  # the THP is mapped by both: folio_maybe_mapped_shared()
    before = snapshot(m.machine)
    p.madvise(a, 40 * KiB, "cold")
    assert snapshot(m.machine) == before
    child.exit()
    q, b = m.spawn_with_thp()
    q.mprotect(b + 4 * KiB, 4 * KiB, "r")  # PTE-mapped now; pin a page: the split fails
    q.pin(b + 100 * 4 * KiB, 4 * KiB)
    v0 = m.vmstat()
    q.madvise(b, 40 * KiB, "cold")
    # the mprotect cut the range into three VMAs; the walk of each tries (and fails) once
    assert q.folio_at(b).order == 9 and m.vmstat()["thp_split_page_failed"] == \
        v0["thp_split_page_failed"] + 3
    q.unpin(b + 100 * 4 * KiB, 4 * KiB)
    assert m.check() == []
