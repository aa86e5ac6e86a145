"""dmirror driver: device faults, fork, exit, allocator (lib/test_hmm.c, hmm-tests.c)."""

import pytest

from pyfolio import KiB, MiB, System


def _on_device(dev_size="16M"):
    m = System(ram="64M", device=dev_size)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
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


@pytest.mark.xfail(strict=True, reason="pyfolio.split.try_to_migrate() does not yet turn "
                   "device-private PTEs into migration entries, so split_folio() of a "
                   "device-private folio returns -EAGAIN (issue 9)")
def test_migrate_partial_unmap_fault_brings_one_page_back():
    m, p, a = _on_device()
    p.munmap(a, 1 * MiB)
    assert p.read(a + 1 * MiB + 4 * KiB) == ((a + 1 * MiB) >> 12) + 2
    assert p.lookup(a + 1 * MiB + 4 * KiB).kind == "page"
    assert p.lookup(a + 1 * MiB + 8 * KiB).kind == "device_private"
    assert p.folio_at(a + 1 * MiB + 8 * KiB).order == 0
    assert m.check() == []


def test_fragmented_device_falls_back_to_small_pages():
    m = System(ram="64M", device="4M")
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
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
    assert p.lookup(a + 3 * MiB).kind == "page" and m.check() == []
    assert p.read(a + 3 * MiB) == ((a + 3 * MiB) >> 12) + 1
