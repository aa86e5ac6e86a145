"""Tests of pyfolio.mm.huge_memory_split: __folio_split and its entry points, exact counts
(Linux 6.18)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfolio import EAGAIN, EBUSY, EINVAL, KiB, MiB, MmError, System
from pyfolio.include.linux.huge_mm import MTHP_STAT
from pyfolio.include.linux.mm import (
    Folio,
    folio_get,
    folio_lock,
    folio_put,
    folio_unlock,
    page_folio,
)
from pyfolio.mm import huge_memory_split as sp
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.memmap import NO_HEAD, PG

#: the snapshot key of hugepages-2048kB/stats/split_failed
_SPLIT_FAILED_9 = (9, int(MTHP_STAT.MTHP_STAT_SPLIT_FAILED))


def thp(m: System, fork: bool = False) -> tuple:
    p, a = m.spawn_with_thp(4 * MiB)
    return p, a, p.folio_at(a).pfn


def orders(m: System, head: int, nr: int = 512) -> list[int]:
    mm = m.machine
    heads = [head + i for i in range(nr) if mm.mem.compound_head[head + i] == NO_HEAD]
    return [Folio(mm, h).order for h in heads]


def split(m: System, pfn: int, new_order: int, uniform: bool = True, at: int = 0) -> int:
    """get/lock/split/unlock/put like the debugfs splitter; the kernel's return value."""
    folio = page_folio(m.machine, pfn)
    folio_get(folio)
    folio_lock(folio)
    ret = sp.split_folio_to_order(folio, new_order) if uniform else \
        sp.folio_split(folio, new_order, folio.pfn + at, None)
    folio_unlock(folio)
    folio_put(folio)
    return ret


@pytest.fixture
def m() -> System:
    return System(ram="32M", seed=0)


def data_ok(p, a: int) -> bool:
    return all(p.read(a + i * 4 * KiB) == (a >> 12) + i + 1 for i in range(512))


def test_uniform_split_to_order0_pmd_mapped(m: System) -> None:
    p, a, pfn = thp(m)
    free = m.nr_free_pages()
    assert split(m, pfn, 0) == 0
    assert orders(m, pfn) == [0] * 512
    v = m.vmstat()
    assert (v["thp_split_page"], v["thp_split_pmd"], v["thp_split_page_failed"]) == (1, 1, 0)
    assert v["thp_deferred_split_page"] == 0 and pfn not in m.machine.deferred_split_queue
    e = p.lookup(a + 5 * 4 * KiB)
    assert (e.level, e.kind, e.pfn, e.write, e.dirty) == ("pte", "page", pfn + 5, True, True)
    for i in (0, 5, 511):
        f = m.folio(pfn + i)
        assert (f.pfn, f.order, f.refcount, f.mapcount) == (pfn + i, 0, 1, 1)
        assert m.machine.mem.test(pfn + i, PG.anon_exclusive)
        assert m.machine.mem.test(pfn + i, PG.lru) and not m.machine.mem.test(pfn + i, PG.locked)
        assert m.machine.mem.index[pfn + i] == m.machine.mem.index[pfn] + i
    assert m.nr_free_pages() == free  # the deposited PTE table is now in use, nothing freed
    assert data_ok(p, a)
    assert m.check() == []


def test_uniform_split_to_order2(m: System) -> None:
    p, a, pfn = thp(m)
    assert split(m, pfn, 2) == 0
    assert orders(m, pfn) == [2] * 128
    f = m.folio(pfn + 8)
    assert (f.pfn, f.order, f.refcount, f.mapcount, f.page_mapcounts()) == (
        pfn + 8, 2, 4, 4, [1, 1, 1, 1])
    assert m.folio(pfn + 9).pfn == pfn + 8
    assert data_ok(p, a) and m.check() == []


@pytest.mark.parametrize("at,want", [
    (0, [0, 0, 0, 0, 2, 3, 4, 5, 6, 7, 8]),
    (257, [8, 0, 0, 0, 0, 2, 3, 4, 5, 6, 7]),
    (511, [8, 7, 6, 5, 4, 3, 2, 0, 0, 0, 0]),
])
def test_non_uniform_split(m: System, at: int, want: list[int]) -> None:
    p, a, pfn = thp(m)
    assert split(m, pfn, 0, uniform=False, at=at) == 0
    assert orders(m, pfn) == want
    assert m.folio(pfn + at).order == 0
    assert m.vmstat()["thp_split_page"] == 1
    assert data_ok(p, a) and m.check() == []


def test_non_uniform_to_order3_matches_kernel_comment(m: System) -> None:
    """folio_split() kernel-doc: order 9 at its third order-3 piece to order 3."""
    p, a, pfn = thp(m)
    assert split(m, pfn, 3, uniform=False, at=16) == 0
    assert orders(m, pfn) == [4, 3, 3, 5, 6, 7, 8]
    assert m.check() == []


@pytest.mark.parametrize("order,uniform", [(1, True), (1, False), (9, True), (10, False)])
def test_bad_orders_are_einval_and_not_counted(m: System, order: int, uniform: bool) -> None:
    p, a, pfn = thp(m)
    before = snapshot(m.machine)
    assert split(m, pfn, order, uniform) == -EINVAL
    assert snapshot(m.machine) == before  # thp_split_page_failed not counted either
    assert m.check() == []


def test_pinned_folio_is_eagain_and_unchanged(m: System) -> None:
    p, a, pfn = thp(m)
    p.pin(a + 4 * KiB, 4 * KiB)
    before = snapshot(m.machine)
    assert split(m, pfn, 0) == -EAGAIN
    after = snapshot(m.machine)
    assert after.pop("vmstat")["thp_split_page_failed"] == 1
    assert after.pop("mthp_stats") == {**before.pop("mthp_stats"), _SPLIT_FAILED_9: 1}
    before.pop("vmstat")
    assert after == before
    with pytest.raises(MmError) as e:
        sp.split_mapped_folio(m.machine, pfn, 0)
    assert e.value.errno == EAGAIN
    assert m.vmstat()["thp_split_page_failed"] == 2 and m.check() == []


def test_unmapped_folio_has_no_anon_vma_ebusy(m: System) -> None:
    p, a, pfn = thp(m)
    folio = Folio(m.machine, pfn)
    folio_get(folio)
    m.machine.mem.extra_refs[pfn] += 1
    p.munmap(a, 2 * MiB)
    folio_lock(folio)
    before = snapshot(m.machine)
    assert sp.split_folio(folio) == -EBUSY  # folio_get_anon_vma(): not mapped
    after = snapshot(m.machine)
    failed = after["vmstat"].pop("thp_split_page_failed")  # type: ignore[attr-defined]
    assert failed == before["vmstat"].pop("thp_split_page_failed") + 1  # type: ignore[attr-defined]
    # split_failed of 2048kB too (the anon_vma step's -EBUSY is counted at out:)
    assert after.pop("mthp_stats") == {**before.pop("mthp_stats"), _SPLIT_FAILED_9: 1}
    assert after == before  # only the failure counters moved
    folio_unlock(folio)
    m.machine.mem.extra_refs[pfn] -= 1
    folio_put(folio)
    assert m.check() == []


def test_pte_mapped_thp(m: System) -> None:
    p, a, pfn = thp(m)
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    assert p.folio_at(a).order == 9 and p.lookup(a).level == "pte"
    assert split(m, pfn, 0) == 0
    v = m.vmstat()
    # try_to_migrate_one() drops PTE rmaps one by one: the folio is transiently
    # partially mapped and queued (then unqueued under the freeze)
    assert (v["thp_split_pmd"], v["thp_split_page"], v["thp_deferred_split_page"]) == (1, 1, 1)
    assert not m.machine.deferred_split_queue
    assert p.lookup(a + 4 * KiB).write is False and p.lookup(a).write is True
    assert data_ok(p, a) and m.check() == []


@pytest.mark.parametrize("pmd_split", [False, True])
def test_after_fork_both_processes_remapped(m: System, pmd_split: bool) -> None:
    p, a, pfn = thp(m)
    c = p.fork()
    if pmd_split:
        p.mprotect(a, 4 * KiB, "r")
    assert split(m, pfn, 0) == 0
    for proc in (p, c):
        e = proc.lookup(a + 7 * 4 * KiB)
        assert (e.level, e.kind, e.pfn, e.write) == ("pte", "page", pfn + 7, False)
    f = m.folio(pfn + 7)
    assert (f.order, f.refcount, f.mapcount) == (0, 2, 2)
    assert not m.machine.mem.test(pfn + 7, PG.anon_exclusive)
    assert data_ok(p, a) and data_ok(c, a) and m.check() == []


def test_618_0_try_to_migrate_bug_fails_shared_pmd_thp(m: System, monkeypatch) -> None:
    """Linux 6.18.0 (before 939080834fef) stops the walk after one PMD: -EAGAIN."""
    from pyfolio.mm import rmap as rmap

    monkeypatch.setattr(rmap, "TRY_TO_MIGRATE_STOPS_AFTER_PMD_SPLIT", True)
    p, a, pfn = thp(m)
    c = p.fork()
    assert split(m, pfn, 0) == -EAGAIN
    assert m.folio(pfn).order == 9 and m.vmstat()["thp_split_page_failed"] == 1
    assert data_ok(p, a) and data_ok(c, a) and m.check() == []


def test_queued_folio_is_removed_from_deferred_queue(m: System) -> None:
    p, a, pfn = thp(m)
    assert pfn in m.machine.deferred_split_queue  # every new THP, unflagged
    assert split(m, pfn, 0) == 0
    assert not m.machine.deferred_split_queue and m.check() == []


def test_zero_pages_remapped_to_shared_zero_page(m: System) -> None:
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.write(a, 7)  # THP fault: 511 pages stay zero-filled
    pfn = p.folio_at(a).pfn
    free = m.nr_free_pages()
    assert split(m, pfn, 0) == 0
    assert m.nr_free_pages() == free + 511
    e = p.lookup(a + 4 * KiB)
    assert (e.kind, e.pfn, e.write) == ("zero", m.machine.zero_pfn, False)
    assert p.read(a) == 7 and p.read(a + 8 * KiB) == 0
    assert p.smaps()[0]["Rss"] == 4
    assert m.check() == []


def test_split_to_order2_keeps_zero_pages(m: System) -> None:
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.write(a, 7)
    free = m.nr_free_pages()
    assert split(m, p.folio_at(a).pfn, 2) == 0  # only order-0 pages go to the zero page
    assert m.nr_free_pages() == free and m.check() == []


def test_partial_munmap_then_shrinker_frees_unmapped_half(m: System) -> None:
    p, a, pfn = thp(m)
    p.munmap(a + MiB, MiB)
    v = m.vmstat()
    assert (v["thp_split_pmd"], v["thp_deferred_split_page"], v["thp_split_page"]) == (1, 1, 0)
    free = m.nr_free_pages()
    assert sp.shrink_deferred_split(m.machine) == 1
    assert m.vmstat()["thp_split_page"] == 1 and not m.machine.deferred_split_queue
    assert m.nr_free_pages() == free + 256
    assert m.folio(pfn).order == 0 and m.folio(pfn + 255).refcount == 1
    assert all(p.read(a + i * 4 * KiB) == (a >> 12) + i + 1 for i in range(256))
    assert m.check() == []


def test_shrinker_leaves_fully_mapped_thp_alone(m: System) -> None:
    p, a, pfn = thp(m)
    assert sp.deferred_split_scan(m.machine) == 0  # max_ptes_none 511: never underused
    assert m.folio(pfn).order == 9 and not m.machine.deferred_split_queue
    assert m.check() == []


def test_shrinker_splits_underused_thp(m: System) -> None:
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.write(a, 1)
    m.machine.khugepaged_max_ptes_none = 255
    assert sp.deferred_split_scan(m.machine) == 1
    v = m.vmstat()
    assert (v["thp_split_page"], v["thp_underused_split_page"]) == (1, 1)
    assert p.smaps()[0]["Rss"] == 4 and m.check() == []


def test_madvise_free_of_part_splits_at_once(m: System) -> None:
    p, a, pfn = thp(m)
    p.madvise(a, 40 * KiB, "free")
    v = m.vmstat()
    assert (v["thp_split_pmd"], v["thp_split_page"], v["thp_deferred_split_page"]) == (1, 1, 0)
    assert m.folio(pfn).order == 0
    assert not m.machine.mem.test(pfn, PG.dirty) and m.machine.mem.test(pfn + 10, PG.dirty)
    assert m.check() == []


def test_list_gets_new_folios_with_a_reference(m: System) -> None:
    p, a, pfn = thp(m)
    folio = Folio(m.machine, pfn)
    folio_get(folio)
    folio_lock(folio)
    lst: list[Folio] = []
    assert sp.split_huge_page_to_list_to_order(Folio(m.machine, pfn + 3), lst, 0) == 0
    assert [f.pfn for f in lst] == list(range(pfn + 1, pfn + 512))
    assert m.machine.mem.test(pfn + 3, PG.locked) and not m.machine.mem.test(pfn, PG.locked)
    assert m.folio(pfn + 3).refcount == 3  # caller + PTE + list
    folio_unlock(m.folio(pfn + 3))
    folio_put(m.folio(pfn + 3))
    for f in lst:
        m.machine.mem.extra_refs[f.pfn] -= 1
        folio_put(f)
    assert m.check() == []


def _unmapped_thp(m: System) -> tuple:
    """A THP isolated and unmapped as migration leaves it: one held reference, locked."""
    p, a, pfn = thp(m)
    folio = Folio(m.machine, pfn)
    folio_get(folio)
    m.machine.mem.extra_refs[pfn] += 1
    folio_lock(folio)
    sp.unmap_folio(folio)
    return p, a, folio


@pytest.mark.parametrize("design", ["a", "b"])
def test_unmapped_designs_agree(design: str) -> None:
    m = System(ram="32M")
    p, a, folio = _unmapped_thp(m)
    if design == "a":
        ret = sp.split_huge_page_to_list_to_order(folio, None, 0, unmapped=True)
    else:
        ret = sp.folio_split_unmapped(folio, 0)
    assert ret == 0
    mem = m.machine.mem
    heads = range(folio.pfn, folio.pfn + 512)
    assert all(mem._refcount[h] == 1 and mem.test(h, PG.locked) for h in heads)
    assert not any(mem.test(h, PG.lru) for h in range(folio.pfn + 1, folio.pfn + 512))
    assert m.vmstat()["thp_split_page"] == 0  # neither design counts it
    sp.remap_page(folio, 512, 0)
    for h in heads:
        folio_unlock(Folio(m.machine, h))
        mem.extra_refs[h] -= 1
        folio_put(Folio(m.machine, h))
    assert data_ok(p, a) and m.check() == []


def test_folio_split_unmapped_eagain_when_extra_ref() -> None:
    m = System(ram="32M")
    p, a, folio = _unmapped_thp(m)
    folio_get(folio)
    before = snapshot(m.machine)
    assert sp.folio_split_unmapped(folio, 0) == -EAGAIN
    assert snapshot(m.machine) == before


def test_trace_steps(m: System) -> None:
    p, a, pfn = thp(m)
    mark = m.trace.mark()
    split(m, pfn, 0)
    names = [n for n in m.trace.names(mark) if n in (
        "unmap_folio", "folio_ref_freeze", "__split_unmapped_folio", "folio_ref_unfreeze",
        "remap_page")]
    assert names == ["unmap_folio", "folio_ref_freeze", "__split_unmapped_folio",
                     "folio_ref_unfreeze", "remap_page"]
    ev = [e for e in m.trace.since(mark) if e.name == "unmap_folio"][0]
    assert ev.change("mapcount") == (1, 0) and ev.change("refcount") == (2, 1)


@settings(max_examples=100, deadline=None)
@given(fork=st.booleans(), pmd_split=st.booleans(), pin=st.booleans(),
       new_order=st.sampled_from([0, 2, 3, 5, 8]), at=st.integers(0, 511),
       uniform=st.booleans(), touch=st.booleans())
def test_property_split(fork: bool, pmd_split: bool, pin: bool, new_order: int, at: int,
                        uniform: bool, touch: bool) -> None:
    m = System(ram="16M", seed=0)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    if touch:
        p.touch(a, 2 * MiB)
    else:
        p.write(a + at * 4 * KiB, 99)
    pfn = p.folio_at(a).pfn
    c = p.fork() if fork else None
    if pmd_split:
        p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    if pin:
        p.pin(a + 8 * KiB, 4 * KiB)
    total = m.nr_free_pages() + int((m.machine.mem._refcount[: m.machine.nr_ram] > 0).sum()
                                    + (m.machine.mem.compound_head[: m.machine.nr_ram] >= 0).sum())
    before = snapshot(m.machine)
    ret = split(m, pfn, new_order, uniform, at)
    if ret:
        assert ret == -EAGAIN and pin
        after = snapshot(m.machine)
        after["vmstat"].pop("thp_split_page_failed")
        before["vmstat"].pop("thp_split_page_failed")
        assert after.pop("mthp_stats")[_SPLIT_FAILED_9] == \
            before.pop("mthp_stats").get(_SPLIT_FAILED_9, 0) + 1
        assert after == before
    else:
        mem = m.machine.mem
        for h in range(pfn, pfn + 512):
            if mem.compound_head[h] == NO_HEAD and (mem._refcount[h] or mem.page_type[h] == 0):
                o = Folio(m.machine, h).order
                assert h % (1 << o) == 0
        assert m.folio(pfn + at).order == (new_order if uniform or new_order else 0)
    now = m.nr_free_pages() + int((m.machine.mem._refcount[: m.machine.nr_ram] > 0).sum()
                                  + (m.machine.mem.compound_head[: m.machine.nr_ram] >= 0).sum())
    assert now == total
    assert m.check() == []
    for proc in [p] + ([c] if c else []):
        if touch:
            assert proc.read(a + 300 * 4 * KiB) == (a >> 12) + 301


# -- __split_huge_pmd_locked: freeze and PMD migration entries (mm/huge_memory.c) ---------
def _frozen_pmd_split(m: System, readonly: bool, pinned: bool = False) -> tuple:
    """A THP (read-only PMD if asked, pinned if asked), referenced and locked by the
    caller, its PMD split with freeze as try_to_migrate() does for unmap_folio()."""
    from pyfolio.mm.huge_memory import split_huge_pmd_address

    p, a, pfn = thp(m)
    if readonly:
        p.mprotect(a, 2 * MiB, "r")
    if pinned:
        p.pin(a, 4 * KiB)
    folio = page_folio(m.machine, pfn)
    folio_get(folio)
    folio_lock(folio)
    before = (folio.refcount, folio.entire_mapcount)
    split_huge_pmd_address(p.mm.find_vma(a), a, True)
    return p, a, folio, before


@pytest.mark.parametrize("readonly", [False, True])
def test_freeze_pmd_split_installs_migration_entries_and_drops_the_pmd_reference(
        m: System, readonly: bool) -> None:
    from pyfolio.mm.migrate import remove_migration_ptes

    p, a, folio, (ref0, entire0) = _frozen_pmd_split(m, readonly)
    assert (ref0, entire0) == (2, 1)
    entries = [p.lookup(a + i * 4 * KiB) for i in range(512)]
    assert {e.kind for e in entries} == {"migration"}
    assert [e.pfn for e in entries] == list(range(folio.pfn, folio.pfn + 512))
    # writable PMD -> writable entries; read-only exclusive PMD -> readable-exclusive
    assert {(e.write, e.exclusive) for e in entries} == {(not readonly, readonly)}
    assert (folio.refcount, folio.entire_mapcount, folio.mapcount) == (1, 0, 0)
    assert not m.machine.mem.test(folio.pfn, PG.anon_exclusive)  # shared before freezing
    assert remove_migration_ptes(folio, folio, 0) == 512
    e = p.lookup(a + 5 * 4 * KiB)
    assert (e.kind, e.write) == ("page", not readonly)
    assert all(m.machine.mem.test(folio.pfn + i, PG.anon_exclusive) for i in range(512))
    assert (folio.refcount, folio.mapcount) == (513, 512)
    folio_unlock(folio)
    folio_put(folio)
    assert m.check() == []


def test_freeze_pmd_split_of_a_pinned_exclusive_thp_is_a_plain_split(m: System) -> None:
    p, a, folio, (ref0, _) = _frozen_pmd_split(m, readonly=False, pinned=True)
    e = p.lookup(a + 9 * 4 * KiB)
    assert (e.level, e.kind, e.write) == ("pte", "page", True)
    assert folio.refcount == ref0 + 511 and folio.mapcount == 512
    assert all(m.machine.mem.test(folio.pfn + i, PG.anon_exclusive) for i in range(512))
    folio_unlock(folio)
    folio_put(folio)
    p.unpin(a, 4 * KiB)
    assert m.check() == []


@pytest.mark.parametrize("readonly", [False, True])
def test_split_of_a_pmd_migration_entry_keeps_its_kind_and_references(
        m: System, readonly: bool) -> None:
    from pyfolio.mm.huge_memory import split_huge_pmd_address
    from pyfolio.mm.migrate import remove_migration_ptes
    from pyfolio.mm.rmap import try_to_migrate

    p, a, pfn = thp(m)
    if readonly:
        p.mprotect(a, 2 * MiB, "r")
    folio = page_folio(m.machine, pfn)
    folio_get(folio)
    folio_lock(folio)
    assert try_to_migrate(folio, 0)  # no TTU_SPLIT_HUGE_PMD: a PMD migration entry
    pmd = p.lookup(a)
    assert (pmd.level, pmd.kind, pmd.write, pmd.exclusive) == ("pmd", "migration",
                                                               not readonly, readonly)
    ref = folio.refcount
    split_huge_pmd_address(p.mm.find_vma(a), a, False)
    entries = [p.lookup(a + i * 4 * KiB) for i in range(512)]
    assert {(e.level, e.kind, e.write, e.exclusive) for e in entries} == {
        ("pte", "migration", not readonly, readonly)}
    assert (folio.refcount, folio.mapcount, folio.entire_mapcount) == (ref, 0, 0)
    assert m.vmstat()["thp_split_pmd"] == 1
    assert remove_migration_ptes(folio, folio, 0) == 512
    assert m.machine.mem.test(pfn + 3, PG.anon_exclusive)
    assert (folio.refcount, folio.mapcount) == (ref + 512, 512)
    folio_unlock(folio)
    folio_put(folio)
    assert m.check() == []


# -- thp_underused() and the shrinker's counter ------------------------------------------------
def test_vmstat_lists_thp_underused_split_page_and_max_ptes_none_defaults_to_511(
        m: System) -> None:
    assert m.vmstat()["thp_underused_split_page"] == 0  # listed from boot, as in mm/vmstat.c
    assert m.machine.khugepaged_max_ptes_none == 511


@pytest.mark.parametrize("written,underused", [(257, False), (256, True)])
def test_thp_underused_counts_zero_filled_pages_against_max_ptes_none(
        m: System, written: int, underused: bool) -> None:
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    for i in range(written):
        p.write(a + i * 4 * KiB, i + 1)
    m.machine.khugepaged_max_ptes_none = 255
    assert sp.thp_underused(p.folio_at(a)) is underused  # 512 - written zero pages > 255?
    assert sp.deferred_split_scan(m.machine) == int(underused)
    assert m.vmstat()["thp_underused_split_page"] == int(underused)
    assert not m.machine.deferred_split_queue and m.check() == []


def test_shrinker_skips_an_mlocked_underused_thp(m: System) -> None:
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.write(a, 1)
    pfn = p.folio_at(a).pfn
    m.machine.khugepaged_max_ptes_none = 0
    m.machine.mem.set(pfn, PG.mlocked)  # v6.18.y: zero pages of an mlocked folio stay
    assert sp.deferred_split_scan(m.machine) == 0
    assert m.folio(pfn).order == 9 and not m.machine.deferred_split_queue
    assert m.vmstat()["thp_underused_split_page"] == 0
    m.machine.mem.clear(pfn, PG.mlocked)
    assert m.check() == []


@pytest.mark.parametrize("freeze", [False, True])
def test_split_of_a_device_private_pmd(freeze: bool) -> None:
    """The series' device-private branch: without freeze, 512 device-private PTEs with a
    reference and an exclusive PTE mapping each; with freeze, migration entries (the
    folio shared first) and the PMD's reference dropped."""
    from pyfolio.mm.huge_memory import split_huge_pmd_address
    from pyfolio.mm.migrate import remove_migration_ptes

    m = System(ram="64M", device="16M")
    p, a = m.spawn_with_thp()
    m.device.migrate_to_device(p, a, 2 * MiB)
    pmd = p.lookup(a)
    assert (pmd.level, pmd.kind, pmd.write) == ("pmd", "device_private", True)
    folio = page_folio(m.machine, pmd.pfn)
    assert m.machine.mem.test(folio.pfn, PG.anon_exclusive)
    folio_get(folio)
    folio_lock(folio)
    ref = folio.refcount
    split_huge_pmd_address(p.mm.find_vma(a), a, freeze)
    entries = [p.lookup(a + i * 4 * KiB) for i in range(512)]
    kind = "migration" if freeze else "device_private"
    assert {(e.level, e.kind, e.write) for e in entries} == {("pte", kind, True)}
    assert [e.pfn for e in entries] == list(range(folio.pfn, folio.pfn + 512))
    if freeze:
        assert (folio.refcount, folio.mapcount) == (ref - 1, 0)
        assert not m.machine.mem.test(folio.pfn, PG.anon_exclusive)
        assert remove_migration_ptes(folio, folio, 0) == 512
        assert p.lookup(a + 7 * 4 * KiB).kind == "device_private"
    assert (folio.refcount, folio.mapcount, folio.entire_mapcount) == (ref + 511, 512, 0)
    assert all(m.machine.mem.test(folio.pfn + i, PG.anon_exclusive) for i in range(512))
    folio_unlock(folio)
    folio_put(folio)
    assert p.read(a + 7 * 4 * KiB) == (a >> 12) + 8 and m.check() == []


def locked(m: System, pfn: int) -> list[int]:
    return [i for i in range(512) if m.machine.mem.test(pfn + i, PG.locked)]


def test_split_huge_page_keeps_the_page_it_was_given_locked_and_referenced(m: System) -> None:
    """split_huge_page(page): to order 0; the caller's lock and reference stay with the
    folio of ``page`` (a tail page here), every other piece is unlocked."""
    p, a, pfn = thp(m)
    folio = page_folio(m.machine, pfn)
    folio_get(folio)
    folio_lock(folio)
    assert sp.split_huge_page(Folio(m.machine, pfn + 100)) == 0
    assert orders(m, pfn) == [0] * 512 and locked(m, pfn) == [100]
    assert [int(m.machine.mem._refcount[pfn + i]) for i in (0, 99, 100, 101)] == [1, 1, 2, 1]
    piece = page_folio(m.machine, pfn + 100)
    folio_unlock(piece)
    folio_put(piece)
    assert data_ok(p, a) and m.check() == []


def test_try_folio_split_is_the_non_uniform_split_to_order_0(m: System) -> None:
    """try_folio_split(folio, page, NULL) on an anon folio (non-uniform supported): the
    same pieces as folio_split() at that page; the first piece stays locked."""
    p, a, pfn = thp(m)
    folio = page_folio(m.machine, pfn)
    folio_get(folio)
    folio_lock(folio)
    assert sp.try_folio_split(folio, pfn + 257, None) == 0
    assert orders(m, pfn) == [8, 0, 0, 0, 0, 2, 3, 4, 5, 6, 7] and locked(m, pfn) == [0]
    folio_unlock(folio)
    folio_put(folio)
    assert data_ok(p, a) and m.check() == []


def test_split_folio_to_list_puts_the_new_folios_on_the_list(m: System) -> None:
    """split_folio_to_list() with a list (page reclaim's case): lru_add_split_folio()
    takes a reference on each new folio and adds it to the list instead of the LRU."""
    p, a, pfn = thp(m)
    folio = page_folio(m.machine, pfn)
    folio_get(folio)
    folio_lock(folio)
    new: list[Folio] = []
    assert sp.split_folio_to_list(folio, new) == 0
    assert [f.pfn - pfn for f in new] == list(range(1, 512))
    assert not any(m.machine.mem.test(f.pfn, PG.lru) for f in new)
    assert all(int(m.machine.mem._refcount[f.pfn]) == 2 for f in new)  # mapping + list
    assert locked(m, pfn) == [0]
    for f in new:  # the list's owner lets go
        m.machine.mem.extra_refs[f.pfn] -= 1
        folio_put(f)
    folio_unlock(folio)
    folio_put(folio)
    assert data_ok(p, a) and m.check() == []
