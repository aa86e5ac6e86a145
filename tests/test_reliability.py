"""Regression tests for the twelve root causes A-L an outside fuzzer found (issue 21).

Each test is the issue's short form, with what must hold instead; A is a kernel bug the
simulator now reaches the way a CONFIG_DEBUG_VM kernel does. The checks debug_vm.check()
gained with them (migration entries left behind, device free lists, device page tables
that disagree with the CPU's) are tested against states built to break them.
"""

from __future__ import annotations

import pytest

from pyfolio import EINVAL, ENOMEM, KernelBug, KiB, MiB, MmError, System
from pyfolio.include.linux.mm import folio_lock, folio_unlock
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.migrate import ref_drop, ref_hold, try_to_migrate

DESIGNS = ["split-unmapped-folio", "unmapped-param"]


def leave_free(m: System, n: int) -> None:
    """Fill RAM with 4 KiB pages of a process of its own, then free exactly ``n`` of them."""
    q = m.spawn()
    b = q.mmap(64 * MiB)
    q.madvise(b, 64 * MiB, "nohugepage")
    i = 0
    with pytest.raises(MmError):
        while True:
            q.write(b + i * 4 * KiB, 1)
            i += 1
    assert m.nr_free_pages() == 0
    for j in range(n):
        q.munmap(b + j * 4 * KiB, 4 * KiB)
    assert m.nr_free_pages() == n


def exit_all(m: System) -> None:
    for p in list(m.processes):
        p.exit()
    assert m.check() == []


# -- A: a THP shared by fork(), migrated to a device without large pages ------------------
@pytest.mark.parametrize("design", DESIGNS)
def test_a_forked_thp_split_fallback_reaches_the_kernels_vm_bug_on(design: str) -> None:
    """migrate_device_unmap()'s try_to_migrate(folio, 0) leaves a PMD migration entry in
    the child; migrate_vma_split_unmapped_folio() splits only the parent's PMD, then the
    folio; remove_migration_pte() finds the child's PMD entry for an order-0 folio and
    hits VM_BUG_ON_FOLIO(!folio_test_pmd_mappable(folio))."""
    m = System(ram="16M", split_design=design)
    d = m.add_device("d", memory="2M", large_pages=False)
    p, a = m.spawn_with_thp()
    c = p.fork()
    with pytest.raises(KernelBug, match=r"folio_test_pmd_mappable.*remove_migration_pte"):
        d.migrate_to_device(p, a, 2 * MiB)
    assert c.lookup(a).kind == "migration" and c.lookup(a).level == "pmd"


def test_a_unshared_or_large_page_paths_do_not_reach_it() -> None:
    """Without fork(), or with a device that has large pages, the same call is fine."""
    m = System(ram="16M")
    d = m.add_device("d", memory="2M", large_pages=False)
    p, a = m.spawn_with_thp()
    assert d.migrate_to_device(p, a, 2 * MiB).migrated == 512 and m.check() == []
    m2 = System(ram="16M")
    d2 = m2.add_device("d", memory="2M")
    p2, a2 = m2.spawn_with_thp()
    c2 = p2.fork()
    assert d2.migrate_to_device(p2, a2, 2 * MiB).migrated == 512 and m2.check() == []
    assert c2.lookup(a2).kind == "device_private" and c2.read(a2) == (a2 >> 12) + 1
    exit_all(m2)


# -- B: out of memory while a device THP faults back ---------------------------------------
def test_b_out_of_memory_while_a_device_thp_faults_back_keeps_the_data() -> None:
    m = System(ram="16M")
    d = m.add_device("d", memory="4M")
    p, a = m.spawn_with_thp()
    d.migrate_to_device(p, a, 2 * MiB)
    leave_free(m, 20)  # no order-9 block, and 20 pages for the 512-page fallback
    with pytest.raises(MmError) as e:
        p.read(a + 5 * 4 * KiB)
    assert e.value.errno == ENOMEM
    assert m.check() == []
    assert p.lookup(a).kind == "device_private" and p.lookup(a).level == "pmd"
    assert d.free_small == 0  # nothing of the device was freed
    m.processes[-1].exit()  # the filler: memory back
    assert p.read(a + 5 * 4 * KiB) == ((a + 5 * 4 * KiB) >> 12) + 1
    exit_all(m)


def test_b_check_finds_a_migration_entry_left_behind() -> None:
    m = System(ram="16M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.write(a, 7)
    f = p.folio_at(a)
    ref_hold(f)
    folio_lock(f)
    try_to_migrate(f, 0)
    assert m.check() == []  # inside a migration (the folio is locked): fine
    folio_unlock(f)
    kinds = [v.kind for v in m.check()]
    assert kinds == ["migration-entry"], kinds
    ref_drop(f)  # the last reference: the entry now points at a free frame
    assert [v.detail.endswith("which is free") for v in m.check()
            if v.kind == "migration-entry"] == [True]


# -- C: pin() after a device fault that did not bring the page back ----------------------
def test_c_pin_retries_the_fault_until_the_page_is_back() -> None:
    """mprotect() of one page splits the device PMD; a fault on another page first only
    splits the device folio (migrate_vma_split_folio()), and GUP faults again."""
    m = System(ram="16M")
    d = m.add_device("d", memory="4M")
    p, a = m.spawn_with_thp()
    d.migrate_to_device(p, a, 2 * MiB)
    p.mprotect(a, 4 * KiB, "r")
    before = m.vmstat()["pgfault"]
    pfns = p.pin(a + 4 * KiB, 4 * KiB)
    assert m.vmstat()["pgfault"] - before == 2
    assert p.lookup(a + 4 * KiB).kind == "page" and p.pfn_at(a + 4 * KiB) == pfns[0]
    assert p.read(a + 4 * KiB) == ((a + 4 * KiB) >> 12) + 1 and m.check() == []
    exit_all(m)


def test_c_mprotect_makes_device_private_entries_read_only() -> None:
    """change_pte_range() and change_huge_pmd(): a writable device-private entry becomes
    readable whatever the new protection."""
    m = System(ram="16M")
    d = m.add_device("d", memory="4M")
    p, a = m.spawn_with_thp()
    d.migrate_to_device(p, a, 2 * MiB)
    p.mprotect(a, 2 * MiB, "rw")  # the same flags: mprotect_fixup() does nothing
    assert p.lookup(a).write
    p.mprotect(a, 2 * MiB, "r")
    p.mprotect(a, 2 * MiB, "rw")
    e = p.lookup(a)
    assert (e.level, e.kind, e.write) == ("pmd", "device_private", False)
    p.mprotect(a, 4 * KiB, "r")  # splits the PMD: PTEs, read-only
    p.mprotect(a, 4 * KiB, "rw")
    assert (p.lookup(a + 8 * KiB).kind, p.lookup(a + 8 * KiB).write) == ("device_private", False)
    p.write(a + 8 * KiB, 5)
    assert p.read(a + 8 * KiB) == 5 and m.check() == []


# -- D: a page table cannot be allocated while a device page is inserted -------------------
def test_d_page_table_allocation_failure_skips_the_page() -> None:
    m = System(ram="16M")
    d = m.add_device("d", memory="2M")
    p = m.spawn()
    a = p.mmap(4 * MiB)
    leave_free(m, 0)
    r = d.migrate_to_device(p, a + 2 * MiB, 8 * KiB)  # holes: device pages for empty PTEs
    assert r.migrated == 0 and [x.migrated for x in r] == [False, False]
    assert m.check() == []
    assert (d.free_large, d.free_small) == (0, 512)  # both device pages went back
    exit_all(m)


def test_d_the_huge_insert_allocates_its_page_table_before_mapping() -> None:
    m = System(ram="16M")
    d = m.add_device("d", memory="2M")
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.write(a, 1)  # the PUD and PMD tables exist: only the deposit needs a page
    leave_free(m, 0)
    r = d.migrate_to_device(p, a + 2 * MiB, 2 * MiB)  # one COMPOUND hole, one device THP
    assert r.migrated == 0 and m.check() == [] and d.free_large == 1
    exit_all(m)


# -- E: fork() out of memory ---------------------------------------------------------------
@pytest.mark.parametrize("free", [1, 2, 3, 4])
def test_e_fork_out_of_memory_tears_the_child_down(free: int) -> None:
    m = System(ram="16M")
    p, a = m.spawn_with_thp(4 * MiB)
    p.touch(a + 2 * MiB, 64 * KiB)
    leave_free(m, free)
    with pytest.raises(MmError) as e:
        p.fork()
    assert e.value.errno == ENOMEM
    assert m.check() == [] and len(m.machine.mms) == len(m.processes) == 2
    assert m.nr_free_pages() == free  # every table the child had is back
    assert p.read(a) == (a >> 12) + 1
    exit_all(m)
    assert m.nr_free_pages() == 4095


# -- F: a device THP split to intermediate orders, then freed ------------------------------
def test_f_device_folios_of_intermediate_orders_go_back_page_by_page() -> None:
    m = System(ram="16M")
    d = m.add_device("d", memory="2M")
    p, a = m.spawn_with_thp()
    d.migrate_to_device(p, a, 2 * MiB)
    m.split(p.folio_at(a).pfn, 4)
    assert {p.folio_at(a + i * 64 * KiB).order for i in range(32)} == {4}
    p.exit()
    assert (d.free_large, d.free_small, d.driver.cfree) == (0, 512, 512)
    assert m.check() == []


def test_f_check_finds_overlapping_or_excess_device_free_lists() -> None:
    m = System(ram="16M")
    d = m.add_device("d", memory="4M")
    d.driver.free_pages.append(d.driver.free_folios[0] + 3)
    assert [v.kind for v in m.check()] == ["device-free-list"]
    d.driver.free_pages.pop()
    head = d.driver.free_folios.pop()
    assert [v.detail for v in m.check()] == [
        "512 device frames: frame is neither free nor in a live folio"]
    d.driver.free_folios.append(head)
    assert m.check() == []


# -- G: the split design of one call --------------------------------------------------------
def test_g_design_applies_to_one_call_only_even_when_it_fails() -> None:
    m = System(ram="16M", split_design="split-unmapped-folio")
    d = m.add_device("d", memory="2M", large_pages=False)
    p, a = m.spawn_with_thp()
    d.migrate_to_device(p, a, 2 * MiB, design="unmapped-param")
    assert d.driver.split_design == "b"
    with pytest.raises(MmError):
        d.migrate_to_device(p, a + 2 * MiB, 4 * KiB, design="unmapped-param")
    with pytest.raises(MmError):
        d.migrate_to_device(p, a, 4 * KiB, design="flag")
    assert d.driver.split_design == "b" and m.split_design == "split-unmapped-folio"


# -- H: the device mirror hears of CPU page-table changes ----------------------------------
@pytest.mark.parametrize("change", ["fork+dontneed", "fork", "dontneed", "munmap",
                                    "mprotect", "cow", "split_pmd", "free", "exit"])
def test_h_the_device_mirror_is_invalidated(change: str) -> None:
    m = System(ram="16M")
    d = m.add_device("d", memory="4M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.write(a, 7)
    p.write(a + 32 * KiB, 9)
    d.migrate_to_device(p, a, 64 * KiB)
    assert d.read(p, a) == 7
    if "fork" in change:
        p.fork()
    if "dontneed" in change:
        p.madvise(a, 4 * KiB, "dontneed")
    if change == "munmap":
        p.munmap(a, 4 * KiB)
    if change == "mprotect":
        p.mprotect(a, 4 * KiB, "r")
    if change == "cow":  # a read brings the page back, fork shares it, the write copies it
        assert p.read(a) == 7
        d.migrate_to_device(p, a, 4 * KiB)
        p.fork()
        p.write(a, 8)
    if change == "split_pmd":
        m2, d2 = m, d
        p2, b = m2.spawn_with_thp()
        d2.migrate_to_device(p2, b, 2 * MiB)
        assert d2.read(p2, b + 8 * KiB) == (b >> 12) + 3
        p2.mprotect(b + 4 * KiB, 4 * KiB, "r")  # __split_huge_pmd(): MMU_NOTIFY_CLEAR
        assert d2.read(p2, b + 8 * KiB) is None and d.read(p, a) == 7 and m.check() == []
        return
    if change == "free":
        p.madvise(a, 4 * KiB, "free")
    if change == "exit":
        mm_id = p.mm.id
        p.exit()
        assert not [k for k in d.driver.pt if k[0] == mm_id]
        assert m.check() == []
        return
    assert d.read(p, a) is None
    expected = {"cow": 8, "free": 7, "mprotect": 7, "fork": 7}.get(change, 0)
    assert change == "munmap" or p.read(a) == expected
    assert m.check() == []


def test_h_its_own_migration_does_not_invalidate_the_device() -> None:
    """dmirror_interval_invalidate() skips MMU_NOTIFY_MIGRATE whose owner is the device;
    another device's migration of the same mm invalidates it."""
    m = System(ram="16M")
    d1, d2 = m.add_device("d1", memory="2M"), m.add_device("d2", memory="2M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.write(a, 1)
    p.write(a + 4 * KiB, 2)
    d1.migrate_to_device(p, a, 4 * KiB)
    d1.migrate_to_device(p, a + 4 * KiB, 4 * KiB)
    assert (d1.read(p, a), d1.read(p, a + 4 * KiB)) == (1, 2)
    d2.migrate_to_device(p, a + 8 * KiB, 4 * KiB)  # an empty page: a hole d2 fills
    assert (d1.read(p, a), d1.read(p, a + 4 * KiB)) == (1, 2)  # outside d2's range
    assert m.check() == []


def test_h_check_finds_a_stale_device_entry() -> None:
    m = System(ram="16M")
    d = m.add_device("d", memory="4M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.write(a, 3)
    d.migrate_to_device(p, a, 4 * KiB)
    key = (p.mm.id, a)
    pfn, _ = d.driver.pt[key]
    d.driver.pt[(p.mm.id, a + 4 * KiB)] = (pfn, False)  # the CPU maps nothing there
    assert [v.kind for v in m.check()] == ["mirror"]
    del d.driver.pt[(p.mm.id, a + 4 * KiB)]
    p.mprotect(a, 4 * KiB, "r")
    d.driver.pt[key] = (pfn, True)  # writable, the CPU entry is not
    assert [v.kind for v in m.check()] == ["mirror"]


# -- I: munmap() of bad ranges -------------------------------------------------------------
@pytest.mark.parametrize("addr_off, length", [(0, 1 << 60), (None, 4096), (1, 4096), (0, 0),
                                              (0, -4096)])
def test_i_munmap_bad_ranges_are_einval_and_change_nothing(addr_off, length) -> None:
    m = System(ram="16M")
    p = m.spawn()
    a = p.mmap(4 * KiB)
    p.mmap(8 * KiB)
    p.write(a, 1)
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        p.munmap(-4096 if addr_off is None else a + addr_off, length)
    assert e.value.errno == EINVAL and snapshot(m.machine) == before


def test_i_other_syscalls_check_as_the_kernel() -> None:
    m = System(ram="16M")
    p = m.spawn()
    a = p.mmap(8 * KiB)
    before = snapshot(m.machine)
    for call, errno in ((lambda: p.mprotect(a, -1, "r"), ENOMEM),  # PAGE_ALIGN wraps: end <= start
                        (lambda: p.mprotect(a + 1, 4096, "r"), EINVAL),
                        (lambda: p.madvise(a, -1, "dontneed"), EINVAL),
                        (lambda: p.madvise(a + 1, 4096, "dontneed"), EINVAL),
                        (lambda: p.mmap(-1), ENOMEM), (lambda: p.mmap(0), EINVAL)):
        with pytest.raises(MmError) as e:
            call()
        assert e.value.errno == errno
    for call in (lambda: p.munmap(1.5, 4096), lambda: p.munmap(a, 4096.0),
                 lambda: p.mprotect(a, 4096, 3), lambda: p.madvise(a, 4096, None),
                 lambda: p.mmap([4096])):
        with pytest.raises(TypeError):
            call()
    p.mprotect(a, 0, "r")  # "if (!len) return 0;"
    p.madvise(a, 0, "dontneed")
    assert snapshot(m.machine) == before


# -- J: System.split() checks its arguments before touching the folio ----------------------
@pytest.mark.parametrize("kwargs, exc", [
    ({"at": 10 ** 9, "uniform": False}, MmError), ({"at": -5, "uniform": False}, MmError),
    ({"new_order": "1"}, TypeError), ({"new_order": 1.0}, TypeError),
    ({"new_order": -1}, MmError), ({"new_order": 9}, MmError), ({"new_order": 1}, MmError),
    ({"uniform": "yes"}, TypeError), ({"at": 2.0, "uniform": False}, TypeError)])
def test_j_split_bad_arguments_change_nothing(kwargs, exc) -> None:
    m = System(ram="16M")
    p, a = m.spawn_with_thp()
    pfn = p.folio_at(a).pfn
    before = snapshot(m.machine)
    with pytest.raises(exc):
        m.split(pfn, **kwargs)
    after = snapshot(m.machine)
    failed = after.pop("vmstat")["thp_split_page_failed"] - before.pop("vmstat")[  # type: ignore[index]
        "thp_split_page_failed"]
    assert after == before and failed in (0, 1) and m.check() == []
    with pytest.raises(TypeError):
        m.split(float(pfn))
    with pytest.raises(MmError):
        m.split(10 ** 9)
    m.split(pfn, 0)  # and the folio is still splittable
    assert p.folio_at(a).order == 0 and m.check() == []


# -- K: write() and touch() check the value first -------------------------------------------
@pytest.mark.parametrize("value, exc", [(1.5, TypeError), (-1, ValueError), (1 << 64, ValueError),
                                        ("7", TypeError), (True, TypeError)])
def test_k_write_and_touch_check_the_value_before_faulting(value, exc) -> None:
    m = System(ram="16M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    before = snapshot(m.machine)
    with pytest.raises(exc):
        p.write(a, value)
    with pytest.raises(exc):
        p.touch(a, 64 * KiB, value)
    assert snapshot(m.machine) == before
    p.write(a, (1 << 64) - 1)
    p.touch(a + 4 * KiB, 8 * KiB, 0)
    assert (p.read(a), p.read(a + 8 * KiB)) == ((1 << 64) - 1, 0)


# -- L: looking at an exited process --------------------------------------------------------
def test_l_an_exited_process_cannot_be_looked_at() -> None:
    m = System(ram="16M")
    p = m.spawn()
    a = p.mmap(8 * KiB)
    p.write(a, 1)
    p.exit()
    for look in (p.lookup, p.folio_at, p.pfn_at, p.vma_at, p.pagemap, p.read):
        with pytest.raises(MmError) as e:
            look(a)
        assert e.value.errno == EINVAL and "has exited" in str(e.value)
    with pytest.raises(MmError):
        p.smaps()
    q = m.spawn()
    with pytest.raises(MmError) as e:
        q.lookup(1 << 47)  # above TASK_SIZE
    assert e.value.errno == EINVAL
    with pytest.raises(TypeError):
        q.lookup("0x1000")
