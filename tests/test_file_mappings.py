"""Mappings of page-cache folios: MAP_SHARED and MAP_PRIVATE file mappings and
MAP_SHARED|MAP_ANONYMOUS, faults (fault-around, do_set_pmd()), fork, COW, PMD splits of
file VMAs, RSS counters and smaps; as measured on Linux 6.18.44 for issue 17
(mm/memory.c, mm/filemap.c, mm/huge_memory.c, kernel/fork.c)."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.fs.proc.page import KPF
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import MmError

K, M = KiB, MiB


def ext4_file(m: System, p: object, size: int = 4 * M) -> int:
    fd = p.open("/data/e")
    p.pwrite(fd, 0, size, 0x5A)
    p.fsync(fd)
    return fd


def read_all(p: object, a: int, length: int) -> None:
    for off in range(0, length, 4 * K):
        p.read(a + off)


def kpf(m: System, pfn: int) -> set[str]:
    flags = m.kpageflags([pfn])[0]
    return {name for name, bit in KPF.items() if flags >> bit & 1}


def test_shared_file_pmds_fork_and_a_child_that_faults_its_own() -> None:
    m = System(ram="128M")
    p = m.spawn()
    fd = ext4_file(m, p)
    a = p.mmap(4 * M, "r", shared=True, fd=fd)
    read_all(p, a, 4 * M)
    assert m.vmstat()["thp_file_mapped"] == 2 and m.vmstat()["nr_file_pmdmapped"] == 2
    assert p.smaps()[0]["FilePmdMapped"] == 4096 and p.status()["RssFile"] == 4096
    assert kpf(m, p.pfn_at(a)) == {"UPTODATE", "LRU", "MMAP", "COMPOUND_HEAD", "THP",
                                   "PRIVATE"}
    assert p.pagemap(a)[0].file_shared and p.pagemap(a)[0].exclusive
    c = p.fork()
    assert c.lookup(a).kind == "none" and c.status()["RssFile"] == 0  # no page tables
    read_all(c, a, 4 * M)
    assert c.lookup(a).level == "pmd" and m.kpagecount([p.pfn_at(a)]) == [2]
    assert m.vmstat()["thp_file_mapped"] == 4 and p.smaps()[0]["Pss"] == 2048
    p.munmap(a + 4 * K, 4 * K)  # the PMD is only cleared: no PTEs, no deferred split
    assert p.lookup(a).kind == "none" and c.lookup(a).level == "pmd"
    assert m.vmstat()["thp_split_pmd"] == 1 and not m.machine.deferred_split_queue
    c.exit()
    p.exit()
    assert m.vmstat()["nr_file_hugepages"] == 2 and m.check() == []  # the cache stays


def test_a_write_to_a_read_only_ext4_pmd_refaults_a_writable_one() -> None:
    m = System(ram="128M")
    p = m.spawn()
    fd = ext4_file(m, p)
    a = p.mmap(4 * M, "rw", shared=True, fd=fd)
    p.read(a)
    assert not p.lookup(a).write  # ext4 wants write notification: read-only
    p.write(a + 12 * K, 9)
    assert p.lookup(a).level == "pmd" and p.lookup(a).write
    assert m.vmstat()["thp_split_pmd"] == 1 and m.vmstat()["thp_file_mapped"] == 2
    assert "DIRTY" in kpf(m, p.pfn_at(a)) and p.pread(fd, 12 * K) == 9
    p.fsync(fd)  # written back: write-protected again (folio_mkclean())
    assert not p.lookup(a).write and "DIRTY" not in kpf(m, p.pfn_at(a))
    assert m.check() == []


def test_a_private_file_write_copies_one_page_and_leaves_the_rest_unmapped() -> None:
    m = System(ram="128M")
    p = m.spawn()
    fd = ext4_file(m, p)
    a = p.mmap(4 * M, "rw", fd=fd)
    read_all(p, a, 4 * M)
    p.write(a + 12 * K, 9)
    assert [p.lookup(a + i * 4 * K).kind for i in (0, 3, 4)] == ["none", "page", "none"]
    assert p.lookup(a + 2 * M).level == "pmd" and p.pread(fd, 12 * K) == 0x5A
    assert p.status()["RssAnon"] == 4 and p.status()["RssFile"] == 2048
    assert {"ANON", "SWAPBACKED", "OWNER_2"} <= kpf(m, p.pfn_at(a + 12 * K))
    assert m.vmstat()["nr_file_pmdmapped"] == 1 and p.page_cache(fd) == [(0, 9), (512, 9)]
    c = p.fork()  # the VMA has an anon_vma: PTEs copied, the file PMD is not
    assert c.lookup(a + 12 * K).kind == "page" and c.lookup(a + 2 * M).kind == "none"
    read_all(c, a, 4 * M)
    assert m.kpagecount([c.pfn_at(a), c.pfn_at(a + 12 * K), c.pfn_at(a + 2 * M)]) == [1, 2, 2]
    assert m.check() == []


@pytest.mark.parametrize("how", ["mprotect", "munmap", "dontneed"])
def test_splitting_a_shmem_pmd_unmaps_the_whole_2m(how: str) -> None:
    m = System(ram="128M")
    m.set_shmem_thp("always")
    p = m.spawn()
    fd = p.memfd_create("s")
    p.ftruncate(fd, 2 * M)
    a = p.mmap(2 * M, shared=True, fd=fd)
    p.touch(a, 2 * M)
    if how == "mprotect":
        p.mprotect(a + 4 * K, 4 * K, "r")
    elif how == "munmap":
        p.munmap(a + 4 * K, 4 * K)
    else:
        p.madvise(a + M, M, "dontneed")
    assert p.status()["RssShmem"] == 0 and m.vmstat()["thp_split_pmd"] == 1
    assert p.page_cache(fd) == [(0, 9)] and m.vmstat()["nr_shmem_pmdmapped"] == 0
    p.read(a + 400 * K)
    if how == "dontneed":  # the VMA still covers the 2 MiB: a PMD again
        assert p.status()["RssShmem"] == 2048 and p.lookup(a + 400 * K).level == "pmd"
    else:  # fault-around: 16 PTEs of the still-whole folio
        assert p.status()["RssShmem"] == 64 and p.lookup(a + 400 * K).level == "pte"
    assert m.check() == []


def test_shared_anonymous_memory_is_shmem() -> None:
    m = System(ram="128M")
    m.set_shmem_thp("always", "2048kB")
    p = m.spawn()
    a = p.mmap(2 * M, shared=True)
    p.write(a, 1)
    assert p.lookup(a).level == "pmd" and p.smaps()[0]["ShmemPmdMapped"] == 2048
    assert p.smaps()[0]["AnonHugePages"] == 0 and p.smaps()[0]["Anonymous"] == 0
    assert {"SWAPBACKED", "THP", "DIRTY"} <= kpf(m, p.pfn_at(a)) and \
        "ANON" not in kpf(m, p.pfn_at(a))
    assert p.status()["RssShmem"] == 2048 and p.pagemap(a)[0].file_shared
    p.exit()
    assert m.vmstat()["nr_shmem"] == 0 and m.check() == []


def test_a_pin_keeps_a_file_folio_from_splitting() -> None:
    m = System(ram="64M")
    m.set_shmem_thp("always")
    p = m.spawn()
    fd = p.memfd_create("pin")
    p.pwrite(fd, 0, 2 * M, 1)
    a = p.mmap(2 * M, shared=True, fd=fd)
    p.pin(a, 4 * K)
    p.fallocate(fd, "punch_hole", 800 * K, 4 * K)  # split -EAGAIN: zeroed, kept whole
    assert p.page_cache(fd) == [(0, 9)] and m.vmstat()["thp_split_page_failed"] == 1
    assert p.pread(fd, 800 * K) == 0
    p.unpin(a, 4 * K)
    assert m.check() == []


def test_madvise_free_of_a_file_mapping_is_refused() -> None:
    m = System(ram="64M")
    p = m.spawn()
    fd = ext4_file(m, p, 2 * M)
    a = p.mmap(2 * M, "rw", shared=True, fd=fd)
    p.read(a)
    before = snapshot(m.machine)
    with pytest.raises(MmError, match="EINVAL"):
        p.madvise(a, 2 * M, "free")
    assert snapshot(m.machine) == before


def test_madv_remove_punches_the_hole() -> None:
    m = System(ram="64M")
    m.set_shmem_thp("always")
    p = m.spawn()
    fd = p.memfd_create("rm")
    p.ftruncate(fd, 2 * M)
    a = p.mmap(2 * M, shared=True, fd=fd)
    p.touch(a, 2 * M)
    p.madvise(a, 40 * K, "remove")
    assert [o for _, o in p.page_cache(fd)] == [0, 0, 2, 4, 5, 6, 7, 8]
    assert m.mthp_stats("32kB")["split"] == 1 and m.check() == []
