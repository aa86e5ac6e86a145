"""mremap of anonymous memory (mm/mremap.c): entries move as they are, PMDs move whole or split.

Expected values: research notes device_api §M1 (Linux 6.18.44, MADV_HUGEPAGE THPs, two
runs) and split_huge_page_test.c:split_pte_mapped_thp() (linux-mm, ported below).
"""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.include.linux.mm_types import VM
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.mremap import MREMAP_FIXED, MREMAP_MAYMOVE, do_mremap
from pyfolio.sim.errors import EFAULT, EINVAL, ENOMEM, MmError
from pyfolio.system import Process


def _thp(n: int = 8) -> tuple[System, Process, int]:
    """An ``n`` MiB mapping whose first 2 MiB are one PMD-mapped THP, written."""
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(n * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
    return m, p, a


def _stamps(p: Process, addr: int, pages: list[int]) -> list[int]:
    return [p.read(addr + i * 4 * KiB) for i in pages]


def test_aligned_move_moves_the_pmd_whole() -> None:
    # M1 aligned: same PFNs, kpagecount 1, AnonHuge 2048 at the destination; no vmstat move
    m, p, a = _thp()
    p.munmap(a + 4 * MiB, 4 * MiB)
    folio, data, v0 = p.folio_at(a), _stamps(p, a, [0, 1, 511]), m.vmstat()
    rss0 = p.status()["RssAnon"]
    d = a + 4 * MiB
    assert p.mremap(a, 2 * MiB, 2 * MiB, maymove=True, new_addr=d) == d
    assert p.vma_at(a) is None and p.lookup(a).kind == "none"
    e = p.lookup(d)
    assert (e.level, e.kind, e.soft_dirty) == ("pmd", "huge", True)  # move_soft_dirty_pmd()
    assert p.folio_at(d) == folio and folio is not None and folio.refcount == 1
    assert m.kpagecount([folio.pfn]) == [1] and p.status()["RssAnon"] == rss0 == 2048
    assert sum(v["AnonHugePages"] for v in p.smaps()) == 2048
    assert _stamps(p, d, [0, 1, 511]) == data
    assert m.vmstat() == v0 and m.check() == []


def test_misaligned_move_splits_the_pmd_and_keeps_the_folio() -> None:
    # M1 misaligned (dst + 4 KiB): large x512 same PFNs across two tables, AnonHuge 0,
    # Rss 2048; thp_split_pmd +1; drop_caches: nothing (fully mapped, not queued)
    m, p, a = _thp()
    p.munmap(a + 4 * MiB, 4 * MiB)
    pfns = [p.pfn_at(a + i * 4 * KiB) for i in range(512)]
    d = a + 4 * MiB + 4 * KiB
    assert p.mremap(a, 2 * MiB, 2 * MiB, maymove=True, new_addr=d) == d
    assert [p.pfn_at(d + i * 4 * KiB) for i in range(512)] == pfns
    assert p.folio_at(d).order == 9 and p.lookup(d).level == "pte"
    assert m.vmstat()["thp_split_pmd"] == 1 and m.vmstat()["thp_deferred_split_page"] == 0
    assert sum(v["AnonHugePages"] for v in p.smaps()) == 0
    assert sum(v["Rss"] for v in p.smaps()) == 2048
    assert m.drop_caches() == 0 and p.folio_at(d).order == 9
    assert m.check() == []


def test_shrink_unmaps_the_tail() -> None:
    # M1 shrink mremap(a, 2M, 1M, 0): a; large x256, Rss 1024; thp_split_pmd +1,
    # thp_deferred_split_page +1; then drop_caches: thp_split_page +1 -> small x256
    m, p, a = _thp()
    assert p.mremap(a, 2 * MiB, 1 * MiB) == a
    assert p.status()["RssAnon"] == 1024 and p.vma_at(a + 1 * MiB) is None
    v = m.vmstat()
    assert (v["thp_split_pmd"], v["thp_deferred_split_page"]) == (1, 1)
    assert m.drop_caches() == 1 and m.vmstat()["thp_split_page"] == 1
    assert p.folio_at(a).order == 0 and m.check() == []


def test_growing_next_to_a_neighbour() -> None:
    # M1 grow blocked: ENOMEM, nothing changed; after munmap of the neighbour it grows in
    # place, and writing the new half faults a second THP (thp_fault_alloc +1)
    m, p, a = _thp(4)
    p.madvise(a + 2 * MiB, 2 * MiB, "nohugepage")  # an adjacent VMA
    before = snapshot(m.machine)
    with pytest.raises(MmError) as err:
        p.mremap(a, 2 * MiB, 4 * MiB)
    assert err.value.errno == ENOMEM and snapshot(m.machine) == before
    p.munmap(a + 2 * MiB, 2 * MiB)
    assert p.mremap(a, 2 * MiB, 4 * MiB) == a
    assert p.vma_at(a).vm_end == a + 4 * MiB and p.lookup(a + 2 * MiB).kind == "none"
    p.touch(a + 2 * MiB, 2 * MiB)
    assert m.vmstat()["thp_fault_alloc"] == 2 and p.lookup(a + 2 * MiB).kind == "huge"
    assert m.check() == []


def test_growing_with_maymove_moves_both_pmds() -> None:
    # M1 grow moving mremap(a, 4M, 6M, MAYMOVE), next VMA adjacent: a new 2 MiB-aligned
    # address; large x512 large x512 none x512; AnonHuge 4096, same PFNs; no vmstat move
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(6 * MiB)
    p.madvise(a, 4 * MiB, "hugepage")
    p.touch(a, 4 * MiB)
    p.mprotect(a + 4 * MiB, 2 * MiB, "r")  # the neighbour, right after [a, a + 4M)
    heads, v0 = [p.folio_at(a).pfn, p.folio_at(a + 2 * MiB).pfn], m.vmstat()
    n = p.mremap(a, 4 * MiB, 6 * MiB, maymove=True)
    assert n != a and n % (2 * MiB) == 0 and p.vma_at(a) is None
    assert p.vma_at(n).vm_end == n + 6 * MiB
    assert [p.lookup(n + k * 2 * MiB).kind for k in range(3)] == ["huge", "huge", "none"]
    assert [p.folio_at(n).pfn, p.folio_at(n + 2 * MiB).pfn] == heads
    assert sum(v["AnonHugePages"] for v in p.smaps()) == 4096 and m.vmstat() == v0
    assert m.check() == []


def test_dontunmap_keeps_the_old_vma_empty() -> None:
    # M1 DONTUNMAP: dst; the old VMA kept (rw-p), none x512; a read there maps the huge zero
    # page, a write a new THP; the destination has the old PFNs, AnonHuge 2048
    m, p, a = _thp()
    p.munmap(a + 4 * MiB, 4 * MiB)
    head = p.folio_at(a).pfn
    d = a + 4 * MiB
    assert p.mremap(a, 2 * MiB, 2 * MiB, maymove=True, new_addr=d, dontunmap=True) == d
    old = p.vma_at(a)
    assert old is not None and old.vm_flags & (VM.READ | VM.WRITE) == VM.READ | VM.WRITE
    assert old.anon_vma is None  # dontunmap_complete(): the whole VMA moved
    assert p.lookup(a).kind == "none" and p.folio_at(d).pfn == head
    assert p.status()["RssAnon"] == 2048 and m.check() == []
    assert p.read(a) == 0 and (p.lookup(a).level, p.lookup(a).kind) == ("pmd", "zero")
    p.write(a, 1)
    assert p.lookup(a).kind == "huge" and p.status()["RssAnon"] == 4096
    assert m.check() == []


def test_one_page_of_a_thp_moves_out() -> None:
    # M1 one page mremap(a+4K, 4K, 4K, MAYMOVE|FIXED, b): VMAs [0,4K) and [8K,2M); the
    # page at b still in the order-9 folio (PFN head+1); thp_split_pmd +1, no deferred
    # split; munmap of the 2 MiB: thp_deferred_split_page +1; drop_caches: thp_split_page
    # +1, b becomes a small page
    m, p, a = _thp(4)
    b = p.mmap(4 * KiB)
    data = p.read(a + 4 * KiB)
    head = p.folio_at(a).pfn
    assert p.mremap(a + 4 * KiB, 4 * KiB, 4 * KiB, maymove=True, new_addr=b) == b
    spans = [(v.vm_start - a, v.vm_end - a) for v in p.mm.vmas_between(a, a + 2 * MiB)]
    assert spans == [(0, 4 * KiB), (8 * KiB, 2 * MiB)]
    assert p.pfn_at(b) == head + 1 and p.folio_at(b).order == 9 and p.read(b) == data
    v = m.vmstat()
    assert (v["thp_split_pmd"], v["thp_deferred_split_page"]) == (1, 0)
    assert m.check() == []
    p.munmap(a, 2 * MiB)
    assert m.vmstat()["thp_deferred_split_page"] == 1
    assert m.drop_caches() == 1 and p.folio_at(b).order == 0 and p.read(b) == data
    assert p.status()["RssAnon"] == 4 and m.check() == []


def test_move_only_moves_several_vmas_keeping_gaps() -> None:
    # M1 two VMAs: a 6 MiB move-only over THP VMA, PROT_NONE VMA, THP VMA: all three moved,
    # both THPs PMD-mapped; a range starting in a hole: EFAULT
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(6 * MiB)
    for off in (0, 4 * MiB):
        p.madvise(a + off, 2 * MiB, "hugepage")
        p.touch(a + off, 2 * MiB)
    p.mprotect(a + 2 * MiB, 2 * MiB, "none")
    d = p.mmap(6 * MiB)
    p.munmap(d, 6 * MiB)
    assert p.mremap(a, 6 * MiB, 6 * MiB, maymove=True, new_addr=d) == d
    assert [p.lookup(d + k * 2 * MiB).kind for k in (0, 2)] == ["huge", "huge"]
    assert [v.vm_flags & (VM.READ | VM.WRITE) for v in p.mm.vmas_between(d, d + 6 * MiB)] \
        == [VM.READ | VM.WRITE, VM(0), VM.READ | VM.WRITE]
    assert p.mm.vmas_between(a, a + 6 * MiB) == [] and m.vmstat()["thp_split_pmd"] == 0
    before = snapshot(m.machine)
    with pytest.raises(MmError) as err:
        p.mremap(a, 6 * MiB, 6 * MiB, maymove=True, new_addr=a + 32 * MiB)
    assert err.value.errno == EFAULT and snapshot(m.machine) == before
    assert m.check() == []


@pytest.mark.parametrize(("call", "errno"), [
    (lambda p, a: p.mremap(a + 1, 4 * KiB, 4 * KiB), EINVAL),  # unaligned old address
    (lambda p, a: p.mremap(a, 4 * KiB, 0), EINVAL),  # new_len 0
    (lambda p, a: p.mremap(a, 4 * KiB, 4 * KiB, new_addr=a + 6 * MiB), EINVAL),  # FIXED only
    (lambda p, a: p.mremap(a, 4 * KiB, 4 * KiB, maymove=True, new_addr=a + 6 * MiB + 1),
     EINVAL),  # unaligned new address
    (lambda p, a: p.mremap(a, 4 * KiB, 8 * KiB, maymove=True, new_addr=a + 6 * MiB,
                           dontunmap=True), EINVAL),  # DONTUNMAP resizing
    (lambda p, a: p.mremap(a, 2 * MiB, 2 * MiB, maymove=True, new_addr=a + 1 * MiB),
     EINVAL),  # overlap
    (lambda p, a: p.mremap(a + 4 * MiB, 4 * KiB, 8 * KiB), EFAULT),  # old range unmapped
    (lambda p, a: p.mremap(a, 4 * MiB, 6 * MiB), EFAULT),  # old_len past the VMA end
    (lambda p, a: p.mremap(a, 0, 4 * KiB, maymove=True), EINVAL),  # duplicate private
    (lambda p, a: do_mremap(p.mm, a, 4 * KiB, 4 * KiB, 8, 0), EINVAL),  # unknown flag
])
def test_errnos_as_measured(call: object, errno: int) -> None:
    # M1 errnos (state unchanged after each failure)
    m, p, a = _thp(2)
    p.mmap(2 * MiB)  # something right below, so nothing can grow into it by accident
    before = snapshot(m.machine)
    with pytest.raises(MmError) as err:
        call(p, a)  # type: ignore[operator]
    assert err.value.errno == errno and snapshot(m.machine) == before


def test_same_size_without_flags_is_a_no_op_even_past_the_vma() -> None:
    # M1: same size without flags -> returns addr, even when old_len runs past the VMA end
    m, p, a = _thp(2)
    before = snapshot(m.machine)
    assert p.mremap(a, 64 * MiB, 64 * MiB) == a
    assert snapshot(m.machine) == before


def test_dontunmap_with_maymove_only_picks_an_address() -> None:
    # M1: DONTUNMAP with MAYMOVE only -> a kernel-chosen address; moving one page out of a
    # THP splits the PMD (thp_split_pmd +1)
    m, p, a = _thp(2)
    n = do_mremap(p.mm, a + 8 * KiB, 4 * KiB, 4 * KiB, MREMAP_MAYMOVE | 4, 0)
    assert n not in range(a, a + 2 * MiB) and p.vma_at(n) is not None
    assert m.vmstat()["thp_split_pmd"] == 1 and p.lookup(a + 8 * KiB).kind == "none"
    assert p.folio_at(n).order == 9 and m.check() == []


def test_device_private_entries_move_unchanged() -> None:
    # move_ptes() / move_huge_pmd(): swap-format entries (device-private) move as they are;
    # hmm-tests migrate_remap_fault: the CPU then faults them back at the new address
    for aligned in (True, False):
        m = System(ram="64M", device="16M")
        p, a = m.spawn_with_thp(8 * MiB)
        p.munmap(a + 4 * MiB, 4 * MiB)
        data = _stamps(p, a, [0, 5, 511])
        assert m.device.migrate_to_device(p, a, 2 * MiB).migrated == 512
        d = a + 4 * MiB + (0 if aligned else 512 * KiB)
        rss = p.status()["RssAnon"]
        assert do_mremap(p.mm, a, 2 * MiB, 2 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, d) == d
        e = p.lookup(d)
        assert (e.level, e.kind) == (("pmd" if aligned else "pte"), "device_private")
        assert p.status()["RssAnon"] == rss and m.check() == []
        assert _stamps(p, d, [0, 5, 511]) == data  # faulted back from the new address
        assert m.check() == []


def test_split_pte_mapped_thp() -> None:
    """Port of tools/testing/selftests/mm/split_huge_page_test.c:split_pte_mapped_thp()
    (linux-mm): 4 THPs filled with data; page i of THP i mremap'ed (MAYMOVE|FIXED) to
    page i of a 4-page area; each is still backed by an order-9 folio; split through the
    page area (debugfs split_huge_pages, order 0); no byte corrupted; each now order 0."""
    nr_thps, pmd = 4, 2 * MiB
    m = System(ram="64M")
    p = m.spawn()
    thp_area = p.mmap(nr_thps * pmd)
    p.madvise(thp_area, nr_thps * pmd, "hugepage")
    p.touch(thp_area, nr_thps * pmd)  # thp_area[i] = (char)i: each page its own stamp
    assert sum(v["AnonHugePages"] for v in p.smaps()) == nr_thps * 2048  # check_huge_anon
    page_area = p.mmap(nr_thps * 4 * KiB)
    want = []
    for i in range(nr_thps):
        src = thp_area + pmd * i + 4 * KiB * i
        want.append(p.read(src))
        assert p.mremap(src, 4 * KiB, 4 * KiB, maymove=True,
                        new_addr=page_area + 4 * KiB * i) == page_area + 4 * KiB * i
    for i in range(nr_thps):  # is_backed_by_folio(page_area + i * pagesize, pmd_order)
        assert p.folio_at(page_area + 4 * KiB * i).order == 9
    assert m.check() == []
    for i in range(nr_thps):  # write_debugfs(PID_FMT, pid, page_area, + size, 0)
        f = p.folio_at(page_area + 4 * KiB * i)
        assert f is not None
        m.split(f.pfn, 0)
    assert [p.read(page_area + 4 * KiB * i) for i in range(nr_thps)] == want
    for i in range(nr_thps):  # is_backed_by_folio(..., 0): split
        assert p.folio_at(page_area + 4 * KiB * i).order == 0
    assert m.check() == []
    p.munmap(thp_area, nr_thps * pmd)
    p.munmap(page_area, nr_thps * 4 * KiB)
    assert p.status()["RssAnon"] == 0 and m.check() == []
