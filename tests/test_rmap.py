"""Unit tests of pyfolio/rmap.py: the mapcount accounting of mm/rmap.c (v6.18,
CONFIG_PAGE_MAPCOUNT), the anon rmap walk and try_to_migrate().

Each test sets a scene with the facade, calls one kernel-named function on the machine's
objects, and asserts the fields the kernel would leave (memmap values are stored biased:
an unmapped page has ``_mapcount`` -1).
"""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.arch.x86.pgtable import pfn_pte, pte_mkdirty, vm_page_prot
from pyfolio.include.linux.mm import Folio, folio_lock, folio_unlock, inc_mm_counter
from pyfolio.include.linux.mm_types import MM_ANONPAGES
from pyfolio.include.linux.swapops import SwpType
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.huge_memory import split_huge_pmd
from pyfolio.mm.memory import pmd_slot, pte_slot, set_pte_at
from pyfolio.mm.migrate import ref_drop, ref_hold, remove_migration_ptes
from pyfolio.mm.page_alloc import alloc_pages
from pyfolio.mm.rmap import (
    RMAP_EXCLUSIVE,
    RMAP_NONE,
    TTU_SPLIT_HUGE_PMD,
    anon_vma_ranges,
    folio_add_anon_rmap_pmd,
    folio_add_anon_rmap_ptes,
    folio_add_new_anon_rmap,
    folio_anon_vma,
    folio_mms,
    folio_move_anon_rmap,
    folio_remove_rmap_pmd,
    folio_remove_rmap_ptes,
    folio_try_dup_anon_rmap_pmd,
    folio_try_dup_anon_rmap_ptes,
    folio_try_share_anon_rmap_pte,
    pmd_chunks,
    rmap_walk,
    try_to_migrate,
)
from pyfolio.sim.memmap import ENTIRELY_MAPPED, FOLIO_MAPPING_ANON, PG
from pyfolio.sim.units import PMD_SIZE


@pytest.fixture
def m() -> System:
    return System(ram="64M", thp="madvise", seed=0)


def _anon(av_id: int) -> int:
    return (av_id << 1) | FOLIO_MAPPING_ANON


def _map_pte(m: System, mm: object, addr: int, pfn: int) -> None:
    """Install the writable dirty PTE a fault would, so the state is whole again."""
    slot = pte_slot(mm, addr, alloc=True)  # type: ignore[arg-type]
    assert slot is not None
    inc_mm_counter(mm, MM_ANONPAGES)  # type: ignore[arg-type]  # do_anonymous_page() does
    set_pte_at(m.machine, slot, pte_mkdirty(pfn_pte(pfn, vm_page_prot(True))))


# -- folio_add_new_anon_rmap ---------------------------------------------------------------
def test_new_anon_rmap_of_a_small_folio_maps_it_once_exclusive(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 4 * KiB)  # gives the VMA its anon_vma
    vma, mem = p.vma_at(a), m.machine.mem
    pfn = alloc_pages(m.machine, 0)
    folio_add_new_anon_rmap(Folio(m.machine, pfn), vma, a + 8 * KiB, RMAP_EXCLUSIVE)
    assert int(mem._mapcount[pfn]) == 0  # atomic_set(&folio->_mapcount, 0)
    assert mem.test(pfn, PG.anon_exclusive) and mem.test(pfn, PG.swapbacked)
    assert int(mem.mapping[pfn]) == _anon(vma.anon_vma.id)
    assert int(mem.index[pfn]) == (a + 8 * KiB) >> 12  # linear_page_index(), vm_pgoff = a >> 12
    assert int(mem._refcount[pfn]) == 1  # the rmap never touches _refcount
    _map_pte(m, p.mm, a + 8 * KiB, pfn)
    assert m.check() == []


def test_new_anon_rmap_not_exclusive_points_at_the_root_anon_vma(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 4 * KiB)
    c = p.fork()
    cvma = c.vma_at(a)
    root = cvma.anon_vma.root
    assert cvma.anon_vma is not root  # anon_vma_fork() gave the child its own
    shared, own = alloc_pages(m.machine, 0), alloc_pages(m.machine, 0)
    folio_add_new_anon_rmap(Folio(m.machine, shared), cvma, a + 4 * KiB, RMAP_NONE)
    folio_add_new_anon_rmap(Folio(m.machine, own), cvma, a + 8 * KiB, RMAP_EXCLUSIVE)
    mem = m.machine.mem
    assert int(mem.mapping[shared]) == _anon(root.id) and not mem.test(shared, PG.anon_exclusive)
    assert int(mem.mapping[own]) == _anon(cvma.anon_vma.id) and mem.test(own, PG.anon_exclusive)
    _map_pte(m, c.mm, a + 4 * KiB, shared)
    _map_pte(m, c.mm, a + 8 * KiB, own)
    assert m.check() == []


def test_new_anon_rmap_of_a_pmd_sized_folio_is_one_entire_mapping(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    vma, mem = p.vma_at(a), m.machine.mem
    head = alloc_pages(m.machine, 9)
    folio_add_new_anon_rmap(Folio(m.machine, head), vma, a, RMAP_EXCLUSIVE)
    assert (int(mem._entire_mapcount[head]), int(mem._large_mapcount[head]),
            int(mem._nr_pages_mapped[head])) == (0, 0, ENTIRELY_MAPPED)
    assert (mem._mapcount[head: head + 512] == -1).all()  # no per-page PTE mappings
    assert mem.test(head, PG.anon_exclusive) and not mem.test(head + 1, PG.anon_exclusive)


def test_new_anon_rmap_of_an_mthp_maps_every_page_by_pte(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    vma, mem = p.vma_at(a), m.machine.mem
    head = alloc_pages(m.machine, 4)
    folio_add_new_anon_rmap(Folio(m.machine, head), vma, a + 2 * MiB, RMAP_EXCLUSIVE)
    assert (mem._mapcount[head: head + 16] == 0).all()
    assert (int(mem._entire_mapcount[head]), int(mem._large_mapcount[head]),
            int(mem._nr_pages_mapped[head])) == (-1, 15, 16)
    assert all(mem.test(head + i, PG.anon_exclusive) for i in range(16))


# -- __folio_add_rmap / __folio_remove_rmap --------------------------------------------------
def test_pte_rmaps_added_under_a_pmd_then_pmd_removed_is_the_split_accounting(m: System) -> None:
    """__split_huge_pmd_locked(): folio_add_anon_rmap_ptes(512) while the PMD is still
    counted, then folio_remove_rmap_pmd(): no page became unmapped, so no deferred split."""
    p, a = m.spawn_with_thp(4 * MiB)
    f, vma, mem = p.folio_at(a), p.vma_at(a), m.machine.mem
    head = f.pfn
    folio_add_anon_rmap_ptes(f, head, 512, vma, a, RMAP_EXCLUSIVE)
    assert int(mem._nr_pages_mapped[head]) == ENTIRELY_MAPPED + 512
    assert int(mem._large_mapcount[head]) == 512 and int(mem._entire_mapcount[head]) == 0
    assert (mem._mapcount[head: head + 512] == 0).all()
    assert all(mem.test(head + i, PG.anon_exclusive) for i in (0, 1, 511))
    deferred = m.machine.vmstat["thp_deferred_split_page"]
    folio_remove_rmap_pmd(f, head, vma)
    assert (int(mem._entire_mapcount[head]), int(mem._large_mapcount[head]),
            int(mem._nr_pages_mapped[head])) == (-1, 511, 512)
    assert not mem.test(head, PG.partially_mapped)
    assert m.machine.vmstat["thp_deferred_split_page"] == deferred
    # and back: PMD rmap again, PTE rmaps off -> as the page table says (one PMD)
    folio_add_anon_rmap_pmd(f, head, vma, a, RMAP_NONE)
    folio_remove_rmap_ptes(f, head, 512, vma)
    assert (int(mem._entire_mapcount[head]), int(mem._large_mapcount[head]),
            int(mem._nr_pages_mapped[head])) == (0, 0, ENTIRELY_MAPPED)
    assert not mem.test(head, PG.partially_mapped)
    assert m.check() == []


def test_removing_some_pte_rmaps_of_a_pte_mapped_thp_queues_it_once(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    vma = p.vma_at(a)
    split_huge_pmd(vma, pmd_slot(p.mm, a), a)
    f, mem = p.folio_at(a), m.machine.mem
    head = f.pfn
    assert int(mem._large_mapcount[head]) == 511 and int(mem._nr_pages_mapped[head]) == 512
    del m.machine.deferred_split_queue[head]  # as if the shrinker had looked at it
    deferred = m.machine.vmstat["thp_deferred_split_page"]
    folio_remove_rmap_ptes(f, head, 10, vma)
    assert (mem._mapcount[head: head + 10] == -1).all() and int(mem._mapcount[head + 10]) == 0
    assert (int(mem._large_mapcount[head]), int(mem._nr_pages_mapped[head])) == (501, 502)
    assert mem.test(head, PG.partially_mapped) and head in m.machine.deferred_split_queue
    assert m.machine.vmstat["thp_deferred_split_page"] == deferred + 1
    folio_remove_rmap_ptes(f, head + 10, 5, vma)  # already flagged: counted once
    assert m.machine.vmstat["thp_deferred_split_page"] == deferred + 1
    assert int(mem._nr_pages_mapped[head]) == 497
    folio_add_anon_rmap_ptes(f, head, 15, vma, a, RMAP_NONE)  # back to what the PTEs say
    assert (int(mem._large_mapcount[head]), int(mem._nr_pages_mapped[head])) == (511, 512)
    assert m.check() == []


def test_removing_every_pte_rmap_is_not_a_partial_unmap(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    vma = p.vma_at(a)
    split_huge_pmd(vma, pmd_slot(p.mm, a), a)
    f, mem = p.folio_at(a), m.machine.mem
    folio_remove_rmap_ptes(f, f.pfn, 512, vma)
    assert (int(mem._large_mapcount[f.pfn]), int(mem._nr_pages_mapped[f.pfn])) == (-1, 0)
    assert not mem.test(f.pfn, PG.partially_mapped)
    assert m.machine.vmstat["thp_deferred_split_page"] == 0


def test_last_pmd_rmap_going_with_some_ptes_left_is_a_partial_unmap(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    f, vma, mem = p.folio_at(a), p.vma_at(a), m.machine.mem
    folio_add_anon_rmap_ptes(f, f.pfn, 10, vma, a, RMAP_NONE)  # 10 pages also PTE-mapped
    folio_remove_rmap_pmd(f, f.pfn, vma)
    assert (int(mem._entire_mapcount[f.pfn]), int(mem._large_mapcount[f.pfn]),
            int(mem._nr_pages_mapped[f.pfn])) == (-1, 9, 10)
    assert mem.test(f.pfn, PG.partially_mapped)
    assert m.machine.vmstat["thp_deferred_split_page"] == 1


def test_last_pmd_rmap_going_alone_is_not_a_partial_unmap(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    f, vma, mem = p.folio_at(a), p.vma_at(a), m.machine.mem
    folio_remove_rmap_pmd(f, f.pfn, vma)
    assert (int(mem._entire_mapcount[f.pfn]), int(mem._large_mapcount[f.pfn]),
            int(mem._nr_pages_mapped[f.pfn])) == (-1, -1, 0)
    assert not mem.test(f.pfn, PG.partially_mapped)
    assert m.machine.vmstat["thp_deferred_split_page"] == 0


def test_pmd_rmap_with_exclusive_marks_only_the_head_page(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    f, vma, mem = p.folio_at(a), p.vma_at(a), m.machine.mem
    folio_remove_rmap_pmd(f, f.pfn, vma)
    mem.clear(f.pfn, PG.anon_exclusive)
    folio_add_anon_rmap_pmd(f, f.pfn, vma, a, RMAP_EXCLUSIVE)
    assert (int(mem._entire_mapcount[f.pfn]), int(mem._large_mapcount[f.pfn]),
            int(mem._nr_pages_mapped[f.pfn])) == (0, 0, ENTIRELY_MAPPED)
    assert mem.test(f.pfn, PG.anon_exclusive) and not mem.test(f.pfn + 1, PG.anon_exclusive)
    folio_add_anon_rmap_pmd(f, f.pfn, vma, a, RMAP_NONE)  # a second PMD mapping
    assert (int(mem._entire_mapcount[f.pfn]), int(mem._large_mapcount[f.pfn]),
            int(mem._nr_pages_mapped[f.pfn])) == (1, 1, ENTIRELY_MAPPED)  # added once only
    folio_remove_rmap_pmd(f, f.pfn, vma)
    assert m.check() == []


def test_small_folio_pte_rmap_add_and_remove(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 4 * KiB)
    f, vma, mem = p.folio_at(a), p.vma_at(a), m.machine.mem
    folio_add_anon_rmap_ptes(f, f.pfn, 1, vma, a, RMAP_NONE)
    assert int(mem._mapcount[f.pfn]) == 1 and f.mapcount == 2
    folio_remove_rmap_ptes(f, f.pfn, 1, vma)
    assert int(mem._mapcount[f.pfn]) == 0 and f.refcount == 1
    assert m.check() == []


# -- fork and migration helpers ------------------------------------------------------------
def test_try_dup_small_exclusive_page_shares_it(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 4 * KiB)
    f, mem = p.folio_at(a), m.machine.mem
    assert folio_try_dup_anon_rmap_ptes(f, f.pfn, 1, p.vma_at(a)) is True
    assert int(mem._mapcount[f.pfn]) == 1 and not mem.test(f.pfn, PG.anon_exclusive)
    assert f.refcount == 1  # the caller (copy_present_ptes) takes the reference


def test_try_dup_of_a_maybe_pinned_exclusive_page_fails_and_changes_nothing(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.pin(a, 4 * KiB)
    f = p.folio_at(a)
    before = snapshot(m.machine)
    assert folio_try_dup_anon_rmap_ptes(f, f.pfn, 1, p.vma_at(a)) is False  # -EBUSY
    assert snapshot(m.machine) == before
    m.machine.mem.clear(f.pfn, PG.anon_exclusive)  # already shared: no pin check needed
    assert folio_try_dup_anon_rmap_ptes(f, f.pfn, 1, p.vma_at(a)) is True
    assert int(m.machine.mem._mapcount[f.pfn]) == 1


def test_try_dup_pmd_shares_the_thp_unless_pinned(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    f, mem = p.folio_at(a), m.machine.mem
    assert folio_try_dup_anon_rmap_pmd(f, f.pfn, p.vma_at(a)) is True
    assert (int(mem._entire_mapcount[f.pfn]), int(mem._large_mapcount[f.pfn]),
            int(mem._nr_pages_mapped[f.pfn])) == (1, 1, ENTIRELY_MAPPED)
    assert not mem.test(f.pfn, PG.anon_exclusive)
    q, b = m.spawn_with_thp(4 * MiB)
    q.pin(b, 4 * KiB)
    g = q.folio_at(b)
    before = snapshot(m.machine)
    assert folio_try_dup_anon_rmap_pmd(g, g.pfn, q.vma_at(b)) is False
    assert snapshot(m.machine) == before


def test_try_share_clears_only_that_page_unless_pinned(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")  # split the PMD: every page exclusive
    f, mem = p.folio_at(a), m.machine.mem
    assert folio_try_share_anon_rmap_pte(f, f.pfn + 3) is True
    assert not mem.test(f.pfn + 3, PG.anon_exclusive)
    assert mem.test(f.pfn + 2, PG.anon_exclusive) and mem.test(f.pfn + 4, PG.anon_exclusive)
    p.pin(a + 8 * KiB, 4 * KiB)
    assert folio_try_share_anon_rmap_pte(f, f.pfn + 5) is False  # -EBUSY: maybe pinned
    assert mem.test(f.pfn + 5, PG.anon_exclusive)


def test_folio_move_anon_rmap_points_the_folio_at_this_vmas_anon_vma(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 4 * KiB)
    c = p.fork()
    f = p.folio_at(a)
    assert folio_anon_vma(f) is p.vma_at(a).anon_vma
    folio_move_anon_rmap(f, c.vma_at(a))
    assert folio_anon_vma(f) is c.vma_at(a).anon_vma
    assert int(m.machine.mem.mapping[f.pfn]) == _anon(c.vma_at(a).anon_vma.id)


# -- walks ---------------------------------------------------------------------------------
def test_rmap_walk_finds_every_mapping_and_folio_mms_the_mms(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 4 * KiB)
    c = p.fork()
    f = p.folio_at(a)
    got = [(mp.mm.id, mp.address, mp.level, mp.kind, mp.pfn) for mp in rmap_walk(f)]
    assert got == [(p.mm.id, a, "pte", "page", f.pfn), (c.mm.id, a, "pte", "page", f.pfn)]
    assert folio_mms(f) == {p.mm.id, c.mm.id}
    c.write(a, 5)  # COW: the child now maps a copy
    assert folio_mms(f) == {p.mm.id}
    q, b = m.spawn_with_thp(4 * MiB)
    g = q.folio_at(b)
    assert [(mp.address, mp.level, mp.kind, mp.pfn) for mp in rmap_walk(g)] == [
        (b, "pmd", "huge", g.pfn)]
    assert rmap_walk(Folio(m.machine, m.machine.zero_pfn)) == []  # not anon


def test_anon_vma_ranges_and_pmd_chunks(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    f = p.folio_at(a)
    c = p.fork()
    ranges = [(v.vm_mm.id, lo, hi) for v, lo, hi in anon_vma_ranges(m.machine, f.pfn, 512)]
    assert ranges == [(p.mm.id, a, a + PMD_SIZE), (c.mm.id, a, a + PMD_SIZE)]
    chunks = list(pmd_chunks(p.vma_at(a), a + PMD_SIZE // 2, a + 3 * PMD_SIZE // 2))
    assert chunks == [(a + PMD_SIZE // 2, a + PMD_SIZE, pmd_slot(p.mm, a)),
                      (a + PMD_SIZE, a + 3 * PMD_SIZE // 2, pmd_slot(p.mm, a + PMD_SIZE))]
    q = m.spawn()
    b = q.mmap(4 * KiB)  # no page table below it yet
    assert list(pmd_chunks(q.vma_at(b), b, b + 4 * KiB)) == []


# -- try_to_migrate --------------------------------------------------------------------------
def test_try_to_migrate_small_page_writable_entry_then_restore(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 4 * KiB)
    f, mem = p.folio_at(a), m.machine.mem
    ref_hold(f)  # the caller's reference (isolation in the kernel) and the folio lock
    folio_lock(f)  # try_to_migrate(): "Caller must hold the folio lock"
    assert try_to_migrate(f, 0) is True
    e = p.lookup(a)
    assert (e.kind, e.write, e.swp_offset, e.swp_type) == (
        "migration", True, f.pfn, SwpType.SWP_MIGRATION_WRITE)
    assert int(mem._mapcount[f.pfn]) == -1 and f.refcount == 1
    assert not mem.test(f.pfn, PG.anon_exclusive)  # shared before the entry went in
    assert mem.test(f.pfn, PG.dirty)  # the dirty PTE dirtied the folio
    assert m.check() == []
    assert remove_migration_ptes(f, f) == 1
    e = p.lookup(a)
    assert (e.kind, e.pfn, e.write) == ("page", f.pfn, True)
    assert int(mem._mapcount[f.pfn]) == 0 and mem.test(f.pfn, PG.anon_exclusive)
    folio_unlock(f)
    ref_drop(f)
    assert f.refcount == 1 and m.check() == []


def test_try_to_migrate_read_only_exclusive_and_shared_entries(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 8 * KiB)
    p.mprotect(a, 4 * KiB, "r")  # read-only, still exclusive
    f = p.folio_at(a)
    ref_hold(f)
    folio_lock(f)
    assert try_to_migrate(f, 0) is True
    assert p.lookup(a).swp_type == SwpType.SWP_MIGRATION_READ_EXCLUSIVE
    remove_migration_ptes(f, f)
    folio_unlock(f)
    ref_drop(f)
    c = p.fork()  # a + 4K: shared by two processes, write-protected in both
    g = p.folio_at(a + 4 * KiB)
    ref_hold(g)
    folio_lock(g)
    assert try_to_migrate(g, 0) is True
    assert p.lookup(a + 4 * KiB).swp_type == SwpType.SWP_MIGRATION_READ
    assert c.lookup(a + 4 * KiB).swp_type == SwpType.SWP_MIGRATION_READ
    assert g.refcount == 1 and g.mapcount == 0
    assert m.check() == []


def test_try_to_migrate_a_pinned_page_fails_and_changes_nothing(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.pin(a, 4 * KiB)
    f = p.folio_at(a)
    ref_hold(f)
    before = snapshot(m.machine)
    assert try_to_migrate(f, 0) is False
    assert snapshot(m.machine) == before
    assert p.lookup(a).kind == "page"


def test_try_to_migrate_a_thp_splits_the_pmd_with_freeze(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    f, mem = p.folio_at(a), m.machine.mem
    ref_hold(f)
    folio_lock(f)
    assert try_to_migrate(f, TTU_SPLIT_HUGE_PMD) is True
    assert m.machine.vmstat["thp_split_pmd"] == 1
    kinds = {(p.lookup(a + i * 4 * KiB).kind, p.lookup(a + i * 4 * KiB).swp_offset)
             for i in (0, 1, 511)}
    assert kinds == {("migration", f.pfn), ("migration", f.pfn + 1), ("migration", f.pfn + 511)}
    assert p.lookup(a).level == "pte" and p.lookup(a).write
    assert (f.refcount, f.mapcount, int(mem._entire_mapcount[f.pfn]),
            int(mem._nr_pages_mapped[f.pfn])) == (1, 0, -1, 0)
    assert not mem.test(f.pfn, PG.partially_mapped)  # fully unmapped, not partially
    assert not mem.test(f.pfn, PG.anon_exclusive)
    assert m.check() == []


def test_try_to_migrate_a_thp_without_split_leaves_a_pmd_migration_entry(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    f = p.folio_at(a)
    ref_hold(f)
    folio_lock(f)
    assert try_to_migrate(f, 0) is True
    e = p.lookup(a)
    assert (e.level, e.kind, e.swp_offset, e.write) == ("pmd", "migration", f.pfn, True)
    assert (f.refcount, f.mapcount, m.machine.vmstat["thp_split_pmd"]) == (1, 0, 0)
    assert m.check() == []
    remove_migration_ptes(f, f)
    assert p.lookup(a).kind == "huge" and f.entire_mapcount == 1
    folio_unlock(f)
    ref_drop(f)
    assert m.check() == []


def test_partial_unmap_of_a_device_private_thp_is_not_queued_for_deferred_split() -> None:
    m = System(ram="64M", device="32M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp(4 * MiB)
    m.device.migrate_to_device(p, a, 2 * MiB)
    f = p.folio_at(a)
    assert p.lookup(a).kind == "device_private" and f.order == 9
    p.munmap(a, 4 * KiB)  # PMD split, then one device-private PTE zapped
    assert not m.machine.mem.test(f.pfn, PG.partially_mapped)
    assert f.pfn not in m.machine.deferred_split_queue
    assert m.machine.vmstat["thp_deferred_split_page"] == 0
