"""The swap scenarios: a THP (or 64 KiB mTHPs) paged out to a swap file, a loop block
device or zram, faulted back, shared by fork, brought back by swapoff.

Each scenario switches its own swap area on (``swapon``: the kernel backend makes the area
first, :mod:`pyfolio.kernel_lab.swap_area`) and off again (``swapoff``), and compares the
swap fields of the record (:data:`~pyfolio.kernel_lab.scenarios.SWAP_FIELDS`: swapped pages,
their slot runs, swap-cache pages, smaps Swap and SwapPss; the area's Used) besides the
usual ones, with the swap counters (``pswpout``, ``thp_swpout``, ``thp_swpout_fallback``,
...) and per-size swap stats. Recorded apart from the other scenarios
(``recorded/swap_observations.json``).

What is left out of a comparison, and why: the readahead counters (``swap_ra``,
``swap_ra_hit``, ``pgmajfault``) where a rotating device reads pages back, because the
cluster readahead window starts from global statistics earlier swap-ins left
(mm/swap_state.c: swapin_nr_pages()), which no scenario controls; the number of pages read
(``pswpin``) is still compared.
"""

from __future__ import annotations

from pyfolio.kernel_lab.scenarios import EXPLAINED, SWAP_COUNTERS, Scenario, Step
from pyfolio.sim.units import KiB, MiB

__all__ = ["SWAP_SCENARIOS", "SWAP_SIZE", "KINDS"]

#: the size of every area the scenarios swap on (as the research used: 64 MiB)
SWAP_SIZE = 64 * MiB
KINDS = ("file", "block", "zram")
_ALL = EXPLAINED + SWAP_COUNTERS
_NO_RA = EXPLAINED + tuple(c for c in SWAP_COUNTERS
                           if c not in ("swap_ra", "swap_ra_hit", "pgmajfault"))
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
    return [
        Scenario(f"swap_thp_{kind}", f"a THP paged out to {k}, faulted back",
                 _thp(kind, _out(), Step("read", 0, 4 * KiB), Step("read", 4 * KiB, 4 * KiB),
                      Step("write", 8 * KiB, 4 * KiB), Step("read", 0, 2 * MiB), off),
                 counters=_ALL),
        Scenario(f"swap_mthp64_{kind}", f"four 64 KiB mTHPs paged out to {k}",
                 _thp(kind, _out(256 * KiB), Step("read", 0, 4 * KiB),
                      Step("write", 68 * KiB, 4 * KiB), Step("read", 0, 256 * KiB), off,
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
                 _thp(kind, _out(), Step("read", 0, 4 * KiB), off, zero=True), counters=_ALL),
        Scenario(f"swap_swapoff_{kind}", f"swapoff of {k} holding a THP",
                 _thp(kind, _out(), off), counters=_ALL),
    ]


SWAP_SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    *_scenarios("file"), *_scenarios("block"), *_scenarios("zram"),
    Scenario("swap_shared_block", "a THP shared by fork is skipped by MADV_PAGEOUT",
             _thp("block", Step("fork"), _out(), Step("child_exit"), _out(), Step("swapoff")),
             counters=_ALL),
    Scenario("swap_again_file", "read back, dirty two pages, page out again, read all",
             _thp("file", _out(), Step("read", 0, 4 * KiB), Step("read", 4 * KiB, 4 * KiB),
                  Step("write", 8 * KiB, 4 * KiB), Step("write", 0, 4 * KiB),
                  Step("read", 0, 2 * MiB), _out(), Step("read", 0, 2 * MiB),
                  Step("swapoff")),
             counters=_NO_RA),
    Scenario("pageout_noswap", "MADV_PAGEOUT of a THP with no swap area",
             (Step("mmap", 0, 2 * MiB), Step("madvise", 0, 2 * MiB, "hugepage"),
              Step("write", 0, 2 * MiB), _out())),
)}
