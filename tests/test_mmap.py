"""Unit tests of pyfolio/mmap.py: do_mmap(), get_unmapped_area(), do_munmap(), split_vma(),
vma_merge_range() and the syscalls' argument checks, against mm/mmap.c and mm/vma.c (v6.18)."""

from __future__ import annotations

import pytest

from pyfolio import EINVAL, ENOMEM, KiB, MiB, MmError, System
from pyfolio.include.linux.mm_types import VM
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.mmap import (
    do_mmap,
    do_munmap,
    get_unmapped_area,
    split_vma,
    vma_merge_range,
)
from pyfolio.mm.rmap import anon_vma_prepare, rmap_walk
from pyfolio.sim.memmap import ENTIRELY_MAPPED, PG
from pyfolio.sim.units import PMD_SIZE


@pytest.fixture
def m() -> System:
    return System(ram="64M", thp="madvise", seed=0)


def _layout(mm: object) -> list[tuple[int, int, int]]:
    return [(v.vm_start, v.vm_end, v.vm_pgoff) for v in mm.vmas]  # type: ignore[attr-defined]


def test_munmap_and_mmap_check_their_arguments_as_the_kernel(m: System) -> None:
    """do_vmi_munmap(): EINVAL for an unaligned start, start > TASK_SIZE, len > TASK_SIZE -
    start (a negative length is a huge size_t) or a length of 0; do_mmap(): EINVAL for
    0, ENOMEM for a length PAGE_ALIGN() wraps to 0. Nothing changes."""
    mm = m.spawn().mm
    a = do_mmap(mm, 5000)  # PAGE_ALIGN(len): two pages
    assert mm.find_vma(a).vm_end - a == 8 * KiB
    before = snapshot(m.machine)
    for start, length in ((a + 1, 4096), (a, 0), (a, -4096), (a, 1 << 60), (-4096, 4096)):
        with pytest.raises(MmError) as e:
            do_munmap(mm, start, length)
        assert e.value.errno == EINVAL
    for length, errno in ((0, EINVAL), (-1, ENOMEM), (1 << 50, ENOMEM)):
        with pytest.raises(MmError) as e:
            do_mmap(mm, length)
        assert e.value.errno == errno
    assert snapshot(m.machine) == before


def test_do_mmap_makes_one_vma_with_the_kernels_flags_and_pgoff(m: System) -> None:
    mm = m.spawn().mm
    a = do_mmap(mm, 5000)  # rounded up to two pages
    v = mm.find_vma(a)
    assert (v.vm_start, v.vm_end, v.vm_pgoff) == (a, a + 8 * KiB, a >> 12)  # anon: addr >> 12
    assert v.vm_flags == VM.READ | VM.WRITE | VM.MAYREAD | VM.MAYWRITE | VM.MAYEXEC | VM.SOFTDIRTY
    assert v.anon_vma is None  # anon_vma_prepare() waits for the first write fault
    r = do_mmap(mm, 4 * KiB, "r")
    assert not mm.find_vma(r).vm_flags & VM.WRITE
    assert m.machine.mem._refcount[1:].sum() == 1  # nothing allocated but the PGD page
    assert m.check() == []


def test_do_mmap_of_zero_length_is_einval_and_changes_nothing(m: System) -> None:
    mm = m.spawn().mm
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        do_mmap(mm, 0)  # do_mmap(): if (!len) return -EINVAL
    assert e.value.errno == EINVAL and snapshot(m.machine) == before


def test_get_unmapped_area_is_top_down_and_pmd_aligned_for_pmd_multiples(m: System) -> None:
    mm = m.spawn().mm
    top = mm.mmap_base
    assert get_unmapped_area(mm, 2 * MiB) == top - 2 * MiB
    small = do_mmap(mm, 12 * KiB)
    assert small == top - 12 * KiB
    # thp_get_unmapped_area_vmflags(): a 2 MiB multiple goes below, 2 MiB aligned
    assert get_unmapped_area(mm, 4 * MiB) == (small - 4 * MiB) & ~(PMD_SIZE - 1)
    assert get_unmapped_area(mm, 4 * KiB) == small - 4 * KiB  # just below, page aligned


def test_get_unmapped_area_without_room_is_enomem(m: System) -> None:
    mm = m.spawn().mm
    mm.mmap_base = 0x10000 + 8 * KiB
    assert get_unmapped_area(mm, 8 * KiB) == 0x10000
    with pytest.raises(MmError) as e:
        do_mmap(mm, 16 * KiB)
    assert e.value.errno == ENOMEM and mm.vmas == []


def test_adjacent_mmaps_with_equal_flags_merge_into_one_vma(m: System) -> None:
    p = m.spawn()
    a = p.mmap(8 * KiB)
    p.touch(a, 4 * KiB)  # the upper VMA now has an anon_vma, the new one will not
    b = p.mmap(8 * KiB)
    assert b == a - 8 * KiB
    assert _layout(p.mm) == [(b, a + 8 * KiB, b >> 12)]  # pgoffs were contiguous
    assert p.vma_at(b).anon_vma is not None  # the merged VMA keeps it
    c = p.mmap(4 * KiB, "r")  # different flags: a VMA of its own
    assert len(p.mm.vmas) == 2 and p.vma_at(c).vm_end == b
    assert m.check() == []


def test_vma_merge_range_keeps_vmas_with_different_anon_vmas_apart(m: System) -> None:
    p = m.spawn()
    a = p.mmap(8 * KiB)
    v = p.vma_at(a)
    upper = split_vma(v, a + 4 * KiB)
    assert _layout(p.mm) == [(a, a + 4 * KiB, a >> 12), (a + 4 * KiB, a + 8 * KiB,
                                                          (a >> 12) + 1)]
    anon_vma_prepare(v)
    anon_vma_prepare(upper)  # two anon_vmas: is_mergeable_anon_vma() says no
    vma_merge_range(p.mm, a, a + 8 * KiB)
    assert len(p.mm.vmas) == 2
    upper.anon_vma_chain.clear()
    upper.anon_vma = None  # one side without any: mergeable
    vma_merge_range(p.mm, a, a + 8 * KiB)
    assert _layout(p.mm) == [(a, a + 8 * KiB, a >> 12)] and p.vma_at(a) is v


def test_split_vma_keeps_the_rmap_reaching_both_parts(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a)
    v = p.vma_at(a)
    upper = split_vma(v, a + 8 * KiB)
    assert (v.vm_end, upper.vm_start, upper.vm_end, upper.vm_pgoff) == (
        a + 8 * KiB, a + 8 * KiB, a + 16 * KiB, (a >> 12) + 2)
    assert upper.anon_vma is v.anon_vma and upper in v.anon_vma.vmas  # anon_vma_clone()
    f = p.folio_at(a + 12 * KiB)
    assert [(mp.vma, mp.address) for mp in rmap_walk(f)] == [(upper, a + 12 * KiB)]
    assert m.check() == []


def test_split_vma_inside_a_thp_splits_the_pmd_first(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    split_vma(p.vma_at(a), a + 1 * MiB)  # vma_adjust_trans_huge()
    assert p.lookup(a).level == "pte" and m.machine.vmstat["thp_split_pmd"] == 1
    f = p.folio_at(a)
    assert (f.order, f.refcount, f.mapcount, f.entire_mapcount) == (9, 512, 512, 0)
    assert m.check() == []


def test_do_munmap_of_the_middle_splits_the_vma_and_frees_the_pages(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a)
    gone = p.folio_at(a + 4 * KiB)
    free = m.nr_free_pages()
    do_munmap(p.mm, a + 4 * KiB, 8 * KiB)
    assert _layout(p.mm) == [(a, a + 4 * KiB, a >> 12), (a + 12 * KiB, a + 16 * KiB,
                                                          (a >> 12) + 3)]
    assert p.lookup(a + 4 * KiB).kind == "none" and p.lookup(a + 8 * KiB).kind == "none"
    assert m.machine.mem._refcount[gone.pfn] == 0
    assert m.nr_free_pages() == free + 2  # two 4 KiB folios back; the PTE table stays
    assert p.read(a + 12 * KiB) == ((a + 12 * KiB) >> 12) + 1  # data kept
    assert m.check() == []


def test_do_munmap_of_part_of_a_thp_leaves_it_partially_mapped(m: System) -> None:
    p, a = m.spawn_with_thp(4 * MiB)
    f, mem = p.folio_at(a), m.machine.mem
    do_munmap(p.mm, a, 4 * KiB)
    assert (f.order, f.refcount, f.mapcount) == (9, 511, 511)
    assert (int(mem._entire_mapcount[f.pfn]), int(mem._nr_pages_mapped[f.pfn])) == (-1, 511)
    assert int(mem._nr_pages_mapped[f.pfn]) < ENTIRELY_MAPPED
    assert mem._mapcount[f.pfn] == -1 and mem._mapcount[f.pfn + 1] == 0
    assert mem.test(f.pfn, PG.partially_mapped) and f.pfn in m.machine.deferred_split_queue
    assert (m.machine.vmstat["thp_split_pmd"], m.machine.vmstat["thp_deferred_split_page"]) \
        == (1, 1)
    assert m.check() == []


def test_do_munmap_of_nothing_succeeds_and_bad_ranges_are_einval(m: System) -> None:
    p = m.spawn()
    a = p.mmap(16 * KiB)
    before = snapshot(m.machine)
    do_munmap(p.mm, a - 64 * KiB, 16 * KiB)  # no VMA there: 0
    assert snapshot(m.machine) == before
    for start, length in ((a + 1, 4 * KiB), (a, 0)):
        with pytest.raises(MmError) as e:
            do_munmap(p.mm, start, length)
        assert e.value.errno == EINVAL
    assert snapshot(m.machine) == before


def test_do_munmap_of_everything_frees_the_page_tables(m: System) -> None:
    p = m.spawn()
    free = m.nr_free_pages()
    a = p.mmap(16 * KiB)
    p.touch(a)  # 4 pages + PUD, PMD and PTE tables
    assert m.nr_free_pages() == free - 7
    do_munmap(p.mm, a, 16 * KiB)
    assert p.mm.vmas == [] and m.nr_free_pages() == free
    assert set(m.machine.pgtables) == {p.mm.pgd}
    assert m.check() == []


def test_vma_span_gives_the_same_span_whatever_the_hint(m: System) -> None:
    """MMStruct.vma_span(start, end, hint): a hint is only a guess (taken when the
    neighbours confirm it); every hint, right, off by some or out of range, gives the span
    the bisection gives, for ranges in gaps, at edges and over many VMAs (the scan for the
    end gives up after a few VMAs and bisects)."""
    p = m.spawn()
    a = p.mmap(64 * 4 * KiB)
    for i in range(0, 64, 4):  # VMAs [rw][r][rw][gap]...
        p.mprotect(a + (i + 1) * 4 * KiB, 4 * KiB, "r")
        p.munmap(a + (i + 3) * 4 * KiB, 4 * KiB)
    mm = p.mm
    n = len(mm.vmas)
    assert n == 48
    for lo in range(-2, 66):
        for ln in (1, 2, 5, 13, 40, 70):
            start, end = a + lo * 4 * KiB, a + (lo + ln) * 4 * KiB
            want = mm.vma_span(start, end)
            i, j = want
            assert [v for v in mm.vmas if v.vm_end > start and v.vm_start < end] == \
                mm.vmas[i:j]
            for hint in range(-3, n + 4):
                assert mm.vma_span(start, end, hint) == want, (lo, ln, hint)


def test_mprotect_hands_vma_merge_range_the_span_it_would_look_up(
        m: System, monkeypatch: pytest.MonkeyPatch) -> None:
    """do_mprotect() passes vma_merge_range() the span vma_span(start - 1, end + 1) gives
    (the range's VMAs and the neighbours touching it), computed from the indices the cuts
    left: ranges inside a VMA, at VMA edges with and without a touching neighbour, over
    several VMAs, at the first and the last VMA; the merges then leave one VMA again."""
    import pyfolio.mm.mprotect as mprotect

    seen: list[tuple[tuple[int, int], tuple[int, int]]] = []
    orig = mprotect.vma_merge_range

    def check(mm, start, end, span=None):  # type: ignore[no-untyped-def]
        seen.append((span, mm.vma_span(max(start - 1, 0), end + 1)))
        orig(mm, start, end, span)

    monkeypatch.setattr(mprotect, "vma_merge_range", check)
    p = m.spawn()
    a = p.mmap(64 * 4 * KiB)
    b = p.mmap(8 * 4 * KiB)  # top-down: right below a
    page = 4 * KiB
    assert b + 8 * page == a
    for off, n, prot in ((1, 1, "r"), (3, 2, "none"), (1, 4, "r"), (0, 1, "r"), (63, 1, "r"),
                         (2, 40, "none"), (0, 64, "r"), (10, 3, "rw"), (5, 50, "rw"),
                         (0, 64, "rw"), (20, 1, "none"), (21, 1, "none"), (19, 1, "none")):
        p.mprotect(a + off * page, n * page, prot)
    p.mprotect(b, 8 * page, "r")
    p.mprotect(b + 7 * page, page + 2 * page, "rw")  # over b's end into a
    p.mprotect(b, 8 * page + 64 * page, "rw")
    assert len(seen) == 16 and all(got == want for got, want in seen), seen
    assert [(v.vm_start, v.vm_end) for v in p.mm.vmas] == [(b, a + 64 * page)]


def test_a_split_a_fork_and_an_mremap_copy_the_vma_as_vm_area_dup_does() -> None:
    """mm/vma_init.c:vm_area_init_from() copies vm_ops and swap_readahead_info into every
    duplicate: the upper part of a split, a fork's child VMA, mremap's copy_vma()."""
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(1 * MiB)
    vma = p.mm.vmas[0]
    vma.swap_readahead_info = 0x7F0000001234  # a fault address, window and hits
    p.mprotect(a + 512 * KiB, 4 * KiB, "r")
    assert [v.swap_readahead_info for v in p.mm.vmas] == [0x7F0000001234] * 3
    c = p.fork()
    assert [v.swap_readahead_info for v in c.mm.vmas] == [0x7F0000001234] * 3
    b = p.mremap(a, 512 * KiB, 512 * KiB, maymove=True, new_addr=a + 4 * MiB)
    assert b == a + 4 * MiB and p.mm.find_vma(b).swap_readahead_info == 0x7F0000001234
    fd = p.memfd_create("ops")
    p.ftruncate(fd, 1 * MiB)
    s = p.mmap(1 * MiB, shared=True, fd=fd)
    p.mprotect(s + 512 * KiB, 4 * KiB, "r")
    ops = {v.vm_ops for v in p.mm.vmas if v.vm_file is not None}
    assert len(ops) == 1 and None not in ops and m.check() == []
