"""Truncate and hole punch inside a large page-cache folio (mm/truncate.c,
mm/shmem.c:shmem_undo_range(), mm/huge_memory.c:__folio_split()), against the orders and
counters measured on Linux 6.18.44 (x86-64, ext4 4 KiB blocks; issue 17's research,
recorded in pyfolio/kernel_lab/recorded/): one order-9 folio in a 2 MiB file, one
operation. Notation: folio orders in index order, ``(hole:N)`` N uncached pages,
``AxN`` N folios of order A."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import MmError
from pyfolio.views.page_cache import cache_notation

K = KiB
#: (label, operation, offset, length, shmem and clean ext4, dirty ext4): measured
CASES = [
    ("punch page 0", "punch", 0, 4 * K, "(hole:1) 0 1 2 3 4 5 6 7 8", "9"),
    ("punch page 1", "punch", 4 * K, 4 * K, "0 (hole:1) 0x2 2 3 4 5 6 7 8", "9"),
    ("punch page 200", "punch", 800 * K, 4 * K, "7 6 3 (hole:1) 0 1 2 4 5 8", "9"),
    ("punch page 257", "punch", 257 * 4 * K, 4 * K, "8 0 (hole:1) 0x2 2 3 4 5 6 7", "9"),
    ("punch page 511", "punch", 511 * 4 * K, 4 * K, "8 7 6 5 4 3 2 1 0 (hole:1)", "9"),
    ("punch 64K aligned", "punch", 64 * K, 64 * K, "4 (hole:16) 0x2 1 2 3 4 6 7 8", "9"),
    ("punch 64K unaligned", "punch", 68 * K, 64 * K, "4 0 (hole:16) 0 1 2 3 4 6 7 8", "9"),
    ("punch bytes 100..1099", "punch", 100, 1000, "0x2 1 2 3 4 5 6 7 8", "9"),
    ("punch 200*4K+100..202*4K+99", "punch", 800 * K + 100, 8 * K,
     "7 6 3 0 (hole:1) 0x2 2 4 5 8", "9"),
    ("punch whole 2M", "punch", 0, 2 * MiB, "(hole:512)", "(hole:512)"),
    ("ftruncate to 261 pages", "trunc", 261 * 4 * K, 0, "8 2 0", "9"),
    ("ftruncate to 261 pages + 100", "trunc", 261 * 4 * K + 100, 0, "8 2 0x2", "9"),
    ("ftruncate to 511 pages", "trunc", 511 * 4 * K, 0, "8 7 6 5 4 3 2 1 0", "9"),
    ("ftruncate to 1 page", "trunc", 4 * K, 0, "0", "9"),
    ("ftruncate to 0", "trunc", 0, 0, "(hole:1)", "(hole:1)"),
]


def fmt(p, fd, npages: int) -> str:
    """The page cache of pages [0, npages) in the notation above."""
    return cache_notation(p.page_cache(fd), npages)


def one_thp_file(kind: str) -> tuple[System, object, int]:
    """A 2 MiB file holding one order-9 folio: a memfd written under shmem_enabled=always,
    or an ext4 file written in one 2 MiB pwrite (``clean``: then fsync()ed)."""
    m = System(ram="64M")
    p = m.spawn()
    if kind == "shmem":
        m.set_shmem_thp("always")
        fd = p.memfd_create("t")
        p.pwrite(fd, 0, 2 * MiB, 0x5A)
        m.set_shmem_thp("never")
    else:
        fd = p.open("/t")
        p.pwrite(fd, 0, 2 * MiB, 0x5A)
        if kind == "clean":
            p.fsync(fd)
    assert p.page_cache(fd) == [(0, 9)]
    return m, p, fd


def counters(m: System) -> dict[str, int]:
    v = m.vmstat()
    out = {k: v[k] for k in ("thp_split_page", "thp_split_page_failed", "nr_shmem_hugepages",
                             "nr_file_hugepages")}
    for size in ("2048kB", "128kB", "8kB"):
        s = m.mthp_stats(size)
        out[f"{size}/split"], out[f"{size}/split_failed"] = s["split"], s["split_failed"]
    return out


@pytest.mark.parametrize("kind", ["shmem", "clean", "dirty"])
@pytest.mark.parametrize(("label", "op", "off", "length", "want", "want_dirty"), CASES,
                         ids=[c[0] for c in CASES])
def test_orders_left_are_the_measured_ones(kind: str, label: str, op: str, off: int,
                                           length: int, want: str, want_dirty: str) -> None:
    m, p, fd = one_thp_file(kind)
    before = counters(m)
    if op == "punch":
        p.fallocate(fd, "punch_hole", off, length)
    else:
        p.ftruncate(fd, off)
    assert m.check() == []
    size = p.files[fd].f_inode.i_size
    assert fmt(p, fd, max(-(-size // 4096), 1)) == (want_dirty if kind == "dirty" else want)
    delta = {k: v - before[k] for k, v in counters(m).items() if v != before[k]}
    whole = label in ("punch whole 2M", "ftruncate to 0")
    if kind == "dirty" and not whole:  # ext4 cannot release dirty buffers: -EBUSY
        assert delta == {"thp_split_page_failed": 1, "2048kB/split_failed": 1}
        return
    gauge = "nr_shmem_hugepages" if kind == "shmem" else "nr_file_hugepages"
    if whole:  # the folio is removed whole, never split
        assert delta == {gauge: -1}
        return
    assert delta["thp_split_page"] == delta["2048kB/split"] == 1 and delta[gauge] == -1
    second = {"punch page 1": "8kB", "punch page 257": "8kB", "punch 64K aligned": "128kB",
              "punch 64K unaligned": "128kB", "punch 200*4K+100..202*4K+99": "8kB"}
    assert {k for k in delta if k.endswith("/split")} - {"2048kB/split"} == (
        {f"{second[label]}/split"} if label in second else set())


def test_a_dirty_folio_keeps_its_zeroed_pages_and_pages_past_eof() -> None:
    m, p, fd = one_thp_file("dirty")
    p.fallocate(fd, "punch_hole", 800 * K, 4 * K)
    assert p.pread(fd, 800 * K) == 0 and p.pread(fd, 804 * K) == 0x5A  # zeroed, kept
    p.ftruncate(fd, 261 * 4 * K)
    assert p.page_cache(fd) == [(0, 9)]  # pages 261..511 stay cached past EOF
    p.fsync(fd)  # clean now: the same truncate splits
    p.ftruncate(fd, 261 * 4 * K)
    assert [o for _, o in p.page_cache(fd)] == [8, 2, 0]
    assert m.check() == []


def test_successive_holes_split_the_pieces_again() -> None:
    m, p, fd = one_thp_file("shmem")
    want = {200: "7 6 3 (hole:1) 0 1 2 4 5 8",
            300: "7 6 3 (hole:1) 0 1 2 4 5x2 3 2 (hole:1) 0 1 4 6 7",
            100: "6 5 2 (hole:1) 0 1 3 4 6 3 (hole:1) 0 1 2 4 5x2 3 2 (hole:1) 0 1 4 6 7",
            450: "6 5 2 (hole:1) 0 1 3 4 6 3 (hole:1) 0 1 2 4 5x2 3 2 (hole:1) 0 1 4 6x2 1 "
                 "(hole:1) 0 2 3 4 5"}
    for page, orders in want.items():
        p.fallocate(fd, "punch_hole", page * 4 * K, 4 * K)
        assert fmt(p, fd, 512) == orders
        assert m.check() == []
    assert m.mthp_stats("1024kB")["split"] == 1 and m.mthp_stats("512kB")["split"] == 2


def test_pieces_past_eof_are_dropped_unless_fallocated() -> None:
    for fallocated, kept in ((False, 255), (True, 511)):
        m = System(ram="64M")
        m.set_shmem_thp("always")
        p = m.spawn()
        fd = p.memfd_create("eof")
        p.pwrite(fd, 0, 1 * MiB, 1)  # one order-9 folio, 256 pages past EOF
        if fallocated:
            p.fallocate(fd, "keep_size", 0, 2 * MiB)
        p.fallocate(fd, "punch_hole", 40 * K, 4 * K)
        assert sum(1 << o for _, o in p.page_cache(fd)) == kept
        assert fmt(p, fd, 256) == "3 1 (hole:1) 0 2 4 5 6 7"
        assert m.check() == []


def test_the_unused_huge_shrinker_splits_a_folio_past_eof() -> None:
    m = System(ram="64M")
    m.set_shmem_thp("always")
    p = m.spawn()
    fd = p.memfd_create("small")
    p.pwrite(fd, 0, 8 * K, 1)
    assert p.page_cache(fd) == [(0, 9)]
    assert m.drop_caches() == 1
    assert p.page_cache(fd) == [(0, 0), (1, 0)]
    assert m.vmstat()["thp_split_page"] == 1 and m.check() == []


def test_a_mapped_thp_is_unmapped_by_the_hole_and_refaulted_by_ptes() -> None:
    m, p, fd = one_thp_file("shmem")
    a = p.mmap(2 * MiB, shared=True, fd=fd)
    p.read(a)
    assert p.lookup(a).level == "pmd"
    p.fallocate(fd, "punch_hole", 800 * K, 4 * K)
    assert p.status()["RssShmem"] == 0 and p.lookup(a).kind == "none"
    assert m.vmstat()["thp_split_pmd"] == 1
    assert p.read(a) == 0x5A and p.read(a + 800 * K) == 0  # the hole faults a new page
    assert p.lookup(a).level == "pte" and p.folio_at(a).order == 7
    assert m.check() == []


@pytest.mark.parametrize(("call", "errno"), [
    (lambda p, fd: p.ftruncate(fd, -1), "EINVAL"),
    (lambda p, fd: p.fallocate(fd, "punch_hole", -4096, 4096), "EINVAL"),
    (lambda p, fd: p.fallocate(fd, "punch_hole", 0, 0), "EINVAL"),
    (lambda p, fd: p.fallocate(fd, "zero_range", 0, 4096), "EOPNOTSUPP"),
    (lambda p, fd: p.fallocate(99, "punch_hole", 0, 4096), "EBADF"),
    (lambda p, fd: p.ftruncate(fd, 1 << 50), "EFBIG"),
])
def test_bad_truncate_changes_nothing(call, errno: str) -> None:
    m, p, fd = one_thp_file("clean")
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        call(p, fd)
    assert e.value.errname == errno and snapshot(m.machine) == before


def test_a_read_only_descriptor_cannot_truncate_or_punch() -> None:
    m, p, fd = one_thp_file("clean")
    ro = p.open("/t", create=False, mode="r")
    before = snapshot(m.machine)
    with pytest.raises(MmError, match="EINVAL"):
        p.ftruncate(ro, 0)
    with pytest.raises(MmError, match="EBADF"):
        p.fallocate(ro, "punch_hole", 0, 4096)
    assert snapshot(m.machine) == before
