"""The simulated machine: memmap, free lists, page-table pages, settings, counters, trace.

This is the model's root object (one NUMA node, one RAM zone, optional ZONE_DEVICE ranges):
the state only. The kernel functions that act on it are in the kernel models
(:mod:`pyfolio.mm.page_alloc` allocates from its free lists, :mod:`pyfolio.mm.mm_init`
boots it); they reach it through the folio or the mm they act on.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from pyfolio.sim.errors import EINVAL, MmError
from pyfolio.sim.memmap import PG, PGTY, ZONE_DEVICE, Memmap
from pyfolio.sim.trace import Trace
from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER, MAX_PAGE_ORDER, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace, SuperBlock
    from pyfolio.include.linux.mm_types import AnonVma, MMStruct
    from pyfolio.include.linux.swap import SwapInfoStruct

__all__ = ["Machine", "FreeArea", "THP_POLICIES", "MTHP_POLICIES", "MTHP_ORDERS", "THPSIZE_ORDERS",
           "SHMEM_POLICIES", "SHMEM_SIZE_POLICIES", "mthp_size_order", "VMSTAT_COUNTERS"]

THP_POLICIES = ("always", "madvise", "never")
#: values of /sys/kernel/mm/transparent_hugepage/hugepages-<size>kB/enabled
MTHP_POLICIES = ("always", "inherit", "madvise", "never")
#: the anonymous large-folio orders x86-64 offers per size (THP_ORDERS_ALL_ANON: 2..PMD order;
#: order 1 is not supported for anon folios)
MTHP_ORDERS = tuple(range(2, HPAGE_PMD_ORDER + 1))
#: the orders that have a /sys/kernel/mm/transparent_hugepage/hugepages-<size>kB directory on
#: x86-64: THP_ORDERS_ALL_ANON | THP_ORDERS_ALL_FILE_DEFAULT (hugepage_init_sysfs()), orders
#: 1..9; order 1 (8kB) is a file size only (no ``enabled``, no anon stats)
THPSIZE_ORDERS = tuple(range(1, HPAGE_PMD_ORDER + 1))
#: values of /sys/kernel/mm/transparent_hugepage/shmem_enabled (mm/shmem.c: SHMEM_HUGE_*)
SHMEM_POLICIES = ("always", "within_size", "advise", "never", "deny", "force")
#: values of .../hugepages-<size>kB/shmem_enabled (thpsize_shmem_enabled_store())
SHMEM_SIZE_POLICIES = ("always", "inherit", "within_size", "advise", "never")

#: /proc/vmstat counters the simulator keeps (names as in mm/vmstat.c:vmstat_text[]).
VMSTAT_COUNTERS = (
    "pgfault", "thp_fault_alloc", "thp_fault_fallback", "thp_split_pmd", "thp_split_page",
    "thp_split_page_failed", "thp_deferred_split_page", "thp_underused_split_page",
    "thp_zero_page_alloc",
    "thp_zero_page_alloc_failed", "thp_migration_success", "thp_migration_fail",
    "thp_migration_split", "pgmigrate_success", "pgmigrate_fail", "cow_ksm",
    "thp_collapse_alloc", "thp_collapse_alloc_failed", "pglazyfree", "numa_huge_pte_updates",
    "pgmajfault", "pswpin", "pswpout", "swap_ra", "swap_ra_hit", "swpin_zero", "swpout_zero",
    "thp_swpout", "thp_swpout_fallback", "pgactivate", "pgdeactivate", "pgrotated",
    "pgscan_anon", "pgsteal_anon", "pglazyfreed", "thp_file_alloc", "thp_file_fallback",
    "thp_file_mapped",
)


def mthp_size_order(size: str, orders: tuple[int, ...] = MTHP_ORDERS) -> int:
    """The order of an mTHP size named as in sysfs (``"64kB"`` -> 4); MmError(EINVAL) for a
    size x86-64 does not offer among ``orders`` (by default the anonymous sizes, orders
    2..9; :data:`THPSIZE_ORDERS` adds the file-only 8kB)."""
    if not isinstance(size, str):
        raise MmError(EINVAL, f"mTHP size {size!r} is not a string such as '64kB'")
    for order in orders:
        if size == f"{(PAGE_SIZE << order) // 1024}kB":
            return order
    sizes = ", ".join(f"{(PAGE_SIZE << o) // 1024}kB" for o in orders)
    raise MmError(EINVAL, f"mTHP size {size!r} is not one of {sizes}")


class FreeArea:
    """zone->free_area[]: one LIFO free list of block-head PFNs per order."""

    def __init__(self) -> None:
        self.lists: list[dict[int, None]] = [{} for _ in range(MAX_PAGE_ORDER + 1)]
        self.nr_free = 0  # pages

    def add(self, mem: Memmap, pfn: int, order: int) -> None:
        self.lists[order][pfn] = None
        mem.page_type[pfn] = PGTY.buddy
        mem.order[pfn] = order
        self.nr_free += 1 << order

    def remove(self, mem: Memmap, pfn: int, order: int) -> None:
        del self.lists[order][pfn]
        mem.page_type[pfn] = PGTY.none
        mem.order[pfn] = 0
        self.nr_free -= 1 << order


class Machine:
    """Frames 0..ram_pages-1 are RAM; ``device_pages`` more frames follow for ZONE_DEVICE.

    Frame 0 is reserved as the shared zero page (``ZERO_PAGE(0)``); everything else in RAM
    starts free in the buddy allocator.
    """

    def __init__(self, ram_pages: int, device_pages: int = 0, thp: str = "madvise",
                 seed: int = 0) -> None:
        if ram_pages < 2 * HPAGE_PMD_NR:
            raise MmError(EINVAL, f"RAM of {ram_pages} pages is too small (at least 4M)")
        if thp not in THP_POLICIES:
            raise MmError(EINVAL, f"THP policy {thp!r} is not one of {', '.join(THP_POLICIES)}")
        self.nr_ram = ram_pages
        self.device_base = -(-ram_pages // HPAGE_PMD_NR) * HPAGE_PMD_NR if device_pages else 0
        self.mem = Memmap(self.device_base + device_pages if device_pages else ram_pages)
        if device_pages:
            self.mem.zone[self.device_base:] = ZONE_DEVICE
        self.free_area = FreeArea()
        self.trace = Trace()
        self.vmstat: Counter[str] = Counter({k: 0 for k in VMSTAT_COUNTERS})
        #: the per-size mTHP statistics (include/linux/huge_mm.h: struct mthp_stat, summed
        #: over CPUs), keyed (order, enum mthp_stat_item); see pyfolio.include.linux.huge_mm
        self.mthp_stats: Counter[tuple[int, int]] = Counter()
        #: /sys/kernel/mm/transparent_hugepage/enabled and use_zero_page
        self.thp_enabled = thp
        self.thp_use_zero_page = True
        #: hugepages-<size>kB/enabled per order (huge_anon_orders_always/_inherit/_madvise):
        #: hugepage_init_sysfs() sets the PMD size to "inherit" and every other size "never"
        self.thp_anon_enabled: dict[int, str] = {
            o: "inherit" if o == HPAGE_PMD_ORDER else "never" for o in MTHP_ORDERS}
        #: /sys/kernel/mm/transparent_hugepage/shmem_enabled (mm/shmem.c: shmem_huge; the
        #: boot default is "never"); "deny" and "force" override every mount
        self.shmem_huge = "never"
        #: hugepages-<size>kB/shmem_enabled per order 1..9 (huge_shmem_orders_always/
        #: _inherit/_madvise/_within_size): shmem_init() makes the PMD size "inherit"
        self.thp_shmem_enabled: dict[int, str] = {
            o: "inherit" if o == HPAGE_PMD_ORDER else "never" for o in THPSIZE_ORDERS}
        #: every address_space (page cache) by id: folio->mapping of a page-cache folio is
        #: ``id << 2``; and the mounted file systems (the disk file system at "/", shm_mnt)
        self.mappings: dict[int, AddressSpace] = {}
        self.super_blocks: dict[str, SuperBlock] = {}
        self.next_mapping_id = 1
        self.next_ino = 1
        #: /sys/kernel/mm/transparent_hugepage/shrink_underused (default on since 6.12)
        self.thp_shrink_underused = True
        #: /sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none (HPAGE_PMD_NR - 1);
        #: below that, thp_underused() lets the shrinker split mostly-zero THPs
        self.khugepaged_max_ptes_none = HPAGE_PMD_NR - 1
        self.seed = seed
        #: page-table pages: pfn -> 512 entries (PGD, PUD, PMD or PTE table)
        self.pgtables: dict[int, np.ndarray] = {}
        #: FOLL_PIN pins per head pfn (the kernel keeps _pincount on large folios and a
        #: GUP_PIN_COUNTING_BIAS share of _refcount on small ones)
        self.pins: Counter[int] = Counter()
        #: the deferred split queue (mm/huge_memory.c: ds_queue->split_queue), head pfns
        self.deferred_split_queue: dict[int, None] = {}
        #: the one CPU's cpu_fbatches.lru_lazyfree (mm/swap.c): head pfns MADV_FREE queued,
        #: each holding a reference, lazy-freed when the batch drains (pyfolio.mm.swap)
        self.lru_lazyfree: list[int] = []
        self.mms: list[MMStruct] = []
        self.anon_vmas: dict[int, AnonVma] = {}
        self.next_anon_vma_id = 1
        self.next_mm_id = 1
        self.huge_zero_pfn = -1
        #: frames taken by fragment(): held by "other users" of memory
        self.fragment_holds: list[int] = []
        self.pgmaps: list[object] = []
        #: swap_info[type]: the active swap areas (mm/swapfile.c), None where a type is free
        self.swap_info: list[SwapInfoStruct | None] = []
        #: mm/swapfile.c: least_priority (the last auto-assigned priority + 1) and
        #: nr_rotate_swap (active areas on rotating disks: no VMA-based readahead)
        self.least_priority = -1
        self.nr_rotate_swap = 0
        #: percpu_swap_cluster (one CPU): the cluster cache of solid-state areas per order
        self.percpu_swap_cluster_si: list[int] = [-1] * (HPAGE_PMD_ORDER + 1)
        self.percpu_swap_cluster_offset: list[int] = [0] * (HPAGE_PMD_ORDER + 1)
        #: mm/swap_state.c: enable_vma_readahead (/sys/kernel/mm/swap/vma_ra_enabled), the
        #: statics of swapin_nr_pages() and swapin_readahead_hits (ATOMIC_INIT(4)); and
        #: vm.page-cluster (3: readahead windows of up to 8 pages)
        #: swap-cache folios (heads) whose write to a not synchronous area is in flight
        self.swap_writeback: list[int] = []
        self.enable_vma_readahead = True
        self.swapin_readahead_hits = 4
        self.swapin_prev_offset = 0
        self.last_readahead_pages = 0
        self.page_cluster = 3
        #: the young (1) and dirty (2) bits x86-64 keeps in a migration PTE, by (table pfn,
        #: index), while the entry exists (pyfolio.mm.rmap.try_to_migrate())
        self.migration_ad: dict[tuple[int, int], int] = {}
        #: the LRU lists' clock: each folio_add_lru() gets the next value (pyfolio.mm.swap)
        self.lru_clock = 0.0
        self.lru_tail_clock = 0.0
        self.zero_pfn = 0
        #: the batched paths (issue 20): a long run of the same kernel step (the write faults
        #: of System.touch() over none PTEs) done in one vectorised step that leaves exactly
        #: the state, counters and trace the per-page steps leave (tests/test_batch.py
        #: proves it); False runs every step through the per-page models the chapters teach.
        #: Set it through ``System.batch``; the batched code says where it is selected.
        self.batch = True
        self.mem.set(0, PG.reserved)
        self.mem._refcount[0] = 1

    def add_device_memory(self, pages: int) -> tuple[int, int]:
        """Frames for a new ZONE_DEVICE range of ``pages`` (a multiple of 512), placed after
        RAM and earlier device ranges on a 2 MiB boundary; returns ``(start, end)``."""
        if pages <= 0 or pages % HPAGE_PMD_NR:
            raise MmError(EINVAL, f"device memory of {pages} pages is not a positive "
                                  f"multiple of {HPAGE_PMD_NR} (2 MiB)")
        start = -(-self.mem.nr // HPAGE_PMD_NR) * HPAGE_PMD_NR
        self.mem.grow(start + pages - self.mem.nr)
        self.mem.zone[start:] = ZONE_DEVICE
        if not self.device_base:
            self.device_base = start
        return start, start + pages

    def is_ram(self, pfn: int) -> bool:
        return 0 <= pfn < self.nr_ram

