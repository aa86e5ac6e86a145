"""The swap scenarios: a THP (or 64 KiB mTHPs) paged out to a swap file, a loop block
device or zram, faulted back, shared by fork, brought back by swapoff; and MADV_PAGEOUT of
lazy-free (MADV_FREE'd) memory, which reclaim discards instead of swapping, unless it was
written again.

Each scenario switches its own swap area on (``swapon``: the kernel backend makes the area
first, :mod:`pyfolio.kernel_lab.swap_area`) and off again (``swapoff``), and compares the
swap fields of the record (:data:`~pyfolio.kernel_lab.scenarios.SWAP_FIELDS`: swapped pages,
their slot runs, swap-cache pages, smaps Swap and SwapPss; the area's Used) besides the
usual ones, with the swap counters (``pswpout``, ``thp_swpout``, ``thp_swpout_fallback``,
...) and per-size swap stats. Recorded apart from the other scenarios
(``recorded/swap_observations.json``).

What is left out of a comparison, and why: on a swap file, the swap-cache pages and the
area's Used after a write fault on a page still in the swap cache.
should_try_to_free_swap() frees the slot only when the swap cache and the fault hold the
folio's only references, and on this shared machine something else sometimes holds one
more at that instant: re-runs of the same scenario on 6.18.44 freed the slot in some runs
and not in others, also after a drain of every CPU's LRU batches just before the fault.
What holds it was not identified (compaction isolating LRU pages for the THPs other
processes allocate is a candidate). And how many pages readahead brings in beside the
faulting one when a rotating device (swap file or loop device: no VMA-based readahead while
one is active, swap_use_vma_readahead()) is read: the cluster readahead window starts from
global statics earlier swap-ins on the machine left (mm/swap_state.c: swapin_nr_pages():
swapin_readahead_hits, prev_offset, last_readahead_pages), which no scenario controls. The
zero-filled THP on the loop device is the one scenario that reads from such a device
(its folio was freed at once); live runs read 8, 4 or 1 zero-filled pages at its first
fault. The number of pages read with I/O (``pswpin``) is still compared. A scenario that
paged the same region of a swap file out a second time and read it back was dropped for
that reason (what it wrote and how much readahead brought back varied from run to run).
"""

from __future__ import annotations

from pyfolio.kernel_lab.scenarios import (
    EXPLAINED,
    LAZYFREE_TIMING,
    SWAP_COUNTERS,
    Scenario,
    Step,
)
from pyfolio.sim.units import KiB, MiB

__all__ = ["SWAP_SCENARIOS", "SWAP_SIZE", "KINDS"]

#: the size of every area the scenarios swap on (as the research used: 64 MiB)
SWAP_SIZE = 64 * MiB
KINDS = ("file", "block", "zram")
_ALL = EXPLAINED + SWAP_COUNTERS
#: on a swap file, whether a write fault frees its slot depends on other tasks (see above)
_WRITE_FAULT_RACE = ("swapcache", "swap_used_kb")
#: on a rotating device (the loop device) a read from the area goes through the cluster
#: readahead, whose window comes from global statics earlier swap-ins left (see above)
_CLUSTER_RA = ("swpin_zero", "swap_ra", "swap_ra_hit")
_64K = (("hugepages-64kB/enabled", "madvise"),)


def _thp(kind: str, *more: Step, size: int = 2 * MiB, zero: bool = False) -> tuple[Step, ...]:
    """mmap, swapon, MADV_HUGEPAGE and a write of every page (zeroes with ``zero``)."""
    return (Step("mmap", 0, size), Step("swapon", 0, SWAP_SIZE, kind),
            Step("madvise", 0, size, "hugepage"),
            Step("zero" if zero else "write", 0, size)) + more


def _out(size: int = 2 * MiB) -> Step:
    return Step("madvise", 0, size, "pageout")


def _scenarios(kind: str) -> list[Scenario]:
    k = {"file": "a swap file", "block": "a loop block device", "zram": "zram"}[kind]
    off = Step("swapoff")
    race = _WRITE_FAULT_RACE if kind == "file" else ()
    ra = _CLUSTER_RA if kind == "block" else ()
    return [
        Scenario(f"swap_thp_{kind}", f"a THP paged out to {k}, faulted back",
                 _thp(kind, _out(), Step("read", 0, 4 * KiB), Step("read", 4 * KiB, 4 * KiB),
                      Step("write", 8 * KiB, 4 * KiB, unsettled=race),
                      Step("read", 0, 2 * MiB, unsettled=race), off),
                 counters=_ALL),
        Scenario(f"swap_mthp64_{kind}", f"four 64 KiB mTHPs paged out to {k}",
                 _thp(kind, _out(256 * KiB), Step("read", 0, 4 * KiB),
                      Step("write", 68 * KiB, 4 * KiB, unsettled=race),
                      Step("read", 0, 256 * KiB, unsettled=race), off,
                      size=256 * KiB),
                 counters=_ALL, settings=_64K),
        Scenario(f"swap_partial_{kind}", f"MADV_PAGEOUT of half a THP to {k}",
                 _thp(kind, _out(1 * MiB), Step("read", 0, 4 * KiB), off), counters=_ALL),
        Scenario(f"swap_fork_{kind}", f"fork after a THP was paged out to {k}",
                 _thp(kind, _out(), Step("fork"), Step("child_read", 0, 4 * KiB),
                      Step("read", 0, 4 * KiB), Step("write", 4 * KiB, 4 * KiB),
                      Step("child_exit"), off),
                 counters=_ALL),
        Scenario(f"swap_zero_{kind}", f"a zero-filled THP paged out to {k}",
                 _thp(kind, _out(), Step("read", 0, 4 * KiB, unsettled=ra),
                      Step("swapoff", unsettled=ra), zero=True), counters=_ALL),
        Scenario(f"swap_swapoff_{kind}", f"swapoff of {k} holding a THP",
                 _thp(kind, _out(), off), counters=_ALL),
    ]


SWAP_SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    *_scenarios("file"), *_scenarios("block"), *_scenarios("zram"),
    Scenario("swap_shared_block", "a THP shared by fork is skipped by MADV_PAGEOUT",
             _thp("block", Step("fork"), _out(), Step("child_exit"), _out(), Step("swapoff")),
             counters=_ALL),
    Scenario("lazyfree_pageout_block", "MADV_FREE of a THP, then MADV_PAGEOUT: discarded",
             _thp("block", Step("madvise", 0, 2 * MiB, "free"), _out(),
                  Step("write", 0, 4 * KiB), Step("swapoff")),
             counters=_ALL),
    Scenario("lazyfree_small_pageout_block",
             "MADV_FREE of 10 pages, MADV_PAGEOUT of 20: 10 discarded, 10 swapped",
             _thp("block", Step("madvise", 0, 40 * KiB, "free", unsettled=LAZYFREE_TIMING),
                  Step("lru_add_drain"), _out(80 * KiB), Step("read", 0, 80 * KiB),
                  Step("swapoff")),
             counters=_ALL),
    Scenario("lazyfree_redirty_block",
             "MADV_FREE of a THP, a write, then MADV_PAGEOUT twice: kept, then swapped",
             _thp("block", Step("madvise", 0, 2 * MiB, "free"), Step("write", 0, 4 * KiB),
                  _out(), _out(), Step("swapoff")),
             counters=_ALL),
    Scenario("pageout_noswap", "MADV_PAGEOUT of a THP with no swap area",
             (Step("mmap", 0, 2 * MiB), Step("madvise", 0, 2 * MiB, "hugepage"),
              Step("write", 0, 2 * MiB), _out())),
)}
