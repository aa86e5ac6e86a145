"""The claims of chapters/15-the-device-as-a-driver-sees-it.md, checked through the same
pyfolio calls: hmm_range_fault() words, dmirror's read/snapshot counts and invalidation,
make_device_exclusive() and its restore, eviction on release, the player and the explorer."""

from __future__ import annotations

import pytest

from conftest import ROOT, glued
from pyfolio import KiB, MiB, MmError, System
from pyfolio.exercises import make
from pyfolio.exercises.ch15_the_device_as_a_driver_sees_it import PAGE_STATES, driver_setup
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.hmm import (
    HMM_PFN_REQ_FAULT,
    HMM_PFN_VALID,
    HMM_PFN_WRITE,
    HmmRange,
    hmm_pfn_to_pfn,
    hmm_range_fault,
)
from pyfolio.sim.errors import EFAULT, EPERM
from pyfolio.views import record
from pyfolio.widgets import driver_explorer
from pyfolio.widgets.driver_explorer import mirror_counts

CHAPTER = ROOT / "chapters/15-the-device-as-a-driver-sees-it.md"
PAGE = 4 * KiB


def _machine():
    m = System(ram="64M", thp="madvise", seed=0)
    return m, m.add_device("dmirror0", memory="16M")


def test_hmm_range_fault_reports_present_pages_and_faults_in_the_rest() -> None:
    m, _ = _machine()
    p = m.spawn()
    a = p.mmap(4 * PAGE)
    p.write(a, 10)
    p.write(a + PAGE, 11)
    # without HMM_PFN_REQ_FAULT: 0 for the two missing pages, nothing faulted
    rng = HmmRange(mm=p.mm, start=a, end=a + 4 * PAGE, hmm_pfns=[0] * 4)
    assert hmm_range_fault(rng) == 0 and rng.hmm_pfns[2:] == [0, 0]
    before = m.vmstat()["pgfault"]
    rng = HmmRange(mm=p.mm, start=a, end=a + 4 * PAGE, hmm_pfns=[0] * 4,
                   default_flags=HMM_PFN_REQ_FAULT)
    assert hmm_range_fault(rng) == 0 and m.vmstat()["pgfault"] - before == 2
    w = rng.hmm_pfns
    assert all(x & HMM_PFN_VALID for x in w)
    assert [bool(x & HMM_PFN_WRITE) for x in w] == [True, True, False, False]
    assert hmm_pfn_to_pfn(w[0]) == p.pfn_at(a)
    assert {hmm_pfn_to_pfn(x) for x in w[2:]} == {m.machine.zero_pfn}
    assert m.check() == []


def test_a_protnone_range_is_efault_and_changes_nothing() -> None:
    m, dev = _machine()
    p = m.spawn()
    a = p.mmap(4 * PAGE)
    p.mprotect(a, 4 * PAGE, "none")
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        dev.read_range(p, a, 4)
    assert e.value.errno == EFAULT and snapshot(m.machine) == before


def test_the_zap_of_one_page_drops_two_device_entries() -> None:
    m, dev = _machine()
    p = m.spawn()
    a = p.mmap(16 * PAGE)
    dev.read_range(p, a, 16)
    p.madvise(a + 4 * PAGE, PAGE, "dontneed")
    held = sorted((x - a) // PAGE for (mm, x) in dev.driver.pt if mm == p.mm.id)
    assert held == [i for i in range(16) if i not in (4, 5)]
    # the next read faults the rest of the range in from page 4: one round
    dev.read_range(p, a, 16)
    assert (dev.cpages, dev.faults) == (16, 1) and m.check() == []


def test_exclusive_on_a_thp_then_cpu_reads() -> None:
    m, dev = _machine()
    s, e = m.spawn_with_thp()
    for i in range(512):
        s.write(e + i * PAGE, i)
    assert dev.make_exclusive(s, e, 16) == list(range(16))
    assert dev.check_exclusive(s, e, 16) == -EPERM
    mark = m.trace.mark()
    assert [s.read(e + i * PAGE) for i in range(16)] == list(range(16))
    assert sum(ev.name == "restore_exclusive_pte" for ev in m.trace.since(mark)) == 16
    assert dev.check_exclusive(s, e, 16) == 0
    assert m.vmstat()["thp_split_pmd"] == 1 and s.folio_at(e).order == 9 and m.check() == []


def test_release_brings_a_shared_device_thp_back_as_one_folio() -> None:
    m, dev = _machine()
    t, f = m.spawn_with_thp()
    dev.migrate_to_device(t, f, 2 * MiB)
    kid = t.fork()
    assert dev.release() == 512
    for x in (t, kid):
        entry = x.lookup(f)
        assert (entry.level, entry.kind, entry.write, x.folio_at(f).order) == \
            ("pmd", "huge", False, 9)
    assert t.pfn_at(f) == kid.pfn_at(f) and m.check() == []


def test_the_player_frames() -> None:
    m, (d,), u, g = driver_setup(512, thp=True)
    frames = record(m, [("read", lambda: d.read_range(u, g, 16)),
                        ("exclusive", lambda: d.make_exclusive(u, g, 8)),
                        ("cpu", lambda: u.read(g + 3 * PAGE)),
                        ("migrate", lambda: d.migrate_to_device(u, g + MiB, MiB)),
                        ("release", d.release)], proc=u, addr=g)
    assert [f.cells.states().count("device_exclusive") for f in frames] == [0, 0, 8, 7, 0, 0]
    assert [f.cells.states().count("device_private") for f in frames] == [0, 0, 0, 0, 256, 0]
    assert m.check() == []


def test_explorer_buttons_and_errors() -> None:
    ex = driver_explorer()
    ex.buttons["read"].click()
    assert "cpages 16, faults 1" in ex.message.text
    assert mirror_counts(ex.dev, ex.proc) == {"read": 0, "write": 16, "atomic": 0}
    ex.count.value = 8
    ex.buttons["exclusive"].click()
    ex.buttons["check"].click()
    assert "-EPERM" in ex.message.text
    ex.buttons["cpu_read"].click()
    assert mirror_counts(ex.dev, ex.proc) == {"read": 0, "write": 0, "atomic": 6}
    ex.buttons["snapshot"].click()
    assert ex.message.text.startswith("Snapshot: [0x02, 0x00")  # page 1 device-exclusive
    # a range past the mapping: the kernel's errno as a message, nothing changed
    ex.first.value, ex.count.value = 500, 64
    before = snapshot(ex.system.machine)
    ex.buttons["read"].click()
    assert "EFAULT" in ex.message.text and snapshot(ex.system.machine) == before
    ex.first.value, ex.count.value = 256, 64
    ex.buttons["migrate"].click()
    assert ex.message.text.endswith("64 of 64 pages migrated")
    ex.buttons["release"].click()
    assert ex.message.text.endswith("64 pages evicted to RAM")
    ex.buttons["reset"].click()
    assert mirror_counts(ex.dev, ex.proc) == {"read": 0, "write": 0, "atomic": 0}
    assert ex.static_figure() is not None and ex.system.check() == []


@pytest.mark.parametrize("seed", range(5))
def test_exercises_check_their_answers(seed: int) -> None:
    for kind in ("snapshot", "mirror", "atomic"):
        ex = make(15, kind, seed)
        assert ex.check(ex.answer).right and ex.question().endswith(".")
    snap = make(15, "snapshot", seed)
    assert all(PAGE_STATES[s] in snap.question() for s in snap.states)


@pytest.mark.xdist_group("15-the-device-as-a-driver-sees-it")
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    g = glued(CHAPTER)
    m, _ = _machine()
    assert g["ch15_hmm_faults"] == 2 and g["ch15_zero_pfn"] == hex(m.machine.zero_pfn)
    assert (g["ch15_cpages"], g["ch15_faults1"], g["ch15_faults2"]) == (1024, 1, 0)
    assert g["ch15_shot"] == ", ".join(f"{x:#04x}" for x in
                                       (0xFF, 0xFF, 0x11, 0x01, 0x02, 0x22, 0x00))
    assert (g["ch15_before_zap"], g["ch15_missing"]) == (16, "4, 5")
    assert (g["ch15_excl_restores"], g["ch15_excl_split"], g["ch15_excl_order"]) == (16, 1, 9)
    assert g["ch15_evicted"] == 512
    assert (g["ch15_nframes"], g["ch15_excl_after_cpu"], g["ch15_devpriv"]) == (6, 7, 256)
    assert g["ch15_ex_info"] == "device page table: 0 read-only, 0 writable, 6 atomic entries"
