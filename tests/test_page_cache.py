"""The page cache of a disk file (ext4): folio orders from write() and from readahead,
against every case measured on Linux 6.18.44 for issue 17 (x86-64, ext4, 4 KiB blocks,
read_ahead_kb 8192); and the XArray underneath."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.fs.read_write import ksys_pread64
from pyfolio.lib.xarray import XArray, XaState, xa_entries, xa_load, xas_set_order, xas_store
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import MmError, VmWarning
from tests.test_truncate import fmt

K, M = KiB, MiB
#: one pwrite of S bytes at offset O into an empty file (measured)
SINGLE = {
    (4 * K, 0): "0", (4 * K, 4 * K): "(hole:1) 0", (4 * K, 1 * M): "(hole:256) 0",
    (16 * K, 0): "2", (16 * K, 4 * K): "(hole:1) 0 1 0", (16 * K, 8 * K): "(hole:2) 1x2",
    (64 * K, 4 * K): "(hole:1) 0 1 2 3 0", (64 * K, 8 * K): "(hole:2) 1 2 3 1",
    (1 * M, 0): "8", (1 * M, 64 * K): "(hole:16) 4 5 6 7 4",
    (2 * M, 1 * M): "(hole:256) 8x2", (2 * M, 2 * M + 64 * K): "(hole:528) 4 5 6 7 8 4",
    (8 * M, 0): "9x4", (8 * M, 4 * K): "(hole:1) 0 1 2 3 4 5 6 7 8 9x3 0",
    (8 * M, 1 * M): "(hole:256) 8 9x3 8",
}
#: 8 MiB written sequentially in chunks of C from offset 0 (measured)
SEQUENTIAL = {4 * K: "0x2048", 16 * K: "2x512", 64 * K: "4x128", 1 * M: "8x8", 2 * M: "9x4"}


def new_file(size: int = 0, clean: bool = False) -> tuple[System, object, int]:
    m = System(ram="128M")
    p = m.spawn()
    fd = p.open("/data/f")
    if size:
        p.pwrite(fd, 0, size, 3)
    if clean:
        p.fsync(fd)
        p.fadvise(fd, 0, 0, "dontneed")
        assert p.page_cache(fd) == []
    return m, p, fd


@pytest.mark.parametrize(("size", "off"), list(SINGLE), ids=[f"{s}@{o}" for s, o in SINGLE])
def test_one_write_gets_folios_as_large_as_its_steps(size: int, off: int) -> None:
    m, p, fd = new_file()
    p.pwrite(fd, off, size, 1)
    assert fmt(p, fd, (off + size) // 4096) == SINGLE[(size, off)]
    assert m.check() == []


@pytest.mark.parametrize("chunk", list(SEQUENTIAL))
def test_sequential_writes_get_folios_of_the_chunk_size(chunk: int) -> None:
    m, p, fd = new_file()
    for pos in range(0, 8 * M, chunk):
        p.pwrite(fd, pos, min(chunk, 8 * M - pos), 1)
    assert fmt(p, fd, 2048) == SEQUENTIAL[chunk]
    assert m.vmstat()["nr_file_hugepages"] == (4 if chunk >= 2 * M else 0)
    assert m.vmstat()["thp_file_alloc"] == 0  # a shmem-only counter


def test_a_cached_folio_is_reused_never_merged() -> None:
    m, p, fd = new_file()
    for pos in range(0, 2 * M, 4 * K):
        p.pwrite(fd, pos, 4 * K, 1)
    p.pwrite(fd, 0, 2 * M, 2)
    assert fmt(p, fd, 512) == "0x512" and p.pread(fd, 4 * K) == 2


def test_written_folios_are_dirty_with_buffers_until_written_back() -> None:
    from pyfolio.fs.proc.page import KPF

    m, p, fd = new_file(2 * M)
    pfn = p.files[fd].f_mapping.i_pages.heads[0][1]
    flags = m.kpageflags([pfn])[0]
    assert flags & 1 << KPF["DIRTY"] and flags & 1 << KPF["PRIVATE"] and flags & 1 << KPF["THP"]
    p.fsync(fd)
    flags = m.kpageflags([pfn])[0]
    assert not flags & 1 << KPF["DIRTY"] and flags & 1 << KPF["PRIVATE"]
    assert m.machine.mem._refcount[pfn] == 512 + 1  # page cache + PG_private


def test_readahead_climbs_the_orders_as_measured() -> None:
    m, p, fd = new_file(32 * M, clean=True)
    p.pread(fd, 0)
    assert fmt(p, fd, 8192) == "0x4 (hole:8188)"
    for off in range(4 * K, 1 * M, 4 * K):
        p.pread(fd, off)
    assert fmt(p, fd, 8192) == "0x4 2x5 3 4x4 5 6x4 7 8 (hole:7424)"
    for off in range(1 * M, 32 * M, 128 * K):
        ksys_pread64(p.files[fd], off, 128 * K)
    assert fmt(p, fd, 8192) == "0x4 2x5 3 4x4 5 6x4 7 8x2 9x14"
    assert p.pread(fd, 20 * M) == 3 and m.check() == []


def test_one_large_read_and_a_random_read() -> None:
    m, p, fd = new_file(32 * M, clean=True)
    ksys_pread64(p.files[fd], 0, 32 * M)
    assert fmt(p, fd, 8192) == "0x2048 2x512 4x128 6x32"
    m, p, fd = new_file(32 * M, clean=True)
    p.pread(fd, 10 * M + 20 * K)
    assert p.page_cache(fd) == [(2565, 0)]


def test_readahead_folios_are_on_disk_without_buffers() -> None:
    from pyfolio.fs.proc.page import KPF

    m, p, fd = new_file(4 * M, clean=True)
    for off in range(0, 4 * M, 128 * K):
        ksys_pread64(p.files[fd], off, 128 * K)
    last = p.files[fd].f_mapping.i_pages
    flags = m.kpageflags([last.heads[last.index[-1]][1]])[0]  # seen: UPTODATE, OWNER_2, no PRIVATE
    assert flags & 1 << KPF["OWNER_2"] and not flags & 1 << KPF["PRIVATE"]


def test_fault_around_maps_16_pages_and_a_pmd_maps_an_aligned_thp() -> None:
    m, p, fd = new_file(16 * M, clean=True)
    a = p.mmap(16 * M, "r", shared=True, fd=fd)
    assert a % (2 * M) == 0  # thp_get_unmapped_area()
    p.read(a + 1029 * 4096)  # no advice: read-around of order-0 pages, 16 mapped
    assert p.status()["RssFile"] == 64
    assert fmt(p, fd, 4096).startswith("(hole:5) 0x2048")
    m, p, fd = new_file(16 * M, clean=True)
    a = p.mmap(16 * M, "r", shared=True, fd=fd)
    p.madvise(a, 16 * M, "hugepage")
    p.read(a + 1029 * 4096)  # two PMD-sized folios at the aligned index, one PMD
    assert fmt(p, fd, 4096) == "(hole:1024) 9x2 (hole:2048)"
    assert p.lookup(a + 1029 * 4096).level == "pmd" and m.vmstat()["thp_file_mapped"] == 1
    assert m.check() == []


def test_xarray_multi_index_entries() -> None:
    xa = XArray()
    xas = XaState(xa, 0)
    xas_set_order(xas, 512, 9)
    xas_store(xas, 7)
    assert xa_load(xa, 1023) == 7 and xa_load(xa, 1024) is None
    xas_set_order(xas, 520, 3)
    with pytest.raises(VmWarning):
        xas_store(xas, 8)  # part of a larger entry: split it first
    xas_set_order(xas, 600, 0)
    xas_store(xas, 9)  # a store at one index changes the whole entry
    assert xa_entries(xa) == [(512, 9, 9)]


@pytest.mark.parametrize(("call", "errno"), [
    (lambda p, fd: p.pwrite(fd, -1, 4096, 1), "EINVAL"),
    (lambda p, fd: p.pwrite(77, 0, 4096, 1), "EBADF"),
    (lambda p, fd: p.pread(77, 0), "EBADF"),
    (lambda p, fd: p.open("relative/path"), "EINVAL"),
    (lambda p, fd: p.open("/no/such", create=False), "ENOENT"),
    (lambda p, fd: p.close(77), "EBADF"),
    (lambda p, fd: p.mmap(4096, fd=77), "EBADF"),
    (lambda p, fd: p.mmap(4096, fd=fd, offset=100), "EINVAL"),
    (lambda p, fd: p.fadvise(fd, 0, 0, "sometimes"), "EINVAL"),
])
def test_bad_file_calls_change_nothing(call, errno: str) -> None:
    m, p, fd = new_file(2 * M)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        call(p, fd)
    assert e.value.errname == errno and snapshot(m.machine) == before


def test_write_to_a_read_only_file_or_mapping() -> None:
    m, p, fd = new_file(2 * M)
    ro = p.open("/data/f", create=False, mode="r")
    before = snapshot(m.machine)
    with pytest.raises(MmError, match="EBADF"):
        p.pwrite(ro, 0, 4096, 1)
    with pytest.raises(MmError, match="EACCES"):
        p.mmap(2 * M, "rw", shared=True, fd=ro)
    assert snapshot(m.machine) == before
    a = p.mmap(2 * M, "r", shared=True, fd=ro)  # allowed read-only, without VM_MAYWRITE
    with pytest.raises(MmError, match="EACCES"):
        p.mprotect(a, 4096, "rw")
    with pytest.raises(MmError, match="SIGSEGV"):
        p.write(a, 1)


def test_access_past_eof_is_sigbus() -> None:
    m, p, fd = new_file(8 * K)
    a = p.mmap(16 * K, "r", shared=True, fd=fd)
    assert p.read(a + 4 * K) == 3
    before = snapshot(m.machine)
    with pytest.raises(MmError, match="SIGBUS"):
        p.read(a + 8 * K)
    assert snapshot(m.machine)["page_cache"] == before["page_cache"]
