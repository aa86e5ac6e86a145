"""The claims of chapters/03-folios.md, checked through the same pyfolio calls."""

from __future__ import annotations

import pytest

import pyfolio.include.linux.mm
from conftest import ROOT, glued
from pyfolio import KiB, MiB, System
from pyfolio.include.linux.mm import folio_nr_pages, folio_order, folio_page_idx, page_folio
from pyfolio.sim.memmap import PG
from pyfolio.mm.page_alloc import __free_pages, alloc_pages
from pyfolio.fs.proc.page import KPF

_free = __free_pages

CHAPTER = ROOT / "chapters/03-folios.md"


def test_compound_page_head_and_tails() -> None:
    m = System(ram="16M", thp="always", seed=0)
    M = m.machine
    head = alloc_pages(M, 2)
    assert head % 4 == 0 and M.mem.test(head, PG.head)
    for pfn in range(head + 1, head + 4):
        assert int(M.mem.compound_head[pfn]) == head and int(M.mem._refcount[pfn]) == 0
        assert not M.mem.test(pfn, PG.head)
    f = page_folio(M, head + 3)
    assert (f.pfn, folio_order(f), folio_nr_pages(f)) == (head, 2, 4)
    assert folio_page_idx(f, head + 3) == 3
    _free(M, head, 2)
    assert m.check() == []


def test_folio_api_names() -> None:
    names = set(pyfolio.include.linux.mm.__all__)
    assert {"folio_order", "folio_nr_pages", "folio_ref_count", "folio_mapcount",
            "folio_expected_ref_count", "folio_ref_freeze", "folio_maybe_dma_pinned"} <= names


def test_thp_is_order9_with_kpageflags_and_faults_make_only_orders_0_and_9() -> None:
    m = System(ram="16M", thp="always", seed=0)
    p = m.spawn()
    a, b = p.mmap(2 * MiB), p.mmap(64 * KiB)
    p.touch(a)
    p.touch(b)
    thp, small = p.folio_at(a), p.folio_at(b)
    assert thp is not None and small is not None
    assert (thp.order, thp.nr_pages, small.order) == (9, 512, 0)
    flags = m.kpageflags([thp.pfn, thp.pfn + 1, small.pfn])
    names = [[k for k in ("COMPOUND_HEAD", "COMPOUND_TAIL", "THP") if f >> KPF[k] & 1]
             for f in flags]
    assert names == [["COMPOUND_HEAD", "THP"], ["COMPOUND_TAIL", "THP"], []]
    orders = {p.folio_at(x).order for x in range(a, a + 2 * MiB, 64 * KiB)}  # type: ignore[union-attr]
    orders |= {p.folio_at(x).order for x in range(b, b + 64 * KiB, 4 * KiB)}  # type: ignore[union-attr]
    assert orders == {0, 9}
    assert m.check() == []


def test_heads_and_tails_player_places_each_folio_on_its_natural_alignment() -> None:
    from functools import partial

    from pyfolio.views import record

    m = System(ram="16M", thp="always", seed=0)
    frames = record(m, [(f"o{o}", partial(alloc_pages, m.machine, o)) for o in (2, 3, 0, 4)],
                    pfns=range(0, 64))
    assert len(frames) == 5
    last = frames[-1].frames
    for h, o in ((4, 2), (8, 3), (16, 4), (1, 0)):
        assert set(last.head[h:h + (1 << o)]) == {h} and set(last.order[h:h + (1 << o)]) == {o}
        __free_pages(m.machine, h, o)
    assert frames[1].frames.kind[4:8] == ("folio",) * 4 and frames[1].frames.kind[8] == "free"
    assert m.check() == []


@pytest.mark.notebook
@pytest.mark.xdist_group("03-folios")  # the chapter's stem: same worker as its notebook test
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    from functools import partial

    from pyfolio.sim.units import HPAGE_PMD_ORDER, PAGE_SIZE
    from pyfolio.views import record

    g = glued(CHAPTER)
    m = System(ram="16M", thp="always", seed=0)
    M = m.machine
    head = alloc_pages(M, 2)
    tail = int(g["ch03_tail"], 16)
    f = page_folio(M, tail)
    assert int(g["ch03_head"], 16) == head == f.pfn
    assert head < tail < head + folio_nr_pages(f)
    assert (g["ch03_order"], g["ch03_nr"]) == (folio_order(f), folio_nr_pages(f))
    assert g["ch03_idx"] == folio_page_idx(f, tail) == tail - head
    _free(M, head, 2)
    p = m.spawn()
    a, b = p.mmap(2 * MiB), p.mmap(64 * KiB)
    p.touch(a)
    p.touch(b)
    thp, small = p.folio_at(a), p.folio_at(b)
    assert thp is not None and small is not None
    assert (g["ch03_thp_order"], g["ch03_thp_nr"]) == (thp.order, thp.nr_pages)
    assert g["ch03_small_order"] == small.order
    mthp_orders = range(2, HPAGE_PMD_ORDER + 1)  # order 1 excluded, up to the PMD order
    assert g["ch03_mthp_n"] == len(mthp_orders)
    assert g["ch03_mthp_min"] == (1 << mthp_orders[0]) * PAGE_SIZE // KiB
    assert g["ch03_mthp_max"] == thp.nr_pages * PAGE_SIZE // KiB
    mm = System(ram="64M", thp="madvise", seed=0)  # the 64 KiB mTHP fault
    mm.set_mthp("64kB", "madvise")
    q = mm.spawn()
    c = q.mmap(256 * KiB)
    q.madvise(c, 256 * KiB, "hugepage")
    q.touch(c, 256 * KiB)
    folios = {q.folio_at(c + i * PAGE_SIZE).pfn for i in range(64)}
    f64 = q.folio_at(c)
    assert (g["ch03_mthp_folios"], g["ch03_mthp_order"], g["ch03_mthp_ptes"]) == \
        (len(folios), f64.order, f64.mapcount) == (4, 4, 16)
    m3 = System(ram="16M", thp="always", seed=0)
    frames = record(m3, [(f"o{o}", partial(alloc_pages, m3.machine, o)) for o in (2, 3, 0, 4)],
                    pfns=range(0, 64))
    assert g["ch03_anim_frames"] == len(frames)
    last = frames[-1].frames
    heads = sorted({int(h) for h, k, o in zip(last.head, last.kind, last.order, strict=True)
                    if k == "folio" and o > 0})
    assert [int(h, 16) for h in g["ch03_anim_heads"].split(", ")] == heads
    assert all(h % (1 << int(last.order[h])) == 0 for h in heads)


@pytest.mark.notebook
@pytest.mark.xdist_group("03-folios")
def test_the_try_it_prose_quotes_the_folio_of_page_5_of_a_split_thp() -> None:
    """The inspector's page in the chapter, redone with pyfolio: a THP, then a second one
    split non-uniformly to order 0 at page 3; page 5 of the second."""
    g = glued(CHAPTER)
    m = System(ram="16M", thp="madvise", seed=0)
    p = m.spawn()
    for _ in range(2):
        a = p.mmap(2 * MiB)
        p.madvise(a, 2 * MiB, "hugepage")
        p.touch(a, 2 * MiB)
    head = p.pfn_at(a)
    assert head is not None
    m.split(head, 0, uniform=False, at=3)
    pfn = head + 5
    f = page_folio(m.machine, pfn)
    assert (int(g["ch03_w_pfn"], 16), int(g["ch03_w_head"], 16)) == (pfn, f.pfn)
    assert (g["ch03_w_order"], g["ch03_w_idx"]) == (folio_order(f), folio_page_idx(f, pfn))
    flags = m.kpageflags([pfn])[0]
    shown = [k for k in ("COMPOUND_HEAD", "COMPOUND_TAIL", "THP") if flags >> KPF[k] & 1]
    assert g["ch03_w_tail_flags"] == ", ".join(shown)
    assert g["ch03_w_max_order"] == max(page_folio(m.machine, head + i).order
                                        for i in range(512))
