"""Per-mm RSS counters (mm->rss_stat[]: MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS,
MM_SHMEMPAGES) and the /proc/PID/status lines built on them (fs/proc/task_mmu.c:task_mem()):
the value each modelled path leaves, as the functions that keep the counters in the kernel
(v6.18) leave it, with the deltas measured on 6.18.44 (device-API research notes, M3);
exit's check_mm(); and the invariant that catches a wrong counter."""

from __future__ import annotations

import pytest

from pyfolio import EINVAL, KiB, MiB, MmError, System, VmWarning
from pyfolio.include.linux.mm import Folio, folio_put, get_mm_rss, mm_counter, mm_counter_file
from pyfolio.include.linux.mm_types import (
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    NR_MM_COUNTERS,
)
from pyfolio.mm.page_alloc import alloc_pages
from pyfolio.sim.memmap import PG
from pyfolio.system import Process


def anon(p: Process) -> int:
    return p.status()["RssAnon"]


def thp(m: System, length: int = 2 * MiB) -> tuple[Process, int]:
    p = m.spawn()
    a = p.mmap(length)
    p.madvise(a, length, "hugepage")
    p.touch(a, 2 * MiB)
    return p, a


@pytest.fixture
def m() -> System:
    return System(ram="64M", device="16M")


def test_the_counter_indices_and_the_status_lines(m: System) -> None:
    assert (MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES, NR_MM_COUNTERS) == (
        0, 1, 2, 3, 4)  # include/linux/mm_types_task.h
    p = m.spawn()
    assert p.status() == {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0, "VmSwap": 0}


def test_measured_rss_sequence(m: System) -> None:
    """rss.c on 6.18.44: THP fault +2048 kB, PMD split +0, MADV_DONTNEED of 10 pages -40,
    the shrinker's split +0, munmap of the rest -2008."""
    p, a = thp(m)
    assert anon(p) == 2048 and p.status()["VmRSS"] == 2048  # map_anon_folio_pmd()
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    assert anon(p) == 2048  # __split_huge_pmd_locked() moves no counter
    p.madvise(a + 64 * KiB, 40 * KiB, "dontneed")
    assert anon(p) == 2008  # zap_present_folio_ptes(): rss[MM_ANONPAGES] -= nr
    m.drop_caches()
    assert anon(p) == 2008  # the split remaps every page (no zero-filled one)
    p.munmap(a, 2 * MiB)
    assert anon(p) == 0 and get_mm_rss(p.mm) == 0 and m.check() == []


def test_small_and_mthp_faults_count_their_pages_zero_page_counts_nothing(m: System) -> None:
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.read(a)
    assert anon(p) == 0  # the zero page is special: vm_normal_page() is NULL
    p.write(a, 1)
    assert anon(p) == 4  # wp_page_copy() from the zero page: inc_mm_counter()
    p.write(a + 4 * KiB, 1)
    assert anon(p) == 8  # do_anonymous_page(): add_mm_counter(nr_pages = 1)
    m.set_mthp("64kB", "madvise")
    q = m.spawn()
    b = q.mmap(256 * KiB)
    q.madvise(b, 256 * KiB, "hugepage")
    q.write(b + 70 * KiB, 1)
    assert anon(q) == 64  # one 64 KiB folio: add_mm_counter(nr_pages = 16)
    assert m.check() == []


def test_huge_zero_page_counts_nothing_until_written(m: System) -> None:
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.read(a)
    assert anon(p) == 0 and p.lookup(a).kind == "zero"
    p.write(a, 1)
    assert anon(p) == 2048  # do_huge_zero_wp_pmd() -> map_anon_folio_pmd()


def test_fork_child_counts_what_it_inherits_cow_changes_nothing(m: System) -> None:
    p, a = thp(m, 4 * MiB)
    p.read(a + 2 * MiB + 8 * KiB)  # the huge zero page in the second 2 MiB
    assert anon(p) == 2048
    c = p.fork()
    assert anon(c) == anon(p)  # copy_huge_pmd(): +HPAGE_PMD_NR; the huge zero PMD: 0
    c.write(a + 8 * KiB, 7)
    assert anon(c) == anon(p)  # wp_page_copy() anon -> anon: no change
    c.exit()
    assert m.check() == []


def test_fork_of_a_pinned_thp_copies_every_page_for_the_child(m: System) -> None:
    p, a = thp(m)
    p.pin(a, 4 * KiB)
    c = p.fork()  # copy_huge_pmd() -EAGAIN; copy_present_page() for each of 512 pages
    assert anon(c) == 2048 and anon(p) == 2048
    assert c.folio_at(a).order == 0  # type: ignore[union-attr]
    c.exit()
    p.unpin(a, 4 * KiB)
    assert m.check() == []


def test_split_maps_zero_filled_pages_to_the_zero_page_and_uncounts_them(m: System) -> None:
    """try_to_map_unused_to_zeropage(): dec_mm_counter(mm, mm_counter(folio)) per page."""
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB, value=0)  # written with zeroes
    p.write(a, 1)
    p.munmap(a + 1 * MiB, 1 * MiB)
    assert anon(p) == 1024
    m.drop_caches()
    assert anon(p) == 4  # the 255 zero-filled pages left went to the shared zero page
    assert m.check() == []


def test_collapse_counts_each_none_or_zero_pte(m: System) -> None:
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.touch(a, 400 * KiB)
    p.read(a + 1 * MiB)
    assert anon(p) == 400
    p.madvise(a, 2 * MiB, "collapse")
    assert p.lookup(a).level == "pmd"
    assert anon(p) == 2048  # __collapse_huge_page_copy_succeeded(): +1 per none/zero PTE
    assert m.check() == []


def test_device_private_pages_keep_counting_as_anon(m: System) -> None:
    p, a = thp(m)
    m.device.migrate_to_device(p, a, 2 * MiB)
    assert anon(p) == 2048 and p.lookup(a).kind == "device_private"
    c = p.fork()
    assert anon(c) == 2048  # copy_huge_pmd(): a device-private PMD counts HPAGE_PMD_NR
    c.exit()
    q = m.spawn()
    b = q.mmap(2 * MiB)
    q.touch(b, 64 * KiB)
    m.device.migrate_to_device(q, b, 64 * KiB)
    d = q.fork()
    assert anon(d) == anon(q) == 64  # copy_nonpresent_pte(): rss[mm_counter(folio)]++
    d.munmap(b, 2 * MiB)  # zap_nonpresent_ptes(): rss[mm_counter(folio)]--
    assert anon(d) == 0 and anon(q) == 64
    r = m.spawn()
    e = r.mmap(2 * MiB)
    m.device.migrate_to_device(r, e, 2 * MiB)  # migrate_vma_insert_huge_pmd_page()
    assert anon(r) == 2048
    p.read(a)  # back to RAM: no counter moves
    assert anon(p) == 2048 and m.check() == []


def test_mm_counter_classifies_anon_shmem_and_file_folios(m: System) -> None:
    p, a = thp(m)
    f = p.folio_at(a)
    assert f is not None and mm_counter(f) == MM_ANONPAGES
    # a folio whose ->mapping is an address_space (no file system in the simulator yet:
    # a bare page stands in for one, and is given back unchanged)
    pfn = alloc_pages(m.machine, 0)
    page, mem = Folio(m.machine, pfn), m.machine.mem
    mem.mapping[pfn] = 0x1000  # not FOLIO_MAPPING_ANON
    assert mm_counter(page) == mm_counter_file(page) == MM_FILEPAGES
    mem.set(pfn, PG.swapbacked)  # shmem folios are swap-backed
    assert mm_counter(page) == MM_SHMEMPAGES
    mem.mapping[pfn] = 0
    mem.clear(pfn, PG.swapbacked)
    folio_put(page)
    assert m.check() == []


def test_status_of_an_exited_process_is_an_error(m: System) -> None:
    p, _ = thp(m)
    p.exit()
    with pytest.raises(MmError) as e:
        p.status()
    assert e.value.errno == EINVAL


# -- the invariant and check_mm -----------------------------------------------------------
def test_the_invariant_catches_a_wrong_counter(m: System) -> None:
    p, a = thp(m)
    q = m.spawn()
    b = q.mmap(64 * KiB)
    q.touch(b, 64 * KiB)
    assert m.check() == []
    q.mm.rss_stat[MM_ANONPAGES] += 1
    p.mm.rss_stat[MM_SWAPENTS] = 3
    bad = sorted((v.kind, v.where, v.detail) for v in m.check())
    assert bad == [("rss", p.mm.id, f"mm {p.mm.id} MM_SWAPENTS=3 but its page tables map 0"),
                   ("rss", q.mm.id, f"mm {q.mm.id} MM_ANONPAGES=17 but its page tables "
                                    "map 16")]


def test_check_mm_reports_a_counter_left_at_exit(m: System) -> None:
    p, a = thp(m)
    p.mm.rss_stat[MM_FILEPAGES] += 2
    with pytest.raises(VmWarning, match=r"Bad rss-counter state mm:\d+ type:MM_FILEPAGES val:2"):
        p.exit()
