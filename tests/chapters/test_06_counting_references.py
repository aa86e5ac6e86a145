"""The claims of chapters/06-counting-references.md, checked through the same pyfolio calls."""

from __future__ import annotations

import errno

import pytest

from conftest import ROOT, glued
from pyfolio import (
    KiB,
    MiB,
    MmError,
    Process,
    System,
    folio_expected_ref_count,
    folio_maybe_dma_pinned,
)
from pyfolio.mm.huge_memory_split import can_split_folio, split_mapped_folio

CHAPTER = ROOT / "chapters/06-counting-references.md"


def _thp() -> tuple[System, Process, int]:
    m = System(ram="64M", thp="always", seed=0)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.touch(a)
    return m, p, a


def test_fork_cow_exit_counts() -> None:
    m, p, a = _thp()
    f = p.folio_at(a)
    assert (f.refcount, f.mapcount, f.entire_mapcount) == (1, 1, 1)
    c = p.fork()
    assert (f.refcount, f.mapcount, f.entire_mapcount) == (2, 2, 2)
    assert m.kpagecount([f.pfn])[0] == 2
    c.write(a + 8 * KiB, 7)
    assert m.vmstat()["thp_split_pmd"] == 1
    assert (f.refcount, f.mapcount, f.entire_mapcount) == (512, 512, 1)
    assert f.page_mapcounts()[2] == 0 and f.page_mapcounts().count(1) == 511
    assert c.folio_at(a + 8 * KiB).order == 0
    assert (p.smaps()[0]["AnonHugePages"], c.smaps()[0]["AnonHugePages"]) == (2048, 0)
    assert folio_expected_ref_count(f) == f.refcount
    c.exit()
    assert (f.refcount, f.mapcount, f.entire_mapcount) == (1, 1, 1)
    assert m.check() == []


def test_pins_large_and_small() -> None:
    m, p, a = _thp()
    f = p.folio_at(a)
    p.pin(a + 12 * KiB, 4 * KiB)
    assert (f.refcount, f.pincount, folio_expected_ref_count(f)) == (2, 1, 1)
    assert folio_maybe_dma_pinned(f)
    ms = System(ram="16M", thp="never", seed=0)
    q = ms.spawn()
    s = q.mmap(64 * KiB)
    q.write(s, 1)
    q.pin(s, 4 * KiB)
    small = q.folio_at(s)
    assert small is not None and small.refcount == 1025 and folio_maybe_dma_pinned(small)


def test_pinned_folio_cannot_be_split_and_state_is_unchanged() -> None:
    m, p, a = _thp()
    f = p.folio_at(a)
    p.pin(a + 12 * KiB, 4 * KiB)
    assert can_split_folio(f, 0) == (False, 0)
    before = (m.machine.mem._refcount.copy(), p.lookup(a).raw)
    with pytest.raises(MmError) as exc:
        split_mapped_folio(m.machine, f.pfn, 0)
    assert exc.value.errno == errno.EAGAIN
    assert (before[0] == m.machine.mem._refcount).all() and before[1] == p.lookup(a).raw
    assert m.vmstat()["thp_split_page_failed"] == 1
    p.unpin(a + 12 * KiB, 4 * KiB)
    split_mapped_folio(m.machine, f.pfn, 0)
    assert p.folio_at(a).order == 0 and m.vmstat()["thp_split_page"] == 1
    assert m.check() == []


def test_fork_copies_a_pinned_thp() -> None:
    m, p, b = _thp()
    p.pin(b, 4 * KiB)
    c = p.fork()
    big = p.folio_at(b)
    assert (big.order, big.mapcount, big.refcount) == (9, 512, 513)
    assert all(c.folio_at(b + i * 4 * KiB).order == 0 for i in (0, 2, 511))
    assert m.vmstat()["thp_split_pmd"] == 1
    assert m.check() == []


def test_refcount_watcher_matches_the_chapter_table_and_animates() -> None:
    from functools import partial

    from pyfolio.views import animate, count_panel
    from pyfolio.widgets import fork_cow_scenario, refcount_watcher

    w = refcount_watcher(partial(fork_cow_scenario, pin_before_fork=False))
    w.run()
    assert w.done and len(w.frames) == 7
    c = [(f.counts.refcount, f.counts.mapcount, f.counts.entire_mapcount, f.counts.pincount)
         for f in w.frames[1:]]
    assert c == [(1, 1, 1, 0), (2, 2, 2, 0), (512, 512, 1, 0), (1, 1, 1, 0), (2, 1, 1, 1),
                 (1, 1, 1, 0)]
    assert w.frames[3].why() == ["do_huge_pmd_wp_page", "split_huge_pmd", "wp_page_copy"]
    assert w.frames[5].why() == ["do_huge_pmd_wp_page", "pin_user_pages"]
    assert w.slider.value == 6 and "parent unpins" in w.label.value
    html = animate(w.frames, count_panel).data
    assert html.count("data:image/png;base64") == 7
    assert w.scenario.system.check() == []


@pytest.mark.xdist_group("06-counting-references")
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    from functools import partial

    from pyfolio.widgets import fork_cow_scenario, refcount_watcher

    g = glued(CHAPTER)
    m, p, a = _thp()
    f = p.folio_at(a)
    assert (g["ch06_ref0"], g["ch06_map0"], g["ch06_exp0"]) == (
        f.refcount, f.mapcount, folio_expected_ref_count(f))
    c = p.fork()
    assert (g["ch06_ref1"], g["ch06_map1"], g["ch06_ent1"]) == (
        f.refcount, f.mapcount, f.entire_mapcount)
    c.write(a + 8 * KiB, 7)
    assert (g["ch06_ref2"], g["ch06_map2"], g["ch06_ent2"]) == (
        f.refcount, f.mapcount, f.entire_mapcount)
    assert g["ch06_split_pmd"] == m.vmstat()["thp_split_pmd"]
    assert g["ch06_page2"] == f.page_mapcounts()[2]
    assert g["ch06_child_ptes"] == f.page_mapcounts().count(1)
    c.exit()
    p.pin(a + 12 * KiB, 4 * KiB)
    assert (g["ch06_pin_ref"], g["ch06_pin_pc"], g["ch06_pin_exp"]) == (
        f.refcount, f.pincount, folio_expected_ref_count(f))
    ms = System(ram="16M", thp="never", seed=0)
    q = ms.spawn()
    s = q.mmap(64 * KiB)
    q.write(s, 1)
    q.pin(s, 4 * KiB)
    assert g["ch06_small_ref"] == q.folio_at(s).refcount
    with pytest.raises(MmError) as exc:
        split_mapped_folio(m.machine, f.pfn, 0)
    assert g["ch06_errno"] == exc.value.errno
    assert g["ch06_split_failed"] == m.vmstat()["thp_split_page_failed"]
    p.unpin(a + 12 * KiB, 4 * KiB)
    split_mapped_folio(m.machine, f.pfn, 0)
    pieces = [p.folio_at(a + i * 4 * KiB) for i in range(2 * MiB // (4 * KiB))]
    assert g["ch06_pieces"] == len({q.pfn for q in pieces if q is not None})
    assert all(q is not None and q.order == 0 for q in pieces)
    w = refcount_watcher(partial(fork_cow_scenario, pin_before_fork=False))
    w.run()
    assert g["ch06_w_steps"] == len(w.scenario.steps)
    assert g["ch06_w_cow_why"] == ", ".join(w.frames[3].why())
    assert g["ch06_w_pin_why"] == ", ".join(w.frames[5].why())
    assert m.check() == [] and ms.check() == []
