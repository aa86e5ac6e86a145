"""The claims of chapters/14-swapping-large-folios.md, checked through the same pyfolio calls.

The kernel behaviour itself (allocation order, swap-in, fork, swapoff, reclaim) is tested in
tests/test_swap.py and against the kernel in tests/test_kernel_lab_swap.py; this file checks
what the chapter says and glues.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import ROOT, glued
from pyfolio import KiB, MiB, System
from pyfolio.include.linux.mm import folio_expected_ref_count
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.huge_memory_split import split_mapped_folio
from pyfolio.sim.errors import MmError
from pyfolio.views import record_swap, swap_cells
from pyfolio.widgets import swap_explorer

CHAPTER = ROOT / "chapters/14-swapping-large-folios.md"
GROUP = pytest.mark.xdist_group("14-swapping-large-folios")


def _paged_out(kind: str) -> tuple[System, Any, int, int]:
    m = System(ram="64M")
    m.swapon("64M", kind)
    p, a = m.spawn_with_thp()
    old = p.pfn_at(a)
    p.madvise(a, 2 * MiB, "pageout")
    return m, p, a, old


def _fault(m: System, p: Any, a: int, page: int, write: bool = False) -> tuple[int, int]:
    mark = m.trace.mark()
    if write:
        p.write(a + page * 4 * KiB, 7)
    else:
        p.read(a + page * 4 * KiB)
    ev = [e for e in m.trace.since(mark) if e.name == "do_swap_page"][0]
    return ev.change("nr_pages"), m.swaps()[0]["Used"]


@GROUP
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    g = glued(CHAPTER)
    areas = {}
    for kind in ("file", "block", "zram"):
        m = System(ram="64M")
        m.swapon("64M", kind)
        areas[kind] = m.swaps()[0]
    assert (g["ch14_size_kb"], g["ch14_prio"]) == (areas["file"]["Size"],
                                                    areas["file"]["Priority"])
    assert (g["ch14_type_file"], g["ch14_type_block"]) == ("file", "partition")

    out = {k: _paged_out(k) for k in ("file", "block", "zram")}
    (mf, pf, af, _), (mb, pb, ab, oldb) = out["file"], out["block"]
    offf = [e.swap_offset for e in pf.pagemap(af, 512)]
    offb = [e.swap_offset for e in pb.pagemap(ab, 512)]
    assert (g["ch14_file_writes"], g["ch14_block_writes"], g["ch14_block_pages"]) == (
        len(mf.swap_area.bios), len(mb.swap_area.bios), mb.swap_area.bios[0][2])
    assert (g["ch14_file_off0"], g["ch14_file_off1"], g["ch14_file_off511"]) == (
        offf[0], offf[1], offf[511])
    assert (g["ch14_block_off0"], g["ch14_block_off511"]) == (offb[0], offb[511])
    assert g["ch14_swapped"] == sum(e.swapped for e in pf.pagemap(af, 512)) == 512
    assert g["ch14_vmswap"] == pf.status()["VmSwap"] == g["ch14_swap_kb"] == 2048

    cached = mb.folio(oldb)
    assert (g["ch14_cache_ref"], g["ch14_cache_map"], g["ch14_cache_exp"]) == (
        cached.refcount, cached.mapcount, folio_expected_ref_count(cached))

    back = {k: _fault(m, p, a, 5) for k, (m, p, a, _) in out.items()}
    assert g["ch14_block_mapped"] == back["block"][0] == 512
    assert g["ch14_file_mapped"] == back["file"][0] == 1
    assert g["ch14_zram_used"] == back["zram"][1] == 2044

    assert g["ch14_w_block_used"] == _fault(*_paged_out("block")[:3], 3, write=True)[1] == 0
    assert g["ch14_w_file_used"] == _fault(*_paged_out("file")[:3], 3, write=True)[1]
    m4, p4, a4, _ = _paged_out("zram")
    m4.set_mthp("64kB", "madvise")
    v0 = m4.vmstat()["pswpin"]
    assert g["ch14_z64_mapped"] == _fault(m4, p4, a4, 3)[0] == 16
    assert g["ch14_z64_pswpin"] == m4.vmstat()["pswpin"] - v0

    m5, p5, a5, _ = _paged_out("block")
    assert g["ch14_ra_freed"] == m5.reclaim(512)
    v0 = m5.vmstat()
    for i in range(512):
        p5.read(a5 + i * 4 * KiB)
    v1 = m5.vmstat()
    assert (g["ch14_ra_pswpin"], g["ch14_ra_major"], g["ch14_ra_hit"]) == tuple(
        v1[k] - v0[k] for k in ("pswpin", "pgmajfault", "swap_ra_hit"))
    assert g["ch14_lab_agree"] == g["ch14_lab_steps"] > 0


def test_the_maps_show_a_cluster_of_its_own_only_on_the_block_device() -> None:
    cb = swap_cells(_paged_out("block")[0].swap_area)
    cf = swap_cells(_paged_out("file")[0].swap_area)
    assert cb.cluster_orders == (0, 9) and cf.cluster_orders == (0, 0)
    assert cb.count("cache+pte") == cf.count("cache+pte") == 512
    assert cb.count("free") == cf.count("free") == 1024 - 512 - 1  # the header is not free


def test_a_swap_cache_thp_splits_to_order_0_only_and_nothing_changes_otherwise() -> None:
    m, p, a, _ = _paged_out("block")
    p.read(a)
    f = p.folio_at(a)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as exc:
        split_mapped_folio(m.machine, f.pfn, 4)
    assert exc.value.errname == "EINVAL" and snapshot(m.machine) == before
    assert m.trace.events[-1].arg("what") == "Cannot split swapcache folio to non-0 order"
    split_mapped_folio(m.machine, f.pfn, 0)
    piece = p.folio_at(a + 1 * MiB)
    assert piece.order == 0 and piece.refcount == 2 and folio_expected_ref_count(piece) == 2
    assert [e.swap_offset for e in p.pagemap(a, 1)] == [-1]  # mapped, not a swap entry
    assert m.swaps()[0]["Used"] == 2048 and m.check() == []


def test_the_step_through_frames() -> None:
    m = System(ram="64M")
    m.swapon("64M", "block")
    p, a = m.spawn_with_thp()
    frames = record_swap(m, p, a, [
        ("MADV_PAGEOUT", lambda: p.madvise(a, 2 * MiB, "pageout")),
        ("read page 0", lambda: p.read(a)),
        ("MADV_PAGEOUT again", lambda: p.madvise(a, 2 * MiB, "pageout")),
        ("read page 100", lambda: p.read(a + 100 * 4 * KiB)),
        ("write page 101", lambda: p.write(a + 101 * 4 * KiB, 5)),
    ])
    moved = [dict(f.moved) for f in frames]
    assert moved[1] == {"pswpout": 512, "thp_swpout": 1, "thp_split_pmd": 1}
    assert moved[2] == moved[3] == {}
    assert frames[1].slots.count("cache+pte") == frames[2].slots.count("cache") == 512
    assert frames[3].slots.count("pte") == 512
    assert moved[4] == {"pswpin": 8, "pgmajfault": 1, "swap_ra": 7}
    assert frames[4].slots.count("cache+pte") == 7 and frames[4].slots.count("cache") == 1
    assert moved[5] == {"swap_ra_hit": 1} and frames[5].slots.count("free") == 512
    assert m.check() == []


def test_the_explorer_as_the_chapter_drives_it() -> None:
    ex = swap_explorer()
    ex.kind.value = "file"
    ex.page_out()
    ex.page.value = "5"
    ex.touch(False)
    assert "from the swap cache" in ex.message.text
    assert ex.proc.lookup(ex.addr + 5 * 4 * KiB).kind == "page"
    assert ex.system.check() == []


def _shmem_paged_out(kind: str) -> tuple[System, Any, int, int]:
    m = System(ram="64M")
    m.set_shmem_thp("always")
    m.swapon("64M", kind)
    p, fd, a = m.spawn_with_shmem_thp()
    p.madvise(a, 2 * MiB, "pageout")
    return m, p, fd, a


@GROUP
def test_the_shmem_section_quotes_what_the_simulator_computes() -> None:
    """Shared memory: no fallback counted on the swap file, swap entries in the page cache
    (512 of order 0 on the file, one of order 9 at slot 512 on the loop device), no swap
    PTEs, smaps Swap 2048 and VmSwap 0; swap-in at the entry's order with the knob at never
    (order 9 from zram) and the slots freed at once; the lab's shmem steps all agree."""
    from pyfolio.kernel_lab.compare import SHMEM_SWAP_RECORDED, load_recorded

    g = glued(CHAPTER)
    mf, pf, fdf, af = _shmem_paged_out("file")
    mb, pb, fdb, ab = _shmem_paged_out("block")
    mz, pz, fdz, az = _shmem_paged_out("zram")
    assert g["ch14_shm_file_fallback"] == mf.vmstat()["thp_swpout_fallback"] == 0
    assert g["ch14_shm_file_entries"] == len(pf.swapped_entries(fdf)) == 512
    assert (g["ch14_shm_block_entry"], g["ch14_shm_block_slot"]) == \
        pb.swapped_entries(fdb)[0][1::2] == (9, 512)
    assert g["ch14_shm_swapped"] == sum(e.swapped for e in pb.pagemap(ab, 512)) == 0
    assert g["ch14_shm_swap_kb"] == pb.smaps()[0]["Swap"] == 2048
    assert g["ch14_shm_vmswap"] == pb.status()["VmSwap"] == 0
    for m, p, a in ((mf, pf, af), (mb, pb, ab), (mz, pz, az)):
        m.set_shmem_thp("never")
        p.read(a + 5 * 4 * KiB)
    assert g["ch14_shm_zram_order"] == pz.folio_at(az).order == 9
    assert g["ch14_shm_block_used"] == mb.swaps()[0]["Used"] == 0
    assert g["ch14_shm_file_used"] == mf.swaps()[0]["Used"] == 2044
    assert g["ch14_anon_block_used"] == _fault(*_paged_out("block")[:3], 5)[1] == 2048
    rec = load_recorded(SHMEM_SWAP_RECORDED)
    assert g["ch14_shm_lab_scen"] == len(rec["observations"])
    assert g["ch14_shm_lab_agree"] == g["ch14_shm_lab_steps"] == 174
