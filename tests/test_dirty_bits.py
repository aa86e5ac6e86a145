"""Dirty bits in the simulated page tables as x86-64 Linux 6.18 leaves them.

A read-only entry never keeps D (bit 6): Write=0,Dirty=1 means "shadow stack" to the CPU, so
pte_wrprotect()/pmd_wrprotect() (fork), pte_modify() (mprotect) and pte_mkdirty() of a
read-only entry put the dirtiness in SavedDirty (bit 58); pte_mkwrite() moves it back.
pte_mkdirty() also sets soft-dirty (bit 11). pte_dirty() is D or SavedDirty.
(arch/x86/include/asm/pgtable.h, arch/x86/mm/pgtable.c)
"""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.arch.x86.pgtable import Entry
from pyfolio.sim.memmap import PG


@pytest.fixture
def m() -> System:
    return System(ram="64M", thp="madvise", seed=0)


def bits(e: Entry) -> tuple[bool, bool, bool, bool]:
    """(RW, D, SavedDirty, soft-dirty) of a present entry, from the raw value."""
    assert e.present, e
    return (bool(e.raw & 1 << 1), bool(e.raw & 1 << 6), bool(e.raw & 1 << 58),
            bool(e.raw & 1 << 11))


RW_DIRTY = (True, True, False, True)  # written, writable: D (and soft-dirty)
RO_SAVED = (False, False, True, True)  # dirty but read-only: SavedDirty, never D


def test_written_thp_pmd_has_d_and_soft_dirty(m: System) -> None:
    p, a = m.spawn_with_thp()
    e = p.lookup(a)
    assert (e.level, e.kind) == ("pmd", "huge") and bits(e) == RW_DIRTY and e.dirty


def test_fork_moves_the_thp_dirty_bit_to_saved_dirty_in_both(m: System) -> None:
    p, a = m.spawn_with_thp()
    c = p.fork()
    for proc in (p, c):  # copy_huge_pmd(): pmdp_set_wrprotect() and pmd_wrprotect()
        e = proc.lookup(a)
        assert (e.level, e.kind) == ("pmd", "huge")
        assert bits(e) == RO_SAVED and e.dirty and e.saved_dirty and not e.write
    assert not c.lookup(a).accessed  # pmd_mkold() for the child only
    assert m.check() == []


def test_cow_write_after_fork_splits_and_the_rest_keeps_saved_dirty(m: System) -> None:
    p, a = m.spawn_with_thp()
    c = p.fork()
    p.write(a + 5 * 4 * KiB, 99)  # shared THP: split the PMD, copy the one page
    w = p.lookup(a + 5 * 4 * KiB)
    assert w.level == "pte" and bits(w) == RW_DIRTY  # wp_page_copy(): mkwrite(mkdirty())
    rest = [p.lookup(a + i * 4 * KiB) for i in range(512) if i != 5]
    assert {bits(e) for e in rest} == {RO_SAVED}  # __split_huge_pmd_locked(): pte_mkdirty()
    assert bits(c.lookup(a)) == RO_SAVED and c.lookup(a).level == "pmd"
    assert m.machine.mem.test(p.folio_at(a).pfn, PG.dirty)  # pmd_dirty() -> folio_set_dirty()
    assert m.check() == []


def test_cow_reuse_of_a_thp_moves_saved_dirty_back_to_d(m: System) -> None:
    p, a = m.spawn_with_thp()
    c = p.fork()
    c.exit()
    p.write(a, 7)  # only this mm maps it now: do_huge_pmd_wp_page() reuses the folio
    e = p.lookup(a)
    assert e.level == "pmd" and bits(e) == RW_DIRTY
    assert m.check() == []


def test_4k_page_fork_cow_and_reuse(m: System) -> None:
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.write(a, 1)
    assert bits(p.lookup(a)) == RW_DIRTY  # do_anonymous_page(): mkwrite(mkdirty())
    c = p.fork()
    assert bits(p.lookup(a)) == bits(c.lookup(a)) == RO_SAVED  # __copy_present_ptes()
    assert p.lookup(a).dirty and c.lookup(a).dirty
    c.write(a, 2)  # the child copies
    assert bits(c.lookup(a)) == RW_DIRTY and bits(p.lookup(a)) == RO_SAVED
    p.write(a, 3)  # the parent is the last user: wp_page_reuse()
    assert bits(p.lookup(a)) == RW_DIRTY
    assert m.check() == []


def test_mprotect_read_then_write_round_trips_a_4k_page(m: System) -> None:
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.touch(a, 16 * KiB)
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")  # pte_modify(): old RW=1 -> mksaveddirty
    assert bits(p.lookup(a + 4 * KiB)) == RO_SAVED and p.lookup(a + 4 * KiB).dirty
    assert bits(p.lookup(a)) == RW_DIRTY
    p.mprotect(a + 4 * KiB, 4 * KiB, "rw")  # exclusive page: pte_mkwrite()
    assert bits(p.lookup(a + 4 * KiB)) == RW_DIRTY
    assert m.check() == []


def test_mprotect_of_a_whole_thp_keeps_d_in_saved_dirty(m: System) -> None:
    """pmd_modify() with the 6.18.y fix keeps the dirtiness as pte_modify() does: D moves to
    SavedDirty (measured on 6.18.44: smaps Private_Dirty stays 2048 kB). 6.18.0 masked D
    out first (PMD_MODIFY_DROPS_DIRTY), and the PMD came out clean."""
    import pyfolio.arch.x86.pgtable as pgtable

    p, a = m.spawn_with_thp()
    q, b = m.spawn_with_thp()
    p.mprotect(a, 2 * MiB, "r")
    e = p.lookup(a)
    assert e.level == "pmd" and bits(e) == RO_SAVED and e.dirty
    assert p.smaps()[0]["Private_Dirty"] == 2048
    pgtable.PMD_MODIFY_DROPS_DIRTY = True
    try:
        q.mprotect(b, 2 * MiB, "r")
    finally:
        pgtable.PMD_MODIFY_DROPS_DIRTY = False
    old = q.lookup(b)
    assert bits(old) == (False, False, False, True) and not old.dirty
    p.mprotect(a, 2 * MiB, "rw")  # can_change_pmd_writable(): exclusive -> pmd_mkwrite()
    assert bits(p.lookup(a)) == RW_DIRTY  # pmd_mkwrite(): SavedDirty back to D
    p.write(a, 5)  # huge_pmd_set_accessed(): pmd_mkdirty()
    assert bits(p.lookup(a)) == RW_DIRTY
    assert m.check() == []


def test_madv_free_cleans_saved_dirty_too(m: System) -> None:
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.touch(a, 16 * KiB)
    p.mprotect(a, 16 * KiB, "r")
    assert bits(p.lookup(a)) == RO_SAVED
    p.madvise(a, 16 * KiB, "free")  # pte_mkclean(): D and SavedDirty, soft-dirty stays
    e = p.lookup(a)
    assert bits(e) == (False, False, False, True) and not e.dirty and not e.accessed


def test_split_of_a_forked_thp_gives_ptes_with_saved_dirty(m: System) -> None:
    p, a = m.spawn_with_thp()
    c = p.fork()
    m.split(p.folio_at(a).pfn)  # migration entries, then remove_migration_ptes()
    for proc in (p, c):
        ptes = [proc.lookup(a + i * 4 * KiB) for i in range(512)]
        assert all(e.level == "pte" for e in ptes)
        assert {bits(e) for e in ptes} == {RO_SAVED}  # pte_mkdirty() before no pte_mkwrite()
    assert m.check() == []


def test_split_of_a_writable_thp_keeps_d(m: System) -> None:
    p, a = m.spawn_with_thp()
    m.split(p.folio_at(a).pfn)
    assert {bits(p.lookup(a + i * 4 * KiB)) for i in range(512)} == {RW_DIRTY}
    assert m.check() == []


def test_thp_device_round_trip_restores_a_dirty_writable_pmd() -> None:
    m = System(ram="64M", device="16M")
    p, a = m.spawn_with_thp()
    m.device.migrate_to_device(p, a, 2 * MiB)
    assert p.lookup(a).kind == "device_private" and p.lookup(a).soft_dirty
    m.device.migrate_to_system(p, a, 2 * MiB)
    e = p.lookup(a)  # remove_migration_pmd(): pmd_mkwrite(), then pmd_mkdirty()
    assert (e.level, e.kind) == ("pmd", "huge") and bits(e) == RW_DIRTY
    assert m.check() == []
