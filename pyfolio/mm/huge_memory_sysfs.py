"""The per-size statistics: /sys/kernel/mm/transparent_hugepage/hugepages-<size>kB/stats/.

Models: mm/huge_memory.c (v6.18) sum_mthp_stat(), the DEFINE_MTHP_STAT_ATTR() files and
the attribute groups thpsize_create() adds per size (CONFIG_SHMEM=y): every size gets
``any_stats_attrs`` (the swap items, split, split_failed); anonymous orders
(THP_ORDERS_ALL_ANON, 2..9) add ``anon_stats_attrs`` (anon_fault_*, split_deferred,
nr_anon, nr_anon_partially_mapped); file orders (THP_ORDERS_ALL_FILE_DEFAULT, 1..9 on
x86-64) add ``file_stats_attrs`` (shmem_*). The counting sites are in the modules of the
kernel files that count (the counters themselves: :mod:`pyfolio.include.linux.huge_mm`).

Not modelled: the running 6.18.44 kernel of the book's lab also shows
``anon_fault_declined``, a local, non-upstream stat (with its ``anon_beside_full`` knob);
it is in no kernel tree and is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.huge_mm import MTHP_STAT, mthp_stat_name
from pyfolio.mm.huge_memory import THP_ORDERS_ALL_ANON

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["ANY_STATS_ATTRS", "ANON_STATS_ATTRS", "FILE_STATS_ATTRS", "sum_mthp_stat",
           "thpsize_stats"]

_S = MTHP_STAT
#: any_stats_attrs[] (CONFIG_SHMEM=y)
ANY_STATS_ATTRS = (_S.MTHP_STAT_ZSWPOUT, _S.MTHP_STAT_SWPIN, _S.MTHP_STAT_SWPIN_FALLBACK,
                   _S.MTHP_STAT_SWPIN_FALLBACK_CHARGE, _S.MTHP_STAT_SWPOUT,
                   _S.MTHP_STAT_SWPOUT_FALLBACK, _S.MTHP_STAT_SPLIT, _S.MTHP_STAT_SPLIT_FAILED)
#: anon_stats_attrs[] (CONFIG_SHMEM=y)
ANON_STATS_ATTRS = (_S.MTHP_STAT_ANON_FAULT_ALLOC, _S.MTHP_STAT_ANON_FAULT_FALLBACK,
                    _S.MTHP_STAT_ANON_FAULT_FALLBACK_CHARGE, _S.MTHP_STAT_SPLIT_DEFERRED,
                    _S.MTHP_STAT_NR_ANON, _S.MTHP_STAT_NR_ANON_PARTIALLY_MAPPED)
#: file_stats_attrs[]
FILE_STATS_ATTRS = (_S.MTHP_STAT_SHMEM_ALLOC, _S.MTHP_STAT_SHMEM_FALLBACK,
                    _S.MTHP_STAT_SHMEM_FALLBACK_CHARGE)


def sum_mthp_stat(m: Machine, order: int, item: MTHP_STAT) -> int:
    """sum_mthp_stat() - the value of one per-size stat (the kernel sums it over CPUs).

    Models: mm/huge_memory.c:sum_mthp_stat() (v6.18).
    """
    return int(m.mthp_stats[(order, int(item))])


def thpsize_stats(m: Machine, order: int) -> dict[str, int]:
    """Every file of ``hugepages-<size>kB/stats/`` for ``order`` with its value, in the
    order of enum mthp_stat_item: all 17 items for orders 2..9, the 11 of the any and file
    groups for order 1 (8kB).

    Models: mm/huge_memory.c:thpsize_create() (which groups a size gets) and the
    DEFINE_MTHP_STAT_ATTR() show functions (v6.18).
    """
    items = set(ANY_STATS_ATTRS) | set(FILE_STATS_ATTRS)
    if (1 << order) & THP_ORDERS_ALL_ANON:
        items |= set(ANON_STATS_ATTRS)
    return {mthp_stat_name(i): sum_mthp_stat(m, order, i) for i in MTHP_STAT if i in items}
