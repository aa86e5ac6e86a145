"""The per-CPU lazyfree LRU batch (mm/swap.c: folio_mark_lazyfree(), lru_lazyfree(),
folio_batch_move_lru(), lru_add_drain()), against what a 6.18.44 kernel showed: after
MADV_FREE of ten pages of a THP they keep PG_swapbacked, ``pglazyfree`` does not move and
smaps shows no LazyFree, until the CPU's batch drains; of forty, the first 31 move at once;
a THP freed whole is lazy-free at once (research notes of issue 13, raw/item10_*.txt)."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.fs.proc.page import KPF
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.swap import FOLIO_BATCH_SIZE

_SWAPBACKED, _LRU = 1 << KPF["SWAPBACKED"], 1 << KPF["LRU"]


@pytest.fixture
def thp() -> tuple[System, object, int]:
    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp(4 * MiB)
    return m, p, a


def _flags(m: System, p: object, a: int, n: int) -> list[int]:
    return m.kpageflags([p.pfn_at(a + i * 4 * KiB) for i in range(n)])  # type: ignore[attr-defined]


def _lazyfree(p: object) -> int:
    return sum(d["LazyFree"] for d in p.smaps())  # type: ignore[attr-defined]


def test_madv_free_of_ten_pages_waits_in_the_batch_until_a_drain(thp) -> None:
    m, p, a = thp
    before = m.vmstat()["pglazyfree"]
    p.madvise(a, 40 * KiB, "free")  # splits the THP; ten order-0 folios go to the batch
    flags = _flags(m, p, a, 10)
    assert all(f & _SWAPBACKED and f & _LRU for f in flags)
    assert m.vmstat()["pglazyfree"] == before and _lazyfree(p) == 0
    assert p.smaps()[0]["Private_Clean"] == 40  # the PTEs and folios are clean already
    assert m.machine.lru_lazyfree == [p.pfn_at(a + i * 4 * KiB) for i in range(10)]
    assert p.folio_at(a).refcount == 2 and m.check() == []  # the batch holds a reference
    m.lru_add_drain()
    assert not any(f & _SWAPBACKED for f in _flags(m, p, a, 10))
    assert m.vmstat()["pglazyfree"] == before + 10 and _lazyfree(p) == 40
    assert m.machine.lru_lazyfree == [] and p.folio_at(a).refcount == 1 and m.check() == []


def test_the_31st_folio_fills_the_batch_and_moves_it(thp) -> None:
    m, p, a = thp
    p.madvise(a, 40 * KiB * 4, "free")  # 40 pages
    swapbacked = [bool(f & _SWAPBACKED) for f in _flags(m, p, a, 40)]
    assert FOLIO_BATCH_SIZE == 31
    assert swapbacked == [False] * 31 + [True] * 9
    assert m.vmstat()["pglazyfree"] == 31 and len(m.machine.lru_lazyfree) == 9
    assert m.check() == []


def test_a_thp_freed_whole_is_not_batched(thp) -> None:
    m, p, a = thp
    p.madvise(a, 2 * MiB, "free")
    assert not any(f & _SWAPBACKED for f in _flags(m, p, a, 512))
    assert m.vmstat()["pglazyfree"] == 512 and m.machine.lru_lazyfree == []
    assert _lazyfree(p) == 2048 and m.check() == []


@pytest.mark.parametrize("drain", ["free elsewhere", "cold", "exit"])
def test_the_kernels_drain_points_drain_the_batch(thp, drain: str) -> None:
    """madvise_free_single_vma() and madvise_cold() begin with lru_add_drain();
    exit_mmap() drains before it zaps."""
    m, p, a = thp
    other = p.mmap(16 * KiB)
    p.touch(other, 16 * KiB)
    p.madvise(a, 40 * KiB, "free")
    free = m.nr_free_pages()
    if drain == "free elsewhere":
        p.madvise(other, 4 * KiB, "free")  # drains, then queues its own page
        assert m.machine.lru_lazyfree == [p.pfn_at(other)]
    elif drain == "cold":
        p.madvise(other, 4 * KiB, "cold")
        assert m.machine.lru_lazyfree == []
    else:
        p.exit()
        assert m.machine.lru_lazyfree == [] and m.nr_free_pages() > free + 512
        assert m.check() == []
        return
    assert m.vmstat()["pglazyfree"] == 10 and _lazyfree(p) >= 40 and m.check() == []


def test_munmap_does_not_drain_so_the_batch_keeps_the_folios_alive(thp) -> None:
    """unmap_region() has no lru_add_drain() (measured: still swapbacked right after a
    munmap); the batch's reference keeps the unmapped folios until it drains."""
    m, p, a = thp
    p.madvise(a, 40 * KiB, "free")
    free = m.nr_free_pages()
    p.munmap(a, 40 * KiB)
    assert m.nr_free_pages() == free and len(m.machine.lru_lazyfree) == 10
    assert m.check() == []
    m.lru_add_drain()  # lru_lazyfree() still counts them, then folios_put() frees them
    assert m.nr_free_pages() == free + 10 and m.vmstat()["pglazyfree"] == 10
    assert m.check() == []


def test_collapse_and_device_migration_drain_first() -> None:
    """madvise_collapse() calls lru_add_drain_all(), migrate_device_unmap() lru_add_drain():
    neither sees the batch's reference as an unexplained one."""
    m = System(ram="64M", device="16M")
    p = m.spawn()
    a = p.mmap(4 * MiB)
    a = (a + 2 * MiB - 1) & ~(2 * MiB - 1)
    p.touch(a, 2 * MiB)  # 512 small folios (no MADV_HUGEPAGE)
    p.madvise(a, 40 * KiB, "free")
    assert len(m.machine.lru_lazyfree) == 10
    p.madvise(a, 2 * MiB, "collapse")
    assert p.folio_at(a).order == 9 and m.machine.lru_lazyfree == [] and m.check() == []
    q = m.spawn()
    b = q.mmap(64 * KiB)
    q.touch(b, 64 * KiB)
    q.madvise(b, 64 * KiB, "free")
    assert len(m.machine.lru_lazyfree) == 16
    assert all(r.migrated for r in m.device.migrate_to_device(q, b, 64 * KiB))
    assert m.machine.lru_lazyfree == [] and m.check() == []


def test_the_batch_is_part_of_the_state_a_failed_operation_must_keep(thp) -> None:
    m, p, a = thp
    before = snapshot(m.machine)
    p.madvise(a, 40 * KiB, "free")
    assert snapshot(m.machine)["lru_lazyfree"] != before["lru_lazyfree"]
