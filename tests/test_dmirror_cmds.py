"""HMM_DMIRROR_READ / WRITE / SNAPSHOT / EXCLUSIVE / CHECK_EXCLUSIVE through the Device
facade, with the assertions of tools/testing/selftests/mm/hmm-tests.c ported (a page holds
one value here where the selftest stores an int per word; HMM_BUFFER_SIZE is 1024 pages)."""

import pytest

from pyfolio import EFAULT, EINVAL, KiB, MiB, MmError, System
from pyfolio.lib.dmirror import DPT_XA_TAG_ATOMIC
from pyfolio.lib.dmirror_cmds import (
    HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL,
    HMM_DMIRROR_PROT_ERROR,
    HMM_DMIRROR_PROT_NONE,
    HMM_DMIRROR_PROT_PMD,
    HMM_DMIRROR_PROT_READ,
    HMM_DMIRROR_PROT_WRITE,
    HMM_DMIRROR_PROT_ZERO,
)
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import EPERM

NPAGES = 1024  # HMM_BUFFER_SIZE >> PAGE_SHIFT
PAGE = 4 * KiB


def _setup(ram: str = "64M", devices: int = 1):
    m = System(ram=ram)
    ds = [m.add_device(f"dmirror{i}", memory="16M") for i in range(devices)]
    return m, ds, m.spawn()


def _fill(p, a: int, n: int, start: int = 0, f=lambda i: i) -> None:
    for i in range(start, n):
        p.write(a + i * PAGE, f(i))


def test_anon_read() -> None:
    # hmm-tests anon_read: the first two pages left pte_none and the zero page
    m, (d,), p = _setup()
    a = p.mmap(NPAGES * PAGE)
    _fill(p, a, NPAGES, start=2)
    p.mprotect(a, NPAGES * PAGE, "r")
    assert p.read(a + PAGE) == 0  # populate the zero page
    got = d.read_range(p, a, NPAGES)
    assert (d.cpages, d.faults) == (NPAGES, 1)
    assert got == [0, 0] + list(range(2, NPAGES))
    assert m.check() == []
    # everything is mirrored now: a second read needs no fault
    assert d.read_range(p, a, NPAGES) == got and (d.cpages, d.faults) == (NPAGES, 0)


def test_anon_read_prot() -> None:
    # hmm-tests anon_read_prot: PROT_NONE -> -EFAULT; the data is intact
    m, (d,), p = _setup()
    a = p.mmap(NPAGES * PAGE)
    _fill(p, a, NPAGES)
    p.mprotect(a, NPAGES * PAGE, "none")
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        d.read_range(p, a, NPAGES)
    assert e.value.errno == EFAULT and snapshot(m.machine) == before
    assert (d.cpages, d.faults) == (0, 0)  # a failed ioctl copies nothing back
    p.mprotect(a, NPAGES * PAGE, "r")
    assert [p.read(a + i * PAGE) for i in range(NPAGES)] == list(range(NPAGES))
    assert m.check() == []


def test_anon_write() -> None:
    m, (d,), p = _setup()
    a = p.mmap(NPAGES * PAGE)
    d.write_range(p, a, range(NPAGES))
    assert (d.cpages, d.faults) == (NPAGES, 1)
    assert [p.read(a + i * PAGE) for i in range(NPAGES)] == list(range(NPAGES))
    assert m.check() == []


def test_anon_write_prot() -> None:
    # hmm-tests anon_write_prot: a read-only mapping: -EPERM, nothing written; after
    # mprotect(PROT_READ|PROT_WRITE) the zero page is replaced
    m, (d,), p = _setup()
    a = p.mmap(NPAGES * PAGE, "r")
    assert d.read_range(p, a, 1) == [0] and (d.cpages, d.faults) == (1, 1)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        d.write_range(p, a, range(NPAGES))
    assert e.value.errno == EPERM and snapshot(m.machine) == before
    assert [p.read(a + i * PAGE) for i in range(NPAGES)] == [0] * NPAGES
    p.mprotect(a, NPAGES * PAGE, "rw")
    d.write_range(p, a, range(NPAGES))
    assert (d.cpages, d.faults) == (NPAGES, 1)
    assert [p.read(a + i * PAGE) for i in range(NPAGES)] == list(range(NPAGES))
    assert m.check() == []


@pytest.mark.parametrize("migrate", [False, True])
@pytest.mark.parametrize("use_thp", [False, True])
def test_anon_write_child(migrate: bool, use_thp: bool) -> None:
    # hmm-tests anon_write_child: the child's device write breaks COW; the parent's
    # buffer does not change
    m, (d,), parent = _setup()
    n = 512 if use_thp else NPAGES
    if use_thp:
        parent, a = m.spawn_with_thp()
    else:
        a = parent.mmap(n * PAGE)
    _fill(parent, a, n)
    if migrate:
        assert d.migrate_to_device(parent, a, n * PAGE).migrated == n
    child = parent.fork()
    assert [child.read(a + i * PAGE) for i in range(n)] == list(range(n))
    d.write_range(child, a, [(1 << 64) - i if i else 0 for i in range(n)])  # -i
    assert (d.cpages, d.faults) == (n, 1)
    assert [child.read(a + i * PAGE) for i in range(n)] == \
        [(1 << 64) - i if i else 0 for i in range(n)]
    child.exit()
    assert [parent.read(a + i * PAGE) for i in range(n)] == list(range(n))
    assert m.check() == []


def test_anon_write_huge() -> None:
    # hmm-tests anon_write_huge: a MADV_HUGEPAGE range written by the device: one fault
    # round; the fault maps a THP, which SNAPSHOT reports as PMD-mapped
    m, (d,), _ = _setup()
    p, a = m.spawn_with_thp()
    p.madvise(a, 2 * MiB, "dontneed")
    d.write_range(p, a, range(512))
    assert (d.cpages, d.faults) == (512, 1)
    assert [p.read(a + i * PAGE) for i in range(512)] == list(range(512))
    assert set(d.snapshot(p, a, 512)) == {HMM_DMIRROR_PROT_WRITE | HMM_DMIRROR_PROT_PMD}
    assert m.check() == []


def test_snapshot_hmm2() -> None:
    # hmm-tests hmm2.snapshot: gap, PROT_NONE, zero page, read-only, read-write, this
    # device's page, another device's page
    m, (d0, d1), p = _setup(devices=2)
    a = p.mmap(7 * PAGE, "none")
    p.munmap(a + PAGE, PAGE)
    p.mprotect(a + 2 * PAGE, PAGE, "r")
    assert p.read(a + 2 * PAGE) + 3 == 3
    p.mprotect(a + 3 * PAGE, PAGE, "rw")
    p.write(a + 3 * PAGE, 3)
    p.mprotect(a + 3 * PAGE, PAGE, "r")
    p.mprotect(a + 4 * PAGE, 3 * PAGE, "rw")
    p.write(a + 4 * PAGE, 3)
    assert d0.migrate_to_device(p, a + 5 * PAGE, PAGE).migrated == 1
    assert d1.migrate_to_device(p, a + 6 * PAGE, PAGE).migrated == 1
    before = snapshot(m.machine)
    got = d0.snapshot(p, a, 7)
    assert d0.cpages == 7
    assert list(got) == [HMM_DMIRROR_PROT_ERROR, HMM_DMIRROR_PROT_ERROR,
                         HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ, HMM_DMIRROR_PROT_READ,
                         HMM_DMIRROR_PROT_WRITE,
                         HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE,
                         HMM_DMIRROR_PROT_NONE]
    assert snapshot(m.machine) == before  # a snapshot faults nothing in
    assert m.check() == []


def test_compound_thp() -> None:
    # hmm-tests compound (there with hugetlbfs; here a THP: also order 9 at PMD level)
    m, (d,), _ = _setup()
    p, a = m.spawn_with_thp()
    assert set(d.snapshot(p, a, 512)) == {HMM_DMIRROR_PROT_WRITE | HMM_DMIRROR_PROT_PMD}
    p.mprotect(a, 2 * MiB, "r")
    assert set(d.snapshot(p, a, 512)) == {HMM_DMIRROR_PROT_READ | HMM_DMIRROR_PROT_PMD}
    assert d.cpages == 512 and m.check() == []


def test_double_map() -> None:
    # hmm2 double_map: two devices read the same pages; after a migration to device 1,
    # device 0's read faults them back
    m, (d0, d1), p = _setup(devices=2)
    a = p.mmap(6 * PAGE)
    _fill(p, a, 6)
    p.mprotect(a, 6 * PAGE, "r")
    for d in (d0, d1):
        assert d.read_range(p, a, 6) == list(range(6)) and (d.cpages, d.faults) == (6, 1)
    p.mprotect(a, 6 * PAGE, "rw")
    assert d1.migrate_to_device(p, a, 6 * PAGE).migrated == 6
    assert d0.read_range(p, a, 6) == list(range(6)) and (d0.cpages, d0.faults) == (6, 1)
    assert p.lookup(a).kind == "page" and m.check() == []


def test_exclusive() -> None:
    # hmm-tests exclusive: the device reads what it took; CPU access revokes it
    m, (d,), p = _setup()
    a = p.mmap(NPAGES * PAGE)
    _fill(p, a, NPAGES)
    assert d.make_exclusive(p, a, NPAGES) == list(range(NPAGES))
    assert d.cpages == NPAGES
    assert p.lookup(a).kind == "device_exclusive"
    assert d.check_exclusive(p, a, NPAGES) == -EPERM
    assert m.check() == []
    for i in range(NPAGES):
        v = p.read(a + i * PAGE)
        assert v == i
        p.write(a + i * PAGE, v + 1)
    assert [p.read(a + i * PAGE) for i in range(NPAGES)] == list(range(1, NPAGES + 1))
    assert d.check_exclusive(p, a, NPAGES) == 0
    assert m.check() == []


def test_exclusive_mprotect() -> None:
    m, (d,), p = _setup()
    a = p.mmap(NPAGES * PAGE)
    _fill(p, a, NPAGES)
    assert d.make_exclusive(p, a, NPAGES) == list(range(NPAGES))
    p.mprotect(a, NPAGES * PAGE, "r")
    assert p.lookup(a).kind == "device_exclusive"  # mprotect leaves the entry alone
    assert all(k[1] != DPT_XA_TAG_ATOMIC for k in d.driver.pt.values())  # but revokes it
    with pytest.raises(MmError) as e:
        d.write_range(p, a, range(NPAGES))
    assert e.value.errno == EPERM and m.check() == []


def test_exclusive_cow() -> None:
    # hmm-tests exclusive_cow: fork restores the entries; both processes then see their
    # own copy
    m, (d,), p = _setup()
    a = p.mmap(NPAGES * PAGE)
    _fill(p, a, NPAGES)
    d.make_exclusive(p, a, NPAGES)
    child = p.fork()
    for proc in (p, child):
        for i in range(NPAGES):
            v = proc.read(a + i * PAGE)
            assert v == i
            proc.write(a + i * PAGE, v + 1)
        assert [proc.read(a + i * PAGE) for i in range(NPAGES)] == list(range(1, NPAGES + 1))
    assert p.pfn_at(a) != child.pfn_at(a) and m.check() == []


def test_exclusive_on_a_thp_splits_the_pmd_not_the_folio() -> None:
    # make_device_exclusive(): FOLL_SPLIT_PMD; the folio stays large
    m, (d,), _ = _setup()
    p, a = m.spawn_with_thp()
    splits = m.vmstat()["thp_split_pmd"]
    d.make_exclusive(p, a, 1)
    assert m.vmstat()["thp_split_pmd"] == splits + 1
    assert p.lookup(a).kind == "device_exclusive" and p.lookup(a + PAGE).level == "pte"
    assert p.folio_at(a + PAGE).order == 9 and m.check() == []


def test_hmm_cow_in_device() -> None:
    # hmm-tests hmm_cow_in_device: the parent writes its COW device pages: they come back
    # to system memory, then the child goes; SNAPSHOT sees plain writable pages
    m, (d,), p = _setup()
    a = p.mmap(4 * PAGE)
    _fill(p, a, 4)
    assert d.migrate_to_device(p, a, 4 * PAGE).migrated == 4
    child = p.fork()
    _fill(p, a, 4)
    child.exit()
    assert list(d.snapshot(p, a, 4)) == [HMM_DMIRROR_PROT_WRITE] * 4 and d.cpages == 4
    assert m.check() == []


@pytest.mark.parametrize("call", ["read_range", "snapshot", "make_exclusive",
                                  "check_exclusive"])
@pytest.mark.parametrize("addr_off, npages", [(1, 1), (0, 0), (0, -1)])
def test_bad_ranges_are_einval_and_change_nothing(call: str, addr_off: int, npages: int) -> None:
    # dmirror_fops_unlocked_ioctl(): unaligned addr, or addr >= addr + (npages << 12)
    m, (d,), p = _setup()
    a = p.mmap(4 * PAGE)
    _fill(p, a, 4)
    d.read_range(p, a, 4)
    before = snapshot(m.machine), dict(d.driver.pt), (d.cpages, d.faults)
    with pytest.raises(MmError) as e:
        getattr(d, call)(p, a + addr_off, npages)
    assert e.value.errno == EINVAL
    assert (snapshot(m.machine), dict(d.driver.pt), (d.cpages, d.faults)) == before


def test_write_range_checks_values_first() -> None:
    m, (d,), p = _setup()
    a = p.mmap(4 * PAGE)
    before = snapshot(m.machine)
    for bad, exc in ((["x"], TypeError), ([1 << 64], ValueError), ([-1], ValueError)):
        with pytest.raises(exc):
            d.write_range(p, a, bad)
    with pytest.raises(MmError) as e:
        d.write_range(p, a, [])
    assert e.value.errno == EINVAL and snapshot(m.machine) == before


def test_a_hole_is_efault_for_every_faulting_command() -> None:
    m, (d,), p = _setup()
    a = p.mmap(4 * PAGE)
    p.munmap(a + 2 * PAGE, PAGE)
    before = snapshot(m.machine)
    for call, arg in (("read_range", 4), ("make_exclusive", 4), ("write_range", [1] * 4)):
        with pytest.raises(MmError) as e:
            getattr(d, call)(p, a, arg)
        assert e.value.errno == EFAULT, call
    assert snapshot(m.machine) == before
    assert list(d.snapshot(p, a, 4))[2] == HMM_DMIRROR_PROT_ERROR


def test_migrations_count_cpages_as_the_driver_does() -> None:
    # hmm-tests migrate / migrate_multiple: cpages == npages both ways
    m, (d,), p = _setup()
    a = p.mmap(16 * PAGE)
    _fill(p, a, 16)
    d.read_range(p, a, 16)
    assert d.migrate_to_device(p, a, 16 * PAGE).migrated == 16
    assert (d.cpages, d.faults) == (16, 0)
    d.migrate_to_system(p, a, 16 * PAGE)
    assert (d.cpages, d.faults) == (16, 0)
    assert [p.read(a + i * PAGE) for i in range(16)] == list(range(16)) and m.check() == []
