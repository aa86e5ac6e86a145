"""shmem (memfd, MAP_SHARED|MAP_ANONYMOUS): which folio orders each shmem_enabled setting
gives, where mappings are placed, fallocate(); against the table measured on Linux
6.18.44 for issue 17 (mm/shmem.c)."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.lib.xarray import xa_entries
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import MmError
from tests.test_truncate import fmt

K, M = KiB, MiB
#: setting -> (memfd write 2M, 1M, 64K, 12K, 8K; memfd fault; + MADV_HUGEPAGE; fault
#: with the VMA 64 KiB off alignment; MAP_SHARED|MAP_ANONYMOUS fault; + MADV_HUGEPAGE):
#: the first folio's order, "PMD" when mapped by a PMD (measured, tables.md)
TABLE = {
    "top=never": "0x512 0x256 0x16 0x3 0x2 | 0 | 0 | 0 | 0 | 0",
    "top=always": "9 9 9 9 9 | 9 PMD | 9 PMD | 0 | 9 PMD | 9 PMD",
    "top=within_size": "9 8 4 1_0 1 | 9 PMD | 9 PMD | 0 | 9 PMD | 9 PMD",
    "top=advise": "0x512 0x256 0x16 0x3 0x2 | 0 | 9 PMD | 0 | 0 | 9 PMD",
    "top=deny": "0x512 0x256 0x16 0x3 0x2 | 0 | 0 | 0 | 0 | 0",
    "top=force": "9 9 9 9 9 | 9 PMD | 9 PMD | 0 | 9 PMD | 9 PMD",
    "top=never,64kB=always": "0x512 0x256 0x16 0x3 0x2 | 4 | 4 | 4 | 4 | 4",
    "top=never,2048kB=always": "0x512 0x256 0x16 0x3 0x2 | 9 PMD | 9 PMD | 0 | 9 PMD | 9 PMD",
    "top=never,2048kB=advise": "0x512 0x256 0x16 0x3 0x2 | 0 | 9 PMD | 0 | 0 | 9 PMD",
    "top=never,8kB=always": "0x512 0x256 0x16 0x3 0x2 | 1 | 1 | 1 | 1 | 1",
    "top=never,2048kB=within_size": "0x512 0x256 0x16 0x3 0x2 | 9 PMD | 9 PMD | 0 | 9 PMD "
                                    "| 9 PMD",
    "top=never,16kB=always": "0x512 0x256 0x16 0x3 0x2 | 2 | 2 | 2 | 2 | 2",
    "top=always,64kB=always": "9 9 9 9 9 | 9 PMD | 9 PMD | 4 | 9 PMD | 9 PMD",
    "top=always,2048kB=never": "9 9 9 9 9 | 0 | 0 | 0 | 0 | 0",
}
BASE = 0x7E00_0000_0000


def configure(setting: str) -> System:
    m = System(ram="128M")
    for part in setting.split(","):
        k, v = part.split("=")
        m.set_shmem_thp(v, None if k == "top" else k)
    return m


def fault(m: System, p: object, fd: int | None, madv: str | None = None, skew: int = 0) -> str:
    a = p.mmap(2 * M, shared=True, fd=fd, addr=BASE + skew)
    if madv:
        p.madvise(a, 2 * M, madv)
    p.write(a, 1)
    pmd = p.lookup(a).level == "pmd"
    mapping = p.vma_at(a).vm_file.f_mapping
    first = xa_entries(mapping.i_pages)[0][1]
    p.munmap(a, 2 * M)
    return f"{first}{' PMD' if pmd else ''}"


@pytest.mark.parametrize("setting", list(TABLE))
def test_shmem_orders_per_setting_are_the_measured_ones(setting: str) -> None:
    m = configure(setting)
    p = m.spawn()
    writes = []
    for size in (2 * M, 1 * M, 64 * K, 12 * K, 8 * K):
        fd = p.memfd_create("w")
        p.pwrite(fd, 0, size, 1)
        writes.append(fmt(p, fd, -(-size // 4096)).replace(" ", "_"))
    faults = []
    for madv, skew in ((None, 0), ("hugepage", 0), (None, 64 * K)):
        fd = p.memfd_create("f")
        p.ftruncate(fd, 2 * M)
        faults.append(fault(m, p, fd, madv, skew))
    faults += [fault(m, p, None, madv) for madv in (None, "hugepage")]
    assert " | ".join([" ".join(writes)] + faults) == TABLE[setting]
    assert m.check() == []


def test_counters_of_a_shmem_thp() -> None:
    m = configure("top=always")
    p = m.spawn()
    fd = p.memfd_create("c")
    p.ftruncate(fd, 2 * M)
    a = p.mmap(2 * M, shared=True, fd=fd)
    p.touch(a, 2 * M)
    v, s = m.vmstat(), m.mthp_stats("2048kB")
    assert (v["thp_file_alloc"], v["thp_file_mapped"], v["nr_shmem_hugepages"],
            v["nr_shmem_pmdmapped"], v["nr_shmem"], s["shmem_alloc"]) == (1, 1, 1, 1, 512, 1)
    assert p.status()["RssShmem"] == 2048 and p.smaps()[0]["ShmemPmdMapped"] == 2048
    fd2 = p.memfd_create("small")
    m.set_shmem_thp("always", "8kB")
    b = p.mmap(64 * K, shared=True, fd=fd2)
    p.ftruncate(fd2, 64 * K)
    p.write(b, 1)
    assert m.mthp_stats("8kB")["shmem_alloc"] == 1 and p.page_cache(fd2) == [(0, 1)]


@pytest.mark.parametrize(("setting", "anon_align", "memfd_align"), [
    ("top=never", 4 * K, 4 * K), ("top=always", 2 * M, 2 * M), ("top=deny", 4 * K, 4 * K),
    ("top=never,64kB=always", 64 * K, 4 * K), ("top=never,2048kB=advise", 2 * M, 4 * K),
    ("top=never,16kB=always", 16 * K, 4 * K),
])
def test_shared_mappings_are_placed_for_the_sizes_they_may_get(setting: str, anon_align: int,
                                                               memfd_align: int) -> None:
    def alignment(addr: int) -> int:
        return min(addr & -addr, 2 * M)
    m = configure(setting)
    p = m.spawn()
    p.mmap(12 * K)  # move the free area off any large boundary
    assert alignment(p.mmap(4 * M, shared=True)) >= anon_align
    q = m.spawn()
    q.mmap(12 * K)
    fd = q.memfd_create("place")
    q.ftruncate(fd, 4 * M)
    a = q.mmap(4 * M, shared=True, fd=fd)
    assert alignment(a) >= memfd_align
    if memfd_align == 4 * K:
        assert alignment(a) < 2 * M  # not aligned for a PMD


def test_fork_shares_a_shmem_mapping_without_copying_page_tables() -> None:
    m = configure("top=always")
    p = m.spawn()
    a = p.mmap(2 * M, shared=True)
    p.touch(a, 2 * M, value=5)
    c = p.fork()
    assert c.lookup(a).kind == "none" and m.vmstat()["thp_file_mapped"] == 1
    assert c.read(a + 8 * K) == 5 and c.lookup(a).level == "pmd"
    assert m.kpagecount([p.pfn_at(a)]) == [2] and m.vmstat()["thp_file_mapped"] == 2
    c.write(a + 20 * K, 9)
    assert p.read(a + 20 * K) == 9  # one object, no copy
    c.exit()
    p.exit()
    assert m.vmstat()["nr_shmem"] == 0 and m.check() == []  # freed with its last mapping


def test_fallocate_allocates_by_the_mount_policy_and_sets_fallocend() -> None:
    m = configure("top=always")
    p = m.spawn()
    fd = p.memfd_create("fa")
    p.fallocate(fd, "keep_size", 0, 4 * M)
    assert p.page_cache(fd) == [(0, 9), (512, 9)] and p.files[fd].f_inode.i_size == 0
    p.fallocate(fd, "allocate", 0, 8 * K)
    assert p.files[fd].f_inode.i_size == 8 * K and m.check() == []


@pytest.mark.parametrize(("args", "errno"), [
    (("sometimes", None), "EINVAL"), (("always", "4kB"), "EINVAL"),
    (("deny", "64kB"), "EINVAL"), ((5, None), "EINVAL"),
])
def test_bad_shmem_settings_change_nothing(args: tuple[object, str | None], errno: str) -> None:
    m = System(ram="16M")
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        m.set_shmem_thp(*args)  # type: ignore[arg-type]
    assert e.value.errname == errno and snapshot(m.machine) == before


def test_force_and_inherit_are_refused_together() -> None:
    m = System(ram="16M")
    m.set_shmem_thp("inherit", "64kB")
    with pytest.raises(MmError, match="EINVAL"):
        m.set_shmem_thp("force")
    m.set_shmem_thp("never", "64kB")
    m.set_shmem_thp("force")
    with pytest.raises(MmError, match="EINVAL"):
        m.set_shmem_thp("inherit", "64kB")
    assert m.shmem_thp() == "force" and m.shmem_thp("64kB") == "never"


@pytest.mark.parametrize(("setting", "order", "folios"), [("always", 9, 1), ("never", 0, 512)])
def test_spawn_with_shmem_thp_maps_a_written_memfd(setting: str, order: int, folios: int) -> None:
    """System.spawn_with_shmem_thp(): a 2 MiB memfd mapped shared and written; one PMD-mapped
    folio with shmem_enabled=always, 512 order-0 folios with never."""
    m = System(ram="64M")
    m.set_shmem_thp(setting)
    p, fd, a = m.spawn_with_shmem_thp("x")
    heads = {p.folio_at(a + i * 4 * KiB).pfn for i in range(512)}
    assert p.folio_at(a).order == order and len(heads) == folios
    assert len(p.page_cache(fd)) == folios and p.pagemap(a, 512)[511].present
    assert p.smaps()[0]["Rss"] == 2048 and m.check() == []
