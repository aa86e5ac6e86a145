"""The shmem swap scenarios: a memfd THP, a MAP_SHARED|MAP_ANONYMOUS THP and 64 KiB shmem
folios paged out to a swap file, a loop block device or zram, read back, truncated, shared,
paged out in part, and brought back by swapoff (mm/shmem.c: :mod:`pyfolio.mm.shmem_swap`).

Each run creates its memfd (or shared anonymous mapping), switches its own swap area on
and off, and sets the shmem THP knobs it needs for the run only (restored afterwards). A
record holds what the swap scenarios' records hold (smaps ``Swap``, the area's Used, no
swap PTEs: shmem's swap entries live in the page cache) and, instead of the page cache's
folios (reading them would fault the swapped-out pages back in), ``incore``: mincore() of
the mapped region, which says 1 while a swapped-out page is still in the swap cache.

What is left out of a comparison, and why (measured on 6.18.44 for issue 18): the
nr_* gauges (per-CPU vmstat batching: read right after a step they lag); swap readahead
counts where a read goes through the cluster readahead of a rotating device (its window
comes from global history: swapoff of a zero-filled THP whose folios were freed at once);
no step sleeps after a split, and khugepaged is kept asleep for the run
(``khugepaged/scan_sleep_millisecs``: it may collapse a split shmem range back while huge
shmem is allowed). Two scenarios have no swap at all: MADV_PAGEOUT then unmaps
a written shmem folio and keeps it (shmem_writeout() redirties it), and drops one that
was only read (a clean hole: __remove_mapping()). Recorded in
``recorded/shmem_swap_observations.json``.
"""

from __future__ import annotations

from pyfolio.kernel_lab.scenarios import Scenario, Step
from pyfolio.sim.units import KiB, MiB

__all__ = ["SHMEM_SWAP_SCENARIOS", "SHMEM_SWAP_COUNTERS", "SHMEM_SWAP_ITEMS"]

P = 4 * KiB
SWAP_SIZE = 64 * MiB
#: the vmstat counters compared (event counters only: no nr_* gauges)
SHMEM_SWAP_COUNTERS = ("thp_split_pmd", "thp_split_page", "thp_file_mapped", "pswpin",
                       "pswpout", "thp_swpout", "thp_swpout_fallback", "swpout_zero",
                       "swpin_zero", "swap_ra", "swap_ra_hit", "pgmajfault")
#: the per-size stats compared, of 2048kB and 64kB
SHMEM_SWAP_ITEMS = ("split", "shmem_alloc", "swpout", "swpout_fallback", "swpin")
#: khugepaged kept asleep for the run (an hour; restored afterwards): with huge shmem
#: allowed it may collapse a range a pageout split back into a THP at any moment (seen in a
#: CI run of shmem_partial_file: the read after the split found a PMD-mapped THP)
_QUIET = (("khugepaged/scan_sleep_millisecs", "3600000"),)
_ALWAYS = (("shmem_enabled", "always"), *_QUIET)
_PMD_ALWAYS = (("hugepages-2048kB/shmem_enabled", "always"), *_QUIET)
_64K_ALWAYS = (("hugepages-64kB/shmem_enabled", "always"), *_QUIET)
#: a read through the cluster readahead of a rotating area (see the module docstring)
_CLUSTER_RA = ("swpin_zero", "swap_ra", "swap_ra_hit", "pgmajfault")


def _sc(name: str, title: str, backing: str, settings: tuple[tuple[str, str], ...],
        *steps: Step) -> Scenario:
    return Scenario(name, title, steps, counters=SHMEM_SWAP_COUNTERS, settings=settings,
                    backing=backing, sizes=("2048kB", "64kB"), items=SHMEM_SWAP_ITEMS)


def _memfd(kind: str, *more: Step, size: int = 2 * MiB, zero: bool = False) -> tuple[Step, ...]:
    """A memfd of ``size`` mapped shared, a swap area of ``kind``, every page written."""
    return (Step("create", 0, size), Step("mmap", 0, size, "shared"),
            Step("swapon", 0, SWAP_SIZE, kind),
            Step("zero" if zero else "write", 0, size)) + more


def _anon(kind: str, size: int, *more: Step) -> tuple[Step, ...]:
    """MAP_SHARED|MAP_ANONYMOUS of ``size``, a swap area, every page written."""
    return (Step("mmap", 0, size, "shared"), Step("swapon", 0, SWAP_SIZE, kind),
            Step("write", 0, size)) + more


def _out(length: int = 2 * MiB) -> Step:
    return Step("madvise", 0, length, "pageout")


def _scenarios(kind: str) -> list[Scenario]:
    k = {"file": "a swap file", "block": "a loop block device", "zram": "zram"}[kind]
    off = Step("swapoff")
    again = (_out(),) if kind != "file" else ()  # a second pageout, to new slots
    ra = _CLUSTER_RA if kind != "zram" else ()
    return [
        _sc(f"shmem_thp_{kind}", f"a memfd THP paged out to {k}, read back", "memfd",
            _ALWAYS, *_memfd(kind, _out(), Step("read", 0, P), Step("read", 300 * P, P),
                             Step("read", 0, 2 * MiB), *again, off)),
        _sc(f"shmem_anon_{kind}", f"MAP_SHARED|MAP_ANONYMOUS THP paged out to {k}",
            "shared_anon", _PMD_ALWAYS, *_anon(kind, 2 * MiB, _out(), Step("read", 0, P),
                                               off)),
        _sc(f"shmem_64k_{kind}", f"four 64 KiB shmem folios paged out to {k}", "shared_anon",
            _64K_ALWAYS, *_anon(kind, 256 * KiB, _out(256 * KiB), Step("read", 0, P),
                                Step("read", 0, 256 * KiB), off)),
        _sc(f"shmem_partial_{kind}", f"MADV_PAGEOUT of half a memfd THP ({k})", "memfd",
            _ALWAYS, *_memfd(kind, _out(1 * MiB), Step("read", 0, P), off)),
        _sc(f"shmem_truncate_{kind}", f"a memfd THP paged out to {k}, then truncated",
            "memfd", _ALWAYS, *_memfd(kind, _out(), Step("ftruncate", 0, 0), off)),
        _sc(f"shmem_swapoff_{kind}", f"swapoff of {k} holding a memfd THP", "memfd", _ALWAYS,
            *_memfd(kind, _out(), off, Step("read", 0, 2 * MiB))),
        _sc(f"shmem_zero_{kind}", f"a zero-filled memfd THP paged out to {k}", "memfd",
            _ALWAYS, *_memfd(kind, _out(), Step("swapoff", unsettled=ra), zero=True)),
    ]


SHMEM_SWAP_SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    *_scenarios("file"), *_scenarios("block"), *_scenarios("zram"),
    _sc("shmem_shared_block", "a memfd THP another process maps is skipped by MADV_PAGEOUT",
        "memfd", _ALWAYS, *_memfd("block", Step("fork_and_read_in_child", 0, 2 * MiB), _out(),
                                  Step("child_exit"), _out(), Step("swapoff"))),
    _sc("shmem_pread_zram", "pread() of a page of a memfd THP swapped out to zram", "memfd",
        _ALWAYS, *_memfd("zram", _out(), Step("pread", 0, P), Step("swapoff"))),
    # no swap: a dirty shmem folio is unmapped and kept, a clean one (a hole read) dropped
    _sc("shmem_noswap_pages", "no swap: MADV_PAGEOUT of 8 read and 8 written memfd pages",
        "memfd", (), Step("create", 0, 64 * KiB), Step("mmap", 0, 64 * KiB, "shared"),
        Step("read", 0, 8 * P), Step("write", 8 * P, 8 * P), _out(64 * KiB)),
    _sc("shmem_noswap_clean_thp", "no swap: MADV_PAGEOUT of a memfd THP only read", "memfd",
        _ALWAYS, Step("create", 0, 2 * MiB), Step("mmap", 0, 2 * MiB, "shared"),
        Step("read", 0, 2 * MiB), _out()),
)}
