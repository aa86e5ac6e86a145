"""PROT_NONE: the pages stay mapped (present to core mm), the CPU faults on them.

Expected values are the kernel's, measured on Linux 6.18.44 (research notes
device_api §M2, two runs) or read in arch/x86/include/asm/pgtable*.h and mm/mprotect.c.
"""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.arch.x86.pgtable import _PAGE_PRESENT, _PAGE_PROTNONE, PTE_PFN_MASK, walk
from pyfolio.include.linux.mm_types import VM
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import EFAULT, EINVAL, MmError, SegmentationFault
from pyfolio.system import Process


def _thp(m: System) -> tuple[Process, int]:
    p, a = m.spawn_with_thp(4 * MiB)
    return p, a


def test_prot_none_on_a_whole_thp_keeps_the_pmd() -> None:
    # M2: mprotect(a, 2M, PROT_NONE): large x512, kpagecount 1, Rss 2048, AnonHugePages 2048,
    # pagemap present, VMA ---p; thp_split_pmd +0, numa_huge_pte_updates +1
    m = System(ram="64M")
    p, a = _thp(m)
    v0 = m.vmstat()
    p.mprotect(a, 2 * MiB, "none")
    e = p.lookup(a)
    assert (e.level, e.kind, e.present, e.protnone) == ("pmd", "huge", True, True)
    assert not e.raw & _PAGE_PRESENT and e.raw & _PAGE_PROTNONE
    assert e.raw & PTE_PFN_MASK & ~((1 << 21) - 1) == ~(e.pfn << 12) & PTE_PFN_MASK \
        & ~((1 << 21) - 1)  # pfn_pmd(PAGE_NONE): the PFN stored inverted
    folio = p.folio_at(a)
    assert folio is not None and folio.order == 9 and folio.entire_mapcount == 1
    pm = p.pagemap(a, 512)
    assert all(r.present for r in pm) and m.kpagecount([pm[0].pfn]) == [1]
    sm = p.smaps()[0]
    assert (sm["Rss"], sm["AnonHugePages"]) == (2048, 2048)
    assert p.status()["RssAnon"] == 2048
    assert p.vma_at(a).vm_flags & (VM.READ | VM.WRITE) == 0
    v1 = m.vmstat()
    assert v1["thp_split_pmd"] - v0["thp_split_pmd"] == 0
    assert v1["numa_huge_pte_updates"] - v0["numa_huge_pte_updates"] == 1
    assert m.check() == []


def test_cpu_access_to_prot_none_is_sigsegv_and_changes_nothing() -> None:
    m = System(ram="64M")
    p, a = _thp(m)
    p.mprotect(a, 2 * MiB, "none")
    before = snapshot(m.machine)
    for access in (lambda: p.read(a), lambda: p.write(a + 4 * KiB, 1)):
        with pytest.raises(SegmentationFault):
            access()
    assert snapshot(m.machine) == before


def test_back_to_rw_keeps_the_pmd_and_the_data() -> None:
    # M2: mprotect(a, 2M, RW): ok, data intact, PMD kept (AnonHuge 2048),
    # numa_huge_pte_updates +1 (a second whole-PMD change)
    m = System(ram="64M")
    p, a = _thp(m)
    data = [p.read(a + i * 4 * KiB) for i in (0, 1, 511)]
    p.mprotect(a, 2 * MiB, "none")
    v0 = m.vmstat()["numa_huge_pte_updates"]
    p.mprotect(a, 2 * MiB, "rw")
    assert m.vmstat()["numa_huge_pte_updates"] - v0 == 1
    e = p.lookup(a)
    assert (e.kind, e.present, e.protnone) == ("huge", True, False) and e.raw & _PAGE_PRESENT
    assert [p.read(a + i * 4 * KiB) for i in (0, 1, 511)] == data
    assert p.smaps()[0]["AnonHugePages"] == 2048
    p.write(a, 7)  # the folio is exclusive: mprotect made the PMD writable again
    assert p.lookup(a).write and m.vmstat()["thp_split_pmd"] == 0
    assert m.check() == []


def test_the_same_protection_again_changes_nothing() -> None:
    # mprotect_fixup(): flags unchanged -> return 0 (no split, no change_protection)
    m = System(ram="64M")
    p, a = _thp(m)
    before = snapshot(m.machine)
    p.mprotect(a, 2 * MiB, "rw")
    assert snapshot(m.machine) == before


def test_prot_none_on_one_page_splits_the_pmd() -> None:
    # M2: mprotect(a+4K, 4K, PROT_NONE): VMAs rw/---/rw; large x512, AnonHuge 0,
    # thp_split_pmd +1; the child writes a+4K: SIGSEGV, a+8K: ok
    m = System(ram="64M")
    p, a = _thp(m)
    p.mprotect(a + 4 * KiB, 4 * KiB, "none")
    vmas = [(v.vm_start - a, v.vm_end - a, v.vm_flags & (VM.READ | VM.WRITE))
            for v in p.mm.vmas_between(a, a + 2 * MiB)]
    assert vmas == [(0, 4 * KiB, VM.READ | VM.WRITE), (4 * KiB, 8 * KiB, VM(0)),
                    (8 * KiB, 2 * MiB, VM.READ | VM.WRITE)]
    assert m.vmstat()["thp_split_pmd"] == 1
    assert p.folio_at(a).order == 9 and p.smaps()[0]["AnonHugePages"] == 0
    e = p.lookup(a + 4 * KiB)
    assert (e.level, e.kind, e.protnone, e.pfn) == ("pte", "page", True, p.folio_at(a).pfn + 1)
    assert sum(v["Rss"] for v in p.smaps()) == 2048  # every page still counts
    child = p.fork()
    with pytest.raises(SegmentationFault):
        child.write(a + 4 * KiB, 1)
    child.write(a + 8 * KiB, 1)
    assert child.lookup(a + 4 * KiB).protnone  # fork copies the PROT_NONE entry as it is
    assert m.check() == []
    child.exit()
    p.exit()
    assert m.check() == []


def test_a_split_folio_is_remapped_prot_none() -> None:
    # remove_migration_pte(): mk_pte(page, vma->vm_page_prot): PAGE_NONE again
    m = System(ram="64M")
    p, a = _thp(m)
    p.mprotect(a, 2 * MiB, "none")
    p.munmap(a + 1 * MiB, 1 * MiB)  # the PMD is split, the folio partially mapped
    assert m.drop_caches() == 1
    e = p.lookup(a + 8 * KiB)
    assert (e.kind, e.protnone) == ("page", True) and p.folio_at(a).order == 0
    assert p.status()["RssAnon"] == 1024
    p.mprotect(a, 1 * MiB, "r")
    assert p.read(a + 8 * KiB) == (a >> 12) + 3  # the data moved with the split
    assert m.check() == []


def test_prot_none_refuses_gup_and_device_migration() -> None:
    # M2: io_uring pin of a PROT_NONE page -> EFAULT; hmm-tests migrate_mixed: dmirror
    # refuses a PROT_NONE range with -EINVAL; nothing changes
    m = System(ram="64M", device="16M")
    p, a = _thp(m)
    p.mprotect(a, 2 * MiB, "none")
    dev = m.device
    before = snapshot(m.machine)
    with pytest.raises(MmError) as err:
        p.pin(a, 4 * KiB)
    assert err.value.errno == EFAULT
    with pytest.raises(MmError) as err:
        dev.migrate_to_device(p, a, 2 * MiB)
    assert err.value.errno == EINVAL
    assert snapshot(m.machine) == before


def test_zero_page_and_untouched_range_under_prot_none() -> None:
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.read(a)  # the zero page (no MADV_HUGEPAGE)
    p.mprotect(a, 2 * MiB, "none")
    e = p.lookup(a)
    assert (e.kind, e.protnone, e.pfn) == ("zero", True, 0)
    assert p.status()["RssAnon"] == 0 and p.pagemap(a)[0].present
    p.munmap(a, 2 * MiB)
    assert walk(m.machine, p.mm.pgd, a).raw == 0 and m.check() == []


def test_bad_protection_is_einval() -> None:
    m = System(ram="64M")
    p, a = _thp(m)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as err:
        p.mprotect(a, 2 * MiB, "x")
    assert err.value.errno == EINVAL and snapshot(m.machine) == before
