"""The swap device structures: struct swap_info_struct, its clusters, and the swap_map codes.

Models: include/linux/swap.h (v6.18): struct swap_info_struct, enum of SWP_* flags,
SWAP_HAS_CACHE / SWAP_MAP_MAX / SWAP_MAP_BAD, SWAPFILE_CLUSTER, SWAP_NR_ORDERS,
MAX_SWAPFILES; and mm/swap.h (v6.18): struct swap_cluster_info with its
CLUSTER_FLAG_* list states. The functions that act on them are in
:mod:`pyfolio.mm.swapfile` (slots, clusters, swapon/swapoff), :mod:`pyfolio.mm.swap_state`
(the swap cache) and :mod:`pyfolio.mm.page_io` (reads and writes).

Simplifications: one node and one CPU (the per-CPU cluster cache is one array on the
machine); no swap count continuations (a slot may be shared by at most SWAP_MAP_MAX = 62
page-table entries); no discard, no extents (a swap area is one run of slots); the swap
table holds a folio (its head PFN) or nothing (no workingset shadows). The device's
contents are kept per slot (``data``: the 64-bit page stamps pyfolio uses for data).

>>> si = SwapInfoStruct.new(0, "file", 16)
>>> si.max, si.pages, int(si.swap_map[0])  # setup_clusters() marks the header SWAP_MAP_BAD
(16, 15, 0)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER

__all__ = ["SWP", "SWAP_HAS_CACHE", "SWAP_MAP_MAX", "SWAP_MAP_BAD", "COUNT_CONTINUED",
           "SWAPFILE_CLUSTER", "SWAP_NR_ORDERS", "SWAP_CLUSTER_MAX", "SWAP_ENTRY_INVALID",
           "MAX_SWAPFILES", "CLUSTER_FLAG", "KIND_FLAGS", "SWAP_KINDS", "SwapClusterInfo",
           "SwapInfoStruct", "swap_count"]


class SWP(enum.IntFlag):
    """swap_info_struct.flags (include/linux/swap.h, v6.18), the ones pyfolio uses."""

    SWP_USED = 1 << 0  # is slot in swap_info[] used?
    SWP_WRITEOK = 1 << 1  # ok to write to this swap?
    SWP_SOLIDSTATE = 1 << 4  # blkdev seeks are cheap (bdev_nonrot())
    SWP_BLKDEV = 1 << 6  # its a block device (S_ISBLK)
    SWP_STABLE_WRITES = 1 << 11  # no overwrite PG_writeback pages
    SWP_SYNCHRONOUS_IO = 1 << 12  # synchronous IO is efficient (bdev_synchronous())


#: swap_map[] codes: the low 6 bits count page-table references; SWAP_HAS_CACHE marks a slot
#: whose folio is in the swap cache (or is being read in); 0x3f marks a bad slot (the header)
SWAP_HAS_CACHE = 0x40
SWAP_MAP_MAX = 0x3E
SWAP_MAP_BAD = 0x3F
COUNT_CONTINUED = 0x80
#: slots per cluster: HPAGE_PMD_NR with CONFIG_THP_SWAP, so a PMD-sized folio fits one cluster
SWAPFILE_CLUSTER = HPAGE_PMD_NR
#: one per-order cluster cache for every order up to the PMD order
SWAP_NR_ORDERS = HPAGE_PMD_ORDER + 1
#: include/linux/swap.h: the batch vmscan isolates and writes at a time
SWAP_CLUSTER_MAX = 32
#: offset 0 (the header page) is never handed out, so 0 means "no entry"
SWAP_ENTRY_INVALID = 0
#: swap types 0..23 are swap areas; 24..31 are the special swap-format entries
#: (1 << MAX_SWAPFILES_SHIFT) - SWP_DEVICE_NUM - SWP_MIGRATION_NUM - SWP_HWPOISON_NUM
#: - SWP_PTE_MARKER_NUM = 32 - 3 - 3 - 1 - 1
MAX_SWAPFILES = 24
#: the kinds of swap area the facade offers, and the flags each gets at swapon on this
#: machine (measured for issue 18): a swap file on ext4 over a rotational
#: disk; a loop block device over such a file (rotational, not synchronous); zram
KIND_FLAGS = {"file": SWP(0), "block": SWP.SWP_BLKDEV,
              "zram": SWP.SWP_BLKDEV | SWP.SWP_SOLIDSTATE | SWP.SWP_SYNCHRONOUS_IO}
SWAP_KINDS = tuple(KIND_FLAGS)


class CLUSTER_FLAG(enum.IntEnum):
    """enum swap_cluster_flags (mm/swap.h, v6.18): which list a cluster is on."""

    CLUSTER_FLAG_NONE = 0  # off any list (isolated)
    CLUSTER_FLAG_FREE = 1
    CLUSTER_FLAG_NONFULL = 2
    CLUSTER_FLAG_FRAG = 3  # CLUSTER_FLAG_USABLE is the same value
    CLUSTER_FLAG_FULL = 4
    CLUSTER_FLAG_DISCARD = 5


@dataclass(eq=False)
class SwapClusterInfo:
    """struct swap_cluster_info (mm/swap.h): ``count`` slots in use (bad slots included),
    the ``order`` its first allocation made it serve, ``flags`` naming its list.
    ``lst`` is the Python list it sits on (the kernel's ``list`` field)."""

    count: int = 0
    order: int = 0
    flags: int = CLUSTER_FLAG.CLUSTER_FLAG_NONE
    lst: list[int] | None = None


def swap_count(ent: int) -> int:
    """swap_count() - the page-table references in a swap_map code (SWAP_HAS_CACHE off).

    Models: mm/swapfile.c:swap_count() (v6.18).
    """
    return ent & ~SWAP_HAS_CACHE


@dataclass(eq=False)
class SwapInfoStruct:
    """struct swap_info_struct: one active swap area of ``max`` slots, slot 0 the header.

    ``kind`` and ``swap_file`` say what was swapped on (the facade's "file", "block" or
    "zram" and its name); ``prio`` as /proc/swaps shows it; ``pages`` usable slots
    (``max - 1``); ``inuse_pages`` slots with a nonzero swap_map code.
    """

    type: int
    kind: str
    swap_file: str
    flags: SWP
    max: int
    pages: int
    prio: int = -2
    inuse_pages: int = 0
    swap_map: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    #: the swap table (mm/swap_table.h): the head PFN of the folio cached at each slot, -1
    swap_table: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: si->zeromap: slots whose page was all zeroes when written (no I/O was done)
    zeromap: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    #: the device's contents: the page stamp written to each slot
    data: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    cluster_info: list[SwapClusterInfo] = field(default_factory=list)
    free_clusters: list[int] = field(default_factory=list)
    full_clusters: list[int] = field(default_factory=list)
    nonfull_clusters: list[list[int]] = field(
        default_factory=lambda: [[] for _ in range(SWAP_NR_ORDERS)])
    frag_clusters: list[list[int]] = field(
        default_factory=lambda: [[] for _ in range(SWAP_NR_ORDERS)])
    #: si->global_cluster->next[order] (rotating devices: no per-CPU cluster cache)
    global_cluster_next: list[int] = field(
        default_factory=lambda: [SWAP_ENTRY_INVALID] * SWAP_NR_ORDERS)
    #: bios submitted: (write or read, first sector, sectors), as block_bio_queue shows them
    bios: list[tuple[str, int, int]] = field(default_factory=list)

    @classmethod
    def new(cls, type_: int, kind: str, nr_pages: int, name: str = "",
            solidstate: bool | None = None) -> SwapInfoStruct:
        """A new area of ``nr_pages`` pages (header included), every slot free: the state
        after read_swap_header(), before setup_clusters()
        (:func:`pyfolio.mm.swapfile_swapon.setup_clusters`) marks the header slot."""
        flags = SWP.SWP_USED | KIND_FLAGS[kind]
        if solidstate is not None:
            flags = (flags | SWP.SWP_SOLIDSTATE) if solidstate else flags & ~SWP.SWP_SOLIDSTATE
        si = cls(type_, kind, name or f"/swap/{kind}{type_}", SWP(flags), nr_pages,
                 nr_pages - 1)
        si.swap_map = np.zeros(nr_pages, np.uint8)
        si.swap_table = np.full(nr_pages, -1, np.int64)
        si.zeromap = np.zeros(nr_pages, bool)
        si.data = np.zeros(nr_pages, np.uint64)
        return si

    @property
    def nr_clusters(self) -> int:
        return -(-self.max // SWAPFILE_CLUSTER)
