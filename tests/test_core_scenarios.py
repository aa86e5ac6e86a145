"""Scenario tests of the core: exact counts as Linux 6.18 leaves them (kernel-facts.md)."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, MmError, System
from pyfolio.fs.proc.page import KPF
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import EINVAL, ENOMEM, SegmentationFault
from pyfolio.sim.memmap import PG


@pytest.fixture
def m() -> System:
    return System(ram="64M", thp="madvise", seed=0)


def test_mmap_of_2m_multiple_is_pmd_aligned(m: System) -> None:
    p = m.spawn()
    assert p.mmap(4 * MiB) % (2 * MiB) == 0
    below = p.mmap(2 * MiB)
    assert below % (2 * MiB) == 0
    # mm/mmap.c __get_unmapped_area(): only lengths that are multiples of PMD_SIZE get a
    # PMD-aligned address; 3 MiB goes right below the last mapping (top-down), misaligned
    odd = p.mmap(3 * MiB)
    assert odd == below - 3 * MiB and odd % (2 * MiB) == 1 * MiB
    assert m.check() == []


def test_thp_fault_maps_one_pmd_and_one_order9_folio(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)  # mmap 4 MiB, MADV_HUGEPAGE + write the first 2 MiB
    e = p.lookup(a)
    f = p.folio_at(a)
    v, rest = p.vma_at(a), p.vma_at(a + 2 * MiB)  # madvise split the VMA: VM_HUGEPAGE differs
    assert (v.vm_start, v.vm_end, rest.vm_end) == (a, a + 2 * MiB, a + 4 * MiB)
    assert p.lookup(a + 2 * MiB).kind == "none"
    assert (e.level, e.kind, e.write, e.dirty, e.pse) == ("pmd", "huge", True, True, True)
    assert (f.order, f.refcount, f.mapcount, f.entire_mapcount) == (9, 1, 1, 1)
    assert f.page_mapcounts() == [0] * 512
    assert m.machine.mem.test(f.pfn, PG.anon_exclusive)
    assert m.vmstat()["thp_fault_alloc"] == 1
    assert m.vmstat()["nr_anon_transparent_hugepages"] == 1
    assert p.smaps()[0]["AnonHugePages"] == 2048
    assert m.kpagecount(range(f.pfn, f.pfn + 512)) == [1] * 512
    flags = m.kpageflags([f.pfn, f.pfn + 1])
    assert flags[0] >> KPF["COMPOUND_HEAD"] & 1 and flags[0] >> KPF["THP"] & 1
    assert flags[1] >> KPF["COMPOUND_TAIL"] & 1 and flags[1] >> KPF["THP"] & 1
    assert f.pfn in m.machine.deferred_split_queue  # queued unflagged (shrink_underused)
    assert m.check() == []


def test_thp_policy_never_and_unadvised_ranges_get_4k_pages(m: System) -> None:
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.touch(a, 4 * KiB)  # madvise policy, no MADV_HUGEPAGE
    assert p.folio_at(a).order == 0
    m.thp = "never"
    b = p.mmap(2 * MiB)
    p.madvise(b, 2 * MiB, "hugepage")
    p.touch(b, 4 * KiB)
    assert p.lookup(b).level == "pte"
    m.thp = "always"
    c = p.mmap(2 * MiB)
    p.touch(c, 4 * KiB)
    assert p.lookup(c).level == "pmd"
    assert m.check() == []


def test_fragmented_machine_falls_back_to_4k(m: System) -> None:
    held = m.fragment()
    assert held > 0
    p, a = m.spawn_with_thp()
    assert p.lookup(a).level == "pte" and p.folio_at(a).order == 0
    assert m.vmstat()["thp_fault_fallback"] >= 1
    assert m.check() == []
    m.defragment()
    assert m.check() == []


def test_huge_zero_page_on_read_then_thp_on_write(m: System) -> None:
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    assert p.read(a + 12 * KiB) == 0
    e = p.lookup(a)
    assert (e.level, e.kind, e.write) == ("pmd", "zero", False)
    zero = e.pfn
    assert m.vmstat()["thp_zero_page_alloc"] == 1
    assert m.kpagecount([zero]) == [0]
    assert m.kpageflags([zero])[0] >> KPF["ZERO_PAGE"] & 1
    assert p.smaps()[0]["Rss"] == 0
    p.write(a, 7)  # do_huge_zero_wp_pmd: a real THP, no PMD split
    e = p.lookup(a)
    assert (e.kind, e.write) == ("huge", True) and e.pfn != zero
    assert m.vmstat()["thp_split_pmd"] == 0 and m.vmstat()["thp_fault_alloc"] == 1
    assert p.read(a) == 7 and p.read(a + 4 * KiB) == 0
    assert m.check() == []


def test_read_fault_maps_shared_zero_page(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    assert p.read(a) == 0
    e = p.lookup(a)
    assert (e.kind, e.pfn, e.write, e.special) == ("zero", m.machine.zero_pfn, False, True)
    p.write(a, 3)
    assert p.lookup(a).kind == "page" and p.read(a) == 3
    assert m.check() == []


def test_mprotect_one_page_splits_pmd(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    nr_vmas = len(p.mm.vmas)  # [hugepage 2 MiB][plain 2 MiB]
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    f = p.folio_at(a)
    assert p.lookup(a).level == "pte"
    assert (f.order, f.refcount, f.mapcount, f.entire_mapcount) == (9, 512, 512, 0)
    assert f.page_mapcounts() == [1] * 512
    assert not p.lookup(a + 4 * KiB).write and p.lookup(a + 8 * KiB).write
    assert all(m.machine.mem.test(f.pfn + i, PG.anon_exclusive) for i in (0, 1, 511))
    v = m.vmstat()
    assert (v["thp_split_pmd"], v["thp_split_page"]) == (1, 0)
    assert v["nr_anon_transparent_hugepages"] == 0
    assert p.smaps()[0]["AnonHugePages"] == 0
    assert len(p.mm.vmas) == nr_vmas + 2
    p.mprotect(a + 4 * KiB, 4 * KiB, "rw")  # exclusive page: writable again, VMAs merge
    assert p.lookup(a + 4 * KiB).write and len(p.mm.vmas) == nr_vmas
    assert m.check() == []


def test_mprotect_over_three_vmas_leaves_the_one_already_right_alone(m: System) -> None:
    # mm/mprotect.c: do_mprotect_pkey() calls mprotect_fixup() per VMA; a VMA whose flags
    # stay the same returns at once (no cut, no change_protection()); the others are cut at
    # the range's edges (here one page from either end) and only their PTEs are rewritten;
    # then the VMAs merge
    p = m.spawn()
    a = p.mmap(15 * 4 * KiB)
    p.touch(a, 15 * 4 * KiB)
    p.mprotect(a + 6 * 4 * KiB, 4 * 4 * KiB, "r")  # [rw 0-6][r 6-10][rw 10-15]
    mark, costs = m.trace.mark(), dict(m.trace.costs)
    p.mprotect(a + 1 * 4 * KiB, 13 * 4 * KiB, "r")
    vmas = [((v.vm_start - a) // (4 * KiB), (v.vm_end - a) // (4 * KiB), v.writable)
            for v in p.mm.vmas_between(a, a + 15 * 4 * KiB)]
    assert vmas == [(0, 1, True), (1, 14, False), (14, 15, True)]
    assert [p.lookup(a + i * 4 * KiB).write for i in range(15)] == \
        [True] + [False] * 13 + [True]
    assert m.trace.costs["pte_writes"] - costs["pte_writes"] == 9  # pages 1-5 and 10-13
    assert m.trace.costs["tlb_flushes"] - costs["tlb_flushes"] == 2  # one per VMA changed
    assert [(e.name, e.args) for e in m.trace.since(mark)] == [
        ("mprotect", (("start", a + 1 * 4 * KiB), ("end", a + 14 * 4 * KiB), ("prot", "r")))]
    assert m.check() == []


def test_munmap_half_queues_deferred_split(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    p.munmap(a, 1 * MiB)
    f = m.folio(p.folio_at(a + 1 * MiB).pfn)
    assert (f.order, f.refcount, f.mapcount) == (9, 256, 256)
    assert m.vmstat()["thp_split_pmd"] == 1 and m.vmstat()["thp_deferred_split_page"] == 1
    assert m.machine.mem.test(f.pfn, PG.partially_mapped)
    assert f.pfn in m.machine.deferred_split_queue
    assert m.check() == []


def test_dontneed_whole_thp_drops_pmd_without_split(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    pfn = p.folio_at(a).pfn
    p.madvise(a, 2 * MiB, "dontneed")
    assert p.lookup(a).kind == "none" and m.vmstat()["thp_split_pmd"] == 0
    assert m.machine.mem._refcount[pfn] == 0  # freed to the buddy allocator
    assert m.check() == []


def test_dontneed_ten_pages_splits_pmd_and_defers(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    p.madvise(a, 40 * KiB, "dontneed")
    v = m.vmstat()
    assert (v["thp_split_pmd"], v["thp_deferred_split_page"], v["thp_split_page"]) == (1, 1, 0)
    assert p.folio_at(a + 40 * KiB).mapcount == 502
    assert m.check() == []


def test_free_whole_thp_marks_lazyfree_without_split(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    p.madvise(a, 2 * MiB, "free")
    f = p.folio_at(a)
    assert f.order == 9 and m.vmstat()["thp_split_pmd"] == 0
    assert not m.machine.mem.test(f.pfn, PG.swapbacked)
    assert not p.lookup(a).dirty
    assert m.check() == []


def test_free_part_of_a_pinned_thp_leaves_it_whole_and_moves_on(m: System) -> None:
    """The split MADV_FREE asks for fails on the pin (-EAGAIN): the folio's PTEs are left
    as they are and the walk goes on (mm/madvise.c:madvise_free_pte_range())."""
    p, a = m.spawn_with_thp(4 * MiB)
    p.madvise(a + 2 * MiB - 4 * KiB, 4 * KiB, "dontneed")  # now PTE-mapped
    p.pin(a, 4 * KiB)
    p.madvise(a, 40 * KiB, "free")
    f = p.folio_at(a)
    v = m.vmstat()
    assert f.order == 9 and (v["thp_split_pmd"], v["thp_split_page_failed"]) == (1, 1)
    assert m.machine.mem.test(f.pfn, PG.swapbacked) and p.lookup(a + 4 * KiB).dirty
    assert m.check() == []


def test_free_part_of_a_pinned_pmd_mapped_thp_changes_nothing(m: System) -> None:
    """madvise_free_huge_pmd() tries split_folio() on a PMD it does not cover wholly; the
    pin makes it fail before anything is unmapped, so the PMD stays."""
    p, a = m.spawn_with_thp(4 * MiB)
    p.pin(a, 4 * KiB)
    p.madvise(a, 40 * KiB, "free")
    v = m.vmstat()
    assert p.lookup(a).level == "pmd" and p.folio_at(a).order == 9
    assert (v["thp_split_pmd"], v["thp_split_page_failed"]) == (0, 1)
    assert m.check() == []


def test_fork_shares_thp_then_child_write_splits_child_pmd(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    c = p.fork()
    f = p.folio_at(a)
    assert (f.refcount, f.mapcount, f.entire_mapcount) == (2, 2, 2)
    assert not p.lookup(a).write and not c.lookup(a).write
    assert m.kpagecount([f.pfn, f.pfn + 300]) == [2, 2]
    assert not m.machine.mem.test(f.pfn, PG.anon_exclusive)
    c.write(a + 8 * KiB, 99)
    assert m.vmstat()["thp_split_pmd"] == 1
    assert p.lookup(a).level == "pmd" and c.lookup(a).level == "pte"
    new = c.folio_at(a + 8 * KiB)
    assert new.order == 0 and new.pfn != f.pfn + 2
    assert (f.refcount, f.mapcount, f.entire_mapcount) == (512, 512, 1)
    assert m.kpagecount([f.pfn + 2, f.pfn + 3]) == [1, 2]
    assert p.smaps()[0]["AnonHugePages"] == 2048 and c.smaps()[0]["AnonHugePages"] == 0
    assert p.read(a + 8 * KiB) == (a + 8 * KiB) // 4096 + 1 and c.read(a + 8 * KiB) == 99
    assert m.check() == []
    c.exit()
    assert m.check() == []


def test_survivor_reuses_exclusive_page_after_other_exits(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    c = p.fork()
    c.write(a + 8 * KiB, 1)   # child: PMD split, one page copied
    p.mprotect(a, 4 * KiB, "r")  # parent PMD split too; folio now PTE-mapped twice
    p.mprotect(a, 4 * KiB, "rw")
    c.exit()
    before = p.folio_at(a + 12 * KiB).pfn
    p.write(a + 12 * KiB, 5)   # large folio now mapped only by p: reused in place
    assert p.folio_at(a + 12 * KiB).pfn == before
    assert m.check() == []


def test_small_page_cow_after_fork(m: System) -> None:
    p = m.spawn()
    a = p.mmap(8 * KiB)
    p.write(a, 11)
    c = p.fork()
    f = p.folio_at(a)
    assert (f.refcount, f.mapcount) == (2, 2)
    c.write(a, 22)
    assert p.read(a) == 11 and c.read(a) == 22
    assert p.folio_at(a).refcount == 1 and c.folio_at(a).pfn != f.pfn
    p.write(a, 12)  # refcount 1: reused in place
    assert p.folio_at(a).pfn == f.pfn
    assert m.check() == []


def test_pins_raise_refcount_as_foll_pin(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    p.pin(a, 8 * KiB)
    f = p.folio_at(a)
    assert (f.refcount, f.pincount) == (3, 2)
    q = m.spawn()
    b = q.mmap(4 * KiB)
    q.pin(b, 4 * KiB)
    assert q.folio_at(b).refcount == 1 + 1024
    assert m.check() == []
    p.unpin(a, 8 * KiB)
    q.unpin(b, 4 * KiB)
    assert (f.refcount, f.pincount, q.folio_at(b).refcount) == (1, 0, 1)
    assert m.check() == []


def test_fork_of_pinned_thp_copies_for_child(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    p.pin(a, 4 * KiB)
    c = p.fork()
    assert p.lookup(a).level == "pte"  # copy_huge_pmd split the parent PMD (-EAGAIN)
    assert c.folio_at(a).pfn != p.folio_at(a).pfn and c.folio_at(a).order == 0
    assert c.read(a + 4 * KiB) == p.read(a + 4 * KiB)
    assert m.check() == []


def test_exit_frees_everything(m: System) -> None:
    free = m.nr_free_pages()
    p, a = m.spawn_with_thp(4 * MiB)
    p.touch(a + 2 * MiB, 64 * KiB)
    c = p.fork()
    c.write(a, 1)
    c.exit()
    p.exit()
    assert m.nr_free_pages() == free and m.machine.pgtables == {}
    assert m.check() == []


def test_pagemap_reports_pfn_and_exclusive(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    rec = p.pagemap(a, 3)
    f = p.folio_at(a)
    assert [r.pfn for r in rec] == [f.pfn, f.pfn + 1, f.pfn + 2]
    assert all(r.present and r.exclusive for r in rec)
    c = p.fork()
    assert not any(r.exclusive for r in p.pagemap(a, 3))
    assert not c.pagemap(a + 2 * MiB, 1)[0].present
    assert m.check() == []


@pytest.mark.parametrize("call", [
    lambda p, a: p.mprotect(a + 1, 4096, "r"),
    lambda p, a: p.mprotect(a, 4096, "rwx!"),
    lambda p, a: p.madvise(a, 4096, "sometimes"),
    lambda p, a: p.munmap(a + 100, 4096),
    lambda p, a: p.mmap(0),
    lambda p, a: p.mmap("2 parsecs"),
])
def test_bad_input_is_einval_and_changes_nothing(m: System, call) -> None:  # type: ignore[no-untyped-def]
    p, a = m.spawn_with_thp(4 * MiB)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        call(p, a)
    assert e.value.errno == EINVAL and str(e.value).startswith("EINVAL")
    assert snapshot(m.machine) == before


def test_unmapped_ranges_and_segfaults(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        p.mprotect(a + 6 * MiB, 4096, "r")
    assert e.value.errno == ENOMEM
    with pytest.raises(SegmentationFault):
        p.write(a + 64 * MiB, 1)
    p.mprotect(a + 2 * MiB, 4 * KiB, "r")
    before = snapshot(m.machine)
    with pytest.raises(SegmentationFault):
        p.write(a + 2 * MiB, 1)
    assert snapshot(m.machine) == before


def test_out_of_memory_is_enomem() -> None:
    m = System(ram="4M", thp="never")
    p = m.spawn()
    a = p.mmap(8 * MiB)
    with pytest.raises(MmError) as e:
        p.touch(a, 8 * MiB)
    assert e.value.errno == ENOMEM
    assert m.check() == []
    p.exit()
    assert m.check() == []


def test_trace_records_operations(m: System) -> None:
    mark = m.trace.mark()
    p, a = m.spawn_with_thp(4 * MiB)
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    names = m.trace.names(mark)
    assert "do_huge_pmd_anonymous_page" in names and "split_huge_pmd" in names
    ev = [e for e in m.trace.since(mark) if e.name == "split_huge_pmd"][0]
    assert ev.change("ptes_written") == 512 and ev.change("into") == "pte"
    assert m.trace.costs["pte_writes"] >= 512


def test_kpageflags_shows_the_folios_anon_exclusive_as_owner_2_on_every_page(m: System) -> None:
    """fs/proc/page.c:stable_page_flags() copies PG_owner_2 (= PG_anon_exclusive) from the
    folio's flags: every page of an exclusive THP shows KPF_OWNER_2 (34), there is no
    per-page anon-exclusive bit, and after fork (shared) no page shows it."""
    p, a = m.spawn_with_thp(4 * MiB)
    f = p.folio_at(a)
    pfns = range(f.pfn, f.pfn + 512)
    assert all(x >> KPF["OWNER_2"] & 1 for x in m.kpageflags(pfns))
    assert not any(x >> 47 for x in m.kpageflags(pfns))
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")  # split_huge_pmd: every page now exclusive
    m.machine.mem.clear(f.pfn, PG.anon_exclusive)  # head only: tails still exclusive
    assert not any(x >> KPF["OWNER_2"] & 1 for x in m.kpageflags(pfns))
    m.machine.mem.set(f.pfn, PG.anon_exclusive)
    p.fork()
    assert not any(x >> KPF["OWNER_2"] & 1 for x in m.kpageflags(pfns))


def test_thp_fault_without_memory_for_its_page_table_puts_the_folio_back() -> None:
    """__do_huge_pmd_anonymous_page(): the order-9 folio is allocated first; when
    pte_alloc_one() then fails, the folio is put (``release``) and the fault is
    VM_FAULT_OOM: -ENOMEM to the access, nothing leaked, memory as it was."""
    from pyfolio.mm.page_alloc import __free_pages, alloc_pages

    m = System(ram="16M", thp="madvise", seed=0)
    mach = m.machine
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.touch(a + 2 * MiB, 4 * KiB)  # the PMD table exists already
    p.madvise(a, 2 * MiB, "hugepage")
    held: list[tuple[int, int]] = []
    for order in (9, 0):  # everything, then give back exactly one order-9 block
        while True:
            try:
                held.append((alloc_pages(mach, order, comp=False), order))
            except MmError:
                break
    __free_pages(mach, *held.pop(0))
    assert mach.free_area.nr_free == 512
    before = snapshot(mach)
    with pytest.raises(MmError) as e:
        p.touch(a, 4 * KiB)
    assert e.value.errno == ENOMEM
    after = snapshot(mach)
    vm_before, vm_after = before.pop("vmstat"), after.pop("vmstat")
    assert vm_after == {**vm_before, "pgfault": vm_before["pgfault"] + 1}  # counted anyway
    assert after == before and p.lookup(a).kind == "none"
    for pfn, order in held:
        __free_pages(mach, pfn, order)
    p.touch(a, 4 * KiB)  # with memory back, the same fault maps a THP
    assert p.lookup(a).level == "pmd" and m.check() == []


def test_an_unknown_thp_policy_is_einval_and_changes_nothing(m: System) -> None:
    """/sys/kernel/mm/transparent_hugepage/enabled takes always, madvise or never
    (enabled_store() returns -EINVAL for anything else)."""
    with pytest.raises(MmError) as e:
        System(ram="16M", thp="sometimes")
    assert e.value.errno == EINVAL and "sometimes" in str(e.value)
    with pytest.raises(MmError) as e:
        m.thp = "yes"
    assert e.value.errno == EINVAL and "always, madvise, never" in str(e.value)
    assert m.thp == "madvise"
    m.thp = "never"
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.touch(a, 4 * KiB)
    assert p.lookup(a).level == "pte"


def test_zero_length_mprotect_and_madvise_succeed_mmap_and_munmap_do_not(m: System) -> None:
    """do_mprotect_pkey() and madvise_should_skip() return 0 for len 0 (after checking the
    alignment of start); mmap() and munmap() of 0 bytes are -EINVAL."""
    p, a = m.spawn_with_thp(4 * MiB)
    before = snapshot(m.machine)
    p.mprotect(a, 0, "r")
    p.madvise(a, 0, "dontneed")
    assert snapshot(m.machine) == before
    for call in (lambda: p.mprotect(a + 1, 0, "r"), lambda: p.madvise(a + 1, 0, "free"),
                 lambda: p.munmap(a, 0), lambda: p.mmap(0)):
        with pytest.raises(MmError) as e:
            call()
        assert e.value.errno == EINVAL
    assert snapshot(m.machine) == before


def test_fork_copies_no_page_tables_of_a_vma_without_anon_vma() -> None:
    """vma_needs_copy(): a VMA that only took read faults (zero-page PTEs, no anon_vma)
    is not copied at fork; the child's read faults map the zero page again. Once the
    VMA has an anon_vma (a write), its zero-page PTEs are copied too."""
    m = System(ram="16M", thp="never", seed=0)
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.read(a)
    assert p.lookup(a).pfn == m.machine.zero_pfn and p.vma_at(a).anon_vma is None
    child = p.fork()
    assert child.lookup(a).kind == "none" and p.lookup(a).pfn == m.machine.zero_pfn
    assert child.read(a) == 0 and child.lookup(a).pfn == m.machine.zero_pfn
    p.write(a + 4 * KiB, 7)  # now the VMA has an anon_vma
    second = p.fork()
    assert second.lookup(a).pfn == m.machine.zero_pfn and second.read(a + 4 * KiB) == 7
    assert m.check() == []


def test_madv_dontneed_of_a_whole_pte_table_frees_it() -> None:
    """CONFIG_PT_RECLAIM (6.14+, x86-64): MADV_DONTNEED over a whole PMD range frees the
    emptied PTE table and clears the PMD (try_to_free_pte()); a partial zap keeps it; so a
    later MADV_COLLAPSE finds no table (SCAN_PMD_NULL: EINVAL), as seen on 6.18.44."""
    m = System(ram="16M", thp="never", seed=0)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.touch(a, 4 * MiB)  # two PTE tables
    tables = len(m.machine.pgtables)
    p.madvise(a + 2 * MiB + 4 * KiB, 8 * KiB, "dontneed")  # part of the second: kept
    assert p.lookup(a + 2 * MiB).level == "pte" and len(m.machine.pgtables) == tables
    p.madvise(a, 2 * MiB, "dontneed")  # the whole first block: its table goes
    e = p.lookup(a)
    assert (e.level, e.kind) == ("pmd", "none") and len(m.machine.pgtables) == tables - 1
    with pytest.raises(MmError) as err:
        p.madvise(a, 2 * MiB, "collapse")
    assert err.value.errno == EINVAL
    p.touch(a, 4 * KiB)  # a new fault allocates a new table
    assert p.lookup(a).level == "pte" and m.check() == []
