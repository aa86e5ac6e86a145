"""The claims of chapters/11-no-huge-page-on-the-device.md, checked through the same pyfolio
calls: the split fallback when the device has no 2 MiB page, and the faults on a partially
mapped device folio."""

from __future__ import annotations

import pytest

from conftest import ROOT, glued
from pyfolio import KiB, MiB, System
from pyfolio.sim.errors import MmError
from pyfolio.exercises.ch11_no_huge_page_on_the_device import device_thps
from pyfolio.mm.migrate_device import MIGRATE_VMA_SELECT, MigrateVma, migrate_vma_setup
from pyfolio.views import record_events

STEPS = ("migrate_vma_collect", "migrate_vma_setup", "migrate_vma_split_unmapped_folio",
         "migrate_vma_pages", "migrate_vma_finalize")
COUNTERS = ("thp_split_pmd", "thp_split_page", "thp_migration_split",
            "nr_anon_transparent_hugepages")


def _fallback(design: str = "split-unmapped-folio"):
    m = System(ram="64M", thp="madvise", seed=0, split_design=design)
    dev = m.add_device("dmirror0", memory="64M", large_pages=False)
    p, a = m.spawn_with_thp()
    return m, dev, p, a


@pytest.mark.parametrize("design", ["split-unmapped-folio", "unmapped-param"])
def test_fallback_splits_the_unmapped_source_and_migrates_every_page(design: str) -> None:
    m, dev, p, a = _fallback(design)
    head = p.folio_at(a).pfn
    vm0, cost0 = m.vmstat(), dict(m.trace.costs)
    mark = m.trace.mark()
    res = dev.migrate_to_device(p, a, 2 * MiB)
    vm1, cost1 = m.vmstat(), m.trace.costs
    ev = {e.name: e for e in m.trace.since(mark) if e.name.startswith("migrate_vma")}
    assert list(ev) == list(STEPS)
    assert ev["migrate_vma_setup"].change("cpages") == 1
    assert ev["migrate_vma_split_unmapped_folio"].change("folios") == 512
    assert [r.migrated for r in res] == [True] * 512
    assert {k: vm1[k] - vm0[k] for k in COUNTERS} == {
        "thp_split_pmd": 1, "thp_split_page": 0, "thp_migration_split": 0,
        "nr_anon_transparent_hugepages": -1}
    assert cost1["pte_writes"] - cost0.get("pte_writes", 0) == 1024
    assert cost1["pages_copied"] - cost0.get("pages_copied", 0) == 512
    addrs = [a + i * 4 * KiB for i in range(512)]
    assert {(p.lookup(x).level, p.lookup(x).kind) for x in addrs} == {("pte", "device_private")}
    assert {p.folio_at(x).order for x in addrs} == {0}
    assert [dev.read(p, x) for x in addrs] == [(x >> 12) + 1 for x in addrs]  # data page by page
    assert m.folio(head).refcount == 0 and dev.driver.calloc == 512 and dev.free_small == 0
    assert m.check() == []
    assert [p.read(x) for x in addrs[:3]] == [(x >> 12) + 1 for x in addrs[:3]]
    assert m.check() == []


def test_both_designs_leave_the_same_entries_and_counters() -> None:
    mb, devb, pb, ab = _fallback("split-unmapped-folio")
    ma, deva, pa, aa = _fallback("unmapped-param")
    devb.migrate_to_device(pb, ab, 2 * MiB)
    deva.migrate_to_device(pa, aa, 2 * MiB)
    assert [pa.lookup(aa + i * 4 * KiB).raw for i in range(512)] == \
        [pb.lookup(ab + i * 4 * KiB).raw for i in range(512)]
    assert ma.vmstat() == mb.vmstat() and ma.check() == mb.check() == []


def test_with_large_pages_one_device_pmd_and_no_split() -> None:
    m, dev, p, a = device_thps(1, large_pages=True)
    cost = dict(m.trace.costs)
    dev.migrate_to_device(p, a, 2 * MiB)
    e, f = p.lookup(a), p.folio_at(a)
    assert (e.level, e.kind, f.order) == ("pmd", "device_private", 9)
    assert m.trace.costs["pmd_writes"] - cost.get("pmd_writes", 0) == 2
    assert m.trace.costs["pte_writes"] - cost.get("pte_writes", 0) == 0
    assert m.vmstat()["thp_split_pmd"] == 0 and m.check() == []


def test_recorded_frames_show_the_split_between_setup_and_pages() -> None:
    m, dev, p, a = device_thps(1, large_pages=False)
    h = p.folio_at(a).pfn
    frames = record_events(m, lambda: dev.migrate_to_device(p, a, 2 * MiB), STEPS,
                           proc=p, addr=a, pfn=h, pfns=range(h, h + 512))
    assert [f.label for f in frames] == ["start", *STEPS, "end"]
    by = {f.label: f for f in frames}
    assert frames[0].pmd_kind == "huge"
    assert by["migrate_vma_setup"].pmd_kind == "migration"
    assert set(by["migrate_vma_setup"].frames.order) == {9}
    split = by["migrate_vma_split_unmapped_folio"]
    assert split.pmd_kind == "table" and set(split.frames.order) == {0}
    assert (split.counts.order, split.counts.refcount, split.counts.mapcount) == (0, 1, 0)
    assert [set(f.cells.states()) for f in frames[1:-1]] == \
        [{"migration"}] * 4 + [{"device_private"}]
    assert set(by["migrate_vma_finalize"].frames.kind) == {"free"}
    assert m.check() == []


def _partial(first_half: bool):
    m, dev, p, a = device_thps(1, large_pages=True)
    dev.migrate_to_device(p, a, 2 * MiB)
    p.munmap(a if first_half else a + 1 * MiB, 1 * MiB)
    return m, dev, p, a


def test_partial_unmap_leaves_a_partially_mapped_device_folio() -> None:
    m, _, p, a = _partial(True)
    e, f = p.lookup(a + 1 * MiB), p.folio_at(a + 1 * MiB)
    assert (e.level, e.kind) == ("pte", "device_private")
    assert (f.order, f.mapcount, f.refcount) == (9, 256, 256) and m.check() == []


def test_a_range_sized_by_the_folio_order_is_refused() -> None:
    m, _, p, a = _partial(True)
    fault = a + 257 * 4 * KiB
    start = fault & ~(2 * MiB - 1)
    args = MigrateVma(p.mm.find_vma(fault), start, start + 2 * MiB,
                      flags=MIGRATE_VMA_SELECT.DEVICE_PRIVATE | MIGRATE_VMA_SELECT.COMPOUND)
    with pytest.raises(MmError) as exc:
        migrate_vma_setup(args)
    assert exc.value.errname == "EINVAL" and "not inside the VMA" in str(exc.value)
    assert m.check() == []


def test_first_fault_splits_the_second_migrates_one_page() -> None:
    m, dev, p, a = _partial(True)
    fault = a + 257 * 4 * KiB
    before, mark = m.vmstat(), m.trace.mark()
    assert p.read(fault) == (fault >> 12) + 1
    after = m.vmstat()
    setups = [e.change("cpages") for e in m.trace.since(mark) if e.name == "migrate_vma_setup"]
    assert setups == [0, 1] and after["pgfault"] - before["pgfault"] == 2
    assert after["thp_split_page"] - before["thp_split_page"] == 1
    assert (p.lookup(fault).kind, p.folio_at(fault).order) == ("page", 0)
    rest = [a + 1 * MiB + i * 4 * KiB for i in range(256) if i != 1]
    assert {(p.lookup(x).kind, p.folio_at(x).order) for x in rest} == {("device_private", 0)}
    assert [int(m.machine.mem.stamp[p.folio_at(x).pfn]) for x in rest] == [
        (x >> 12) + 1 for x in rest]
    assert {dev.read(p, x) for x in rest} == {None}  # the splits invalidated the device's entries
    assert dev.driver.cfree == 257 and m.check() == []


def test_touching_the_old_head_migrates_in_one_fault() -> None:
    m, dev, p, a = _partial(False)
    before = m.vmstat()["pgfault"]
    assert p.read(a) == (a >> 12) + 1
    assert m.vmstat()["pgfault"] - before == 1
    assert p.lookup(a).kind == "page" and dev.driver.cfree == 257 and m.check() == []


def test_explorer_fallback_then_one_read() -> None:
    from pyfolio.widgets import device_fault_explorer

    ex = device_fault_explorer(ram="64M", device="8M")
    ex.large.value = False
    ex.migrate()
    ex.page.value = 5
    ex.touch(False)
    states = [ex.proc.lookup(ex.addr + i * 4 * KiB).kind for i in range(512)]
    assert states.count("device_private") == 511 and states[5] == "page"
    assert ex.system.vmstat()["thp_split_pmd"] == 1 and ex.system.check() == []


CHAPTER = ROOT / "chapters/11-no-huge-page-on-the-device.md"


@pytest.mark.xdist_group("11-no-huge-page-on-the-device")
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    g = glued(CHAPTER)
    # The fallback: a THP to a device without 2 MiB pages.
    m, dev, p, a = _fallback()
    vm0, cost0 = m.vmstat(), dict(m.trace.costs)
    mark = m.trace.mark()
    res = dev.migrate_to_device(p, a, 2 * MiB)
    vm1, cost1 = m.vmstat(), dict(m.trace.costs)
    ev = {e.name: e for e in m.trace.since(mark) if e.name.startswith("migrate_vma")}
    assert g["ch11_collected"] == ev["migrate_vma_setup"].change("cpages")
    assert g["ch11_split_folios"] == ev["migrate_vma_split_unmapped_folio"].change("folios")
    assert g["ch11_migrated"] == sum(r.migrated for r in res)
    assert (g["ch11_split_pmd"], g["ch11_split_page"], g["ch11_migration_split"],
            g["ch11_nr_thp"]) == tuple(vm1[k] - vm0[k] for k in COUNTERS)
    assert g["ch11_ptes"] == sum(1 for i in range(512) if p.lookup(a + i * 4 * KiB).level == "pte")
    assert g["ch11_pte_writes"] == cost1["pte_writes"] - cost0.get("pte_writes", 0)
    assert g["ch11_copied"] == cost1["pages_copied"] - cost0.get("pages_copied", 0)

    # With 2 MiB device pages: PMD and PTE writes.
    mL, devL, pL, aL = device_thps(1, large_pages=True)
    costL = dict(mL.trace.costs)
    devL.migrate_to_device(pL, aL, 2 * MiB)
    assert (g["ch11_large_pmd_writes"], g["ch11_large_pte_writes"]) == tuple(
        mL.trace.costs[k] - costL.get(k, 0) for k in ("pmd_writes", "pte_writes"))

    # The recorded frames of the fallback.
    m2, dev2, p2, a2 = device_thps(1, large_pages=False)
    h2 = p2.folio_at(a2).pfn
    frames = record_events(m2, lambda: dev2.migrate_to_device(p2, a2, 2 * MiB), STEPS,
                           proc=p2, addr=a2, pfn=h2, pfns=range(h2, h2 + 512))
    by = {f.label: f for f in frames}
    split = by["migrate_vma_split_unmapped_folio"]
    assert (g["ch11_setup_pmd"], g["ch11_split_pmd_kind"], g["ch11_piece_ref"]) == (
        by["migrate_vma_setup"].pmd_kind, split.pmd_kind, split.counts.refcount)
    assert g["ch11_nframes"] == len(frames)

    # The partially mapped device folio, and the read that takes two faults.
    m3, dev3, p3, a3 = _partial(True)
    f3 = p3.folio_at(a3 + 1 * MiB)
    assert (g["ch11_partial_map"], g["ch11_partial_order"]) == (f3.mapcount, f3.order)
    fault = a3 + 257 * 4 * KiB
    before, mark = m3.vmstat(), m3.trace.mark()
    p3.read(fault)
    setups = [e.change("cpages") for e in m3.trace.since(mark) if e.name == "migrate_vma_setup"]
    assert g["ch11_faults"] == m3.vmstat()["pgfault"] - before["pgfault"]
    assert g["ch11_setups"] == " and ".join(map(str, setups))
    assert g["ch11_cfree"] == dev3.driver.cfree

    # The explorer: fallback, then a read of page 5.
    from pyfolio.widgets import device_fault_explorer

    ex = device_fault_explorer(ram="64M", device="8M")
    ex.large.value = False
    ex.migrate()
    ex.page.value = 5
    ex.touch(False)
    states = [ex.proc.lookup(ex.addr + i * 4 * KiB).kind for i in range(512)]
    assert g["ch11_ex_device"] == states.count("device_private")
    assert g["ch11_ex_msg"] == ex.message.text


@pytest.mark.xdist_group("11-no-huge-page-on-the-device")
def test_a_thp_shared_by_fork_reaches_the_kernel_bug_the_chapter_quotes() -> None:
    """The section "When a forked child shares the THP": the child's PMD migration entry,
    the KernelBug at remove_migration_pte()'s VM_BUG_ON_FOLIO."""
    from pyfolio import KernelBug

    m, dev, p, a = _fallback()
    child = p.fork()
    with pytest.raises(KernelBug, match="folio_test_pmd_mappable"):
        dev.migrate_to_device(p, a, 2 * MiB)
    e = child.lookup(a)
    assert glued(CHAPTER)["ch11_bug_child"] == f"{e.level.upper()} {e.kind} entry"
