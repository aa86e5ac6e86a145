"""Unit tests of pyfolio/trace.py: events, marks, cost counters, the enabled flag, formatting."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.sim.trace import COSTS, Event, Trace


def test_emit_numbers_events_in_order_and_keeps_args_and_changes() -> None:
    t = Trace()
    first = t.emit("do_mmap", changes={"vma": "a-b"}, length=4096, prot="rw")
    second = t.emit("do_munmap", start=1, end=2)
    assert first is not None and second is not None
    assert (first.seq, second.seq) == (0, 1)
    assert first.args == (("length", 4096), ("prot", "rw"))  # keyword order kept
    assert first.changes == (("vma", "a-b"),)
    assert second.changes == ()
    assert t.events == [first, second] and len(t) == 2 and list(t) == [first, second]
    assert (first.arg("prot"), first.arg("missing", 7), first.change("vma"),
            first.change("nope")) == ("rw", 7, "a-b", None)


def test_event_is_frozen() -> None:
    ev = Event(0, "x")
    with pytest.raises(AttributeError):
        ev.name = "y"  # type: ignore[misc]


def test_mark_since_and_names_slice_from_a_position() -> None:
    t = Trace()
    t.emit("a")
    mark = t.mark()
    assert mark == 1
    t.emit("b")
    t.emit("c")
    assert [e.name for e in t.since(mark)] == ["b", "c"]
    assert t.names(mark) == ["b", "c"] and t.names() == ["a", "b", "c"]
    assert t.since(t.mark()) == []


def test_disabled_trace_records_no_event_but_keeps_costs() -> None:
    t = Trace(enabled=False)
    assert t.emit("do_mmap", length=1) is None
    t.cost("pte_writes", 3)
    t.cost("tlb_flushes")
    assert t.events == [] and t.mark() == 0
    assert t.costs == {"pte_writes": 3, "tlb_flushes": 1}


def test_limit_caps_stored_events_without_failing() -> None:
    t = Trace(limit=2)
    for name in "abc":
        t.emit(name)
    assert t.names() == ["a", "b"]  # the third was neither stored nor built
    assert t.emit("d") is None and len(t) == 2
    t.limit = 3
    ev = t.emit("e")
    assert ev is not None and ev.seq == 2 and t.names() == ["a", "b", "e"]


def test_event_str_formats_large_ints_as_hex_and_keeps_bools_and_small_ints() -> None:
    ev = Event(3, "split_huge_pmd", (("address", 0x7F0000000000), ("nr", 512), ("freeze", True)),
               (("ptes_written", 512),))
    assert str(ev) == ("#3 split_huge_pmd(address=0x7f0000000000, nr=512, freeze=True)"
                       " -> ptes_written=512")
    assert str(Event(0, "noop")) == "#0 noop()"
    # 0xFFFFF is the boundary: it stays decimal, one more becomes hex
    assert str(Event(1, "e", (("a", 0xFFFFF), ("b", 0x100000)))) == "#1 e(a=1048575, b=0x100000)"


def test_costs_names_are_the_documented_counters() -> None:
    assert COSTS == ("pte_writes", "pmd_writes", "tlb_flushes", "pages_copied", "pages_zeroed")


def test_a_machine_traces_its_operations_and_counts_their_costs() -> None:
    m = System(ram="64M")
    p = m.spawn()
    mark = m.trace.mark()
    a = p.mmap(16 * KiB)
    p.touch(a, 8 * KiB)  # two write faults, two 4 KiB folios
    names = m.trace.names(mark)
    assert names.count("do_anonymous_page") == 2 and names[0] == "do_mmap"
    mmap_ev = m.trace.since(mark)[0]
    assert mmap_ev.arg("length") == 16 * KiB
    assert mmap_ev.change("vma") == f"{a:#x}-{a + 16 * KiB:#x}"
    assert m.trace.costs["pages_zeroed"] == 2 and m.trace.costs["pte_writes"] == 2
    # with tracing off the model still runs and still counts
    m.trace.enabled = False
    before = len(m.trace)
    p.touch(a + 8 * KiB, 4 * KiB)
    assert len(m.trace) == before and m.trace.costs["pages_zeroed"] == 3
    assert m.check() == []


def test_thp_fault_costs_one_pmd_write_and_512_zeroed_pages() -> None:
    m = System(ram="64M")
    before = m.trace.costs.copy()
    m.spawn_with_thp(2 * MiB)
    d = m.trace.costs - before
    assert d["pages_zeroed"] == 512 and d["pmd_writes"] == 1 and d["pte_writes"] == 0
