"""Swap and reclaim of large folios (issue 18): swapon/swapoff, slot allocation, swap-out
whole or split, the swap cache, swap-in, fork, swapoff, counters and /proc.

Each expected value is what this machine's kernel (6.18.44) showed in the swap research
(the issue 18 measurements on this kernel), cited by
experiment name; "block" is the loop device over a swap file (rotational, not synchronous),
"zram" the synchronous solid-state device.
"""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.fs.proc.page import KPF
from pyfolio.include.linux.mm import folio_expected_ref_count
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.huge_memory_split import can_split_folio
from pyfolio.sim.errors import EBUSY, EINVAL, ENOMEM, MmError
from pyfolio.sim.units import PAGE_SIZE

KINDS = ("file", "block", "zram")
SWAP_COUNTERS = ("pswpin", "pswpout", "swap_ra", "swap_ra_hit", "pgmajfault", "thp_swpout",
                 "thp_swpout_fallback", "thp_split_pmd", "thp_split_page", "swpout_zero",
                 "swpin_zero")


def _delta(m: System, before: dict[str, int]) -> dict[str, int]:
    after = m.vmstat()
    return {k: after[k] - before[k] for k in SWAP_COUNTERS if after[k] != before[k]}


def _stats(m: System, size: str, before: dict[str, int]) -> dict[str, int]:
    after = m.mthp_stats(size)
    return {k: after[k] - before[k] for k in after if after[k] != before[k]
            and k != "nr_anon"}


def runs(p: object, a: int, n: int) -> list[list[int]]:
    """[first page, swap type, first offset, pages] per run of consecutive swap slots, as
    the research records them from pagemap."""
    out: list[list[int]] = []
    for i, e in enumerate(p.pagemap(a, n)):  # type: ignore[attr-defined]
        if not e.swapped:
            continue
        last = out[-1] if out else None
        if last and last[0] + last[3] == i and last[1] == e.swap_type \
                and last[2] + last[3] == e.swap_offset:
            last[3] += 1
        else:
            out.append([i, e.swap_type, e.swap_offset, 1])
    return out


def used(m: System) -> int:
    return int(m.swaps()[0]["Used"])  # type: ignore[call-overload]


def thp_out(kind: str, ram: str = "64M") -> tuple[System, object, int]:
    """A THP written page by page, then MADV_PAGEOUT of the whole 2 MiB."""
    m = System(ram=ram)
    m.swapon("64M", kind)
    p, a = m.spawn_with_thp()
    p.madvise(a, 2 * MiB, "pageout")
    assert m.check() == []
    return m, p, a


# -- swapon, swapoff, /proc/swaps ---------------------------------------------------------------
def test_swapon_shows_in_proc_swaps_as_measured() -> None:
    """limits.json: a 64 MiB area shows Size 65532 kB (the header page excluded), Priority
    -2; a swap file is "file", a loop device "partition"."""
    m = System(ram="16M")
    assert m.swapon("64M", "file") == 0
    assert m.swaps() == [{"Filename": System.SWAP_NAMES["file"], "Type": "file",
                          "Size": 65532, "Used": 0, "Priority": -2}]
    m.swapoff()
    m.swapon("64M", "block")
    assert (m.swaps()[0]["Type"], m.swaps()[0]["Priority"]) == ("partition", -2)
    assert m.swap_area is not None and m.swap_area.pages == 16383
    m.swapoff()
    assert m.swaps() == [] and m.swap_area is None and m.check() == []


def test_the_smallest_area_is_two_pages() -> None:
    """limits.json: a 2-page area (header + 1 slot) is accepted (Size 4 kB); a 1-page one
    is EINVAL ("Empty swap-file"); nothing changes on the error."""
    m = System(ram="16M")
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        m.swapon(PAGE_SIZE)
    assert e.value.errno == EINVAL and "Empty swap-file" in str(e.value)
    assert snapshot(m.machine) == before
    m.swapon(2 * PAGE_SIZE)
    assert m.swaps()[0]["Size"] == 4


@pytest.mark.parametrize("size, kind", [("4097", "file"), ("8M", "tape"), (0, "file")])
def test_swapon_of_bad_input_is_einval_and_changes_nothing(size: object, kind: str) -> None:
    m = System(ram="16M")
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        m.swapon(size, kind)  # type: ignore[arg-type]
    assert e.value.errno == EINVAL
    assert snapshot(m.machine) == before


def test_second_swapon_is_ebusy_and_swapoff_with_none_is_einval() -> None:
    """limits.json: swapon of an active area is EBUSY; swapoff with none active, and a
    second swapoff, are EINVAL; neither changes anything."""
    m = System(ram="16M")
    with pytest.raises(MmError) as e:
        m.swapoff()
    assert e.value.errno == EINVAL
    m.swapon("8M")
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        m.swapon("8M", "block")
    assert e.value.errno == EBUSY and snapshot(m.machine) == before
    m.swapoff()
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        m.swapoff()
    assert e.value.errno == EINVAL and snapshot(m.machine) == before


# -- slot allocation --------------------------------------------------------------------------
def _alloc_order(kind: str) -> tuple[System, object, dict[str, int]]:
    """alloc_order: 4 small pages, a THP, 2 x 64 KiB, 4 small pages, a THP, each paged out
    in turn (64kB mTHP enabled with MADV_HUGEPAGE)."""
    m = System(ram="64M")
    m.set_mthp("64kB", "madvise")
    m.swapon("64M", kind)
    p = m.spawn()
    regions = {}
    for name, size in (("small1", 16 * KiB), ("thp1", 2 * MiB), ("m64", 128 * KiB),
                       ("small2", 16 * KiB), ("thp2", 2 * MiB)):
        a = p.mmap(max(size, 2 * MiB))
        if name != "small1" and name != "small2":
            p.madvise(a, size, "hugepage")
        p.touch(a, size)
        regions[name] = a
    for name, size in (("small1", 16 * KiB), ("thp1", 2 * MiB), ("m64", 128 * KiB),
                       ("small2", 16 * KiB), ("thp2", 2 * MiB)):
        p.madvise(regions[name], size, "pageout")
        assert m.check() == []
    return m, p, regions


def test_allocation_order_on_a_block_device() -> None:
    """alloc_order-loop: order 0 from slot 1 of cluster 0; each large order a free cluster
    of its own, in index order; a large folio's slots contiguous and aligned."""
    m, p, r = _alloc_order("block")
    assert runs(p, r["small1"], 4) == [[0, 0, 1, 4]]
    assert runs(p, r["thp1"], 512) == [[0, 0, 512, 512]]
    assert runs(p, r["m64"], 32) == [[0, 0, 1024, 32]]
    assert runs(p, r["small2"], 4) == [[0, 0, 5, 4]]
    assert runs(p, r["thp2"], 512) == [[0, 0, 1536, 512]]
    assert used(m) == 4256


def test_allocation_order_on_a_swap_file() -> None:
    """alloc_order-file: every folio is split, the head keeps the order-0 cursor and the
    tails follow from the last page down (page 0 -> 5, page 1 -> 516, page 5 -> 512)."""
    m, p, r = _alloc_order("file")
    assert runs(p, r["small1"], 4) == [[0, 0, 1, 4]]
    thp1 = runs(p, r["thp1"], 512)
    assert thp1[:6] == [[0, 0, 5, 1], [1, 0, 516, 1], [2, 0, 515, 1], [3, 0, 514, 1],
                        [4, 0, 513, 1], [5, 0, 512, 1]]
    assert runs(p, r["m64"], 32)[:6] == [[0, 0, 517, 1], [1, 0, 532, 1], [2, 0, 531, 1],
                                         [3, 0, 530, 1], [4, 0, 529, 1], [5, 0, 528, 1]]
    assert runs(p, r["small2"], 4) == [[0, 0, 549, 4]]
    assert runs(p, r["thp2"], 512)[:2] == [[0, 0, 553, 1], [1, 0, 1064, 1]]
    assert used(m) == 4256


# -- Table A: a PMD THP paged out -----------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_pageout_of_a_thp(kind: str) -> None:
    """Table A (pmd-*): whole to a block device or zram, split on a swap file."""
    m = System(ram="64M")
    m.swapon("64M", kind)
    p, a = m.spawn_with_thp()
    old = p.pfn_at(a)
    v0, s0 = m.vmstat(), m.mthp_stats("2048kB")
    p.madvise(a, 2 * MiB, "pageout")
    assert m.check() == []
    d, s = _delta(m, v0), _stats(m, "2048kB", s0)
    if kind == "file":
        assert d == {"pswpout": 512, "thp_swpout_fallback": 1, "thp_split_pmd": 1,
                     "thp_split_page": 1}
        assert s == {"swpout_fallback": 1, "split": 1}
        assert runs(p, a, 512)[:3] == [[0, 0, 1, 1], [1, 0, 512, 1], [2, 0, 511, 1]]
        assert [b[2] for b in m.swap_area.bios] == [1] * 512  # type: ignore[union-attr]
    else:
        assert d == {"pswpout": 512, "thp_swpout": 1, "thp_split_pmd": 1}
        assert s == {"swpout": 1}
        assert runs(p, a, 512) == [[0, 0, 512, 512]]
        assert m.swap_area.bios == [("W", 512, 512)]  # type: ignore[union-attr]
    flags = m.kpageflags([old])[0]
    if kind == "zram":  # the synchronous write finished: the folio was freed at once
        assert flags == 1 << KPF["BUDDY"] or not flags & 1 << KPF["SWAPCACHE"]
        assert m.vmstat()["nr_swapcached"] == 0
    else:  # UPTODATE|LRU|ANON|SWAPCACHE|SWAPBACKED(|THP), mapcount 0
        for name in ("SWAPCACHE", "LRU", "ANON", "SWAPBACKED", "UPTODATE"):
            assert flags & 1 << KPF[name]
        assert bool(flags & 1 << KPF["THP"]) == (kind == "block")
        assert m.kpagecount([old]) == [0]
        assert m.vmstat()["nr_swapcached"] == 512
    assert used(m) == 2048
    sm = p.smaps()[0]
    assert (sm["Swap"], sm["SwapPss"], sm["AnonHugePages"], sm["Rss"]) == (2048, 2048, 0, 0)
    assert p.status()["VmSwap"] == 2048 and p.status()["RssAnon"] == 0


# -- Table B: four 64 KiB mTHPs -----------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_pageout_of_64k_folios(kind: str) -> None:
    """Table B (mthp64-*): split on a swap file (per folio: head first, then its tails
    descending; 64kB swpout_fallback, split and split_deferred 4; no thp_* counter), whole
    (64kB swpout 4, one 16-page write each) elsewhere."""
    m = System(ram="64M")
    m.set_mthp("64kB", "madvise")
    m.swapon("64M", kind)
    p = m.spawn()
    a = p.mmap(256 * KiB)
    p.madvise(a, 256 * KiB, "hugepage")
    p.touch(a, 256 * KiB)
    v0, s0 = m.vmstat(), m.mthp_stats("64kB")
    p.madvise(a, 256 * KiB, "pageout")
    assert m.check() == []
    d, s = _delta(m, v0), _stats(m, "64kB", s0)
    assert d == {"pswpout": 64}
    if kind == "file":
        assert s == {"swpout_fallback": 4, "split": 4, "split_deferred": 4}
        assert runs(p, a, 64)[:3] == [[0, 0, 1, 1], [1, 0, 16, 1], [2, 0, 15, 1]]
    else:
        assert s == {"swpout": 4}
        assert runs(p, a, 64) == [[0, 0, 512, 64]]
        assert m.swap_area.bios == [("W", 512 + 16 * i, 16) for i in range(4)]  # type: ignore[union-attr]


# -- Table C: faulting back ------------------------------------------------------------------
def test_read_fault_from_the_swap_cache_maps_the_whole_folio() -> None:
    """Table C (pmd-loop): a read fault on a THP swapped out whole to the loop device maps
    the whole order-9 folio from the swap cache with 512 PTEs, no I/O; it stays in the swap
    cache (Used unchanged); the PTEs are writable (the swap entries were exclusive) and a
    later store does not fault."""
    m, p, a = thp_out("block")
    v0 = m.vmstat()
    p.read(a)
    assert _delta(m, v0) == {}
    f = p.folio_at(a)
    assert f is not None and (f.order, f.mapcount) == (9, 512)
    assert p.lookup(a).level == "pte" and p.lookup(a + 2 * MiB - 4096).write
    assert m.kpageflags([f.pfn])[0] & 1 << KPF["SWAPCACHE"]
    assert used(m) == 2048 and p.smaps()[0]["AnonHugePages"] == 0
    faults = m.vmstat()["pgfault"]
    p.write(a + 8192, 1)
    assert m.vmstat()["pgfault"] == faults and used(m) == 2048 and m.check() == []


def test_write_fault_first_frees_the_slots() -> None:
    """pmd_write_first-loop: a store as the first access maps the whole folio and, its only
    user, takes it out of the swap cache: all 512 slots freed, the folio dirty."""
    m, p, a = thp_out("block")
    p.write(a, 5)
    f = p.folio_at(a)
    assert f is not None and f.order == 9 and f.mapcount == 512
    flags = m.kpageflags([f.pfn])[0]
    assert not flags & 1 << KPF["SWAPCACHE"] and flags & 1 << KPF["DIRTY"]
    assert used(m) == 0 and m.vmstat()["nr_swapcached"] == 0 and m.check() == []


def test_swap_file_faults_come_back_one_page_at_a_time() -> None:
    """Table C/E (pmd-file): each fault maps one order-0 swap-cache page; a write fault
    frees that page's slot (Used -4 kB)."""
    m, p, a = thp_out("file")
    p.read(a)
    p.read(a + 4096)
    assert [e.present for e in p.pagemap(a, 3)] == [True, True, False]
    assert used(m) == 2048
    p.write(a + 8192, 1)
    assert used(m) == 2044 and p.folio_at(a + 8192).order == 0  # type: ignore[union-attr]
    assert m.check() == []


def test_zram_swap_in_skips_the_swap_cache() -> None:
    """Table C (pmd-zram): a read fault reads one page directly (the PMD size cannot come
    back whole: only sizes below it are tried), pswpin 1, a major fault, not in the swap
    cache, its slot freed (Used -4 kB)."""
    m, p, a = thp_out("zram")
    v0 = m.vmstat()
    p.read(a)
    assert _delta(m, v0) == {"pswpin": 1, "pgmajfault": 1}
    f = p.folio_at(a)
    assert f is not None and f.order == 0
    assert not m.kpageflags([f.pfn])[0] & 1 << KPF["SWAPCACHE"]
    assert used(m) == 2044 and m.check() == []


def test_zram_swaps_in_at_the_mthp_size_enabled_at_fault_time() -> None:
    """evicted_swapin-zram / mthp64_off_at_swapin-zram: with 64kB enabled a fault reads a
    whole 64 KiB folio (64kB swpin +1, pswpin 16); a THP swapped out whole comes back as
    64 KiB folios; with 64kB disabled again, order 0."""
    m, p, a = thp_out("zram")
    m.set_mthp("64kB", "madvise")
    s0, v0 = m.mthp_stats("64kB"), m.vmstat()
    p.read(a)
    assert _stats(m, "64kB", s0) == {"swpin": 1} and _delta(m, v0) == {
        "pswpin": 16, "pgmajfault": 1}
    assert p.folio_at(a).order == 4 and used(m) == 2048 - 64  # type: ignore[union-attr]
    for i in range(512):
        p.read(a + i * 4096)
    assert m.mthp_stats("64kB")["swpin"] - s0["swpin"] == 32
    m.set_mthp("64kB", "never")
    p.madvise(a, 64 * KiB, "pageout")
    p.read(a)
    assert p.folio_at(a).order == 0 and m.check() == []  # type: ignore[union-attr]


# -- Table D: zero-filled ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_zero_filled_thp(kind: str) -> None:
    """Table D (pmd_zero-*): on a block device or zram the THP gets 512 slots but only
    swpout_zero 512, no write, and is freed at once; a read fault zero-fills (swpin_zero).
    On a swap file the split maps every zero-filled page to the shared zero page: no swap
    entries at all, Rss 0."""
    m = System(ram="64M")
    m.swapon("64M", kind)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB, value=0)
    v0 = m.vmstat()
    p.madvise(a, 2 * MiB, "pageout")
    assert m.check() == []
    d = _delta(m, v0)
    if kind == "file":
        assert d == {"thp_swpout_fallback": 1, "thp_split_pmd": 1, "thp_split_page": 1}
        assert used(m) == 0 and p.smaps()[0]["Rss"] == 0
        assert all(p.lookup(a + i * 4096).kind == "zero" for i in range(0, 512, 51))
        return
    assert d == {"swpout_zero": 512, "thp_split_pmd": 1}
    assert m.swap_area.bios == [] and used(m) == 2048  # type: ignore[union-attr]
    assert m.vmstat()["nr_swapcached"] == 0
    v0 = m.vmstat()
    assert p.read(a) == 0
    assert _delta(m, v0).get("swpin_zero", 0) >= 1 and "pswpin" not in _delta(m, v0)


# -- Table E: the whole pmd sequence ------------------------------------------------------------
def test_swap_file_sequence_with_cluster_readahead() -> None:
    """Table E (pmd-file): after a second MADV_PAGEOUT (2 dirty pages rewritten, 510 clean
    ones dropped without I/O) reading all back reads 510 pages with cluster readahead
    around each swap offset (both areas here sit on a rotating disk, so VMA readahead is
    off). The kernel showed pswpin 510, swap_ra 443, swap_ra_hit 443, pgmajfault 67; its
    first window depends on readahead statistics left by earlier swap-ins (globals), so
    the simulator, starting fresh, reads one more page ahead: 444 and 66."""
    m, p, a = thp_out("file")
    p.read(a)
    p.read(a + 4096)
    p.write(a + 8192, 1)
    p.write(a, 2)
    for i in range(512):
        p.read(a + i * 4096)
    v0 = m.vmstat()
    p.madvise(a, 2 * MiB, "pageout")
    assert _delta(m, v0) == {"pswpout": 2}
    assert runs(p, a, 3) == [[0, 0, 1, 1], [1, 0, 512, 2]]
    v0 = m.vmstat()
    for i in range(512):
        p.read(a + i * 4096)
    assert _delta(m, v0) == {"pswpin": 510, "swap_ra": 444, "swap_ra_hit": 444,
                             "pgmajfault": 66}
    p.munmap(a, 2 * MiB)
    assert used(m) == 0 and m.vmstat()["nr_swapcached"] == 0 and m.check() == []


def test_swap_cache_folio_is_rewritten_to_the_same_slots() -> None:
    """pmd-loop step 9: a dirtied swap-cache THP paged out again is written whole to the
    same slots (pswpout 512, thp_swpout 1, offsets 512-1023)."""
    m, p, a = thp_out("block")
    p.read(a)  # the whole folio mapped back, writable, still in the swap cache
    p.touch(a, 2 * MiB)  # no fault: the CPU dirties the PTEs
    v0 = m.vmstat()
    p.madvise(a, 2 * MiB, "pageout")
    assert _delta(m, v0) == {"pswpout": 512, "thp_swpout": 1}
    assert runs(p, a, 512) == [[0, 0, 512, 512]] and m.check() == []


# -- MADV_PAGEOUT's choices -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ("file", "block"))
def test_partial_pageout_splits_first(kind: str) -> None:
    """partial-*: MADV_PAGEOUT of the first 1 MiB splits the THP first (no
    thp_swpout_fallback), then 256 order-0 pages go out at slots 1-256, ascending."""
    m = System(ram="64M")
    m.swapon("64M", kind)
    p, a = m.spawn_with_thp()
    v0 = m.vmstat()
    p.madvise(a, 1 * MiB, "pageout")
    assert _delta(m, v0) == {"pswpout": 256, "thp_split_pmd": 1, "thp_split_page": 1}
    assert runs(p, a, 512) == [[0, 0, 1, 256]] and m.check() == []


def test_pageout_skips_a_shared_thp() -> None:
    """fork_shared-*: after fork MADV_PAGEOUT in either process does nothing; once the
    child COW-wrote a page only the child's private page goes; after the child exits the
    parent's pageout takes the THP."""
    m = System(ram="64M")
    m.swapon("64M", "block")
    p, a = m.spawn_with_thp()
    c = p.fork()
    v0 = m.vmstat()
    p.madvise(a, 2 * MiB, "pageout")
    c.madvise(a, 2 * MiB, "pageout")
    assert _delta(m, v0) == {}
    c.write(a, 9)
    v0 = m.vmstat()
    p.madvise(a, 2 * MiB, "pageout")
    c.madvise(a, 2 * MiB, "pageout")
    assert _delta(m, v0) == {"pswpout": 1} and used(m) == 4
    c.exit()
    assert used(m) == 0
    v0 = m.vmstat()
    p.madvise(a, 2 * MiB, "pageout")
    assert _delta(m, v0) == {"pswpout": 512, "thp_swpout": 1, "thp_split_pmd": 1}
    assert m.check() == []


def test_pageout_of_unmapped_memory_is_enomem_and_changes_nothing() -> None:
    m = System(ram="16M")
    m.swapon("8M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.touch(a)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        p.madvise(a, 128 * KiB, "pageout")
    assert e.value.errno == ENOMEM and snapshot(m.machine) == before


def test_pageout_without_swap_splits_and_keeps_the_pages() -> None:
    """kernel-facts (seen): MADV_PAGEOUT with no swap device splits the THP
    (thp_swpout_fallback +1); the pages stay resident."""
    m = System(ram="16M")
    p, a = m.spawn_with_thp()
    v0 = m.vmstat()
    p.madvise(a, 2 * MiB, "pageout")
    assert _delta(m, v0) == {"thp_swpout_fallback": 1, "thp_split_pmd": 1,
                             "thp_split_page": 1}
    assert p.status()["RssAnon"] == 2048 and p.read(a + 4096) == (a >> 12) + 2
    assert m.check() == []


# -- fork after swap-out ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_fork_after_swapout_shares_the_swap_entries(kind: str) -> None:
    """fork_after_swapout-*: the child copies the swap entries (swap count 2): Swap 2048 kB
    and SwapPss 1024 kB in each, VmSwap 2048 kB in each; on zram a count of 2 turns the
    direct swap-in off (the readahead path and the swap cache instead)."""
    m, p, a = thp_out(kind)
    c = p.fork()
    for proc in (p, c):
        sm = proc.smaps()[0]
        assert (sm["Swap"], sm["SwapPss"], proc.status()["VmSwap"]) == (2048, 1024, 2048)
    assert m.check() == []
    c.read(a)
    p.read(a)
    f = p.folio_at(a)
    assert f is not None and c.folio_at(a) == f
    assert m.kpagecount([f.pfn]) == [2]
    if kind == "block":
        assert f.order == 9
    if kind == "zram":
        assert m.kpageflags([f.pfn])[0] & 1 << KPF["SWAPCACHE"] and f.order == 0
    p.write(a + 4096, 3)
    assert p.folio_at(a + 4096) != c.folio_at(a + 4096)  # COW of one page
    c.exit()
    assert m.check() == []


# -- swapoff ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_swapoff_brings_everything_back(kind: str) -> None:
    """swapoff-*: swap-cache folios come back at their order (a THP and four 64 KiB folios
    on the loop device), dirty, out of the swap cache, no pswpin; on zram everything is
    read back through readahead as order 0; data intact."""
    m = System(ram="64M")
    m.set_mthp("64kB", "madvise")
    m.swapon("64M", kind)
    p, a = m.spawn_with_thp()
    b = p.mmap(256 * KiB)
    p.madvise(b, 256 * KiB, "hugepage")
    p.touch(b, 256 * KiB)
    p.madvise(a, 2 * MiB, "pageout")
    p.madvise(b, 256 * KiB, "pageout")
    v0 = m.vmstat()
    m.swapoff()
    assert m.check() == [] and m.swaps() == []
    d = _delta(m, v0)
    f, g = p.folio_at(a), p.folio_at(b)
    assert f is not None and g is not None
    if kind == "block":
        assert (f.order, g.order, d) == (9, 4, {})
    elif kind == "file":
        assert (f.order, g.order, d) == (0, 0, {})
    else:
        assert (f.order, g.order) == (0, 0) and d["pswpin"] == 576 and d["swap_ra"] > 0
    assert m.kpageflags([f.pfn])[0] & 1 << KPF["DIRTY"]
    assert p.status()["VmSwap"] == 0 and p.status()["RssAnon"] == 2304
    assert [p.read(a + i * 4096) for i in (0, 511)] == [(a >> 12) + 1, (a >> 12) + 512]


# -- splitting a swap-cache folio; reference counts ---------------------------------------------
def test_swap_cache_references_and_the_split() -> None:
    """notes 4 and 3.9: a swap-cache THP holds one reference per page from the cache
    (refcount 512 unmapped, 1024 once mapped); folio_expected_ref_count() explains them;
    it splits only to order 0 (-EINVAL for order 4, "Cannot split swapcache folio to
    non-0 order"), each piece keeping its slot and one cache reference; MADV_PAGEOUT of
    half of it frees 256 clean pieces without any I/O."""
    m, p, a = thp_out("block")
    si = m.swap_area
    assert si is not None
    head = int(si.swap_table[512])
    f = m.folio(head)
    assert (f.refcount, f.mapcount, folio_expected_ref_count(f)) == (512, 0, 512)
    p.read(a)
    f = p.folio_at(a)
    assert f is not None and (f.refcount, folio_expected_ref_count(f)) == (1024, 1024)
    assert can_split_folio(f, 0) == (True, 512)
    with pytest.raises(MmError) as e:
        m.split(f.pfn, 4)
    assert e.value.errno == EINVAL
    v0 = m.vmstat()
    p.madvise(a, 1 * MiB, "pageout")
    assert _delta(m, v0) == {"thp_split_page": 1}
    assert runs(p, a, 512) == [[0, 0, 512, 256]] and used(m) == 2048
    piece = p.folio_at(a + 1 * MiB)
    assert piece is not None and piece.order == 0 and piece.refcount == 2
    assert int(m.machine.mem.swap[piece.pfn]) & 0xFFFF == 512 + 256
    assert m.vmstat()["nr_swapcached"] == 256 and m.check() == []


# -- reclaim -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ("file", "block"))
def test_reclaim_takes_the_oldest_first(kind: str) -> None:
    """memcg-*: S1 (1 MiB of small pages), a THP, S2 faulted in that order all sit on the
    inactive anon list; reclaim takes S1 first, lowest addresses first (the list's tail),
    keeping each freshly used page once; the THP goes whole to the loop device and split on
    the swap file, where all 512 pieces are written in the same pass."""
    m = System(ram="64M")
    m.swapon("64M", kind)
    p = m.spawn()
    s1 = p.mmap(1 * MiB)
    p.touch(s1)
    t = p.mmap(2 * MiB)
    p.madvise(t, 2 * MiB, "hugepage")
    p.touch(t)
    s2 = p.mmap(1 * MiB)
    p.touch(s2)
    got = m.reclaim(64)
    assert got >= 64
    sw = [e.swapped for e in p.pagemap(s1, 256)]
    assert sw[0] and sw.index(False) == sum(sw)  # a prefix of S1 went
    assert not any(e.swapped for e in p.pagemap(t, 512) + p.pagemap(s2, 256))
    v0 = m.vmstat()
    m.reclaim(1024)
    d = _delta(m, v0)
    assert all(e.swapped for e in p.pagemap(s1, 256))
    assert all(e.swapped for e in p.pagemap(t, 512))
    assert d["thp_swpout" if kind == "block" else "thp_swpout_fallback"] == 1
    assert m.check() == []


def test_reclaim_of_bad_input_is_einval() -> None:
    m = System(ram="16M")
    for bad in (0, -1, 1.5, "8"):
        with pytest.raises(MmError) as e:
            m.reclaim(bad)  # type: ignore[arg-type]
        assert e.value.errno == EINVAL


def test_reclaim_without_swap_frees_nothing() -> None:
    m = System(ram="16M")
    p, a = m.spawn_with_thp()
    assert m.reclaim(512) == 0 and p.status()["RssAnon"] == 2048 and m.check() == []


# -- invariants ----------------------------------------------------------------------------------
def test_debug_vm_catches_broken_swap_state() -> None:
    """The swap checks can fail: a swap count off by one, a leaked slot, a swap-cache
    folio missing from the table are each reported."""
    m, p, a = thp_out("block")
    si = m.swap_area
    assert si is not None
    si.swap_map[600] += 1
    assert any(v.kind == "swap-count" for v in m.check())
    si.swap_map[600] -= 1
    si.swap_map[5000] = 1
    si.inuse_pages += 1
    assert {v.kind for v in m.check()} >= {"swap-count", "swap-cluster"}
    si.swap_map[5000] = 0
    si.inuse_pages -= 1
    head = int(si.swap_table[512])
    si.swap_table[512:1024] = -1
    kinds = {v.kind for v in m.check()}
    assert "swap-cache" in kinds
    si.swap_table[512:1024] = head
    assert m.check() == []


def test_data_survives_every_route() -> None:
    """Every page reads back what was written, whichever way it came back."""
    for kind in KINDS:
        m, p, a = thp_out(kind)
        assert [p.read(a + i * 4096) for i in range(0, 512, 37)] == [
            (a >> 12) + 1 + i for i in range(0, 512, 37)]
        assert m.check() == []


@pytest.mark.parametrize("kind", KINDS)
def test_collapse_swaps_in_first_and_madv_free_drops_swapped_pages(kind: str) -> None:
    """MADV_COLLAPSE over half-swapped small pages swaps them in
    (__collapse_huge_page_swapin(): do_swap_page()) and copies them into a THP: every slot
    is freed again. MADV_FREE of swapped-out pages frees their slots and MM_SWAPENTS
    (madvise_free_pte_range(): free_swap_and_cache_nr())."""
    m = System(ram="64M")
    m.swapon("64M", kind)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.touch(a)
    p.madvise(a, 1 * MiB, "pageout")
    assert sum(e.swapped for e in p.pagemap(a, 512)) == 256
    p.madvise(a, 2 * MiB, "collapse")
    assert p.lookup(a).kind == "huge" and used(m) == 0 and m.check() == []
    assert [p.read(a + i * 4096) for i in (1, 300)] == [(a >> 12) + 2, (a >> 12) + 301]
    q = p.mmap(64 * KiB)
    p.touch(q)
    p.madvise(q, 64 * KiB, "pageout")
    assert used(m) == 64 and p.status()["VmSwap"] == 64
    p.madvise(q, 64 * KiB, "free")
    assert used(m) == 0 and p.status()["VmSwap"] == 0 and m.check() == []
    assert p.read(q) == 0  # the page is gone: a fresh zero page reads back


# -- lazy-free (MADV_FREE'd) memory meets reclaim --------------------------------------------
@pytest.mark.parametrize("swap", [None, "block"])
def test_pageout_discards_a_lazyfree_thp_after_splitting_its_pmd(swap: str | None) -> None:
    """Measured on 6.18.44 (kernel lab lazyfree_pageout_block, and without swap): MADV_FREE
    of a whole THP makes it lazy-free at once; MADV_PAGEOUT then splits the PMD
    (thp_split_pmd +1) and discards the 512 clean pages (pglazyfreed +512) without a
    write or a swap entry; the empty PTE table stays, so a later write faults one page."""
    m = System(ram="64M")
    if swap:
        m.swapon("64M", swap)
    p, a = m.spawn_with_thp()
    p.madvise(a, 2 * MiB, "free")
    v0 = m.vmstat()
    p.madvise(a, 2 * MiB, "pageout")
    v1 = m.vmstat()
    assert {k: v1[k] - v0[k] for k in ("thp_split_pmd", "pglazyfreed", "pswpout")} == {
        "thp_split_pmd": 1, "pglazyfreed": 512, "pswpout": 0}
    assert p.status()["RssAnon"] == 0 and p.status()["VmSwap"] == 0
    assert p.lookup(a).kind == "none" and p.lookup(a).level == "pte" and m.check() == []
    p.write(a, 5)
    assert p.folio_at(a).order == 0 and p.status()["RssAnon"] == 4 and m.check() == []


def test_a_lazyfree_thp_written_again_is_kept_swapbacked_then_swapped_whole() -> None:
    """lazyfree_redirty_block: a write after MADV_FREE dirties the THP; MADV_PAGEOUT splits
    the PMD, finds the folio dirty, makes it swap-backed again and keeps it (nothing
    freed); the next MADV_PAGEOUT swaps it out whole (thp_swpout)."""
    m = System(ram="64M")
    m.swapon("64M", "block")
    p, a = m.spawn_with_thp()
    p.madvise(a, 2 * MiB, "free")
    p.write(a, 9)
    flags = m.kpageflags([p.pfn_at(a)])[0]
    assert not flags >> KPF["SWAPBACKED"] & 1
    v0 = m.vmstat()
    p.madvise(a, 2 * MiB, "pageout")
    assert _delta(m, v0) == {"thp_split_pmd": 1} and m.vmstat()["pglazyfreed"] == 0
    head = p.pfn_at(a)
    assert m.folio(head).order == 9 and m.kpageflags([head])[0] >> KPF["SWAPBACKED"] & 1
    v0 = m.vmstat()
    p.madvise(a, 2 * MiB, "pageout")
    assert _delta(m, v0) == {"pswpout": 512, "thp_swpout": 1}
    assert p.read(a) == 9 and m.check() == []


def test_pageout_of_lazyfree_and_normal_small_pages() -> None:
    """lazyfree_small_pageout_block: MADV_FREE of 10 pages splits the THP, the drain makes
    them lazy-free; MADV_PAGEOUT of 20 discards those 10 and swaps the next 10; reading
    them back gives zero pages and the swapped data."""
    m = System(ram="64M")
    m.swapon("64M", "block")
    p, a = m.spawn_with_thp()
    p.madvise(a, 40 * KiB, "free")
    m.lru_add_drain()
    v0 = m.vmstat()
    p.madvise(a, 80 * KiB, "pageout")
    assert (m.vmstat()["pglazyfreed"] - v0["pglazyfreed"], _delta(m, v0)) == (
        10, {"pswpout": 10})
    assert [e.swapped for e in p.pagemap(a, 20)] == [False] * 10 + [True] * 10
    assert [p.read(a + i * 4 * KiB) for i in (0, 9, 10, 19)] == [
        0, 0, (a >> 12) + 11, (a >> 12) + 20]
    assert p.lookup(a).kind == "zero" and m.check() == []
