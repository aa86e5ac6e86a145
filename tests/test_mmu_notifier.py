"""Unit tests of pyfolio/mm/mmu_notifier.py against mm/mmu_notifier.c (v6.18): interval
notifiers hear the invalidations that overlap them, with the event and owner, and the
read_begin/read_retry sequence tells a reader that its view went stale."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, MmError, System
from pyfolio.mm.mmu_notifier import (
    MMU_NOTIFY,
    MmuIntervalNotifier,
    MmuIntervalNotifierOps,
    MmuNotifierRange,
    invalidate_secondary_mmus,
    mmu_interval_notifier_insert,
    mmu_interval_notifier_remove,
    mmu_interval_read_begin,
    mmu_interval_read_retry,
    mmu_interval_set_seq,
    mmu_notifier_invalidate_range_end,
    mmu_notifier_invalidate_range_start,
    mmu_notifier_range_init,
    mmu_notifier_release,
)


def _recorder(seen: list[tuple[MMU_NOTIFY, int, int, object]]) -> MmuIntervalNotifier:
    def invalidate(mni: MmuIntervalNotifier, r: MmuNotifierRange, cur_seq: int) -> bool:
        seen.append((r.event, r.start, r.end, r.owner))
        mmu_interval_set_seq(mni, cur_seq)
        return True

    return MmuIntervalNotifier(MmuIntervalNotifierOps(invalidate))


def test_only_overlapping_subscriptions_hear_an_invalidation() -> None:
    mm = System(ram="16M").spawn().mm
    a_seen: list = []
    b_seen: list = []
    a, b = _recorder(a_seen), _recorder(b_seen)
    mmu_interval_notifier_insert(a, mm, 0x1000, 0x2000, a.ops)  # [0x1000, 0x2fff]
    mmu_interval_notifier_insert(b, mm, 0x10000, 0x1000, b.ops)
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_CLEAR, mm, 0x2000, 0x4000, owner="me")
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_UNMAP, mm, 0x3000, 0x10000)  # ends before b
    assert a_seen == [(MMU_NOTIFY.MMU_NOTIFY_CLEAR, 0x2000, 0x4000, "me")] and b_seen == []
    mmu_interval_notifier_remove(a)
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_CLEAR, mm, 0, 1 << 47)
    assert len(a_seen) == 1 and len(b_seen) == 1


def test_read_retry_sees_an_invalidation_in_between() -> None:
    mm = System(ram="16M").spawn().mm
    seen: list = []
    sub = _recorder(seen)
    mmu_interval_notifier_insert(sub, mm, 0, 1 << 47, sub.ops)
    seq = mmu_interval_read_begin(sub)
    assert not mmu_interval_read_retry(sub, seq)
    r = mmu_notifier_range_init(MMU_NOTIFY.MMU_NOTIFY_PROTECTION_VMA, 0, mm, 0, 4 * KiB)
    mmu_notifier_invalidate_range_start(r)
    assert mm.notifier_subscriptions.invalidate_seq & 1  # odd while invalidating
    mmu_notifier_invalidate_range_end(r)
    assert not mm.notifier_subscriptions.invalidate_seq & 1
    assert mmu_interval_read_retry(sub, seq)
    assert not mmu_interval_read_retry(sub, mmu_interval_read_begin(sub))


def test_release_covers_everything_and_bad_ranges_are_refused() -> None:
    m = System(ram="16M")
    p = m.spawn()
    seen: list = []
    sub = _recorder(seen)
    with pytest.raises(MmError):
        mmu_interval_notifier_insert(sub, p.mm, 0, 0, sub.ops)
    assert p.mm.notifier_subscriptions is None
    mmu_interval_notifier_insert(sub, p.mm, 1 << 40, 4 * KiB, sub.ops)
    mmu_notifier_release(p.mm)
    assert seen == [(MMU_NOTIFY.MMU_NOTIFY_RELEASE, 0, (1 << 64) - 1, None)]


def test_the_mm_fires_the_kernels_events() -> None:
    """fork write-protects the parent (PROTECTION_PAGE over the VMA), mprotect
    (PROTECTION_VMA), MADV_DONTNEED (CLEAR), munmap (UNMAP), exit (RELEASE, then UNMAP)."""
    m = System(ram="16M")
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.write(a, 1)
    seen: list = []
    sub = _recorder(seen)
    mmu_interval_notifier_insert(sub, p.mm, 0, 1 << 47, sub.ops)
    p.fork()
    p.mprotect(a, 4 * KiB, "r")
    p.madvise(a + 8 * KiB, 4 * KiB, "dontneed")
    p.munmap(a + 16 * KiB, 4 * KiB)
    p.exit()
    events = [e for e, *_ in seen]
    assert events[0] == MMU_NOTIFY.MMU_NOTIFY_PROTECTION_PAGE and seen[0][1:3] == (a, a + 2 * MiB)
    assert MMU_NOTIFY.MMU_NOTIFY_PROTECTION_VMA in events
    assert MMU_NOTIFY.MMU_NOTIFY_CLEAR in events and MMU_NOTIFY.MMU_NOTIFY_UNMAP in events
    assert events[-2:] == [MMU_NOTIFY.MMU_NOTIFY_RELEASE, MMU_NOTIFY.MMU_NOTIFY_UNMAP]


def test_a_device_migration_names_its_owner() -> None:
    m = System(ram="16M")
    d = m.add_device("d", memory="2M")
    p = m.spawn()
    a = p.mmap(64 * KiB)
    p.write(a, 1)
    seen: list = []
    sub = _recorder(seen)
    mmu_interval_notifier_insert(sub, p.mm, 0, 1 << 47, sub.ops)
    d.migrate_to_device(p, a, 8 * KiB)  # one page, one hole: collect, then the insert
    migrate = [(s, e, o) for ev, s, e, o in seen if ev == MMU_NOTIFY.MMU_NOTIFY_MIGRATE]
    assert migrate == [(a, a + 8 * KiB, d.driver), (a + 4 * KiB, a + 8 * KiB, d.driver)]
