"""Unit tests of pyfolio/gup.py: FOLL_PIN accounting of mm/gup.c (v6.18).

try_grab_folio(FOLL_PIN): a large folio gets ``_refcount`` +1 and ``_pincount`` +1; a small
one ``_refcount`` + GUP_PIN_COUNTING_BIAS (1024). gup_put_folio() undoes exactly that.
"""

from __future__ import annotations

import pytest

from pyfolio import EFAULT, ENOMEM, KiB, MiB, MmError, System
from pyfolio.include.linux.mm import GUP_PIN_COUNTING_BIAS, folio_maybe_dma_pinned, page_folio
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.gup import follow_page, pin_user_pages, unpin_user_page
from pyfolio.sim.memmap import PG


@pytest.fixture
def m() -> System:
    return System(ram="64M", thp="madvise", seed=0)


def test_bias_is_the_kernels() -> None:
    assert GUP_PIN_COUNTING_BIAS == 1024  # include/linux/mm.h


def test_follow_page_reports_pfn_and_write_at_pte_and_pmd_level(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    head = p.folio_at(a).pfn
    assert follow_page(p.mm, a) == (head, True)
    assert follow_page(p.mm, a + 5 * 4 * KiB + 123) == (head + 5, True)  # page inside the PMD
    assert follow_page(p.mm, a + 2 * MiB) is None  # nothing mapped there yet
    b = p.mmap(16 * KiB)
    p.read(b)  # read fault: the shared zero page, read-only
    assert follow_page(p.mm, b) == (m.machine.zero_pfn, False)
    p.touch(b + 4 * KiB, 4 * KiB)
    assert follow_page(p.mm, b + 4 * KiB) == (p.folio_at(b + 4 * KiB).pfn, True)


def test_pin_of_a_small_page_adds_the_bias_and_faults_it_in(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    pfns = pin_user_pages(p.mm, a, 1)  # never touched: FOLL_WRITE faults it in first
    f = page_folio(m.machine, pfns[0])
    assert pfns == [p.pfn_at(a)] and f.order == 0
    assert (f.refcount, f.mapcount) == (1 + GUP_PIN_COUNTING_BIAS, 1)
    assert folio_maybe_dma_pinned(f) and m.machine.pins[f.pfn] == 1
    assert m.machine.mem.test(f.pfn, PG.anon_exclusive)
    assert m.check() == []
    unpin_user_page(m.machine, f.pfn)
    assert (f.refcount, folio_maybe_dma_pinned(f), f.pfn in m.machine.pins) == (1, False, False)
    assert m.check() == []


def test_pins_of_thp_pages_count_in_pincount_one_reference_each(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    f = p.folio_at(a)
    pfns = pin_user_pages(p.mm, a + 4 * KiB, 3)
    assert pfns == [f.pfn + 1, f.pfn + 2, f.pfn + 3]
    assert (f.refcount, int(m.machine.mem._pincount[f.pfn]), f.mapcount) == (4, 3, 1)
    assert p.lookup(a).level == "pmd"  # pinning does not split the PMD
    assert m.check() == []
    unpin_user_page(m.machine, f.pfn + 2)  # a tail page: the pin is the folio's
    assert (f.refcount, f.pincount, m.machine.pins[f.pfn]) == (3, 2, 2)
    assert m.check() == []


def test_pin_of_a_cow_shared_page_breaks_cow_first(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 4 * KiB)
    old = p.folio_at(a)
    c = p.fork()
    assert old.refcount == 2
    (pfn,) = pin_user_pages(p.mm, a, 1)
    assert pfn != old.pfn  # wp_page_copy(): the parent got its own exclusive copy
    assert m.machine.mem.test(pfn, PG.anon_exclusive)
    assert page_folio(m.machine, pfn).refcount == 1 + GUP_PIN_COUNTING_BIAS
    assert (old.refcount, c.pfn_at(a)) == (1, old.pfn)  # the child keeps the old page
    assert not folio_maybe_dma_pinned(old)
    assert m.check() == []


@pytest.mark.parametrize("where", ["read_only", "unmapped", "runs_past_the_vma"])
def test_pin_outside_a_writable_vma_is_efault_and_changes_nothing(m: System, where: str) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    r = p.mmap(8 * KiB, "r")
    start, n = {"read_only": (r, 1), "unmapped": (0x10000, 1),
                "runs_past_the_vma": (a + 12 * KiB, 4)}[where]
    before = snapshot(m.machine)
    mark = m.trace.mark()
    with pytest.raises(MmError) as e:
        pin_user_pages(p.mm, start, n)
    assert e.value.errno == EFAULT
    assert snapshot(m.machine) == before and "pin_user_pages" not in m.trace.names(mark)


def test_unpin_of_an_unmapped_pinned_page_frees_it(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    (pfn,) = pin_user_pages(p.mm, a, 1)
    free = m.nr_free_pages()
    p.munmap(a, 16 * KiB)  # the mapping's reference goes; the pin keeps the page
    f = page_folio(m.machine, pfn)
    assert (f.refcount, f.mapcount) == (GUP_PIN_COUNTING_BIAS, 0)
    assert m.check() == []
    unpin_user_page(m.machine, pfn)  # gup_put_folio(): folio_put_refs(1024) frees it
    assert m.machine.mem._refcount[pfn] == 0
    assert m.nr_free_pages() >= free + 1
    assert m.check() == []


def test_pin_records_one_event_with_the_count(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    mark = m.trace.mark()
    pin_user_pages(p.mm, a, 2)
    ev = [e for e in m.trace.since(mark) if e.name == "pin_user_pages"]
    assert len(ev) == 1 and ev[0].change("pinned") == 2 and ev[0].arg("nr_pages") == 2


def _fill(m: System) -> None:
    """Take every free frame (a process that wrote all of memory)."""
    from pyfolio.mm.page_alloc import alloc_pages

    while m.nr_free_pages():
        pfn = alloc_pages(m.machine, 0)
        m.machine.mem.extra_refs[pfn] += 1


def test_pin_that_cannot_fault_its_page_in_is_enomem(m: System) -> None:
    """faultin_page() turns VM_FAULT_OOM into -ENOMEM; with no page pinned yet
    __get_user_pages() returns it (with some pinned it would return their number)."""
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 4 * KiB)  # the page table exists; page 1 is still empty
    _fill(m)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        pin_user_pages(p.mm, a + 4 * KiB, 1)
    assert e.value.errno == ENOMEM
    after = snapshot(m.machine)
    vm_before, vm_after = before.pop("vmstat"), after.pop("vmstat")
    assert vm_after == {**vm_before, "pgfault": vm_before["pgfault"] + 1}  # counted anyway
    assert after == before
