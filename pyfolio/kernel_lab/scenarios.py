"""Scenarios (lists of steps on one region) and the observation record both backends make.

A scenario maps one anonymous region (2 MiB aligned), then applies steps at offsets into
it. After each step a backend reads pagemap, kpageflags, kpagecount, smaps and vmstat and
:func:`observe` boils them down to the same record on the simulator and on the kernel:

- ``layout``: runs over the region's pages, ``[kind, pages]``; kinds ``none`` (not
  present), ``small`` (order-0 pages, consecutive ones merged), ``large`` (one run per
  large folio, found from KPF_COMPOUND_HEAD/TAIL and consecutive PFNs), ``zero`` (the 4 KiB
  zero page), ``huge_zero`` (the huge zero folio);
- ``thp``: pages with KPF_THP that are not a zero page;
- ``kpagecount``: run-length ``[count, pages]`` of /proc/kpagecount over present pages;
- ``swapbacked``: present pages with KPF_SWAPBACKED (anon pages not lazy-free; shmem pages);
- ``rss_kb``, ``anon_huge_kb``, ``pss_kb``, ``pss_dirty_kb``, ``shared_clean_kb``,
  ``shared_dirty_kb``, ``private_clean_kb``, ``private_dirty_kb``, ``lazyfree_kb``: those smaps
  fields summed over the VMAs in the region (and ``shmem_pmd_kb``, ``file_pmd_kb``:
  ShmemPmdMapped and FilePmdMapped, where not 0);
- ``vmstat``: deltas of the scenario's counters over the step;
- ``mthp``: deltas of the per-size stats (``hugepages-<size>/stats/``) of
  :data:`MTHP_SIZES` over the step, ``{size: {item: delta}}``;
- ``rss_anon_kb``: the change of the scenario process's RssAnon (/proc/PID/status) over
  the step.

A step may name fields whose kernel value right after it depends on timing (``unsettled``):
after MADV_FREE of small folios they wait in a per-CPU batch until some task drains that
CPU, so LazyFree, KPF_SWAPBACKED and ``pglazyfree`` are compared only after the scenario's
own ``lru_add_drain`` step. On the kernel, that step is ``madvise(MADV_COLD)`` of a page the
run maps for it and never touches (madvise_cold() begins with lru_add_drain()), with the
child pinned to one CPU for the whole run, so the drain empties the batch its MADV_FREE
filled.

A scenario with a ``swapon`` step (:data:`pyfolio.kernel_lab.swap_scenarios.SWAP_SCENARIOS`)
records more per process (:data:`SWAP_FIELDS`): ``swapped`` (pages whose pagemap record
has PM_SWAP), ``swap_runs`` (``[first page, first swap offset, pages]`` per run of
consecutive slots), ``swapcache`` (present pages whose page has KPF_SWAPCACHE),
``swap_kb`` and ``swap_pss_kb`` (smaps Swap and SwapPss); and per step ``swap_used_kb``
(the area's Used in /proc/swaps, slots only the swap cache holds included).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pyfolio.fs.proc.page import KPF
from pyfolio.fs.proc.task_mmu import PagemapEntry
from pyfolio.sim.units import KiB, MiB

__all__ = ["Step", "Scenario", "SCENARIOS", "COUNTERS", "EXPLAINED", "NOT_FAILED", "OPS",
           "MTHP_SIZES", "MTHP_EXPLAINED", "SMAPS_KB", "LAZYFREE_TIMING", "FIELDS",
           "SWAP_FIELDS", "SWAP_COUNTERS", "FILE_FIELDS", "PAGE_CACHE_COUNTERS", "MTHP_SWAP",
           "observe", "observe_swap", "swap_runs",
           "layout_of", "rle", "vmstat_delta", "mthp_delta", "mremap_args"]

#: the operations a step may perform (the second line: on the scenario's file, see
#: :mod:`pyfolio.kernel_lab.file_scenarios`)
OPS = ("mmap", "madvise", "write", "read", "mprotect", "munmap", "fork_and_write_in_child",
       "child_exit", "drop_caches", "pin", "unpin", "split", "lru_add_drain", "swapon",
       "swapoff", "fork", "child_read", "zero",
       "create", "pwrite", "pread", "fsync", "evict", "punch", "ftruncate",
       "fork_and_read_in_child", "mremap")

#: the vmstat counters a scenario may explain (the rest move with other processes too)
COUNTERS = ("thp_fault_alloc", "thp_fault_fallback", "thp_split_pmd", "thp_split_page",
            "thp_split_page_failed", "thp_deferred_split_page", "thp_underused_split_page",
            "thp_zero_page_alloc", "thp_collapse_alloc", "pglazyfree", "pswpin", "pswpout",
            "thp_swpout", "thp_swpout_fallback", "swpout_zero", "swpin_zero", "swap_ra",
            "swap_ra_hit", "pgmajfault", "pglazyfreed", "thp_file_alloc", "thp_file_mapped",
            "nr_shmem_hugepages", "nr_file_hugepages", "nr_shmem_pmdmapped",
            "nr_file_pmdmapped", "numa_huge_pte_updates")
#: the reclaim counters (mm/vmstat.c names) a swap scenario explains
SWAP_COUNTERS = ("pswpin", "pswpout", "thp_swpout", "thp_swpout_fallback", "swpout_zero",
                 "swpin_zero", "swap_ra", "swap_ra_hit", "pgmajfault", "pglazyfreed")
#: the page-cache counters a file scenario explains (pyfolio.kernel_lab.file_scenarios)
PAGE_CACHE_COUNTERS = ("thp_file_alloc", "thp_file_mapped", "nr_shmem_hugepages",
                       "nr_file_hugepages", "nr_shmem_pmdmapped", "nr_file_pmdmapped")
#: the counters compared by default: thp_zero_page_alloc is left out, because the kernel
#: counts it only when the huge zero folio is (re)allocated, which depends on whether any
#: other process holds it and on when the shrinker last freed it
EXPLAINED = tuple(c for c in COUNTERS if c != "thp_zero_page_alloc"
                  and c not in SWAP_COUNTERS and c not in PAGE_CACHE_COUNTERS)
#: ... and without thp_split_page_failed: drop_slab() (mm/vmscan.c) repeats its passes
#: over every shrinker while the caches still give back objects, so on the kernel a split
#: that keeps failing is counted once per pass, a number that depends on the other caches
NOT_FAILED = tuple(c for c in EXPLAINED if c != "thp_split_page_failed")
#: the sizes whose hugepages-<size>/stats/ a step records
MTHP_SIZES = ("2048kB", "64kB")
#: the per-size stats a comparison looks at (the ones the simulator counts; the swap,
#: zswap, shmem and _charge items stay 0 there and move with other processes' work here);
#: ``split_failed`` is left out where the scenario leaves out thp_split_page_failed
MTHP_EXPLAINED = ("anon_fault_alloc", "anon_fault_fallback", "split", "split_failed",
                  "split_deferred", "nr_anon", "nr_anon_partially_mapped")
#: ... and the per-size swap stats a swap scenario compares too
MTHP_SWAP = ("swpout", "swpout_fallback", "swpin")
_HEAD, _TAIL = 1 << KPF["COMPOUND_HEAD"], 1 << KPF["COMPOUND_TAIL"]
_THP, _ZERO = 1 << KPF["THP"], 1 << KPF["ZERO_PAGE"]
_SWAPBACKED = 1 << KPF["SWAPBACKED"]
#: observation field -> the smaps field summed over the region's VMAs
SMAPS_KB = {"rss_kb": "Rss", "anon_huge_kb": "AnonHugePages", "pss_kb": "Pss",
            "pss_dirty_kb": "Pss_Dirty", "shared_clean_kb": "Shared_Clean",
            "shared_dirty_kb": "Shared_Dirty", "private_clean_kb": "Private_Clean",
            "private_dirty_kb": "Private_Dirty", "lazyfree_kb": "LazyFree"}
#: what a per-CPU LRU batch drain decides: unsettled right after MADV_FREE of small folios
LAZYFREE_TIMING = ("lazyfree_kb", "swapbacked", "pglazyfree")
#: the per-process fields every observation carries, in table order, and those a swap
#: scenario adds
FIELDS = ("layout", "thp", "kpagecount", "swapbacked", *SMAPS_KB)
SWAP_FIELDS = ("swapped", "swap_runs", "swapcache", "swap_kb", "swap_pss_kb")
#: ... and those of file mappings (recorded where not 0, so read with 0 as default)
FILE_FIELDS = ("shmem_pmd_kb", "file_pmd_kb")


@dataclass(frozen=True, slots=True)
class Step:
    """One step: ``op`` in :data:`OPS`; ``off``/``length`` in bytes relative to the
    region; ``arg`` the advice, the protection, or for ``split`` the new order.

    ``pin`` pins pages with FOLL_PIN | FOLL_LONGTERM (on the kernel: io_uring fixed
    buffers, a way any process can pin its own pages) and ``unpin`` drops every pin the
    scenario took; ``mprotect`` takes "none", "r" or "rw"; ``mremap`` moves or resizes
    [off, off + length), its ``arg`` the tokens of :func:`mremap_args` ("new=1024" for a
    new length in KiB, "to=4096" MREMAP_MAYMOVE|MREMAP_FIXED to that offset in KiB,
    "dontunmap"); ``split`` is debugfs
    ``split_huge_pages`` over the range (where the kernel allows it); ``drop_caches`` runs
    the shrinkers (``echo 2 > /proc/sys/vm/drop_caches``); ``lru_add_drain`` drains the
    CPU's LRU batches (see the module docstring). ``unsettled``: fields not compared
    after this step, because on the kernel their value then depends on timing. ``swapon``
    switches on a swap area of kind ``arg`` ("file", "block" or "zram") and ``length``
    bytes (the kernel backend makes it first: :mod:`pyfolio.kernel_lab.swap_area`),
    ``swapoff`` switches it off; ``fork`` forks a child that only waits, ``child_read``
    reads the range in it; ``zero`` writes zero bytes to every page of the range (a
    zero-filled folio). ``io_timing``: fields compared after this step, whose kernel value
    may still depend on when read I/O completed (fault-around maps only the pages already
    read): a kernel run that differs from the reference only there is run again
    (``run_against``)."""

    op: str
    off: int = 0
    length: int = 0
    arg: str = ""
    unsettled: tuple[str, ...] = ()
    io_timing: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if self.op in ("drop_caches", "child_exit", "unpin", "lru_add_drain", "swapoff",
                       "fork", "fsync", "evict"):
            return self.op
        if self.op == "swapon":
            return f"swapon({self.arg}, {self.length // MiB} MiB)"
        if self.op in ("create", "ftruncate"):
            return f"{self.op}({self.length // KiB} KiB)" if self.length else self.op
        if self.op == "split":
            return f"debugfs split(+{self.off // KiB} KiB, {self.length // KiB} KiB, " \
                   f"order {self.arg or 0})"
        if self.op == "mmap":
            return f"mmap({self.length // KiB} KiB)"
        if self.op == "fork_and_write_in_child":
            return f"fork, child writes +{self.off // KiB} KiB"
        if self.op == "mremap":
            new_len, flags, dst = mremap_args(self)
            to = f" to +{dst // KiB} KiB" if dst is not None else ""
            extra = "".join(f", {f}" for f in flags if f == "dontunmap")
            return (f"mremap(+{self.off // KiB} KiB, {self.length // KiB} KiB -> "
                    f"{new_len // KiB} KiB{to}{extra})")
        arg = f", {self.arg}" if self.arg else ""
        return f"{self.op}(+{self.off // KiB} KiB, {self.length // KiB} KiB{arg})"


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named list of steps; ``counters`` are the vmstat counters it explains (the ones a
    comparison looks at; every one of :data:`COUNTERS` is recorded)."""

    name: str
    title: str
    steps: tuple[Step, ...]
    counters: tuple[str, ...] = field(default=EXPLAINED)
    #: THP sysfs settings (path under /sys/kernel/mm/transparent_hugepage, value) the
    #: kernel backend sets for the run and restores afterwards
    settings: tuple[tuple[str, str], ...] = ()
    #: what the region is: "anon" (private anonymous), or a file the scenario creates:
    #: "memfd", "ext4" (a file on the disk file system), "shared_anon"
    #: (MAP_SHARED|MAP_ANONYMOUS) (see :mod:`pyfolio.kernel_lab.file_scenarios`)
    backing: str = "anon"
    #: the sizes whose hugepages-<size>/stats/ each step records
    sizes: tuple[str, ...] = MTHP_SIZES
    #: the per-size stats compared (None: :data:`MTHP_EXPLAINED`, see :attr:`mthp_items`)
    items: tuple[str, ...] | None = None

    @property
    def length(self) -> int:
        """The length of the region the scenario maps (its first ``mmap`` step; 0 if none)."""
        return next((s.length for s in self.steps if s.op == "mmap"), 0)

    @property
    def swap(self) -> tuple[str, int] | None:
        """(kind, size) of the area the scenario's ``swapon`` step switches on, or None."""
        on = [s for s in self.steps if s.op == "swapon"]
        return (on[0].arg, on[0].length) if on else None

    @property
    def fields(self) -> tuple[str, ...]:
        """The per-process fields compared: :data:`FIELDS`, with :data:`SWAP_FIELDS` for
        a swap scenario and :data:`FILE_FIELDS` for a file scenario."""
        return FIELDS + (SWAP_FIELDS if self.swap else ()) + (
            FILE_FIELDS if self.backing != "anon" else ())

    @property
    def mthp_items(self) -> tuple[str, ...]:
        """The per-size stats compared for this scenario (see :data:`MTHP_EXPLAINED`)."""
        if self.items is not None:
            return self.items
        failed = "thp_split_page_failed" in self.counters
        return tuple(i for i in MTHP_EXPLAINED if failed or i != "split_failed") + (
            MTHP_SWAP if self.swap else ())


def _thp(*more: Step, size: int = 2 * MiB, written: int | None = None) -> tuple[Step, ...]:
    """mmap ``size``, MADV_HUGEPAGE, write the first ``written`` bytes (all), then ``more``."""
    return (Step("mmap", 0, size), Step("madvise", 0, size, "hugepage"),
            Step("write", 0, size if written is None else written)) + more


def _thp_in(region: int, *more: Step) -> tuple[Step, ...]:
    """A ``region``-byte mapping whose first 2 MiB are one written THP, then ``more``."""
    return (Step("mmap", 0, region), Step("madvise", 0, 2 * MiB, "hugepage"),
            Step("write", 0, 2 * MiB)) + more


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("thp_fault", "THP fault (MADV_HUGEPAGE)", _thp()),
    Scenario("nohugepage", "MADV_NOHUGEPAGE after MADV_HUGEPAGE: small pages",
             (Step("mmap", 0, 2 * MiB), Step("madvise", 0, 2 * MiB, "hugepage"),
              Step("madvise", 0, 2 * MiB, "nohugepage"), Step("write", 0, 2 * MiB))),
    Scenario("mprotect_split", "mprotect one page: PMD split",
             _thp(Step("mprotect", 4 * KiB, 4 * KiB, "r"))),
    Scenario("fork_cow", "fork, child writes at +8 KiB",
             _thp(Step("fork_and_write_in_child", 8 * KiB), Step("child_exit"))),
    Scenario("fork_cow_head", "fork, child writes at +0 KiB (the head page)",
             _thp(Step("fork_and_write_in_child", 0), Step("child_exit"))),
    Scenario("munmap_half", "munmap half, then the deferred split shrinker",
             _thp(Step("munmap", 1 * MiB, 1 * MiB), Step("drop_caches"))),
    Scenario("dontneed_half", "MADV_DONTNEED of half a THP, then the shrinker",
             _thp(Step("madvise", 1 * MiB, 1 * MiB, "dontneed"), Step("drop_caches"))),
    Scenario("dontneed_10", "MADV_DONTNEED of 10 pages, then the shrinker",
             _thp(Step("madvise", 0, 40 * KiB, "dontneed"), Step("drop_caches"))),
    Scenario("free_10", "MADV_FREE of 10 pages, then a drain of the CPU's LRU batches",
             _thp(Step("madvise", 0, 40 * KiB, "free", unsettled=LAZYFREE_TIMING),
                  Step("lru_add_drain"))),
    Scenario("free_whole", "MADV_FREE of a whole THP, then a write to it",
             _thp(Step("madvise", 0, 2 * MiB, "free"), Step("write", 0, 4 * KiB))),
    Scenario("not_underused", "a THP with 10 written pages, then the shrinker",
             _thp(Step("drop_caches"), written=40 * KiB)),
    Scenario("underused", "the same with max_ptes_none 256: an underused THP",
             _thp(Step("drop_caches"), written=40 * KiB),
             settings=(("khugepaged/max_ptes_none", "256"),)),
    Scenario("huge_zero_underused", "a THP from the huge zero page is queued too",
             (Step("mmap", 0, 2 * MiB), Step("madvise", 0, 2 * MiB, "hugepage"),
              Step("read", 0, 2 * MiB), Step("write", 0, 4 * KiB), Step("drop_caches")),
             settings=(("khugepaged/max_ptes_none", "256"),)),
    Scenario("huge_zero", "huge zero page: read, then write",
             (Step("mmap", 0, 2 * MiB), Step("madvise", 0, 2 * MiB, "hugepage"),
              Step("read", 0, 2 * MiB), Step("write", 0, 4 * KiB))),
    Scenario("collapse", "MADV_COLLAPSE of 512 small pages",
             (Step("mmap", 0, 2 * MiB), Step("write", 0, 2 * MiB),
              Step("madvise", 0, 2 * MiB, "collapse"))),
    Scenario("cold_10", "MADV_COLD of 10 pages",
             _thp(Step("madvise", 0, 40 * KiB, "cold"))),
    Scenario("pin_blocks_split", "a pinned page keeps the shrinker from splitting",
             _thp(Step("pin", 0, 4 * KiB), Step("munmap", 1 * MiB, 1 * MiB),
                  Step("drop_caches"), Step("unpin"), Step("drop_caches")),
             counters=NOT_FAILED),
    Scenario("debugfs_split", "debugfs split_huge_pages to order 4",
             _thp(Step("split", 0, 2 * MiB, "4"))),
    Scenario("mthp_64k", "mTHP 64 KiB: fault, unmap one page, the shrinker",
             _thp(Step("munmap", 16 * KiB, 4 * KiB), Step("drop_caches"), size=256 * KiB),
             settings=(("hugepages-64kB/enabled", "madvise"),)),
    Scenario("free_pte_mapped", "MADV_FREE of 10 pages of a PTE-mapped THP",
             _thp(Step("mprotect", 4 * KiB, 4 * KiB, "r"),
                  Step("madvise", 64 * KiB, 40 * KiB, "free", unsettled=LAZYFREE_TIMING),
                  Step("lru_add_drain"))),
    Scenario("mthp_64k_free", "mTHP 64 KiB: MADV_FREE of 2 pages, munmap of the rest",
             _thp(Step("madvise", 64 * KiB, 8 * KiB, "free", unsettled=LAZYFREE_TIMING),
                  Step("munmap", 0, 256 * KiB, unsettled=("pglazyfree",)),
                  Step("lru_add_drain"), size=256 * KiB),
             settings=(("hugepages-64kB/enabled", "madvise"),)),
    Scenario("prot_none_thp", "PROT_NONE on a whole THP and back: the PMD stays",
             _thp(Step("mprotect", 0, 2 * MiB, "none"), Step("mprotect", 0, 2 * MiB, "rw"))),
    Scenario("prot_none_page", "PROT_NONE on one page of a THP: the PMD splits",
             _thp(Step("mprotect", 4 * KiB, 4 * KiB, "none"),
                  Step("mprotect", 4 * KiB, 4 * KiB, "rw"))),
    Scenario("mremap_move", "mremap a THP to a 2 MiB boundary: the PMD moves whole",
             _thp_in(8 * MiB, Step("mremap", 0, 2 * MiB, "to=4096"))),
    Scenario("mremap_misaligned", "mremap a THP 4 KiB past a boundary: PMD split, folio kept",
             _thp_in(8 * MiB, Step("mremap", 0, 2 * MiB, "to=4100"), Step("drop_caches"))),
    Scenario("mremap_shrink", "mremap shrinks a THP to 1 MiB, then the shrinker",
             _thp_in(4 * MiB, Step("mremap", 0, 2 * MiB, "new=1024"), Step("drop_caches"))),
    Scenario("mremap_grow", "mremap grows a THP: blocked by a neighbour, then in place",
             _thp_in(4 * MiB, Step("madvise", 2 * MiB, 2 * MiB, "nohugepage"),
                     Step("mremap", 0, 2 * MiB, "new=4096"), Step("munmap", 2 * MiB, 2 * MiB),
                     Step("mremap", 0, 2 * MiB, "new=4096"), Step("write", 2 * MiB, 2 * MiB))),
    Scenario("mremap_one_page", "mremap one page out of a THP, munmap the rest, the shrinker",
             _thp_in(4 * MiB, Step("mremap", 4 * KiB, 4 * KiB, "to=3072"),
                     Step("munmap", 0, 2 * MiB), Step("drop_caches"))),
    Scenario("mremap_dontunmap", "mremap with MREMAP_DONTUNMAP: the old range stays, empty",
             _thp_in(8 * MiB, Step("mremap", 0, 2 * MiB, "to=4096 dontunmap"),
                     Step("read", 0, 2 * MiB), Step("write", 0, 4 * KiB))),
    Scenario("mremap_two_vmas", "mremap moves a THP, a PROT_NONE VMA and a THP together",
             (Step("mmap", 0, 12 * MiB), Step("madvise", 0, 2 * MiB, "hugepage"),
              Step("write", 0, 2 * MiB), Step("madvise", 4 * MiB, 2 * MiB, "hugepage"),
              Step("write", 4 * MiB, 2 * MiB), Step("mprotect", 2 * MiB, 2 * MiB, "none"),
              Step("mremap", 0, 6 * MiB, "to=6144"))),
)}


def mremap_args(step: Step) -> tuple[int, tuple[str, ...], int | None]:
    """(new length in bytes, flags, destination offset or None) of an ``mremap`` step:
    ``arg`` holds space- or comma-separated tokens "new=<KiB>", "to=<KiB>" (implies
    "maymove" and "fixed"), "maymove", "dontunmap"."""
    new_len, flags, dst = step.length, [], None
    for tok in step.arg.replace(",", " ").split():
        key, _, val = tok.partition("=")
        if key == "new":
            new_len = int(val) * KiB
        elif key == "to":
            dst = int(val) * KiB
            flags += ["maymove", "fixed"]
        elif key in ("maymove", "dontunmap"):
            flags.append(key)
        else:
            raise ValueError(f"mremap step: unknown token {tok!r}")
    return new_len, tuple(dict.fromkeys(flags)), dst


def rle(values: Sequence[object]) -> list[list[object]]:
    """Run-length encoding: ``[1, 1, 2] -> [[1, 2], [2, 1]]``."""
    out: list[list[object]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1][1] = int(out[-1][1]) + 1  # type: ignore[call-overload]
        else:
            out.append([v, 1])
    return out


def layout_of(entries: Sequence[PagemapEntry], flags: dict[int, int]) -> list[list[object]]:
    """Folio runs over the pages (see the module docstring); ``flags`` maps PFN -> KPF."""
    runs: list[list[object]] = []
    prev_pfn, prev_kind = -2, ""
    for e in entries:
        f = flags.get(e.pfn, 0) if e.present else 0
        if not e.present:
            kind = "none"
        elif f & _ZERO:
            kind = "huge_zero" if f & _THP else "zero"
        elif f & (_HEAD | _TAIL):
            kind = "large"
        else:
            kind = "small"
        contiguous = e.pfn == prev_pfn + 1
        same_folio = contiguous and (kind == "huge_zero" or bool(f & _TAIL))
        continues = kind == prev_kind and (kind in ("none", "small", "zero") or same_folio)
        if continues:
            runs[-1][1] = int(runs[-1][1]) + 1  # type: ignore[call-overload]
        else:
            runs.append([kind, 1])
        prev_pfn, prev_kind = e.pfn, kind
    return runs


def observe(entries: Sequence[PagemapEntry], flags: dict[int, int], counts: dict[int, int],
            vmas: Sequence[dict[str, int]], lo: int, hi: int) -> dict[str, object]:
    """The per-process part of an observation record (see the module docstring).

    ``vmas``: smaps dicts with Start/End; those overlapping [lo, hi) are summed."""
    present = [e for e in entries if e.present]
    inside = [v for v in vmas if v["Start"] < hi and v["End"] > lo]
    return {
        "layout": layout_of(entries, flags),
        "thp": sum(1 for e in present if flags.get(e.pfn, 0) & _THP
                   and not flags.get(e.pfn, 0) & _ZERO),
        "kpagecount": rle([counts.get(e.pfn, 0) for e in present]),
        "swapbacked": sum(1 for e in present if flags.get(e.pfn, 0) & _SWAPBACKED),
        **{name: sum(v.get(key, 0) for v in inside) for name, key in SMAPS_KB.items()},
        **{key: kb for key, field in (("shmem_pmd_kb", "ShmemPmdMapped"),
                                      ("file_pmd_kb", "FilePmdMapped"))
           if (kb := sum(v.get(field, 0) for v in inside))},
    }


def swap_runs(entries: Sequence[PagemapEntry]) -> list[list[int]]:
    """``[first page, first swap offset, pages]`` for each run of pages whose swap entries
    are consecutive slots."""
    out: list[list[int]] = []
    for i, e in enumerate(entries):
        if not e.swapped:
            continue
        if out and out[-1][0] + out[-1][2] == i and out[-1][1] + out[-1][2] == e.swap_offset:
            out[-1][2] += 1
        else:
            out.append([i, e.swap_offset, 1])
    return out


def observe_swap(entries: Sequence[PagemapEntry], flags: dict[int, int],
                 vmas: Sequence[dict[str, int]], lo: int, hi: int) -> dict[str, object]:
    """The swap part of a process's observation (:data:`SWAP_FIELDS`)."""
    inside = [v for v in vmas if v["Start"] < hi and v["End"] > lo]
    cache = 1 << KPF["SWAPCACHE"]
    return {"swapped": sum(1 for e in entries if e.swapped),
            "swap_runs": swap_runs(entries),
            "swapcache": sum(1 for e in entries if e.present and flags.get(e.pfn, 0) & cache),
            "swap_kb": sum(v.get("Swap", 0) for v in inside),
            "swap_pss_kb": sum(v.get("SwapPss", 0) for v in inside)}


def vmstat_delta(before: dict[str, int], after: dict[str, int],
                 counters: Sequence[str]) -> dict[str, int]:
    """after - before for each counter (missing counters count as 0)."""
    return {c: after.get(c, 0) - before.get(c, 0) for c in counters}


def mthp_delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
               ) -> dict[str, dict[str, int]]:
    """after - before for every per-size stat read (``{size: {item: delta}}``)."""
    return {size: vmstat_delta(before.get(size, {}), stats, sorted(stats))
            for size, stats in after.items()}

