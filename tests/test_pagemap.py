"""/proc/PID/pagemap and /proc/kpageflags as Linux 6.18 reports them (fs/proc/task_mmu.c,
fs/proc/page.c), including what a real 6.18.44 kernel was seen to report."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.fs.proc.page import KPF
from pyfolio.fs.proc.task_mmu import PM_FILE, PM_MMAP_EXCLUSIVE, PM_PRESENT, PM_SOFT_DIRTY, PM_SWAP
from pyfolio.include.linux.mm import folio_get, folio_lock, folio_put, folio_unlock, page_folio
from pyfolio.include.linux.mm_types import VM
from pyfolio.include.linux.swapops import SwpType
from pyfolio.mm.rmap import try_to_migrate
from pyfolio.sim.memmap import PG

SWP_SHIFT = 5  # MAX_SWAPFILES_SHIFT: bits 0-4 swap type, 5-54 offset


def _frame(raw: int) -> tuple[int, int]:
    """(swap type, swap offset) of a PM_SWAP record."""
    frame = raw & ((1 << 55) - 1)
    return frame & ((1 << SWP_SHIFT) - 1), frame >> SWP_SHIFT


@pytest.fixture
def dev() -> System:
    return System(ram="64M", device="16M")


def test_device_private_pmd_records_carry_per_page_offsets_and_no_exclusive(dev: System) -> None:
    # pagemap_pmd_range(): offset = swp_offset_pfn(entry) + idx, then frame += 1 << 5 per
    # record; PM_MMAP_EXCLUSIVE only with PM_PRESENT (da7f31ed0f4d, v6.10)
    p, a = dev.spawn_with_thp()
    dev.device.migrate_to_device(p, a, 2 * MiB)
    e = p.lookup(a)
    assert (e.level, e.kind) == ("pmd", "device_private")
    recs = p.pagemap(a, 512)
    assert [_frame(r.raw) for r in recs] == [(SwpType.SWP_DEVICE_WRITE, e.pfn + i)
                                             for i in range(512)]
    assert all(r.swapped and not r.present and not r.exclusive for r in recs)
    # reading from the middle of the PMD starts at that page's offset
    assert _frame(p.pagemap(a + 300 * 4 * KiB, 1)[0].raw)[1] == e.pfn + 300
    assert dev.check() == []


def test_device_private_pte_record_is_not_exclusive(dev: System) -> None:
    p = dev.spawn()
    a = p.mmap(64 * KiB)
    p.write(a, 1)
    dev.device.migrate_to_device(p, a, 64 * KiB)
    e = p.lookup(a)
    assert (e.level, e.kind) == ("pte", "device_private")
    assert p.folio_at(a).mapcount == 1  # mapped once, yet no PM_PRESENT: no bit 56
    r = p.pagemap(a, 1)[0]
    assert r.raw & (PM_SWAP | PM_MMAP_EXCLUSIVE | PM_PRESENT) == PM_SWAP
    assert _frame(r.raw)[1] == e.pfn
    assert dev.check() == []


def test_pmd_migration_entry_records_per_page_offsets_and_no_exclusive() -> None:
    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp()
    pfn = p.pfn_at(a)
    folio = page_folio(m.machine, pfn)
    folio_get(folio)
    folio_lock(folio)
    assert try_to_migrate(folio, 0)  # a PMD migration entry
    assert (p.lookup(a).level, p.lookup(a).kind) == ("pmd", "migration")
    recs = p.pagemap(a, 512)
    assert [_frame(r.raw)[1] for r in recs] == [pfn + i for i in range(512)]
    assert not any(r.exclusive or r.present for r in recs)
    folio_unlock(folio)
    folio_put(folio)


def test_a_fresh_mapping_is_soft_dirty_everywhere_in_the_vma() -> None:
    # mm/vma.c:__mmap_complete() sets VM_SOFTDIRTY; pagemap_pte_hole() and
    # pte_to_pagemap_entry() report it for every page of the VMA, present or not
    m = System(ram="64M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(64 * KiB)
    assert p.vma_at(a).vm_flags & VM.SOFTDIRTY
    p.write(a, 1)
    p.read(a + 4 * KiB)  # the shared zero page
    recs = p.pagemap(a, 4)
    assert all(r.soft_dirty for r in recs)
    assert [r.raw & ~PM_SOFT_DIRTY == 0 for r in recs] == [False, False, True, True]
    # outside any VMA: pagemap_pte_hole() gives an empty record
    assert p.pagemap(a + 64 * KiB, 1)[0].raw == 0
    c = p.fork()  # dup_mmap() copies vm_flags
    assert c.pagemap(a, 1)[0].soft_dirty
    assert m.check() == []


def test_pmd_mapped_thp_is_exclusive_by_its_first_page() -> None:
    # 6.18 pagemap_pmd_range(): __folio_page_mapped_exclusively(folio, page) with
    # page = pmd_page(pmd) for all 512 records (CONFIG_PAGE_MAPCOUNT: precise mapcount
    # of that page == 1). Seen on 6.18.44: after the child unmapped page 0 the parent's
    # records 1 and 2 still carry bit 56 although those pages are mapped twice.
    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp()
    c = p.fork()
    c.munmap(a, 4 * KiB)
    assert m.kpagecount([p.pfn_at(a), p.pfn_at(a + 4 * KiB)]) == [1, 2]
    assert all(r.exclusive for r in p.pagemap(a, 512))
    assert not any(r.exclusive for r in c.pagemap(a + 4 * KiB, 2))  # PTEs: per page
    assert m.check() == []


def test_huge_zero_folio_reads_as_file_and_not_reserved() -> None:
    # 6.18.44: 0xa000000000122c00 (PM_PRESENT | PM_FILE: the PMD branch takes
    # pmd_page(), whose folio is not anon) and kpageflags COMPOUND_HEAD|THP|ZERO_PAGE
    m = System(ram="64M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.read(a)
    zero = p.lookup(a).pfn
    recs = p.pagemap(a, 2)
    assert [r.raw & ~PM_SOFT_DIRTY for r in recs] == [PM_PRESENT | PM_FILE | zero,
                                                      PM_PRESENT | PM_FILE | zero + 1]
    head, tail = m.kpageflags([zero, zero + 1])
    assert head == (1 << KPF["COMPOUND_HEAD"]) | (1 << KPF["THP"]) | (1 << KPF["ZERO_PAGE"])
    assert tail == (1 << KPF["COMPOUND_TAIL"]) | (1 << KPF["THP"]) | (1 << KPF["ZERO_PAGE"])
    # the 4 KiB zero page (PTE, vm_normal_page() NULL): no PM_FILE; it is PG_reserved
    b = p.mmap(64 * KiB)
    p.read(b)
    small = p.pagemap(b, 1)[0]
    assert small.raw & ~PM_SOFT_DIRTY == PM_PRESENT | m.machine.zero_pfn
    assert m.kpageflags([m.machine.zero_pfn]) == [(1 << KPF["ZERO_PAGE"])
                                                  | (1 << KPF["RESERVED"])]


def test_zone_device_frames_read_as_zero_in_kpageflags(dev: System) -> None:
    # fs/proc/page.c:kpage_read(): pfn_to_online_page() is NULL for ZONE_DEVICE
    p, a = dev.spawn_with_thp()
    dev.device.migrate_to_device(p, a, 2 * MiB)
    pfn = p.lookup(a).pfn
    assert dev.machine.mem.test(pfn, PG.head)
    assert dev.kpageflags([pfn, pfn + 1]) == [0, 0]
    assert dev.kpagecount([pfn]) == [0]
