"""The claims of chapters/03-folios.md, checked through the same pyfolio calls."""

from __future__ import annotations

import pyfolio.folio
from pyfolio import KiB, MiB, System
from pyfolio.folio import folio_nr_pages, folio_order, folio_page_idx, page_folio
from pyfolio.memmap import PG
from pyfolio.page_alloc import __free_pages, alloc_pages
from pyfolio.proc import KPF

_free = __free_pages


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
    names = set(pyfolio.folio.__all__)
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
