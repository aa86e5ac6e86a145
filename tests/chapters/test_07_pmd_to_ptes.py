"""The claims of chapters/07-pmd-to-ptes.md, checked through the same pyfolio calls."""

from __future__ import annotations

import pytest

from conftest import ROOT, glued
from pyfolio import KiB, MiB, System
from pyfolio.exercises.ch07_pmd_to_ptes import TRIGGERS, WhichCounters
from pyfolio.sim.memmap import PG
from pyfolio.arch.x86.pgtable import walk
from pyfolio.fs.proc.page import KPF
from pyfolio.system import Process
from pyfolio.sim.units import HPAGE_PMD_NR

CHAPTER = ROOT / "chapters/07-pmd-to-ptes.md"


def _thp() -> tuple[System, Process, int]:
    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp(4 * MiB)
    return m, p, a


def test_split_withdraws_the_deposit_and_moves_the_counts_to_the_pages() -> None:
    m, p, a = _thp()
    f = p.folio_at(a)
    assert f is not None
    assert (f.refcount, f.mapcount, f.entire_mapcount) == (1, 1, 1)
    assert set(f.page_mapcounts()) == {0}
    deposited = dict(p.mm.pmd_huge_pte)
    assert len(deposited) == 1
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    assert walk(m.machine, p.mm.pgd, a).tables[-1][1] == next(iter(deposited.values()))
    assert p.mm.pmd_huge_pte == {}
    assert (f.order, f.refcount, f.mapcount, f.entire_mapcount) == (9, 512, 512, 0)
    assert set(f.page_mapcounts()) == {1}
    v = m.vmstat()
    assert (v["thp_split_pmd"], v["thp_split_page"]) == (1, 0)
    ptes = [p.lookup(a + i * 4 * KiB) for i in range(HPAGE_PMD_NR)]
    assert [e.pfn for e in ptes] == list(range(f.pfn, f.pfn + HPAGE_PMD_NR))
    assert [e.write for e in ptes].count(False) == 1 and not ptes[1].write
    assert all(e.dirty and e.accessed for e in ptes)
    flags = m.kpageflags(range(f.pfn, f.pfn + HPAGE_PMD_NR))
    assert all(m.machine.mem.test(f.pfn + i, PG.anon_exclusive) for i in range(HPAGE_PMD_NR))
    assert all(x >> KPF["OWNER_2"] & 1 for x in flags)  # the folio's PG_owner_2 on every page
    assert flags[0] >> KPF["THP"] & 1 and flags[0] >> KPF["COMPOUND_HEAD"] & 1
    assert sum(s["AnonHugePages"] for s in p.smaps()) == 0
    assert sum(s["Rss"] for s in p.smaps()) == 2048
    assert m.check() == []


def test_clean_old_readonly_pmd_gives_clean_old_readonly_ptes() -> None:
    m, p, a = _thp()
    p.madvise(a, 2 * MiB, "free")
    p.mprotect(a, 2 * MiB, "r")
    assert m.vmstat()["thp_split_pmd"] == 0
    p.munmap(a + 2 * MiB - 4 * KiB, 4 * KiB)
    ptes = [p.lookup(a + i * 4 * KiB) for i in range(HPAGE_PMD_NR - 1)]
    assert all(e.level == "pte" and not (e.write or e.dirty or e.accessed) for e in ptes)
    assert m.check() == []


@pytest.mark.parametrize(("trigger", "counters"), [
    ("mprotect", (1, 0, 0)), ("munmap", (1, 0, 1)), ("dontneed", (1, 0, 1)),
    ("free", (1, 1, 0)), ("cow", (1, 0, 0)), ("zero", (1, 0, 0)), ("dontneed-all", (0, 0, 0))])
def test_trigger_table(trigger: str, counters: tuple[int, int, int]) -> None:
    runs = [ex for ex in (WhichCounters(s) for s in range(120)) if ex.trigger == trigger]
    assert trigger in TRIGGERS and {ex.answer[:3] for ex in runs} == {counters}
    # the fourth answer: pages still writable without a fault (the writer's, for cow)
    writable = {"mprotect": lambda n: 512 - n, "munmap": lambda n: 512 - n,
                "dontneed": lambda n: 512 - n, "free": lambda n: 512, "cow": lambda n: 1,
                "zero": lambda n: 0, "dontneed-all": lambda n: 0}[trigger]
    assert all(ex.answer[3] == writable(ex.pages) for ex in runs)


def test_cow_after_fork_splits_only_the_writer() -> None:
    m, p, a = _thp()
    c = p.fork()
    f = p.folio_at(a)
    assert f is not None
    c.write(a + 8 * KiB, 42)
    assert p.lookup(a).level == "pmd" and c.lookup(a).level == "pte"
    new = c.folio_at(a + 8 * KiB)
    assert new is not None and new.order == 0 and new.pfn != f.pfn + 2
    assert (f.order, f.mapcount, f.refcount, f.entire_mapcount) == (9, 512, 512, 1)
    assert m.kpagecount([f.pfn + 1, f.pfn + 2]) == [2, 1]
    assert sum(s["AnonHugePages"] for s in p.smaps()) == 2048
    assert sum(s["AnonHugePages"] for s in c.smaps()) == 0
    assert m.check() == []


def test_huge_zero_pmd_becomes_512_zero_page_ptes() -> None:
    m = System(ram="64M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    assert p.read(a) == 0 and p.lookup(a).kind == "zero" and p.lookup(a).level == "pmd"
    p.mprotect(a, 4 * KiB, "r")
    ptes = [p.lookup(a + i * 4 * KiB) for i in range(HPAGE_PMD_NR)]
    assert all(e.level == "pte" and e.pfn == m.machine.zero_pfn and not e.write for e in ptes)
    assert m.vmstat()["thp_split_pmd"] == 1
    assert sum(s["Rss"] for s in p.smaps()) == 0
    assert m.check() == []


def test_partial_munmap_flags_a_thp_queued_since_its_fault() -> None:
    """deferred_split_folio(folio, false) at the fault (shrink_underused on), then
    deferred_split_folio(folio, true) at the partial unmap: PG_partially_mapped and one
    thp_deferred_split_page."""
    m, p, a = _thp()
    f = p.folio_at(a)
    assert f is not None
    assert f.pfn in m.machine.deferred_split_queue
    assert not m.machine.mem.test(f.pfn, PG.partially_mapped)
    p.munmap(a + 1 * MiB, 1 * MiB)
    assert (f.order, f.mapcount, f.refcount) == (9, 256, 256)
    assert f.pfn in m.machine.deferred_split_queue
    assert m.machine.mem.test(f.pfn, PG.partially_mapped)
    stats = m.mthp_stats("2048kB")
    assert (stats["split_deferred"], stats["nr_anon_partially_mapped"]) == (1, 1)
    g = glued(CHAPTER)
    assert (g["ch07_half_sd"], g["ch07_half_napm"]) == (1, 1)
    assert m.vmstat()["thp_deferred_split_page"] == 1 and m.vmstat()["thp_split_page"] == 0
    assert m.check() == []


def test_remap_viewer_munmap_part_fills_the_table_then_unmaps_half() -> None:
    from pyfolio.widgets import pmd_remap_viewer

    v = pmd_remap_viewer("munmap part")
    assert len(v.frames) == 11
    v.step.value = 5
    f = v.frames[5]
    assert f.label == "__split_huge_pmd_locked(): 256 of 512 PTEs written"
    assert f.cells.states().count("pte") == 256 and f.cells.states().count("none") == 256
    assert (v.frames[0].pmd_kind, v.frames[-1].pmd_kind) == ("huge", "table")
    assert v.frames[-1].counts.mapcount == 256 and v.frames[-1].counts.refcount == 256
    assert "munmap" in v.message.text
    fig = v.static_figure()
    assert "before: start" in [t.get_text() for t in fig.texts]
    assert v.system.check() == []


@pytest.mark.xdist_group("07-pmd-to-ptes")
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    g = glued(CHAPTER)
    m, p, a = _thp()
    f = p.folio_at(a)
    assert f is not None
    deposited = next(iter(p.mm.pmd_huge_pte.values()))
    assert (g["ch07_ref0"], g["ch07_map0"], g["ch07_entire0"], g["ch07_page0"]) == (
        f.refcount, f.mapcount, f.entire_mapcount, f.page_mapcounts()[0])
    assert g["ch07_deposit"] == f"{deposited:#x}"
    assert g["ch07_ahp0"] == sum(s["AnonHugePages"] for s in p.smaps())
    ref0 = f.refcount
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    assert g["ch07_table"] == f"{walk(m.machine, p.mm.pgd, a).tables[-1][1]:#x}"
    v = m.vmstat()
    assert (g["ch07_split_pmd"], g["ch07_split_page"]) == (v["thp_split_pmd"], v["thp_split_page"])
    assert (g["ch07_order_after"], g["ch07_ref1"], g["ch07_map1"], g["ch07_entire1"]) == (
        f.order, f.refcount, f.mapcount, f.entire_mapcount)
    assert g["ch07_page1"] == f.page_mapcounts()[0]
    assert g["ch07_refadd"] == f.refcount - ref0
    assert g["ch07_ahp1"] == sum(s["AnonHugePages"] for s in p.smaps())
    assert g["ch07_rss"] == sum(s["Rss"] for s in p.smaps())
    rows: dict[str, tuple[int, int, int]] = {}
    for seed in range(200):
        ex = WhichCounters(seed)
        rows.setdefault(ex.trigger, ex.answer[:3])
    assert set(rows) == set(TRIGGERS)
    for kind, answer in rows.items():
        key = kind.replace("-", "_")
        assert (g[f"ch07_t_{key}_pmd"], g[f"ch07_t_{key}_page"], g[f"ch07_t_{key}_def"]) == answer
