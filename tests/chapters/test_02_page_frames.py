"""The claims of chapters/02-page-frames.md, checked through the same pyfolio calls."""

from __future__ import annotations

import pytest

from conftest import ROOT, glued
from pyfolio import MiB, System
from pyfolio.mm.page_alloc import __free_pages, alloc_pages, buddyinfo, nr_free_pages

_free = __free_pages  # module-level alias, as the chapter calls it

CHAPTER = ROOT / "chapters/02-page-frames.md"


def test_one_struct_page_per_frame_and_biased_mapcount() -> None:
    m = System(ram="16M", thp="always", seed=0)
    M = m.machine
    assert M.mem.nr == M.nr_ram == 4096
    assert int(M.mem._refcount[0]) == 1 and int(M.mem._mapcount[1]) == -1


def test_boot_free_lists() -> None:
    M = System(ram="16M").machine
    assert buddyinfo(M) == [1] * 10 + [3]
    assert nr_free_pages(M) == M.nr_ram - 1


def test_second_order0_allocation_splits_and_free_merges() -> None:
    m = System(ram="16M", thp="always", seed=0)
    M = m.machine
    boot = buddyinfo(M)
    x = alloc_pages(M, 0)
    y = alloc_pages(M, 0)
    assert (x, y) == (1, 2)
    assert buddyinfo(M)[:2] == [1, 0]
    mark = M.trace.mark()
    _free(M, y, 0)
    ev = M.trace.since(mark)[-1]
    assert (ev.name, ev.arg("pfn"), ev.arg("order")) == ("mm_page_free", 2, 1)
    _free(M, x, 0)
    assert buddyinfo(M) == boot
    assert m.check() == []


def test_fragmented_machine_falls_back_to_4k_then_recovers() -> None:
    m = System(ram="16M", thp="always", seed=0)
    before = nr_free_pages(m.machine)
    held = m.fragment()
    assert held == 8 and nr_free_pages(m.machine) == before - held
    assert buddyinfo(m.machine)[9:] == [0, 0]
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.write(a, 1)
    assert p.lookup(a).level == "pte"
    assert m.vmstat()["thp_fault_fallback"] == 1 and m.vmstat()["thp_fault_alloc"] == 0
    m.defragment()
    q = m.spawn()
    b = q.mmap(2 * MiB)
    q.write(b, 1)
    assert q.lookup(b).level == "pmd" and m.vmstat()["thp_fault_alloc"] == 1
    assert m.check() == []


def test_buddy_player_splits_an_order2_block_and_merges_it_back() -> None:
    from functools import partial

    import numpy as np

    from pyfolio.mm.page_alloc import __free_pages, alloc_pages, buddyinfo
    from pyfolio.views import animate, draw_step, record

    mb = System(ram="16M", thp="always", seed=0)
    M = mb.machine
    boot = buddyinfo(M)
    frames = record(mb, [
        ("a0", partial(alloc_pages, M, 0)), ("a1", partial(alloc_pages, M, 0)),
        ("a2", partial(alloc_pages, M, 1)), ("f2", partial(__free_pages, M, 4, 1)),
        ("f1", partial(__free_pages, M, 2, 0)), ("f0", partial(__free_pages, M, 1, 0)),
    ], pfns=range(0, 64))
    c3 = frames[3].frames
    assert c3.kind[4:8] == ("folio", "folio", "free", "free") and c3.order[4] == 1
    assert (int(c3.free_head[6]), int(c3.free_order[6])) == (6, 1)
    assert (int(c3.free_head[3]), int(c3.free_order[3])) == (3, 0)
    first, last = frames[0].frames, frames[-1].frames
    assert first.kind == last.kind and np.array_equal(first.free_head, last.free_head)
    assert buddyinfo(M) == boot and mb.check() == []
    assert animate(frames, draw_step).data.count("data:image/png;base64") == 7


@pytest.mark.notebook
@pytest.mark.xdist_group("02-page-frames")  # the chapter's stem: same worker as its notebook test
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    from functools import partial

    from pyfolio.views import record

    g = glued(CHAPTER)
    m = System(ram="16M", thp="always", seed=0)
    M = m.machine
    assert (g["ch02_frames"], g["ch02_memmap_len"]) == (M.nr_ram, M.mem.nr)
    assert g["ch02_zero_refcount"] == int(M.mem._refcount[M.zero_pfn])
    assert g["ch02_unmapped"] == int(M.mem._mapcount[1])
    boot = buddyinfo(M)
    assert (g["ch02_boot_top"], g["ch02_max_order"]) == (boot[-1], len(boot) - 1)
    # below the first max-order block: one block of each lower order, after the zero page
    low = [order for order, n in enumerate(boot[:-1]) if n == 1]
    assert low == list(range(len(boot) - 1))
    assert g["ch02_low_range"] == f"{M.zero_pfn + 1}..{(1 << (len(boot) - 1)) - 1}"
    assert (g["ch02_low_top"], g["ch02_low_top_frames"]) == (low[-1], 1 << low[-1])
    assert sum(1 << o for o in low) == (1 << (len(boot) - 1)) - 1 - M.zero_pfn
    # two order-0 allocations, the second freed: it merges with its buddy
    x = alloc_pages(M, 0)
    y = alloc_pages(M, 0)
    mark = M.trace.mark()
    _free(M, y, 0)
    freed = M.trace.since(mark)[-1]
    _free(M, x, 0)
    assert (int(g["ch02_x"], 16), int(g["ch02_y"], 16)) == (x, y)
    assert int(g["ch02_buddy"], 16) == y ^ 1
    merged = (int(g["ch02_merged_pfn"], 16), g["ch02_merged_order"])
    assert merged == (freed.arg("pfn"), freed.arg("order"))
    # the player: a fresh machine, alloc 0, 0, 1 then free in reverse order
    mb = System(ram="16M", thp="always", seed=0)
    MB = mb.machine
    z = int(g["ch02_z"], 16)
    frames = record(mb, [
        ("a0", partial(alloc_pages, MB, 0)), ("a1", partial(alloc_pages, MB, 0)),
        ("a2", partial(alloc_pages, MB, 1)), ("f2", partial(__free_pages, MB, z, 1)),
        ("f1", partial(__free_pages, MB, y, 0)), ("f0", partial(__free_pages, MB, x, 0)),
    ], pfns=range(0, 64))
    assert g["ch02_anim_frames"] == len(frames)
    assert frames[3].frames.head[z] == z and frames[3].frames.order[z] == 1
    pair = frames[3].frames
    assert int(g["ch02_pair_buddy"], 16) == int(pair.free_head[6])
    assert g["ch02_pair_buddy_order"] == int(pair.free_order[6])
    assert int(g["ch02_final_o2"], 16) == int(frames[-1].frames.free_head[4])
    # fragmentation: the same machine as the chapter's (after its buddy experiment)
    before = nr_free_pages(M)
    held = m.fragment()
    after = nr_free_pages(M)
    assert g["ch02_held"] == held
    assert g["ch02_free_pct"] == f"{100 * after / before:.1f}"
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.write(a, 1)
    assert g["ch02_fallback"] == m.vmstat()["thp_fault_fallback"]
    assert g["ch02_level"] == p.lookup(a).level.upper()


@pytest.mark.notebook
@pytest.mark.xdist_group("02-page-frames")
def test_the_try_it_prose_quotes_the_buddy_allocator() -> None:
    """The explorer's state in the chapter, redone with pyfolio: on a 4 MiB machine an
    order-3 block, fragment(), then an order-9 request that fails with -ENOMEM."""
    from pyfolio.sim.errors import MmError

    g = glued(CHAPTER)
    m = System(ram="4M", thp="never", seed=0)
    M = m.machine
    block = alloc_pages(M, 3)
    held = m.fragment()
    with pytest.raises(MmError) as exc:
        alloc_pages(M, 9)
    info = buddyinfo(M)
    assert int(g["ch02_w_block"], 16) == block and g["ch02_w_held"] == held
    assert g["ch02_w_free"] == nr_free_pages(M)
    assert g["ch02_w_largest"] == max(o for o, n in enumerate(info) if n)
    assert g["ch02_w_msg"] == f"alloc_pages(order 9) failed: {exc.value}"
