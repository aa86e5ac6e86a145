"""Unit tests of pyfolio/memory.py: the PTE-level fault paths, zap and fork copy of
mm/memory.c (v6.18): do_anonymous_page(), do_wp_page() (reuse or wp_page_copy()),
zap_pte_range(), copy_page_range()."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.arch.x86.pgtable import _PAGE_DIRTY, _PAGE_SAVED_DIRTY, pte_pfn
from pyfolio.include.linux.mm import GUP_PIN_COUNTING_BIAS, page_folio
from pyfolio.include.linux.mm_types import VMA
from pyfolio.mm.memory import (
    FAULT_FLAG_WRITE,
    copy_page_range,
    do_anonymous_page,
    do_wp_page,
    handle_mm_fault,
    pte_slot,
    vma_needs_copy,
    zap_pte_range,
)
from pyfolio.mm.rmap import anon_vma_fork, folio_anon_vma
from pyfolio.sim.memmap import PG


@pytest.fixture
def m() -> System:
    return System(ram="64M", thp="madvise", seed=0)


def _slot(p: object, addr: int) -> tuple[int, int]:
    s = pte_slot(p.mm, addr, alloc=True)  # type: ignore[attr-defined]
    assert s is not None
    return s


def test_read_fault_maps_the_zero_page_special_without_counts(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    vma = p.vma_at(a)
    zero_ref = int(m.machine.mem._refcount[m.machine.zero_pfn])
    assert do_anonymous_page(vma, a, 0, _slot(p, a)) == 0
    e = p.lookup(a)
    assert (e.kind, e.pfn, e.write, e.special) == ("zero", m.machine.zero_pfn, False, True)
    assert int(m.machine.mem._refcount[m.machine.zero_pfn]) == zero_ref
    assert int(m.machine.mem._mapcount[m.machine.zero_pfn]) == -1
    assert vma.anon_vma is None  # only a write fault calls anon_vma_prepare()
    assert m.check() == []


def test_write_fault_maps_a_new_exclusive_folio_writable_and_dirty(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    vma, mem = p.vma_at(a), m.machine.mem
    assert do_anonymous_page(vma, a + 4 * KiB, FAULT_FLAG_WRITE, _slot(p, a + 4 * KiB)) == 0
    e = p.lookup(a + 4 * KiB)
    assert (e.kind, e.write, e.dirty, e.soft_dirty) == ("page", True, True, True)
    f = page_folio(m.machine, e.pfn)
    assert (f.order, f.refcount, int(mem._mapcount[f.pfn])) == (0, 1, 0)
    assert all(mem.test(f.pfn, flag) for flag in (PG.anon_exclusive, PG.swapbacked, PG.lru))
    assert vma.anon_vma is not None and folio_anon_vma(f) is vma.anon_vma
    assert int(mem.index[f.pfn]) == (a + 4 * KiB) >> 12
    assert int(mem.stamp[f.pfn]) == 0  # zeroed
    assert m.check() == []


def test_write_fault_with_64k_mthp_enabled_maps_an_order4_folio_by_16_ptes(m: System) -> None:
    m.set_mthp("64kB", "always")
    p = m.spawn()
    a = p.mmap(2 * MiB)  # PMD order not allowed (thp=madvise, no MADV_HUGEPAGE)
    mem = m.machine.mem
    zeroed = m.trace.costs["pages_zeroed"]
    assert handle_mm_fault(p.vma_at(a), a + 20 * KiB, FAULT_FLAG_WRITE) == 0
    f = p.folio_at(a)
    assert (f.order, f.refcount, f.mapcount) == (4, 16, 16)  # folio_ref_add(nr - 1)
    assert (int(mem._large_mapcount[f.pfn]), int(mem._nr_pages_mapped[f.pfn])) == (15, 16)
    assert [p.pfn_at(a + i * 4 * KiB) for i in range(16)] == list(range(f.pfn, f.pfn + 16))
    assert p.lookup(a + 64 * KiB).kind == "none"
    assert all(mem.test(f.pfn + i, PG.anon_exclusive) for i in range(16))
    assert m.trace.costs["pages_zeroed"] == zeroed + 16
    assert m.check() == []


def test_write_to_a_page_nobody_else_holds_reuses_it_and_moves_its_anon_vma(
        m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.write(a, 7)
    c = p.fork()
    p.exit()  # the child is the only one left; the page is not marked exclusive
    f, mem = c.folio_at(a), m.machine.mem
    cvma = c.vma_at(a)
    assert not mem.test(f.pfn, PG.anon_exclusive) and f.refcount == 1
    assert folio_anon_vma(f) is not cvma.anon_vma  # still the parent's (root) anon_vma
    copied = m.trace.costs["pages_copied"]
    assert do_wp_page(cvma, a, FAULT_FLAG_WRITE, _slot(c, a)) == 0
    e = c.lookup(a)
    assert (e.pfn, e.write, e.dirty) == (f.pfn, True, True)  # wp_page_reuse()
    assert mem.test(f.pfn, PG.anon_exclusive) and folio_anon_vma(f) is cvma.anon_vma
    assert m.trace.costs["pages_copied"] == copied
    assert m.check() == []


def test_write_to_a_shared_page_copies_it(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.write(a, 42)
    c = p.fork()
    old, mem = p.folio_at(a), m.machine.mem
    assert (old.refcount, old.mapcount) == (2, 2)
    copied, flushes = m.trace.costs["pages_copied"], m.trace.costs["tlb_flushes"]
    assert do_wp_page(p.vma_at(a), a, FAULT_FLAG_WRITE, _slot(p, a)) == 0
    new = p.folio_at(a)
    assert new.pfn != old.pfn and int(mem.stamp[new.pfn]) == 42
    assert (old.refcount, old.mapcount, new.refcount, new.mapcount) == (1, 1, 1, 1)
    assert mem.test(new.pfn, PG.anon_exclusive) and folio_anon_vma(new) is p.vma_at(a).anon_vma
    assert p.lookup(a).write and not c.lookup(a).write and c.pfn_at(a) == old.pfn
    assert m.trace.costs["pages_copied"] == copied + 1
    assert m.trace.costs["tlb_flushes"] == flushes + 1
    assert m.check() == []


def test_write_to_the_zero_page_gets_a_fresh_page(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.read(a)
    zero = m.machine.zero_pfn
    zero_ref = int(m.machine.mem._refcount[zero])
    assert do_wp_page(p.vma_at(a), a, FAULT_FLAG_WRITE, _slot(p, a)) == 0
    f = p.folio_at(a)
    assert f.pfn != zero and (f.refcount, f.mapcount) == (1, 1)
    assert p.lookup(a).write and int(m.machine.mem.stamp[f.pfn]) == 0
    assert int(m.machine.mem._refcount[zero]) == zero_ref
    assert m.check() == []


def test_write_to_the_zero_page_zeroes_one_page_and_copies_none(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.read(a)
    before = m.trace.costs.copy()
    do_wp_page(p.vma_at(a), a, FAULT_FLAG_WRITE, _slot(p, a))
    d = m.trace.costs - before
    assert d["pages_copied"] == 0 and d["pages_zeroed"] == 1


def test_zap_pte_range_drops_rmap_and_reference_of_each_entry(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a)
    f1, f2, keep = p.folio_at(a + 4 * KiB), p.folio_at(a + 8 * KiB), p.folio_at(a)
    free = m.nr_free_pages()
    table = _slot(p, a)[0]
    zap_pte_range(p.vma_at(a), table, a + 4 * KiB, a + 12 * KiB)
    assert [p.lookup(a + i * 4 * KiB).kind for i in range(4)] == ["page", "none", "none",
                                                                     "page"]
    assert m.machine.mem._refcount[f1.pfn] == 0 and m.machine.mem._refcount[f2.pfn] == 0
    assert m.nr_free_pages() == free + 2 and keep.refcount == 1
    assert m.check() == []


def test_zap_pte_range_of_part_of_an_mthp_queues_it_for_deferred_split(m: System) -> None:
    m.set_mthp("64kB", "always")
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.touch(a, 64 * KiB)
    f, mem = p.folio_at(a), m.machine.mem
    zap_pte_range(p.vma_at(a), _slot(p, a)[0], a + 16 * KiB, a + 32 * KiB)  # pages 4..7
    assert (f.refcount, f.mapcount, int(mem._nr_pages_mapped[f.pfn])) == (12, 12, 12)
    assert (mem._mapcount[f.pfn + 4: f.pfn + 8] == -1).all()
    assert mem.test(f.pfn, PG.partially_mapped) and f.pfn in m.machine.deferred_split_queue
    assert m.machine.vmstat["thp_deferred_split_page"] == 0  # counted for PMD-sized only
    assert m.check() == []


def test_zap_of_a_zero_page_pte_just_clears_it(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.read(a)
    zero_ref = int(m.machine.mem._refcount[m.machine.zero_pfn])
    zap_pte_range(p.vma_at(a), _slot(p, a)[0], a, a + 4 * KiB)
    assert p.lookup(a).kind == "none"
    assert int(m.machine.mem._refcount[m.machine.zero_pfn]) == zero_ref
    assert m.check() == []


def _child_vma(m: System, p: object, vma: VMA) -> VMA:
    """What dup_mmap() does before copy_page_range(): the child's VMA, chained."""
    c = m.spawn()
    new = VMA(c.mm, vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_pgoff)
    c.mm.vmas.append(new)
    anon_vma_fork(new, vma)
    return new


def test_copy_page_range_shares_pages_write_protected_in_both(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 8 * KiB)
    vma = p.vma_at(a)
    new = _child_vma(m, p, vma)
    f = p.folio_at(a)
    copy_page_range(new, vma)
    assert (f.refcount, f.mapcount) == (2, 2)
    assert not m.machine.mem.test(f.pfn, PG.anon_exclusive)
    parent_raw = int(m.machine.pgtables[_slot(p, a)[0]][_slot(p, a)[1]])
    child = pte_slot(new.vm_mm, a)
    assert child is not None
    child_raw = int(m.machine.pgtables[child[0]][child[1]])
    assert child_raw & ~0x20 == parent_raw & ~0x20  # same page, same bits but young
    assert not child_raw & 0x20  # pte_mkold() for the child
    assert not parent_raw & 0x2 and not parent_raw & _PAGE_DIRTY  # wrprotect: D moved...
    assert parent_raw & _PAGE_SAVED_DIRTY  # ... to SavedDirty
    assert m.check() == []


def test_copy_page_range_copies_a_pinned_page_for_the_child(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.pin(a, 4 * KiB)
    p.write(a, 9)
    vma = p.vma_at(a)
    new = _child_vma(m, p, vma)
    f = p.folio_at(a)
    copy_page_range(new, vma)  # copy_present_page()
    child = pte_slot(new.vm_mm, a)
    assert child is not None
    cpfn = pte_pfn(int(m.machine.pgtables[child[0]][child[1]]))
    assert cpfn != f.pfn and int(m.machine.mem.stamp[cpfn]) == 9
    assert (f.refcount, f.mapcount) == (1 + GUP_PIN_COUNTING_BIAS, 1)
    assert p.lookup(a).write and m.machine.mem.test(f.pfn, PG.anon_exclusive)
    assert m.machine.mem.test(cpfn, PG.anon_exclusive)
    assert m.check() == []


def test_copy_page_range_skips_a_vma_without_anon_vma(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.read(a)  # zero page only: no anon_vma
    vma = p.vma_at(a)
    new = _child_vma(m, p, vma)
    assert vma_needs_copy(new, vma) is False
    copy_page_range(new, vma)
    assert pte_slot(new.vm_mm, a) is None  # no table was even allocated
    assert m.check() == []
