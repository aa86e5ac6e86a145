"""MADV_COLLAPSE (mm/khugepaged.c:madvise_collapse(), v6.18) on the simulator.

Where a test says "as on 6.18", the behaviour was also seen on a 6.18 kernel with the same
sequence of system calls (new PFNs, the allocation counter, the errno).
"""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, MmError, System
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import EAGAIN, EINVAL, ENOMEM
from pyfolio.sim.memmap import PG
from pyfolio.system import Process


def _small(thp: str = "madvise", ram: str = "32M") -> tuple[System, Process, int]:
    """A 2 MiB aligned region written page by page: 512 small folios."""
    m = System(ram=ram, thp=thp, seed=0)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.touch(a, 2 * MiB)
    return m, p, a


def _pfns(p: Process, a: int, n: int = 512) -> list[int | None]:
    return [p.pfn_at(a + i * 4 * KiB) for i in range(n)]


def _without_counters(snap: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in snap.items() if k != "vmstat"}


def test_collapse_copies_512_small_pages_into_a_new_pmd_mapped_thp() -> None:
    m, p, a = _small()
    old = _pfns(p, a)
    data = [p.read(a + i * 4 * KiB) for i in range(512)]
    free = m.nr_free_pages()
    p.madvise(a, 2 * MiB, "collapse")
    e, f = p.lookup(a), p.folio_at(a)
    assert (e.level, e.kind, e.write, e.dirty) == ("pmd", "huge", True, True)
    assert (f.order, f.refcount, f.mapcount) == (9, 1, 1)
    assert m.machine.mem.test(f.pfn, PG.anon_exclusive) and m.machine.mem.test(f.pfn, PG.lru)
    assert not set(_pfns(p, a)) & set(old)  # new frames, as on 6.18
    assert [p.read(a + i * 4 * KiB) for i in range(512)] == data
    assert m.vmstat()["thp_collapse_alloc"] == 1
    assert m.nr_free_pages() == free  # 512 small pages freed, one order-9 folio taken
    assert p.mm.pmd_huge_pte  # the emptied PTE table is deposited with the PMD
    assert m.check() == []


def test_partly_populated_block_is_zero_filled() -> None:
    m = System(ram="32M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.write(a + 5 * 4 * KiB, 42)
    assert p.read(a + 9 * 4 * KiB) == 0  # a zero-page PTE
    p.madvise(a, 2 * MiB, "collapse")
    assert p.folio_at(a).order == 9 and p.lookup(a + 9 * 4 * KiB).level == "pmd"
    assert p.read(a + 5 * 4 * KiB) == 42
    assert {p.read(a + i * 4 * KiB) for i in range(512) if i != 5} == {0}
    assert m.check() == []


def test_collapse_ignores_the_thp_policy_never() -> None:
    m, p, a = _small(thp="never")
    p.madvise(a, 2 * MiB, "collapse")
    assert p.folio_at(a).order == 9 and m.vmstat()["thp_collapse_alloc"] == 1
    assert m.check() == []


def test_a_pinned_page_fails_with_eagain_and_changes_nothing() -> None:
    m, p, a = _small()
    p.pin(a + 3 * 4 * KiB, 4 * KiB)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        p.madvise(a, 2 * MiB, "collapse")
    assert e.value.errno == EAGAIN  # SCAN_PAGE_COUNT
    assert snapshot(m.machine) == before
    assert m.check() == []


def test_a_block_split_over_two_vmas_is_einval_until_they_merge_again() -> None:
    m, p, a = _small()
    p.mprotect(a + 1 * MiB, 1 * MiB, "r")  # no VMA holds a whole 2 MiB block: as on 6.18
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        p.madvise(a, 2 * MiB, "collapse")
    assert e.value.errno == EINVAL and snapshot(m.machine) == before
    p.mprotect(a + 1 * MiB, 1 * MiB, "rw")
    p.madvise(a, 2 * MiB, "collapse")
    assert p.folio_at(a + 1 * MiB).order == 9 and m.check() == []


def test_several_vmas_are_collapsed_one_by_one_and_the_first_failure_stops() -> None:
    m = System(ram="32M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.touch(a, 4 * MiB)
    p.mprotect(a + 2 * MiB, 2 * MiB, "r")  # two VMAs, each a whole block: both collapse
    p.madvise(a, 4 * MiB, "collapse")
    assert p.folio_at(a).order == p.folio_at(a + 2 * MiB).order == 9
    assert not p.lookup(a + 2 * MiB).write  # maybe_pmd_mkwrite(): a read-only VMA
    b = p.mmap(4 * MiB)
    p.touch(b, 4 * MiB)
    p.madvise(b + 2 * MiB, 2 * MiB, "nohugepage")
    with pytest.raises(MmError) as e:  # as on 6.18: -EINVAL, the first VMA collapsed
        p.madvise(b, 4 * MiB, "collapse")
    assert e.value.errno == EINVAL
    assert p.folio_at(b).order == 9 and p.folio_at(b + 2 * MiB).order == 0
    assert m.vmstat()["thp_collapse_alloc"] == 3 and m.check() == []


def test_after_fork_the_child_keeps_the_pages() -> None:
    m, p, a = _small()
    c = p.fork()
    theirs = _pfns(c, a)
    p.madvise(a, 2 * MiB, "collapse")  # shared pages are allowed for MADV_COLLAPSE
    assert p.folio_at(a).order == 9 and _pfns(c, a) == theirs
    f = c.folio_at(a + 4 * KiB)
    assert (f.order, f.refcount, f.mapcount) == (0, 1, 1)
    assert c.read(a + 4 * KiB) == p.read(a + 4 * KiB) == (a >> 12) + 2
    c.write(a + 4 * KiB, 9)  # now the child's alone: reused in place
    assert c.pfn_at(a + 4 * KiB) == theirs[1] and p.read(a + 4 * KiB) == (a >> 12) + 2
    assert m.check() == []


def test_an_already_pmd_mapped_block_succeeds_and_changes_nothing() -> None:
    m = System(ram="32M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp()
    before = snapshot(m.machine)
    p.madvise(a, 2 * MiB, "collapse")  # SCAN_PMD_MAPPED counts as a THP
    assert snapshot(m.machine) == before


def test_a_pte_mapped_thp_is_copied_to_a_new_thp_and_freed() -> None:
    m = System(ram="32M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp()
    p.mprotect(a, 4 * KiB, "r")
    p.mprotect(a, 4 * KiB, "rw")  # PMD split, VMAs merged again: 512 PTEs of one THP
    old = p.folio_at(a)
    assert p.lookup(a).level == "pte" and old.order == 9
    before, free = m.vmstat(), m.nr_free_pages()
    p.madvise(a, 2 * MiB, "collapse")
    assert p.lookup(a).level == "pmd" and p.folio_at(a).pfn != old.pfn  # as on 6.18
    after = m.vmstat()
    assert after["thp_collapse_alloc"] == 1
    # all 512 PTEs go in one batch: never partially mapped, so no deferred split (6.18)
    assert after["thp_deferred_split_page"] == before["thp_deferred_split_page"]
    assert m.nr_free_pages() == free and m.machine.deferred_split_queue.keys() == {
        p.folio_at(a).pfn}  # the old THP is freed; the new one queued unflagged
    assert m.check() == []


def test_a_vma_never_written_is_refused() -> None:
    m = System(ram="32M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.read(a)  # zero page only: no anon_vma, so no THP may be forced (-EINVAL on 6.18)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        p.madvise(a, 2 * MiB, "collapse")
    assert e.value.errno == EINVAL and snapshot(m.machine) == before
    p.write(a + 4 * KiB, 7)  # one written page gives the VMA its anon_vma: as on 6.18
    p.madvise(a, 2 * MiB, "collapse")
    assert p.folio_at(a).order == 9 and p.read(a + 4 * KiB) == 7 and m.check() == []


def test_no_free_order_9_block_is_enomem_and_only_the_counter_moves() -> None:
    m, p, a = _small(ram="4M")
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        p.madvise(a, 2 * MiB, "collapse")
    assert e.value.errno == ENOMEM
    assert m.vmstat()["thp_collapse_alloc_failed"] == 1
    assert _without_counters(snapshot(m.machine)) == _without_counters(before)


def test_a_range_holding_no_whole_block_does_nothing() -> None:
    m, p, a = _small()
    before = snapshot(m.machine)
    p.madvise(a + 4 * KiB, 2 * MiB - 8 * KiB, "collapse")  # hstart >= hend: 0
    assert snapshot(m.machine) == before


def test_device_private_pages_are_brought_back_first() -> None:
    """__collapse_huge_page_swapin(): do_swap_page() on the device-private entries makes
    the driver migrate the pages back to RAM; then the block collapses."""
    m = System(ram="64M", device="16M", seed=0)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.touch(a, 2 * MiB)
    m.device.migrate_to_device(p, a + 64 * KiB, 16 * KiB)
    assert p.lookup(a + 64 * KiB).kind == "device_private"
    p.madvise(a, 2 * MiB, "collapse")
    assert p.folio_at(a).order == 9
    assert p.read(a + 68 * KiB) == ((a + 68 * KiB) >> 12) + 1
    assert m.check() == []


@pytest.mark.parametrize("written", [0, 2 * MiB])
def test_an_empty_pmd_stops_the_walk_with_einval(written: int) -> None:
    """SCAN_PMD_NONE is not among the results madvise_collapse() walks past: as on 6.18,
    a 4 MiB range with only its first half written collapses that half and fails, and one
    with only its second half written fails before reaching it."""
    m = System(ram="32M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.touch(a + written, 2 * MiB)
    with pytest.raises(MmError) as e:
        p.madvise(a, 4 * MiB, "collapse")
    assert e.value.errno == EINVAL
    assert p.folio_at(a + written).order == (9 if written == 0 else 0)
    assert m.vmstat().get("thp_collapse_alloc", 0) == (1 if written == 0 else 0)
    p.madvise(a + written, 2 * MiB, "collapse")  # the written half alone: done
    assert p.folio_at(a + written).order == 9 and m.check() == []
