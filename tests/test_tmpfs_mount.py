"""tmpfs mounts with huge= (mm/shmem.c:shmem_fill_super()), linked and unlinked files on
them, against what Linux 6.18.44 showed on the research's own mounts (issue 17's notes,
sections 1.2, 1.4, 1.8 and 5.9)."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import MmError
from pyfolio.views.page_cache import cache_notation

#: one pwrite at 0 of 4K, 8K, 12K, 64K, 1M, 2M, 3M into a new file on the mount (measured)
WRITES = {
    "always": ["9", "9", "9", "9", "9", "9", "9x2"],
    "within_size": ["0", "1", "1 0", "4", "8", "9", "9 8"],
    "advise": ["0", "0x2", "0x3", "0x16", "0x256", "0x512", "0x768"],
    "never": ["0", "0x2", "0x3", "0x16", "0x256", "0x512", "0x768"],
}
SIZES = (4, 8, 12, 64, 1024, 2048, 3072)


@pytest.mark.parametrize("huge", list(WRITES))
def test_write_orders_follow_the_mounts_huge_option(huge: str) -> None:
    got = []
    for i, k in enumerate(SIZES):
        m = System(ram="64M", seed=0)
        m.mount_tmpfs("/mnt/t", huge)
        p = m.spawn()
        fd = p.open(f"/mnt/t/w{i}")
        p.pwrite(fd, 0, k * KiB, 1)
        got.append(cache_notation(p.page_cache(fd), -(-k // 4)))
        assert m.check() == []
    assert got == WRITES[huge]


def fault(huge: str, madv: str | None, skew: int) -> tuple[str, str]:
    """A linked 4 MiB sparse file on a tmpfs(huge=), mapped MAP_SHARED at a 2 MiB-aligned
    address (+ ``skew``), written at +1M+8K: its page cache and the level that maps it."""
    m = System(ram="64M", seed=0)
    m.mount_tmpfs("/mnt/t", huge)
    p = m.spawn()
    fd = p.open("/mnt/t/f")
    p.ftruncate(fd, 4 * MiB)
    hole = p.mmap(8 * MiB)  # find a free 2 MiB-aligned range, then map the file there
    p.munmap(hole, 8 * MiB)
    base = (hole + 2 * MiB - 1) & ~(2 * MiB - 1)
    a = p.mmap(4 * MiB, "rw", shared=True, fd=fd, addr=base + skew)
    if madv:
        p.madvise(a, 4 * MiB, madv)
    p.write(a + MiB + 8 * KiB, 1)
    assert m.check() == []
    return cache_notation(p.page_cache(fd), 1024), p.lookup(a + MiB + 8 * KiB).level


@pytest.mark.parametrize(("huge", "madv", "skew", "cache", "level"), [
    ("always", None, 0, "9 (hole:512)", "pmd"),
    ("always", "hugepage", 0, "9 (hole:512)", "pmd"),
    ("always", None, 64 * KiB, "(hole:258) 0 (hole:765)", "pte"),  # PMD order only
    ("always", None, 4 * KiB, "(hole:258) 0 (hole:765)", "pte"),
    ("within_size", None, 0, "9 (hole:512)", "pmd"),
    ("within_size", None, 64 * KiB, "(hole:258) 0 (hole:765)", "pte"),
    ("advise", None, 0, "(hole:258) 0 (hole:765)", "pte"),
    ("advise", "hugepage", 0, "9 (hole:512)", "pmd"),
    ("never", "hugepage", 0, "(hole:258) 0 (hole:765)", "pte"),
])
def test_a_linked_files_fault_gets_the_pmd_order_or_a_page(
        huge: str, madv: str | None, skew: int, cache: str, level: str) -> None:
    assert fault(huge, madv, skew) == (cache, level)


def test_per_size_knobs_reach_an_unlinked_file_but_not_a_linked_one() -> None:
    m = System(ram="64M", seed=0)
    m.mount_tmpfs("/mnt/t")  # huge=never
    m.set_shmem_thp("always", "64kB")
    p = m.spawn()
    orders = {}
    for name, unlink in (("linked", False), ("unlinked", True)):
        fd = p.open(f"/mnt/t/{name}")
        p.ftruncate(fd, 2 * MiB)
        if unlink:
            p.unlink(f"/mnt/t/{name}")
        a = p.mmap(2 * MiB, shared=True, fd=fd)
        p.write(a, 1)
        orders[name] = p.page_cache(fd)[0][1]
    assert orders == {"linked": 0, "unlinked": 4}
    assert m.check() == []


def test_unlink_evicts_a_file_nobody_holds_and_keeps_an_open_one() -> None:
    m = System(ram="64M", seed=0)
    m.mount_tmpfs("/mnt/t", "always")
    p = m.spawn()
    fd = p.open("/mnt/t/f")
    p.pwrite(fd, 0, 2 * MiB, 1)
    free = m.nr_free_pages()
    p.unlink("/mnt/t/f")
    assert p.page_cache(fd) == [(0, 9)] and p.pread(fd, 0) == 1  # still open
    p.close(fd)
    assert m.nr_free_pages() == free + 512 and m.check() == []
    with pytest.raises(MmError, match="ENOENT"):
        p.open("/mnt/t/f", create=False)


def test_the_unused_huge_shrinker_of_a_mount() -> None:
    m = System(ram="64M", seed=0)
    m.mount_tmpfs("/mnt/t", "always")
    p = m.spawn()
    fd = p.open("/mnt/t/small")
    p.pwrite(fd, 0, 8 * KiB, 1)
    assert p.page_cache(fd) == [(0, 9)]
    assert m.drop_caches() == 1  # measured: pages 0 and 1 stay, 510 past EOF go
    assert p.page_cache(fd) == [(0, 0), (1, 0)] and m.vmstat()["thp_split_page"] == 1
    assert m.check() == []


@pytest.mark.parametrize(("path", "huge", "errno"), [
    ("/mnt/t", "deny", "EINVAL"), ("/mnt/t", "force", "EINVAL"), ("/mnt/t", "huge", "EINVAL"),
    ("mnt", "never", "EINVAL"), ("/", "never", "EINVAL"), ("/mnt/used", "never", "EBUSY"),
])
def test_bad_mounts_are_refused_and_change_nothing(path: str, huge: str, errno: str) -> None:
    m = System(ram="64M", seed=0)
    m.mount_tmpfs("/mnt/used")
    before = snapshot(m.machine)
    with pytest.raises(MmError, match=errno):
        m.mount_tmpfs(path, huge)
    assert snapshot(m.machine) == before
    p = m.spawn()
    with pytest.raises(MmError, match="ENOENT"):
        p.unlink("/mnt/used/none")
