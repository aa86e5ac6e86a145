"""dmirror driver: device faults, fork, exit, allocator (lib/test_hmm.c, hmm-tests.c)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyfolio import ENOMEM, KiB, MiB, MmError, System
from pyfolio.lib.dmirror import HMM_DMIRROR_FLAG_FAIL_ALLOC
from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.errors import ENOENT
from pyfolio.sim.memmap import PG


def _on_device(dev_size="16M"):
    m = System(ram="64M", device=dev_size)
    p, a = m.spawn_with_thp()
    m.device.migrate_to_device(p, a, 2 * MiB)
    return m, p, a


def test_migrate_anon_huge_fault_brings_the_whole_folio_back():
    m, p, a = _on_device()
    assert p.lookup(a).kind == "device_private" and p.lookup(a).level == "pmd"
    assert m.device.read(p, a + 12 * 4 * KiB) == (a >> 12) + 13  # no CPU fault
    assert p.read(a + 12 * 4 * KiB) == (a >> 12) + 13
    e = p.lookup(a)
    assert (e.level, e.kind) == ("pmd", "huge")
    f = p.folio_at(a)
    assert (f.order, f.refcount, f.mapcount) == (9, 1, 1)
    assert m.device.free_large == 8 and m.device.driver.pt == {}
    assert m.check() == []


def test_fork_shares_device_private_pmd_read_only():
    m, p, a = _on_device()
    c = p.fork()
    f = p.folio_at(a)
    assert (f.refcount, f.mapcount) == (2, 2)
    assert not p.lookup(a).write and not c.lookup(a).write
    assert c.lookup(a).pfn == p.lookup(a).pfn and m.check() == []
    c.exit()
    assert p.folio_at(a).refcount == 1 and m.check() == []


def test_exit_frees_device_memory():
    m, p, a = _on_device()
    assert m.device.free_large == 7
    p.exit()
    assert m.device.free_large == 8 and m.device.driver.cfree == 512
    assert m.check() == []


def test_partial_unmap_splits_the_device_pmd_into_ptes():
    m, p, a = _on_device()
    p.munmap(a, 1 * MiB)
    e = p.lookup(a + 1 * MiB)
    assert (e.level, e.kind, e.write) == ("pte", "device_private", True)
    f = p.folio_at(a + 1 * MiB)
    assert (f.order, f.refcount, f.mapcount) == (9, 256, 256)
    assert m.vmstat()["thp_split_pmd"] == 1 and m.check() == []


def test_migrate_partial_unmap_fault_brings_one_page_back():
    m, p, a = _on_device()
    p.munmap(a, 1 * MiB)
    before = m.vmstat()
    assert p.read(a + 1 * MiB + 4 * KiB) == ((a + 1 * MiB) >> 12) + 2
    after = m.vmstat()
    # the first fault splits the PTE-mapped device folio (split_folio() from
    # migrate_vma_split_folio()) and migrates nothing; the access faults again
    assert after["pgfault"] - before["pgfault"] == 2
    assert after["thp_split_page"] - before["thp_split_page"] == 1
    assert p.lookup(a + 1 * MiB + 4 * KiB).kind == "page"
    assert p.folio_at(a + 1 * MiB + 4 * KiB).order == 0
    rest = [a + 1 * MiB + i * 4 * KiB for i in range(256) if i != 1]
    assert {p.lookup(x).kind for x in rest} == {"device_private"}
    assert {p.folio_at(x).order for x in rest} == {0}
    # the data is still on the device, but the device's own page table lost the range:
    # the PMD split of munmap() (and the folio split) invalidated it (MMU_NOTIFY_CLEAR ->
    # dmirror_interval_invalidate()), so a device read must fault it in again
    assert [int(m.machine.mem.stamp[p.folio_at(x).pfn]) for x in rest] == [
        (x >> 12) + 1 for x in rest]
    assert {m.device.read(p, x) for x in rest} == {None}
    # the 256 unmapped pieces and the migrated page went back to the driver
    assert m.device.driver.cfree == 257 and m.device.free_small == 257
    assert m.check() == []


def _spy_on_migrate_to_ram(m):
    ops = m.device.driver.pgmap.ops
    seen = []
    real = ops.migrate_to_ram

    def spy(vma, address, pfn, via_pte):
        f = m.folio(pfn)
        seen.append((m.machine.mem.test(f.pfn, PG.locked), f.refcount, via_pte))
        return real(vma, address, pfn, via_pte)

    ops.migrate_to_ram = spy
    return seen


def test_device_pmd_fault_holds_the_folio_locked_and_referenced():
    m, p, a = _on_device()
    seen = _spy_on_migrate_to_ram(m)
    p.read(a)
    # do_huge_pmd_device_private(): folio_trylock() + folio_get(): 1 mapping + 1
    assert seen == [(True, 2, False)]
    assert not m.machine.mem.test(p.folio_at(a).pfn, PG.locked) and m.check() == []


def test_device_fault_holds_the_folio_locked_and_referenced():
    m, p, a = _on_device()
    p.munmap(a, 1 * MiB)
    seen = _spy_on_migrate_to_ram(m)
    p.read(a + 1 * MiB)
    # do_swap_page(): trylock_page() + get_page(): 256 mappings + 1 (first fault, large
    # folio), then 1 mapping + 1 (the retry on the order-0 piece)
    assert seen == [(True, 257, True), (True, 2, True)]
    assert m.check() == []


def test_device_fault_on_a_locked_folio_changes_nothing():
    from pyfolio.mm.memory import handle_mm_fault

    m, p, a = _on_device()
    f = p.folio_at(a)
    m.machine.mem.set(f.pfn, PG.locked)  # someone else holds the folio lock
    raw = p.lookup(a).raw
    assert handle_mm_fault(p.mm.find_vma(a), a, 0) == 0  # folio_trylock() failed
    assert p.lookup(a).raw == raw and p.folio_at(a).refcount == 1
    m.machine.mem.clear(f.pfn, PG.locked)
    assert m.check() == []


def test_fragmented_device_falls_back_to_small_pages():
    m = System(ram="64M", device="4M")
    p, a = m.spawn_with_thp()
    assert m.device.fragment() == 2 and m.device.free_large == 0
    r = m.device.migrate_to_device(p, a, 2 * MiB)
    assert sum(x.migrated for x in r) == 512 and p.lookup(a).level == "pte"
    assert m.device.free_small == 512 and m.check() == []
    assert p.read(a + 5 * 4 * KiB) == (a >> 12) + 6 and m.check() == []


def test_device_out_of_memory_leaves_pages_in_ram():
    m = System(ram="64M", device="2M")
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.touch(a, 4 * MiB)
    r = m.device.migrate_to_device(p, a, 4 * MiB)
    assert sum(x.migrated for x in r) == 512
    assert [x.why for x in r if not x.migrated] == ["no destination page"] * 512
    assert r.ret == -ENOENT  # dmirror_do_read() finds no device page for the rest
    assert p.lookup(a + 3 * MiB).kind == "page" and m.check() == []
    assert p.read(a + 3 * MiB) == ((a + 3 * MiB) >> 12) + 1


def test_device_page_table_reverse_index_follows_every_change():
    from pyfolio.lib.dmirror import DevicePageTable

    pt = DevicePageTable()
    pt[(1, 0x1000)] = (600, True)
    pt[(2, 0x1000)] = (600, False)      # the same device page seen by two mms
    pt[(1, 0x2000)] = (601, True)
    pt[(1, 0x2000)] = (602, True)       # overwritten: 601 is no longer referenced
    assert pt.reverse_index() == {600: {(1, 0x1000), (2, 0x1000)}, 602: {(1, 0x2000)}}
    assert pt.pop((9, 0)) is None and pt.pop((1, 0x2000)) == (602, True)
    pt.erase_span(2, 0, 0x100000)  # a span longer than the table: found by a scan
    assert pt.reverse_index() == {600: {(1, 0x1000)}}
    pt.erase_span(1, 0x1000, 0x1000)
    assert pt == {} and pt.reverse_index() == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["map", "unmap", "set", "del", "erase"]),
                          st.integers(1, 2), st.integers(0, 7), st.integers(600, 607),
                          st.integers(1, 4), st.booleans()), max_size=25))
def test_bulk_device_page_table_updates_match_one_entry_at_a_time(ops):
    """map_range()/unmap_range()/erase_span() (the fast paths of finalize_and_map, the
    fault's alloc_and_copy and the notifier's dmirror_do_update()) leave the table and its
    reverse index as per-entry updates would."""
    from pyfolio.lib.dmirror import DevicePageTable

    bulk, single = DevicePageTable(), DevicePageTable()
    for op, mm, page, dpfn, nr, w in ops:
        addr = page * 4 * KiB
        if op == "map":
            bulk.map_range(mm, addr, dpfn, nr, w)
            for j in range(nr):
                single[(mm, addr + j * 4 * KiB)] = (dpfn + j, w)
        elif op == "unmap":
            bulk.unmap_range(mm, addr, nr)
            for j in range(nr):
                single.pop((mm, addr + j * 4 * KiB))
        elif op == "set":
            bulk[(mm, addr)] = single[(mm, addr)] = (dpfn, w)
        elif op == "del" and (mm, addr) in single:
            del bulk[(mm, addr)], single[(mm, addr)]
        elif op == "erase":  # dmirror_do_update(): [addr, last] inclusive, by address or scan
            last = addr + (nr * 3 - 1) * 4 * KiB
            bulk.erase_span(mm, addr, last)
            for key in [k for k in single if k[0] == mm and addr <= k[1] <= last]:
                del single[key]
        assert bulk == single
        expected: dict[int, set] = {}
        for key, (d, _) in single.items():
            expected.setdefault(d, set()).add(key)
        assert bulk.reverse_index() == expected == single.reverse_index()


def test_fail_alloc_fails_the_next_allocation_of_any_size_once():
    """lib/test_hmm.c:dmirror_migrate_alloc_and_copy() (merged): the flag is cleared by the
    next allocation, large or small; a small entry that meets it is not migrated
    (``if (!is_large) goto next``), so the ioctl's dmirror_do_read() returns -ENOENT."""
    m = System(ram="64M", device="16M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.touch(a, 64 * KiB)
    m.device.fail_next_alloc()
    r = m.device.migrate_to_device(p, a, 64 * KiB)
    assert [x.migrated for x in r] == [False] + [True] * 15 and r.ret == -ENOENT
    assert r[0].why == "no destination page" and p.lookup(a).kind == "page"
    assert not m.device.driver.flags & HMM_DMIRROR_FLAG_FAIL_ALLOC and m.check() == []
    r = m.device.migrate_to_device(p, a, 64 * KiB)  # the flag is gone: the rest moves
    assert r.migrated == 1 and r.ret == 0


def test_fail_alloc_met_by_a_thp_falls_back_to_single_pages():
    m = System(ram="64M", device="16M")
    p, a = m.spawn_with_thp()
    m.device.fail_next_alloc()
    r = m.device.migrate_to_device(p, a, 2 * MiB)
    assert r.migrated == 512 and r.ret == 0 and p.lookup(a).level == "pte"
    assert m.vmstat()["thp_split_pmd"] == 1 and m.check() == []


def test_fail_alloc_on_the_way_back_fails_an_order_0_fault_with_oom():
    """dmirror_devmem_fault_alloc_and_copy(): an order-0 source with the flag set returns
    VM_FAULT_OOM (the flag already cleared). The kernel's #PF handler would retry the
    access; the simulator reports ENOMEM, and the access after it succeeds."""
    m = System(ram="64M", device="16M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 16 * KiB, value=7)
    assert m.device.migrate_to_device(p, a, 16 * KiB).ret == 0
    m.device.fail_next_alloc()
    before = snapshot(m.machine)
    with pytest.raises(MmError) as e:
        p.read(a)
    assert e.value.errno == ENOMEM and not m.device.driver.flags & HMM_DMIRROR_FLAG_FAIL_ALLOC
    after = snapshot(m.machine)
    vm_before, vm_after = before.pop("vmstat"), after.pop("vmstat")
    (dev_before,), (dev_after,) = before.pop("devices"), after.pop("devices")  # type: ignore
    assert after == before and vm_after["pgfault"] == vm_before["pgfault"] + 1
    flags = 4  # the driver's state (snapshot()'s "devices"): only the flag was consumed
    assert dev_after[:flags] + dev_after[flags + 1:] == dev_before[:flags] + dev_before[flags + 1:]
    assert p.lookup(a).kind == "device_private"
    assert p.read(a) == 7 and p.lookup(a).kind == "page" and m.check() == []


def test_fail_alloc_on_the_way_back_gives_a_device_thp_single_pages():
    m, p, a = _on_device()
    m.device.fail_next_alloc()
    r = m.device.migrate_to_system(p, a, 2 * MiB)
    assert r.migrated == 512 and p.lookup(a).level == "pte" and p.lookup(a).kind == "page"
    assert p.folio_at(a).order == 0 and p.read(a + 4 * KiB) == (a >> 12) + 2
    assert m.check() == []
