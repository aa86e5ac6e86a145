"""The claims of chapters/09-device-private-memory.md, checked through the same pyfolio calls."""

from __future__ import annotations

import pytest

from conftest import ROOT, glued
from pyfolio import KiB, MiB, System
from pyfolio.device import Device
from pyfolio.exercises.ch09_device_private_memory import pages_on_device
from pyfolio.sim.memmap import ZONE_DEVICE
from pyfolio.mm.memremap import MEMORY_TYPE, is_device_private_page
from pyfolio.arch.x86.pgtable import SWP_TYPE_BITS, decode_entry, swp_offset
from pyfolio.include.linux.swapops import SwpType, make_writable_device_private_entry
from pyfolio.system import Process

CHAPTER = ROOT / "chapters/09-device-private-memory.md"
PAGE = 4 * KiB


def test_dev_pagemap_is_device_private_with_its_own_pfn_range_and_ops() -> None:
    m = System(ram="64M", seed=0)
    dev = m.add_device("dmirror0", memory="16M")
    pgmap = dev.driver.pgmap
    start, end = pgmap.range
    mem = m.machine.mem
    assert pgmap.type == MEMORY_TYPE.MEMORY_DEVICE_PRIVATE and pgmap.owner is dev.driver
    assert (start, end) == (m.machine.nr_ram, m.machine.nr_ram + 4096)
    assert (mem.zone[start:end] == ZONE_DEVICE).all() and mem._refcount[start:end].max() == 0
    assert is_device_private_page(m.machine, end - 1)
    assert not is_device_private_page(m.machine, start - 1)
    assert all(getattr(pgmap.ops, op) for op in ("page_free", "migrate_to_ram", "folio_split"))
    assert (dev.free_large, dev.free_small) == (8, 0)
    assert m.check() == []


def test_swap_type_numbers_follow_swap_h() -> None:
    # 32 types; the top 8 are special: PTE marker, 3 device, 3 migration, hwpoison
    max_swapfiles = 32 - 1 - 3 - 3 - 1
    assert SwpType.SWP_DEVICE_WRITE == max_swapfiles + 1 + 3 == 28
    assert SwpType.SWP_DEVICE_READ == 29
    raw = make_writable_device_private_entry(0x4FFB)
    assert raw & 1 == 0 and raw >> 59 == 28 and swp_offset(raw) == 0x4FFB
    assert raw == 0xE7FFFFFFFF600800


def test_migrated_page_is_a_writable_device_private_pte_holding_ref_and_mapcount() -> None:
    m, p, a, dev = pages_on_device(16, readonly=4)
    start, end = dev.driver.pgmap.range
    e = p.lookup(a + 4 * PAGE)
    f = p.folio_at(a + 4 * PAGE)
    assert f is not None
    assert (e.level, e.kind, e.present, e.write, e.swp_type) == ("pte", "device_private",
                                                                 False, True, 28)
    assert e.swp_offset == e.pfn == f.pfn and start <= f.pfn < end
    assert (f.order, f.refcount, f.mapcount) == (0, 1, 1)
    assert dev.read(p, a + 4 * PAGE) == 104
    # no single pages at start: dmirror broke one free 2 MiB folio into pages
    assert (dev.free_large, dev.free_small) == (7, 512 - 16)
    assert m.check() == []


def test_migration_frees_the_source_frame() -> None:
    m = System(ram="64M", seed=0)
    dev = m.add_device("dmirror0", memory="16M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.madvise(a, 64 * KiB, "nohugepage")
    p.write(a, 1)
    src = p.pfn_at(a)
    res = dev.migrate_to_device(p, a, PAGE)
    assert res[0].migrated and res[0].src_pfn == src
    assert m.machine.mem._refcount[src] == 0
    assert m.check() == []


def test_read_only_pages_get_readable_entries() -> None:
    m, p, a, _ = pages_on_device(16, readonly=4)
    assert [p.lookup(a + i * PAGE).swp_type for i in range(16)] == [29] * 4 + [28] * 12
    assert not any(p.lookup(a + i * PAGE).write for i in range(4))
    assert m.check() == []


def test_fork_makes_device_private_entries_readable_in_both() -> None:
    m, q, qa, _ = pages_on_device(4)
    assert q.lookup(qa).swp_type == 28
    child = q.fork()
    assert q.lookup(qa).raw == child.lookup(qa).raw and q.lookup(qa).swp_type == 29
    f = q.folio_at(qa)
    assert f is not None and (f.refcount, f.mapcount) == (2, 2)
    assert m.check() == []


def test_cpu_read_brings_one_page_back_with_its_data() -> None:
    m, p, a, dev = pages_on_device(16, readonly=4)
    dev_pfn = p.lookup(a + 4 * PAGE).pfn
    faults, cfree = m.vmstat()["pgfault"], dev.driver.cfree
    copied = m.trace.costs["pages_copied"]
    mark = m.trace.mark()
    assert p.read(a + 4 * PAGE) == 104
    names = m.trace.names(mark)
    assert names[:2] == ["migrate_vma_collect", "migrate_vma_setup"] and "free_folio" in names
    back = p.lookup(a + 4 * PAGE)
    assert (back.kind, back.present, back.write) == ("page", True, True)
    assert m.machine.is_ram(back.pfn)
    assert m.vmstat()["pgfault"] - faults == 1 and m.trace.costs["pages_copied"] - copied == 1
    assert m.machine.mem._refcount[dev_pfn] == 0 and dev_pfn in dev.driver.free_pages
    assert dev.driver.cfree - cfree == 1 and dev.read(p, a + 4 * PAGE) is None
    assert sum(p.lookup(a + i * PAGE).kind == "device_private" for i in range(16)) == 15
    assert m.check() == []


def test_readable_entry_comes_back_read_only() -> None:
    m, p, a, _ = pages_on_device(16, readonly=4)
    assert p.read(a) == 100
    e = p.lookup(a)
    assert (e.kind, e.present, e.write) == ("page", True, False)
    assert m.check() == []


def _thp_on_device() -> tuple[System, Device, Process, int, int]:
    """A written, PMD-mapped THP migrated to a 16 MiB dmirror device; its RAM head PFN."""
    m = System(ram="64M", thp="madvise", seed=0)
    dev = m.add_device("dmirror0", memory="16M")
    t, b = m.spawn_with_thp()
    ram = t.folio_at(b)
    assert ram is not None and ram.order == 9
    dev.migrate_to_device(t, b, 2 * MiB)
    return m, dev, t, b, ram.pfn


def test_thp_migrates_under_one_device_private_pmd() -> None:
    m, dev, t, b, ram_head = _thp_on_device()
    start, end = dev.driver.pgmap.range
    pe = t.lookup(b)
    f = t.folio_at(b)
    assert f is not None
    assert (pe.level, pe.kind, pe.swp_type, pe.write) == ("pmd", "device_private", 28, True)
    assert decode_entry(pe.raw, "pmd").swp_offset == f.pfn and f.pfn % 512 == 0
    assert start <= f.pfn < end and t.lookup(b + 300 * PAGE).raw == pe.raw
    assert (f.order, f.refcount, f.mapcount, f.entire_mapcount) == (9, 1, 1, 1)
    assert dev.free_large == 7 and m.machine.mem._refcount[ram_head] == 0
    assert m.check() == []


def test_cpu_fault_on_device_private_pmd_brings_the_whole_folio_back() -> None:
    m, dev, t, b, _ = _thp_on_device()
    copied = m.trace.costs["pages_copied"]
    assert t.read(b + 12 * PAGE) == (b >> 12) + 13
    assert m.trace.costs["pages_copied"] - copied == 512
    e, f = t.lookup(b), t.folio_at(b)
    assert f is not None and (e.level, e.kind, e.present) == ("pmd", "huge", True)
    assert (f.order, f.refcount, f.mapcount) == (9, 1, 1) and m.machine.is_ram(f.pfn)
    assert dev.free_large == 8 and dev.driver.pt == {}
    assert m.check() == []


def test_round_trip_faults_bring_back_only_what_is_touched() -> None:
    m = System(ram="64M", thp="madvise", seed=0)
    dev = m.add_device("dmirror0", memory="8M")
    r = m.spawn()
    rb = r.mmap(2 * MiB)
    r.madvise(rb, 2 * MiB, "nohugepage")
    r.touch(rb, 2 * MiB)

    def on_device() -> int:
        return sum(r.lookup(rb + i * PAGE).kind == "device_private" for i in range(512))

    dev.migrate_to_device(r, rb, 2 * MiB)
    assert on_device() == 512
    r.read(rb + 3 * PAGE)
    r.write(rb + 300 * PAGE, 7)
    assert on_device() == 510
    dev.migrate_to_system(r, rb, 2 * MiB)
    assert on_device() == 0
    assert r.read(rb + 3 * PAGE) == (rb >> 12) + 4 and r.read(rb + 300 * PAGE) == 7
    assert r.read(rb + 511 * PAGE) == (rb >> 12) + 512
    assert dev.driver.calloc == dev.driver.cfree == 512
    assert m.check() == []


@pytest.mark.xdist_group("09-device-private-memory")
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    g = glued(CHAPTER)
    # the chapter's machine: one dmirror device, then the 4 KiB pages, then the THP, in order
    m = System(ram="64M", thp="madvise", seed=0)
    dev = m.add_device("dmirror0", memory="16M")
    pgmap = dev.driver.pgmap
    start, end = pgmap.range
    assert (g["ch09_ram_end"], g["ch09_dev_start"], g["ch09_dev_end"]) == (
        f"{m.machine.nr_ram:#x}", f"{start:#x}", f"{end:#x}")
    assert (g["ch09_dev_pages"], g["ch09_type"]) == (end - start, pgmap.type.name)
    assert g["ch09_free_large"] == dev.free_large

    p = m.spawn()
    a = p.mmap(16 * PAGE)
    p.madvise(a, 16 * PAGE, "nohugepage")
    for i in range(16):
        p.write(a + i * PAGE, 100 + i)
    p.mprotect(a, 4 * PAGE, "r")
    src4 = p.pfn_at(a + 4 * PAGE)
    results = dev.migrate_to_device(p, a, 16 * PAGE)
    e4, f4 = p.lookup(a + 4 * PAGE), p.folio_at(a + 4 * PAGE)
    assert f4 is not None
    assert g["ch09_migrated"] == sum(r.migrated for r in results)
    assert (g["ch09_e4_raw"], g["ch09_e4_type"], g["ch09_e4_off"]) == (
        f"{e4.raw:#018x}", e4.swp_type, f"{e4.swp_offset:#x}")
    assert (g["ch09_f4_ref"], g["ch09_f4_map"]) == (f4.refcount, f4.mapcount)
    assert g["ch09_src4"] == f"{src4:#x}" == f"{results[4].src_pfn:#x}"

    assert g["ch09_e0_type"] == p.lookup(a).swp_type
    assert g["ch09_ntypes"] == 1 << SWP_TYPE_BITS
    assert g["ch09_nspecial"] == (1 << SWP_TYPE_BITS) - SwpType.SWP_HWPOISON
    assert (g["ch09_lastfile"], g["ch09_maxswap"]) == (
        SwpType.SWP_HWPOISON - 1, int(SwpType.SWP_HWPOISON))
    assert g["ch09_devwrite"] == int(SwpType.SWP_DEVICE_WRITE)

    dev_pfn = e4.pfn
    faults, cfree, copied = m.vmstat()["pgfault"], dev.driver.cfree, m.trace.costs["pages_copied"]
    value = p.read(a + 4 * PAGE)
    back = p.lookup(a + 4 * PAGE)
    assert (g["ch09_value"], g["ch09_back_pfn"]) == (value, f"{back.pfn:#x}")
    assert g["ch09_faults"] == m.vmstat()["pgfault"] - faults
    assert g["ch09_cfree"] == dev.driver.cfree - cfree
    assert g["ch09_dev_pfn"] == f"{dev_pfn:#x}"
    assert g["ch09_copied"] == m.trace.costs["pages_copied"] - copied
    assert g["ch09_stayed"] == sum(
        p.lookup(a + i * PAGE).kind == "device_private" for i in range(16))

    t, b = m.spawn_with_thp()
    dev.migrate_to_device(t, b, 2 * MiB)
    pe, dfolio = t.lookup(b), t.folio_at(b)
    assert dfolio is not None
    assert (g["ch09_pmd_raw"], g["ch09_pmd_off"], g["ch09_pmd_type"], g["ch09_pmd_order"]) == (
        f"{pe.raw:#018x}", f"{pe.swp_offset:#x}", pe.swp_type, dfolio.order)
    copied = m.trace.costs["pages_copied"]
    t.read(b + 12 * PAGE)
    assert g["ch09_pmd_copied"] == m.trace.costs["pages_copied"] - copied
    assert g["ch09_pmd_back_kind"] == t.lookup(b).kind
