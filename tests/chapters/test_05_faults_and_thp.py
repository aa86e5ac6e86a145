"""The claims of chapters/05-faults-and-thp.md, checked through the same pyfolio calls."""

from __future__ import annotations

import pytest

from conftest import ROOT, glued
from pyfolio import KiB, MiB, System
from pyfolio.sim.units import PMD_SIZE

CHAPTER = ROOT / "chapters/05-faults-and-thp.md"


def test_read_maps_zero_page_write_allocates() -> None:
    m = System(ram="64M", thp="never", seed=0)
    p = m.spawn()
    a = p.mmap(64 * KiB)
    assert p.read(a) == 0
    e = p.lookup(a)
    assert (e.kind, e.pfn, e.write) == ("zero", m.machine.zero_pfn, False)
    assert p.smaps()[0]["Rss"] == 0
    p.write(a, 42)
    assert p.lookup(a).kind == "page" and p.smaps()[0]["Rss"] == 4
    assert m.check() == []


@pytest.mark.parametrize(("policy", "advised", "level"), [
    ("always", False, "pmd"), ("always", True, "pmd"), ("madvise", False, "pte"),
    ("madvise", True, "pmd"), ("never", False, "pte"), ("never", True, "pte")])
def test_policy_table(policy: str, advised: bool, level: str) -> None:
    m = System(ram="64M", thp=policy, seed=0)
    q = m.spawn()
    b = q.mmap(2 * MiB)
    if advised:
        q.madvise(b, 2 * MiB, "hugepage")
    q.write(b, 1)
    assert q.lookup(b).level == level


def test_only_pmd_multiple_lengths_are_aligned() -> None:
    m = System(ram="64M", thp="always", seed=0)
    p = m.spawn()
    four, three = p.mmap(4 * MiB), p.mmap(3 * MiB)
    assert four % PMD_SIZE == 0 and three % PMD_SIZE != 0
    p.write(three, 1)
    assert p.lookup(three).level == "pte"
    first = -(-three // PMD_SIZE) * PMD_SIZE
    p.write(first, 1)
    assert p.lookup(first).level == "pmd"
    assert m.check() == []


def test_fragmented_fallback() -> None:
    m = System(ram="64M", thp="always", seed=0)
    m.fragment()
    p = m.spawn()
    b = p.mmap(2 * MiB)
    p.write(b, 1)
    assert p.lookup(b).level == "pte"
    assert (m.vmstat()["thp_fault_alloc"], m.vmstat()["thp_fault_fallback"]) == (0, 1)


def test_huge_zero_then_write_gets_thp_without_split() -> None:
    m = System(ram="64M", thp="always", seed=0)
    p = m.spawn()
    z = p.mmap(2 * MiB)
    p.read(z)
    r = p.lookup(z)
    assert (r.level, r.kind, r.pfn) == ("pmd", "zero", m.machine.huge_zero_pfn)
    assert p.smaps()[0]["Rss"] == 0
    p.write(z + 4 * KiB, 1)
    w = p.lookup(z)
    assert (w.level, w.kind, w.write) == ("pmd", "huge", True)
    v = m.vmstat()
    assert (v["thp_zero_page_alloc"], v["thp_fault_alloc"], v["thp_split_pmd"]) == (1, 1, 0)
    assert m.check() == []


def test_anon_huge_pages_counts_pmd_mappings_only() -> None:
    m = System(ram="64M", thp="always", seed=0)
    p = m.spawn()
    t = p.mmap(2 * MiB)
    p.touch(t)
    assert (p.smaps()[0]["Rss"], p.smaps()[0]["AnonHugePages"]) == (2048, 2048)
    p.mprotect(t + 4 * KiB, 4 * KiB, "r")
    assert sum(d["AnonHugePages"] for d in p.smaps()) == 0
    assert sum(d["Rss"] for d in p.smaps()) == 2048
    assert p.folio_at(t).order == 9  # type: ignore[union-attr]
    assert m.check() == []


def test_fault_sequence_player_zero_page_thp_then_fallback() -> None:
    from functools import partial

    from pyfolio.views import animate, draw_step, record

    m = System(ram="64M", thp="always", seed=0)
    q = m.spawn()
    r = q.mmap(4 * MiB)
    frames = record(m, [
        ("read", partial(q.read, r)), ("write", partial(q.write, r + 4 * KiB, 1)),
        ("fragment", m.fragment), ("fallback", partial(q.write, r + 2 * MiB, 1)),
        ("small", partial(q.write, r + 2 * MiB + 8 * KiB, 1)),
    ], proc=q, addr=r, length=4 * MiB)
    kinds = [f.cells.pmd_kind for f in frames]
    assert kinds == [("none", "none"), ("zero", "none"), ("huge", "none"), ("huge", "none"),
                     ("huge", "table"), ("huge", "table")]
    assert frames[4].why() == ["thp_fault_fallback", "do_anonymous_page"]
    assert frames[-1].cells.states().count("pte") == 2
    assert m.vmstat()["thp_fault_fallback"] == 1 and m.vmstat()["thp_zero_page_alloc"] == 1
    assert animate(frames, draw_step).data.count("data:image/png;base64") == 6
    assert m.check() == []


@pytest.mark.xdist_group("05-faults-and-thp")
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    from functools import partial

    from pyfolio.views import record

    g = glued(CHAPTER)
    # A read maps the zero page (no Rss); a write allocates a page.
    m = System(ram="64M", thp="never", seed=0)
    p = m.spawn()
    a = p.mmap(64 * KiB)
    assert g["ch05_read_value"] == p.read(a)
    assert g["ch05_rss_read"] == p.smaps()[0]["Rss"]
    p.write(a, 42)
    assert g["ch05_rss_write"] == p.smaps()[0]["Rss"]
    # A misaligned 3 MiB mapping: PTEs at its start, a PMD at its first 2 MiB boundary.
    m = System(ram="64M", thp="always", seed=0)
    p = m.spawn()
    p.mmap(4 * MiB)
    three = p.mmap(3 * MiB)
    p.write(three, 1)
    first = -(-three // PMD_SIZE) * PMD_SIZE
    p.write(first, 1)
    assert (g["ch05_three_level"], g["ch05_aligned_level"]) == (
        p.lookup(three).level.upper(), p.lookup(first).level.upper())
    # The huge zero page, then a THP on the first write.
    m = System(ram="64M", thp="always", seed=0)
    p = m.spawn()
    z = p.mmap(2 * MiB)
    p.read(z)
    assert g["ch05_zero_rss"] == p.smaps()[0]["Rss"]
    p.write(z + 4 * KiB, 1)
    v = m.vmstat()
    assert (g["ch05_zero_alloc"], g["ch05_zero_split"], g["ch05_zero_fault_alloc"]) == (
        v["thp_zero_page_alloc"], v["thp_split_pmd"], v["thp_fault_alloc"])
    # The fault player.
    m = System(ram="64M", thp="always", seed=0)
    q = m.spawn()
    r = q.mmap(4 * MiB)
    frames = record(m, [
        ("read", partial(q.read, r)), ("write", partial(q.write, r + 4 * KiB, 1)),
        ("fragment", m.fragment), ("fallback", partial(q.write, r + 2 * MiB, 1)),
        ("small", partial(q.write, r + 2 * MiB + 8 * KiB, 1)),
    ], proc=q, addr=r, length=4 * MiB)
    assert g["ch05_anim_frames"] == len(frames)
    assert g["ch05_anim_fallback_why"] == ", ".join(frames[4].why())
    assert g["ch05_anim_small"] == frames[-1].cells.states().count("pte")
    # AnonHugePages counts PMD mappings only: mprotect splits the PMD, Rss stays.
    m = System(ram="64M", thp="always", seed=0)
    p = m.spawn()
    t = p.mmap(2 * MiB)
    p.touch(t)
    assert g["ch05_ahp_before"] == p.smaps()[0]["AnonHugePages"]
    p.mprotect(t + 4 * KiB, 4 * KiB, "r")
    after = p.smaps()
    assert (g["ch05_ahp_after"], g["ch05_rss_after"]) == (
        sum(d["AnonHugePages"] for d in after), sum(d["Rss"] for d in after))
    assert m.check() == []


@pytest.mark.xdist_group("05-faults-and-thp")
def test_the_try_it_prose_quotes_reads_of_an_unaligned_mapping() -> None:
    """The explorer's two runs in the chapter, redone with pyfolio: policy always, a 3 MiB
    mapping, a read at offset 0 and one at its first 2 MiB boundary (fresh machines)."""
    g = glued(CHAPTER)
    m = System(ram="64M", thp="always", seed=0)
    p = m.spawn()
    a = p.mmap(3 * MiB)
    p.read(a)
    e = p.lookup(a)
    assert g["ch05_w_start"] == f"{e.level.upper()} entry of kind {e.kind}"
    m = System(ram="64M", thp="always", seed=0)
    p = m.spawn()
    a = p.mmap(3 * MiB)
    boundary = -(-a // PMD_SIZE) * PMD_SIZE
    p.read(boundary)
    e = p.lookup(boundary)
    assert g["ch05_w_offset"] == (boundary - a) // KiB
    assert g["ch05_w_boundary"] == f"{e.level.upper()} entry of kind {e.kind}"
    assert g["ch05_w_zero_alloc"] == m.vmstat()["thp_zero_page_alloc"]
    assert g["ch05_w_ahp"] == sum(d["AnonHugePages"] for d in p.smaps())
