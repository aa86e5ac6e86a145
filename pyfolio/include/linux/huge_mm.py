"""Per-size (mTHP) statistics: ``enum mthp_stat_item`` and the inlines that count them.

Models: include/linux/huge_mm.h (v6.18): enum mthp_stat_item, mod_mthp_stat(),
count_mthp_stat(). The kernel keeps ``stats[order][item]`` per CPU (struct mthp_stat) and
sysfs sums them (mm/huge_memory.c:sum_mthp_stat(), modelled in
:mod:`pyfolio.mm.huge_memory_sysfs`); the simulator keeps the sums in
``Machine.mthp_stats``, keyed ``(order, item)``.

Place: the other huge_mm.h inlines the simulator models (highest_order(),
thp_vma_allowable_orders(), split_folio(), ...) stay beside their callers in
:mod:`pyfolio.mm.huge_memory` and :mod:`pyfolio.mm.huge_memory_split`, each citing
huge_mm.h in its own Models: line; this module holds what has no caller-side home: the
statistics every kernel file that counts them includes.

>>> from pyfolio.sim.machine import Machine
>>> m = Machine(2048)
>>> count_mthp_stat(m, 9, MTHP_STAT.MTHP_STAT_SPLIT)
>>> count_mthp_stat(m, 0, MTHP_STAT.MTHP_STAT_SPLIT)
>>> dict(m.mthp_stats)  # order 0 is never counted
{(9, 12): 1}
>>> mthp_stat_name(MTHP_STAT.MTHP_STAT_NR_ANON_PARTIALLY_MAPPED)
'nr_anon_partially_mapped'
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from pyfolio.sim.units import HPAGE_PMD_ORDER

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["MTHP_STAT", "mthp_stat_name", "mod_mthp_stat", "count_mthp_stat"]


class MTHP_STAT(enum.IntEnum):
    """enum mthp_stat_item (include/linux/huge_mm.h, v6.18), in the kernel's order. Each
    item's sysfs file under ``hugepages-<size>kB/stats/`` is its name without the
    ``MTHP_STAT_`` prefix, in lower case (mm/huge_memory.c DEFINE_MTHP_STAT_ATTR())."""

    MTHP_STAT_ANON_FAULT_ALLOC = 0
    MTHP_STAT_ANON_FAULT_FALLBACK = 1
    MTHP_STAT_ANON_FAULT_FALLBACK_CHARGE = 2
    MTHP_STAT_ZSWPOUT = 3
    MTHP_STAT_SWPIN = 4
    MTHP_STAT_SWPIN_FALLBACK = 5
    MTHP_STAT_SWPIN_FALLBACK_CHARGE = 6
    MTHP_STAT_SWPOUT = 7
    MTHP_STAT_SWPOUT_FALLBACK = 8
    MTHP_STAT_SHMEM_ALLOC = 9
    MTHP_STAT_SHMEM_FALLBACK = 10
    MTHP_STAT_SHMEM_FALLBACK_CHARGE = 11
    MTHP_STAT_SPLIT = 12
    MTHP_STAT_SPLIT_FAILED = 13
    MTHP_STAT_SPLIT_DEFERRED = 14
    MTHP_STAT_NR_ANON = 15
    MTHP_STAT_NR_ANON_PARTIALLY_MAPPED = 16


def mthp_stat_name(item: MTHP_STAT) -> str:
    """The sysfs file name of ``item`` (``MTHP_STAT_SPLIT`` -> ``"split"``)."""
    return item.name.removeprefix("MTHP_STAT_").lower()


def mod_mthp_stat(m: Machine, order: int, item: MTHP_STAT, delta: int) -> None:
    """mod_mthp_stat() - add ``delta`` to ``item`` of size ``order``; orders <= 0 and above
    the PMD order are ignored (so order-0 folios never count).

    Models: include/linux/huge_mm.h:mod_mthp_stat() (v6.18).
    """
    if order <= 0 or order > HPAGE_PMD_ORDER:
        return
    m.mthp_stats[(order, int(item))] += delta


def count_mthp_stat(m: Machine, order: int, item: MTHP_STAT) -> None:
    """count_mthp_stat() - mod_mthp_stat(order, item, 1).

    Models: include/linux/huge_mm.h:count_mthp_stat() (v6.18).
    """
    mod_mthp_stat(m, order, item, 1)
