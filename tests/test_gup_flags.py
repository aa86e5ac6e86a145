"""GUP flags: FOLL_GET references, FOLL_PIN pins, FOLL_LONGTERM, FOLL_FORCE, and what they
do to device-private pages, fork and PROT_NONE.

Expected values: mm/gup.c:try_grab_folio()/check_vma_flags() (v6.18), hmm-tests.c
``hmm_gup_test`` (private variant: every page GUP touched is a system page afterwards) and
the research notes' measurements (device_api §M2, §M4, Linux 6.18.44).
"""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.include.linux.mm import GUP_PIN_COUNTING_BIAS
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.gup import (
    FOLL_FORCE,
    FOLL_GET,
    FOLL_LONGTERM,
    FOLL_PIN,
    FOLL_WRITE,
    get_user_pages,
    pin_user_pages,
)
from pyfolio.sim.errors import EAGAIN, EFAULT, EINVAL, MmError


def test_foll_get_takes_one_reference_per_page_on_the_folio() -> None:
    m = System(ram="64M")
    p, a = m.spawn_with_thp()
    f = p.folio_at(a)
    pages = p.get_user_pages(a, 3)
    assert pages == [f.pfn, f.pfn + 1, f.pfn + 2]
    assert (f.refcount, f.pincount, f.mapcount) == (1 + 3, 0, 1)
    assert m.check() == []
    with pytest.raises(MmError) as err:  # the extra references: can_split_folio() says no
        m.split(f.pfn, 0)
    assert err.value.errno == EAGAIN
    p.release_user_pages(pages)
    assert f.refcount == 1 and m.check() == []


def test_foll_pin_on_small_and_large_folios() -> None:
    # try_grab_folio(): small _refcount += GUP_PIN_COUNTING_BIAS, large +1 and _pincount +1
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(8 * KiB)
    pages = p.get_user_pages(a, 2, pin=True, longterm=True)  # io_uring's flags
    small = p.folio_at(a)
    assert small.order == 0 and small.refcount == 1 + GUP_PIN_COUNTING_BIAS
    q, b = m.spawn_with_thp()
    large_pages = q.get_user_pages(b + 8 * KiB, 1, pin=True)
    large = q.folio_at(b)
    assert (large.refcount, large.pincount) == (2, 1)
    assert m.check() == []
    p.release_user_pages(pages, pin=True)
    q.release_user_pages(large_pages, pin=True)
    assert (small.refcount, large.refcount, large.pincount) == (1, 1, 0) and m.check() == []


def test_gup_migrates_device_private_pages_back_first() -> None:
    # hmm-tests hmm_gup_test (private): 4 pages migrated (cpages 4); GUP_BASIC_TEST(p0),
    # GUP_FAST_BENCHMARK(p1), PIN_FAST_BENCHMARK|FOLL_LONGTERM(p2), PIN_LONGTERM_BENCHMARK(p3),
    # all FOLL_WRITE; afterwards all four are plain system pages (snapshot PROT_WRITE), data i
    m = System(ram="64M", device="16M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    for i in range(4):
        p.write(a + i * 4 * KiB, i)
    assert m.device.migrate_to_device(p, a, 16 * KiB).migrated == 4
    assert all(p.lookup(a + i * 4 * KiB).kind == "device_private" for i in range(4))
    got = [p.get_user_pages(a, 1), p.get_user_pages(a + 4 * KiB, 1),
           p.get_user_pages(a + 8 * KiB, 1, pin=True, longterm=True),
           p.get_user_pages(a + 12 * KiB, 1, pin=True, longterm=True)]
    for i in range(4):
        e = p.lookup(a + i * 4 * KiB)
        assert (e.kind, e.write) == ("page", True) and m.machine.is_ram(e.pfn)
        assert got[i] == [e.pfn] and p.read(a + i * 4 * KiB) == i
    assert m.check() == []
    p.release_user_pages(got[0] + got[1])
    p.release_user_pages(got[2] + got[3], pin=True)
    assert m.check() == []


def test_gup_refuses_prot_none_and_read_only_without_force() -> None:
    # M2: process_vm_readv (GUP, no FOLL_FORCE) of PROT_NONE -> EFAULT; an io_uring pin of a
    # PROT_NONE page -> EFAULT; check_vma_flags(): a write to a read-only VMA -> EFAULT
    m = System(ram="64M")
    p, a = m.spawn_with_thp(4 * MiB)
    p.mprotect(a, 2 * MiB, "none")
    p.mprotect(a + 2 * MiB, 2 * MiB, "r")
    before = snapshot(m.machine)
    for call in (lambda: get_user_pages(p.mm, a, 1, 0),
                 lambda: p.get_user_pages(a, 1, pin=True, longterm=True),
                 lambda: p.get_user_pages(a + 2 * MiB, 1)):
        with pytest.raises(MmError) as err:
            call()
        assert err.value.errno == EFAULT
    assert snapshot(m.machine) == before


def test_foll_force_reads_prot_none_and_maps_the_huge_zero_page() -> None:
    # M2: pread /proc/self/mem of an untouched MADV_HUGEPAGE PROT_NONE range (FOLL_FORCE):
    # zeros, and huge_zero x512 mapped in the PROT_NONE VMA, Rss 0; of a written THP: its data
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.mprotect(a, 2 * MiB, "none")
    pages = get_user_pages(p.mm, a, 1, FOLL_FORCE)
    e = p.lookup(a)
    assert (e.level, e.kind, e.protnone) == ("pmd", "zero", True)
    assert pages == [m.machine.huge_zero_pfn] and p.status()["RssAnon"] == 0
    from pyfolio.mm.gup import put_user_page

    put_user_page(m.machine, pages[0])
    q, b = m.spawn_with_thp()
    q.mprotect(b, 2 * MiB, "none")
    [pfn] = get_user_pages(q.mm, b + 4 * KiB, 1, FOLL_FORCE)
    assert pfn == q.folio_at(b).pfn + 1 and m.machine.mem.stamp[pfn] == (b >> 12) + 2
    put_user_page(m.machine, pfn)
    assert m.check() == []


def test_invalid_gup_args_are_einval() -> None:
    # is_valid_gup_args(): FOLL_LONGTERM only with FOLL_PIN; not FOLL_GET and FOLL_PIN;
    # no internal flag from the caller
    m = System(ram="64M")
    p, a = m.spawn_with_thp()
    before = snapshot(m.machine)
    for call in (lambda: p.get_user_pages(a, 1, longterm=True),
                 lambda: get_user_pages(p.mm, a, 1, FOLL_WRITE | FOLL_LONGTERM),
                 lambda: pin_user_pages(p.mm, a, 1, FOLL_WRITE | FOLL_GET),
                 lambda: get_user_pages(p.mm, a, 1, FOLL_PIN)):
        with pytest.raises(MmError) as err:
            call()
        assert err.value.errno == EINVAL
    with pytest.raises(MmError) as err:
        p.release_user_pages([p.folio_at(a).pfn])  # nothing held
    assert err.value.errno == EINVAL and snapshot(m.machine) == before


def test_a_pin_makes_fork_copy_every_page() -> None:
    # M4 pin_fork: pin 4 KiB of a PMD-mapped THP (io_uring: FOLL_PIN|FOLL_LONGTERM|WRITE);
    # fork: parent thp_split_pmd +1, parent large x512 PTE-mapped (AnonHuge 0, kpagecount
    # 1); child small x512 (every page copied), kpagecount 1
    m = System(ram="64M")
    p, a = m.spawn_with_thp()
    pages = p.get_user_pages(a, 1, pin=True, longterm=True)
    assert p.lookup(a).level == "pmd"  # nothing visible changes
    child = p.fork()
    assert m.vmstat()["thp_split_pmd"] == 1
    assert p.folio_at(a).order == 9 and p.lookup(a).level == "pte"
    assert all(child.folio_at(a + i * 4 * KiB).order == 0 for i in (0, 1, 511))
    assert child.status()["RssAnon"] == 2048 and m.kpagecount([p.pfn_at(a)]) == [1]
    assert child.read(a + 8 * KiB) == p.read(a + 8 * KiB)
    p.release_user_pages(pages, pin=True)
    assert m.check() == []


def test_a_write_pin_after_fork_breaks_cow_in_the_pinner() -> None:
    # M4 pin_after_fork: THP shared with a child; the parent pins 4 KiB at +8K: parent
    # thp_split_pmd +1, large x2 small x1 large x509 (a new exclusive page at +8K), child
    # keeps its PMD, and the old page at +8K now has kpagecount 1
    m = System(ram="64M")
    p, a = m.spawn_with_thp()
    child = p.fork()
    old = p.pfn_at(a + 8 * KiB)
    pages = p.get_user_pages(a + 8 * KiB, 1, pin=True, longterm=True)
    assert m.vmstat()["thp_split_pmd"] == 1
    assert p.folio_at(a + 8 * KiB).order == 0 and pages != [old]
    assert p.folio_at(a).order == 9 and child.lookup(a).level == "pmd"
    assert m.kpagecount([old]) == [1]
    p.release_user_pages(pages, pin=True)
    assert m.check() == []


def test_exit_releases_what_gup_took() -> None:
    m = System(ram="64M")
    p, a = m.spawn_with_thp()
    p.get_user_pages(a, 2)
    p.get_user_pages(a + 8 * KiB, 1, pin=True)
    free = m.nr_free_pages()
    p.exit()
    assert m.nr_free_pages() > free and m.check() == []
