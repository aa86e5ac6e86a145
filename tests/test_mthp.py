"""Anonymous mTHP faults: the per-size hugepages-<size>kB/enabled settings and
mm/memory.c:alloc_anon_folio() (v6.18), through the System facade."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.fs.proc.page import KPF
from pyfolio.include.linux.mm import folio_mapcount, folio_ref_count
from pyfolio.mm.page_alloc import fragment
from pyfolio.sim.errors import MmError
from pyfolio.sim.memmap import PG
from pyfolio.system import Process


def _mthp_system(**sizes: str) -> tuple[System, Process, int]:
    """A machine with ``hugepages-<size>/enabled`` set as given (``s64kB="madvise"``) and
    a process with an empty 256 KiB mapping (64 KiB aligned, as the kernel places it)."""
    m = System(ram="64M", thp="madvise")
    for size, policy in sizes.items():
        m.set_mthp(size.removeprefix("s"), policy)
    p = m.spawn()
    a = p.mmap(256 * KiB)
    assert a % (64 * KiB) == 0
    return m, p, a


def _orders(p: Process, a: int, n: int) -> list[int]:
    """The folio order at each of the ``n`` pages from ``a``."""
    out = []
    for i in range(n):
        f = p.folio_at(a + i * 4 * KiB)
        assert f is not None
        out.append(f.order)
    return out


def test_defaults_are_inherit_for_2048kb_and_never_for_the_rest() -> None:
    m = System(ram="64M")
    sizes = ["16kB", "32kB", "64kB", "128kB", "256kB", "512kB", "1024kB", "2048kB"]
    assert [m.mthp(s) for s in sizes] == ["never"] * 7 + ["inherit"]


def test_64k_madvise_with_madv_hugepage_faults_order_4_folios() -> None:
    m, p, a = _mthp_system(s64kB="madvise")
    p.madvise(a, 256 * KiB, "hugepage")
    before = m.vmstat()
    p.touch(a)
    heads = set()
    for i in range(64):
        e = p.lookup(a + i * 4 * KiB)
        f = p.folio_at(a + i * 4 * KiB)
        assert f is not None and e.level == "pte" and e.kind == "page"
        assert e.write and e.dirty and e.accessed and e.pfn == f.pfn + i % 16
        heads.add(f.pfn)
    assert len(heads) == 4
    for pfn in heads:
        f = m.folio(pfn)
        assert (f.order, folio_ref_count(f), folio_mapcount(f)) == (4, 16, 16)
        assert all(m.machine.mem.test(pfn + i, PG.anon_exclusive) for i in range(16))
        assert m.machine.mem.test(pfn, PG.lru)
    flags = m.kpageflags(sorted(heads))
    assert all(fl >> KPF["THP"] & 1 for fl in flags)
    assert p.smaps()[0]["AnonHugePages"] == 0 and p.smaps()[0]["Rss"] == 256
    after = m.vmstat()
    assert after["pgfault"] - before["pgfault"] == 4  # one fault per 64 KiB folio
    assert after["thp_fault_alloc"] == before["thp_fault_alloc"]
    assert m.check() == []


def test_64k_madvise_without_madv_hugepage_faults_small_pages() -> None:
    m, p, a = _mthp_system(s64kB="madvise")
    p.touch(a)
    assert _orders(p, a, 64) == [0] * 64
    assert m.check() == []


def test_64k_never_faults_small_pages_even_with_madv_hugepage() -> None:
    m, p, a = _mthp_system(s64kB="never")
    p.madvise(a, 256 * KiB, "hugepage")
    p.touch(a)
    assert _orders(p, a, 64) == [0] * 64
    assert m.check() == []


@pytest.mark.parametrize(("policy", "thp", "advise", "order"), [
    ("always", "never", False, 4),      # "always" ignores the global policy and madvise
    ("inherit", "madvise", True, 4),    # inherit: the global madvise plus MADV_HUGEPAGE
    ("inherit", "madvise", False, 0),
    ("inherit", "always", False, 4),
    ("inherit", "never", True, 0),
])
def test_the_per_size_policies(policy: str, thp: str, advise: bool, order: int) -> None:
    m, p, a = _mthp_system(s64kB=policy)
    m.thp = thp
    if advise:
        p.madvise(a, 256 * KiB, "hugepage")
    p.touch(a)
    assert set(_orders(p, a, 64)) == {order}
    assert m.check() == []


def test_madv_nohugepage_wins_over_always() -> None:
    m, p, a = _mthp_system(s64kB="always")
    p.madvise(a, 256 * KiB, "nohugepage")
    p.touch(a)
    assert set(_orders(p, a, 64)) == {0}
    assert m.check() == []


def test_a_partly_populated_range_falls_to_a_smaller_order_or_a_page() -> None:
    m, p, a = _mthp_system()
    p.write(a + 8 * KiB, 1)  # sizes all "never": one order-0 page in the first 64 KiB
    m.set_mthp("64kB", "madvise")
    m.set_mthp("16kB", "madvise")
    p.madvise(a, 256 * KiB, "hugepage")
    p.write(a, 2)  # its 64 KiB and 16 KiB ranges both hold that PTE: a page
    p.write(a + 16 * KiB, 3)  # its 64 KiB range is not empty, its 16 KiB range is
    p.write(a + 64 * KiB, 4)  # an empty 64 KiB range
    assert p.folio_at(a + 4 * KiB) is None and p.folio_at(a + 12 * KiB) is None
    assert _orders(p, a, 1) == _orders(p, a + 8 * KiB, 1) == [0]
    assert p.folio_at(a) != p.folio_at(a + 8 * KiB)
    assert _orders(p, a + 16 * KiB, 4) == [2] * 4
    assert p.folio_at(a + 32 * KiB) is None
    assert _orders(p, a + 64 * KiB, 16) == [4] * 16
    assert m.check() == []


def test_allocation_failure_falls_back_order_by_order() -> None:
    m, p, a = _mthp_system(s64kB="madvise", s32kB="madvise")
    p.madvise(a, 256 * KiB, "hugepage")
    fragment(m.machine, every=16)  # one frame held in every 16: no free order-4 block
    p.touch(a, 64 * KiB)
    assert _orders(p, a, 16) == [3] * 16  # 32 KiB folios
    m.set_mthp("32kB", "never")
    p.touch(a + 64 * KiB, 64 * KiB)
    assert _orders(p, a + 64 * KiB, 16) == [0] * 16  # 16 KiB is "never": single pages
    assert m.check() == []


def test_partial_munmap_queues_a_deferred_split_the_shrinker_performs() -> None:
    m, p, a = _mthp_system(s64kB="madvise")
    p.madvise(a, 256 * KiB, "hugepage")
    p.touch(a)
    folio = p.folio_at(a)
    assert folio is not None
    head, before = folio.pfn, m.vmstat()
    p.munmap(a + 16 * KiB, 4 * KiB)
    after = m.vmstat()
    assert head in m.machine.deferred_split_queue
    assert m.machine.mem.test(head, PG.partially_mapped)
    assert (folio_ref_count(folio), folio_mapcount(folio)) == (15, 15)
    # thp_deferred_split_page and thp_split_pmd count only PMD-mappable folios
    for counter in ("thp_deferred_split_page", "thp_split_pmd"):
        assert after[counter] == before[counter], counter
    assert m.check() == []
    assert m.drop_caches() == 1
    assert _orders(p, a, 4) == [0] * 4 and _orders(p, a + 20 * KiB, 11) == [0] * 11
    assert _orders(p, a + 64 * KiB, 48) == [4] * 48
    assert m.vmstat()["thp_split_page"] == before["thp_split_page"]  # PMD-size only
    assert head not in m.machine.deferred_split_queue
    assert m.check() == []


def test_cow_after_fork_copies_one_page_of_an_mthp() -> None:
    m, p, a = _mthp_system(s64kB="madvise")
    p.madvise(a, 256 * KiB, "hugepage")
    p.touch(a, 64 * KiB)
    folio = p.folio_at(a)
    assert folio is not None
    child = p.fork()
    copied = m.trace.costs["pages_copied"]
    child.write(a + 8 * KiB, 0x77)
    assert m.trace.costs["pages_copied"] == copied + 1
    new = child.folio_at(a + 8 * KiB)
    assert new is not None and new.order == 0 and new != folio
    assert [child.pfn_at(a + i * 4 * KiB) for i in range(16) if i != 2] == [
        folio.pfn + i for i in range(16) if i != 2]
    assert p.read(a + 8 * KiB) == (a >> 12) + 3 and child.read(a + 8 * KiB) == 0x77
    assert (folio_ref_count(folio), folio_mapcount(folio)) == (31, 31)
    assert m.check() == []


def test_in_a_2mib_aligned_range_the_pmd_size_wins() -> None:
    m = System(ram="64M", thp="madvise")
    m.set_mthp("64kB", "madvise")
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
    assert p.lookup(a).level == "pmd" and _orders(p, a, 1) == [9]
    assert m.vmstat()["thp_fault_alloc"] == 1
    m.set_mthp("2048kB", "never")  # without the PMD size, 64 KiB folios fill the next 2 MiB
    p.madvise(a + 2 * MiB, 2 * MiB, "hugepage")
    p.touch(a + 2 * MiB, 128 * KiB)
    assert p.lookup(a + 2 * MiB).level == "pte"
    assert _orders(p, a + 2 * MiB, 32) == [4] * 32
    assert m.check() == []


@pytest.mark.parametrize(("size", "policy"), [
    ("64K", "madvise"), ("8kB", "madvise"), ("4096kB", "always"), ("64kB", "sometimes"),
    ("hugepages-64kB", "madvise"), ("64kB", "[madvise]"),
])
def test_bad_set_mthp_input_is_einval_and_changes_nothing(size: str, policy: str) -> None:
    m = System(ram="64M")
    before = dict(m.machine.thp_anon_enabled)
    with pytest.raises(MmError) as e:
        m.set_mthp(size, policy)
    assert e.value.errname == "EINVAL"
    assert m.machine.thp_anon_enabled == before
    assert m.check() == []
