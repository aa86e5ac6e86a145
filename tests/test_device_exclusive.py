"""Device-exclusive entries: make_device_exclusive(), the CPU fault that restores the page,
and what fork, mprotect, munmap, mremap, migration and GUP do to them.

Expected values: mm/rmap.c:make_device_exclusive(), mm/memory.c:restore_exclusive_pte(),
try_restore_exclusive_pte(), copy_nonpresent_pte(), zap_nonpresent_ptes(),
mm/rmap.c:try_to_migrate_one() (balbirs-nv/linux, 6.18 with the THP series) and the
hmm-tests ``exclusive``, ``exclusive_cow`` assertions about the CPU side (research notes
device_api §4, R5). No device memory on the lab machine: source only.
"""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.include.linux.mm import folio_unlock, page_folio
from pyfolio.include.linux.swapops import SwpType
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.gup import put_user_page
from pyfolio.mm.mremap import MREMAP_FIXED, MREMAP_MAYMOVE, do_mremap
from pyfolio.mm.rmap import make_device_exclusive
from pyfolio.sim.errors import EFAULT, MmError
from pyfolio.system import Process


def _exclusive(m: System, p: Process, addr: int) -> int:
    """make_device_exclusive() as dmirror_exclusive() calls it: then folio_unlock() and
    folio_put() of what it returned."""
    pfn = make_device_exclusive(p.mm, addr, None)
    folio_unlock(page_folio(m.machine, pfn))
    put_user_page(m.machine, pfn)
    return pfn


def test_the_entry_keeps_mapcount_refcount_and_rss() -> None:
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.write(a, 7)
    folio = p.folio_at(a)
    before = (folio.refcount, folio.mapcount, p.status()["RssAnon"])
    pfn = _exclusive(m, p, a)
    e = p.lookup(a)
    assert (e.kind, e.pfn, e.present, e.swp_type) == ("device_exclusive", pfn, False,
                                                       SwpType.SWP_DEVICE_EXCLUSIVE)
    assert e.soft_dirty  # the PTE's soft-dirty bit is kept in the entry
    assert (folio.refcount, folio.mapcount, p.status()["RssAnon"]) == before == (1, 1, 4)
    assert m.machine.mem.test(folio.pfn, 1 << 4)  # the dirty PTE dirtied the folio (PG_dirty)
    rec = p.pagemap(a)[0]
    assert not rec.present and rec.swapped  # a swap-format entry to /proc/PID/pagemap
    assert p.smaps()[0]["Rss"] == 4  # smaps_pte_entry(): is_pfn_swap_entry() has a page
    assert m.check() == []


def test_the_cpu_fault_restores_an_old_writable_pte() -> None:
    # hmm-tests exclusive: CPU ptr[i]++ sees i then i+1; the restored PTE is old, writable
    # (VM_WRITE and the page anon-exclusive) and dirty (the folio is)
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.write(a, 41)
    _exclusive(m, p, a)
    assert p.read(a) == 41
    e = p.lookup(a)
    assert (e.kind, e.write, e.dirty) == ("page", True, True)
    p.write(a, 42)
    assert p.read(a) == 42 and m.vmstat()["pgfault"] >= 1 and m.check() == []


def test_a_thp_is_pmd_split_first_and_stays_large() -> None:
    # FOLL_SPLIT_PMD: "PMD-sized THPs are first remapped to be mapped by PTEs"
    m = System(ram="64M")
    p, a = m.spawn_with_thp()
    pfn = _exclusive(m, p, a + 8 * KiB)
    assert m.vmstat()["thp_split_pmd"] == 1 and m.vmstat()["thp_split_page"] == 0
    folio = p.folio_at(a)
    assert folio.order == 9 and pfn == folio.pfn + 2 and folio.mapcount == 512
    assert p.lookup(a + 8 * KiB).kind == "device_exclusive"
    assert p.lookup(a + 4 * KiB).kind == "page" and m.check() == []


def test_fork_restores_then_shares_cow() -> None:
    # copy_nonpresent_pte(): try_restore_exclusive_pte(), then copied as a present PTE;
    # hmm-tests exclusive_cow: both processes then see i and i+1 after ptr[i]++
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    for i in range(4):
        p.write(a + i * 4 * KiB, i)
    for i in range(4):
        _exclusive(m, p, a + i * 4 * KiB)
    child = p.fork()
    for proc in (p, child):
        assert all(proc.lookup(a + i * 4 * KiB).kind == "page" for i in range(4))
    assert p.folio_at(a).mapcount == 2 and child.status()["RssAnon"] == 16
    for proc in (p, child):
        for i in range(4):
            proc.write(a + i * 4 * KiB, proc.read(a + i * 4 * KiB) + 1)
            assert proc.read(a + i * 4 * KiB) == i + 1
    assert m.check() == []


def test_munmap_zaps_it_like_a_present_page() -> None:
    # zap_nonpresent_ptes(): rss[mm_counter(folio)]--, folio_remove_rmap_pte(), folio_put()
    m = System(ram="64M")
    p = m.spawn()
    free = m.nr_free_pages()
    a = p.mmap(16 * KiB)
    p.write(a, 1)  # a page and three page tables
    _exclusive(m, p, a)
    p.munmap(a, 16 * KiB)
    assert p.status()["RssAnon"] == 0 and m.nr_free_pages() == free and m.check() == []


def test_mprotect_leaves_it_and_mremap_moves_it() -> None:
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.write(a, 9)
    raw = None
    _exclusive(m, p, a)
    raw = p.lookup(a).raw
    p.mprotect(a, 64 * KiB, "r")  # change_pte_range(): a device-exclusive entry stays
    assert p.lookup(a).raw == raw
    b = p.mmap(64 * KiB)
    p.munmap(b, 64 * KiB)
    assert do_mremap(p.mm, a, 64 * KiB, 64 * KiB, MREMAP_MAYMOVE | MREMAP_FIXED, b) == b
    assert p.lookup(b).kind == "device_exclusive" and m.check() == []
    assert p.read(b) == 9 and p.lookup(b).kind == "page"
    assert not p.lookup(b).write  # the VMA is read-only now: restored read-only
    assert m.check() == []


def test_migration_turns_it_into_a_readable_exclusive_entry() -> None:
    # try_to_migrate_one(): a device-exclusive PTE is cleared, writable false, the page
    # anon-exclusive: readable-exclusive migration entry; remove_migration_pte() maps it
    # back read-only and exclusive, so a write reuses it without a copy
    m = System(ram="64M")
    p, a = m.spawn_with_thp()
    _exclusive(m, p, a + 8 * KiB)
    m.split(p.folio_at(a).pfn, 0)
    e = p.lookup(a + 8 * KiB)
    assert (e.kind, e.write) == ("page", False) and p.folio_at(a + 8 * KiB).order == 0
    pfn = e.pfn
    p.write(a + 8 * KiB, 3)
    assert p.pfn_at(a + 8 * KiB) == pfn and m.check() == []


def test_gup_faults_it_back() -> None:
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.write(a, 5)
    pfn = _exclusive(m, p, a)
    assert p.get_user_pages(a, 1) == [pfn] and p.lookup(a).kind == "page"
    p.release_user_pages([pfn])
    assert m.check() == []


@pytest.mark.parametrize("prot", ["r", "none"])
def test_read_only_and_prot_none_are_efault(prot: str) -> None:
    # get_user_page_vma_remote(FOLL_WRITE): check_vma_flags() -> -EFAULT, nothing changed
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.write(a, 5)
    p.mprotect(a, 16 * KiB, prot)
    before = snapshot(m.machine)
    for addr in (a, a + 64 * MiB):  # a read-only or PROT_NONE page; nothing mapped
        with pytest.raises(MmError) as err:
            make_device_exclusive(p.mm, addr, None)
        assert err.value.errno == EFAULT
    assert snapshot(m.machine) == before
