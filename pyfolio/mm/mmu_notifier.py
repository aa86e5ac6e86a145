"""MMU notifiers: a secondary MMU (a device's own page table) hears of CPU page-table changes.

Models: mm/mmu_notifier.c and include/linux/mmu_notifier.h (v6.18), the interval-notifier
half a driver such as lib/test_hmm.c uses: a driver registers a
:class:`MmuIntervalNotifier` on an mm for a virtual range
(mmu_interval_notifier_insert()); before the core mm changes or drops a CPU entry in that
range it calls mmu_notifier_invalidate_range_start() with an event and the range, which
calls the driver's ``invalidate`` op (the driver drops its own entries there), and
mmu_notifier_invalidate_range_end() afterwards. A reader of the CPU tables (hmm_range_fault()
and its driver) brackets its walk with mmu_interval_read_begin() and
mmu_interval_read_retry() to see whether an invalidation ran meanwhile.

Where the simulator's mm calls it (the kernel's sites, v6.18): zap of munmap
(MMU_NOTIFY_UNMAP, unmap_vmas()) and of MADV_DONTNEED and MADV_FREE (MMU_NOTIFY_CLEAR),
exit (mmu_notifier_release(): MMU_NOTIFY_RELEASE over everything), mprotect
(MMU_NOTIFY_PROTECTION_VMA, change_pmd_range()), fork (MMU_NOTIFY_PROTECTION_PAGE over each
COW VMA of the parent, copy_page_range()), COW (wp_page_copy(), MMU_NOTIFY_CLEAR),
split_huge_pmd (__split_huge_pmd(), MMU_NOTIFY_CLEAR), a write to the huge zero PMD
(do_huge_zero_wp_pmd()), try_to_migrate_one() (MMU_NOTIFY_CLEAR), device migration
(migrate_vma_collect() and __migrate_device_pages(): MMU_NOTIFY_MIGRATE with the driver's
``pgmap_owner``) and collapse (collapse_huge_page(), MMU_NOTIFY_CLEAR).

Simplifications: one thread, so nothing waits: an invalidation runs to its end before the
next begins, ``invalidate`` is always called blockable (MMU_NOTIFIER_RANGE_BLOCKABLE) and
must return True; the interval tree is a list; no hlist notifiers (KVM-style
``mmu_notifier_register()``), no ``invalidate_start``/``invalidate_finish`` pair; the
deferred insertion and removal of mn_itree_inv_end() are immediate.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyfolio.sim.errors import EINVAL, MmError, VmWarning

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import MMStruct

__all__ = ["MMU_NOTIFY", "MMU_NOTIFIER_RANGE_BLOCKABLE", "ULONG_MAX", "MmuNotifierRange",
           "MmuIntervalNotifierOps", "MmuIntervalNotifier", "MmuNotifierSubscriptions",
           "mmu_interval_notifier_insert", "mmu_interval_notifier_remove",
           "mmu_notifier_range_init", "mmu_notifier_range_init_owner",
           "mmu_notifier_invalidate_range_start", "mmu_notifier_invalidate_range_end",
           "invalidate_secondary_mmus", "mmu_notifier_release",
           "mmu_interval_read_begin", "mmu_interval_read_retry", "mmu_interval_check_retry",
           "mmu_interval_set_seq"]

#: unsigned long's largest value: the end of the release range and of dmirror's notifier
ULONG_MAX = (1 << 64) - 1
#: include/linux/mmu_notifier.h: the invalidation may sleep
MMU_NOTIFIER_RANGE_BLOCKABLE = 1 << 0


class MMU_NOTIFY(enum.IntEnum):
    """enum mmu_notifier_event (include/linux/mmu_notifier.h, v6.18)."""

    MMU_NOTIFY_UNMAP = 0
    MMU_NOTIFY_CLEAR = 1
    MMU_NOTIFY_PROTECTION_VMA = 2
    MMU_NOTIFY_PROTECTION_PAGE = 3
    MMU_NOTIFY_SOFT_DIRTY = 4
    MMU_NOTIFY_RELEASE = 5
    MMU_NOTIFY_MIGRATE = 6
    MMU_NOTIFY_EXCLUSIVE = 7


@dataclass(frozen=True, slots=True)
class MmuNotifierRange:
    """struct mmu_notifier_range: the virtual range [start, end) of ``mm`` about to change,
    why (``event``) and, for MMU_NOTIFY_MIGRATE, on whose behalf (``owner``: the
    migrate_vma's ``pgmap_owner``, so a driver can skip its own migrations)."""

    mm: MMStruct
    start: int
    end: int
    event: MMU_NOTIFY
    flags: int = MMU_NOTIFIER_RANGE_BLOCKABLE
    owner: object = None


@dataclass(frozen=True, slots=True)
class MmuIntervalNotifierOps:
    """struct mmu_interval_notifier_ops: ``invalidate(interval_sub, range, cur_seq)``."""

    invalidate: Callable[[MmuIntervalNotifier, MmuNotifierRange, int], bool]


@dataclass(eq=False)
class MmuIntervalNotifier:
    """struct mmu_interval_notifier: ``ops`` hears of changes to [start, last] of ``mm``
    (the interval tree node keeps the last address, inclusive); ``invalidate_seq`` is what
    mmu_interval_set_seq() stored last."""

    ops: MmuIntervalNotifierOps
    mm: MMStruct | None = None
    start: int = 0
    last: int = -1
    invalidate_seq: int = 0


@dataclass
class MmuNotifierSubscriptions:
    """struct mmu_notifier_subscriptions (mm->notifier_subscriptions): the interval
    notifiers of one mm and its ``invalidate_seq`` (even when idle, odd while an
    invalidation runs)."""

    itree: list[MmuIntervalNotifier] = field(default_factory=list)
    invalidate_seq: int = 2
    active_invalidate_ranges: int = 0


def mmu_interval_notifier_insert(interval_sub: MmuIntervalNotifier, mm: MMStruct, start: int,
                                 length: int, ops: MmuIntervalNotifierOps) -> int:
    """mmu_interval_notifier_insert() - subscribe to [start, start + length) of ``mm``.

    Models: mm/mmu_notifier.c:mmu_interval_notifier_insert() and
    __mmu_interval_notifier_insert() (v6.18): -EOVERFLOW for a range that wraps (here
    MmError(EINVAL), nothing changed); the first subscription allocates
    ``mm->notifier_subscriptions``. Returns 0.
    """
    if length <= 0 or start + length - 1 > ULONG_MAX or start < 0:
        raise MmError(EINVAL, f"mmu_interval_notifier_insert: bad range [{start:#x}, "
                      f"+{length:#x})")
    if mm.notifier_subscriptions is None:
        mm.notifier_subscriptions = MmuNotifierSubscriptions()
    subs = mm.notifier_subscriptions
    interval_sub.mm, interval_sub.ops = mm, ops
    interval_sub.start, interval_sub.last = start, start + length - 1
    interval_sub.invalidate_seq = subs.invalidate_seq - 1  # "not invalidating": odd, != seq
    subs.itree.append(interval_sub)
    return 0


def mmu_interval_notifier_remove(interval_sub: MmuIntervalNotifier) -> None:
    """mmu_interval_notifier_remove() - unsubscribe.

    Models: mm/mmu_notifier.c:mmu_interval_notifier_remove() (v6.18).
    """
    mm = interval_sub.mm
    if mm is None or mm.notifier_subscriptions is None:
        return
    subs = mm.notifier_subscriptions
    if interval_sub in subs.itree:
        subs.itree.remove(interval_sub)


def mmu_notifier_range_init(event: MMU_NOTIFY, flags: int, mm: MMStruct, start: int,
                            end: int) -> MmuNotifierRange:
    """mmu_notifier_range_init() - describe a change to [start, end) of ``mm``.

    Models: include/linux/mmu_notifier.h:mmu_notifier_range_init() (v6.18), which fills
    a caller's struct; here the range is returned. (Later trees also pass the VMA.)
    """
    return MmuNotifierRange(mm, start, end, event, flags | MMU_NOTIFIER_RANGE_BLOCKABLE)


def mmu_notifier_range_init_owner(event: MMU_NOTIFY, flags: int, mm: MMStruct, start: int,
                                  end: int, owner: object) -> MmuNotifierRange:
    """mmu_notifier_range_init_owner() - the same, naming the migration's owner.

    Models: include/linux/mmu_notifier.h:mmu_notifier_range_init_owner() (v6.18).
    """
    return MmuNotifierRange(mm, start, end, event, flags | MMU_NOTIFIER_RANGE_BLOCKABLE,
                            owner)


def mmu_notifier_invalidate_range_start(range_: MmuNotifierRange) -> None:
    """mmu_notifier_invalidate_range_start() - call ``invalidate`` of every interval
    notifier of the mm that overlaps the range, before the CPU entries change.

    Models: include/linux/mmu_notifier.h:mmu_notifier_invalidate_range_start() and
    mm/mmu_notifier.c:mn_itree_invalidate() / mn_itree_inv_start_range() (v6.18): the
    mm's ``invalidate_seq`` is made odd while a notifier overlaps; each is told
    ``cur_seq``. A blockable invalidation whose op returns False is a WARN_ON (here
    VmWarning). Nothing to do for an mm without subscriptions (the common case).
    """
    subs = range_.mm.notifier_subscriptions
    if subs is None:
        return
    subs.active_invalidate_ranges += 1
    hits = [s for s in subs.itree if s.start <= range_.end - 1 and range_.start <= s.last]
    if hits:
        subs.invalidate_seq |= 1
    cur_seq = subs.invalidate_seq
    for interval_sub in hits:
        if not interval_sub.ops.invalidate(interval_sub, range_, cur_seq):
            raise VmWarning("WARN_ON(mmu_notifier_range_blockable(range)): a blockable "
                            "interval notifier refused an invalidation")


def mmu_notifier_invalidate_range_end(range_: MmuNotifierRange) -> None:
    """mmu_notifier_invalidate_range_end() - the change is done.

    Models: mm/mmu_notifier.c:mn_itree_inv_end() (v6.18): when the last active range
    ends, an odd ``invalidate_seq`` becomes even again (readers may proceed).
    """
    subs = range_.mm.notifier_subscriptions
    if subs is None or not subs.active_invalidate_ranges:
        return
    subs.active_invalidate_ranges -= 1
    if not subs.active_invalidate_ranges and subs.invalidate_seq & 1:
        subs.invalidate_seq += 1


def invalidate_secondary_mmus(event: MMU_NOTIFY, mm: MMStruct, start: int, end: int,
                              owner: object = None) -> None:
    """range_init (with ``owner``), invalidate_range_start and invalidate_range_end in one:
    the simulator's shorthand for a site whose CPU-table change sits between the two
    (one thread: nobody observes the window)."""
    if mm.notifier_subscriptions is None:
        return
    range_ = mmu_notifier_range_init_owner(event, 0, mm, start, end, owner)
    mmu_notifier_invalidate_range_start(range_)
    mmu_notifier_invalidate_range_end(range_)


def mmu_notifier_release(mm: MMStruct) -> None:
    """mmu_notifier_release() - the mm is being torn down: every interval notifier gets
    MMU_NOTIFY_RELEASE over [0, ULONG_MAX).

    Models: mm/mmu_notifier.c:__mmu_notifier_release() / mn_itree_release() (v6.18),
    called first thing in exit_mmap().
    """
    if mm.notifier_subscriptions is None:
        return
    range_ = MmuNotifierRange(mm, 0, ULONG_MAX, MMU_NOTIFY.MMU_NOTIFY_RELEASE)
    mmu_notifier_invalidate_range_start(range_)
    mmu_notifier_invalidate_range_end(range_)


def mmu_interval_read_begin(interval_sub: MmuIntervalNotifier) -> int:
    """mmu_interval_read_begin() - start reading the CPU tables for this subscription.

    Models: mm/mmu_notifier.c:mmu_interval_read_begin() (v6.18): returns the
    subscription's ``invalidate_seq``; the kernel would first wait out an invalidation in
    progress (none can be in progress here).
    """
    return interval_sub.invalidate_seq


def mmu_interval_read_retry(interval_sub: MmuIntervalNotifier, seq: int) -> bool:
    """mmu_interval_read_retry() - did an invalidation run since read_begin returned
    ``seq``? Then what was read is stale.

    Models: include/linux/mmu_notifier.h:mmu_interval_read_retry() (v6.18).
    """
    return interval_sub.invalidate_seq != seq


def mmu_interval_check_retry(interval_sub: MmuIntervalNotifier, seq: int) -> bool:
    """mmu_interval_check_retry() - the same test without the driver's lock, which
    hmm_range_fault() makes before each walk (a cheap early exit; the driver's
    mmu_interval_read_retry() under its lock is the one that counts).

    Models: include/linux/mmu_notifier.h:mmu_interval_check_retry() (v6.18).
    """
    return interval_sub.invalidate_seq != seq


def mmu_interval_set_seq(interval_sub: MmuIntervalNotifier, cur_seq: int) -> None:
    """mmu_interval_set_seq() - what an ``invalidate`` op calls with its ``cur_seq``.

    Models: include/linux/mmu_notifier.h:mmu_interval_set_seq() (v6.18).
    """
    interval_sub.invalidate_seq = cur_seq
