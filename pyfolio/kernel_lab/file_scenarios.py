"""Scenarios on files: memfd and shared memory (shmem THP), and a file on the disk file
system (ext4 large folios). Each creates its file, then writes, maps, faults, shares with
a child, punches holes and truncates; both backends record, after every step, the
mapping (as for anonymous scenarios, with ShmemPmdMapped / FilePmdMapped) and the file's
page cache: each folio as ``[index, order, flags]`` with the head's /proc/kpageflags
reduced to :data:`CACHE_KPF` (the flags that do not depend on timing: LRU is left out, a
new folio reaches the LRU list through a per-CPU batch; REFERENCED and ACTIVE, which
move with accesses and reclaim, too).

The holes and truncations are the ones issue 17 asks for (a hole at page 0, 1, 257, 511,
a 64 KiB hole, a truncate to 261 pages) and the classic page 200, on shmem, on a clean
ext4 file and on a dirty one (which cannot be split). Settings (``shmem_enabled`` and
``hugepages-<size>/shmem_enabled``) are written for the run and restored afterwards.
"""

from __future__ import annotations

from pyfolio.fs.proc.page import KPF
from pyfolio.kernel_lab.scenarios import Scenario, Step
from pyfolio.sim.units import KiB, MiB

__all__ = ["READ_IO", "FILE_SCENARIOS", "FILE_COUNTERS", "FILE_SIZES", "FILE_ITEMS", "CACHE_KPF",
           "HOLES", "cache_record", "EXT4_DIR_NAME"]

K, M, P = KiB, MiB, 4 * KiB
#: the vmstat counters a file scenario compares (deltas; the nr_* are gauges)
FILE_COUNTERS = ("thp_split_pmd", "thp_split_page", "thp_split_page_failed",
                 "thp_deferred_split_page", "thp_file_alloc", "thp_file_mapped",
                 "nr_shmem_hugepages", "nr_file_hugepages", "nr_shmem_pmdmapped",
                 "nr_file_pmdmapped")
#: the sizes whose per-size stats a file scenario records and compares
FILE_SIZES = ("2048kB", "1024kB", "512kB", "128kB", "64kB", "32kB", "8kB")
#: ... and the stats
FILE_ITEMS = ("split", "split_failed", "shmem_alloc", "shmem_fallback")
#: the kpageflags of a page-cache folio's head a record keeps
#: what a cold read fault maps depends on how much of its readahead has been read when
#: fault-around runs: on a loaded machine fewer than 16 PTEs (6 were seen once); such a run
#: is repeated, not excused (Step.io_timing)
READ_IO = ("layout", "kpagecount", "rss_kb", "pss_kb", "pss_dirty_kb", "shared_clean_kb",
           "shared_dirty_kb", "private_clean_kb", "private_dirty_kb", "cache")
CACHE_KPF = ("UPTODATE", "DIRTY", "SWAPBACKED", "ANON", "THP", "PRIVATE", "OWNER_2", "MMAP")
#: the directory (under the system's temporary directory, on the disk file system) the
#: kernel backend creates its ext4 files in, and removes afterwards
EXT4_DIR_NAME = "pyfolio-kernel-lab-files"
#: hole (name -> offset, length) and truncation sizes of issue 17
HOLES = {"0": (0, P), "1": (P, P), "200": (200 * P, P), "257": (257 * P, P),
         "511": (511 * P, P), "64k": (16 * P, 64 * K)}
TRUNC_261 = 261 * P


def cache_record(folios: list[tuple[int, int, int]], npages: int) -> list[list[object]]:
    """The page-cache record: ``[index, order, "FLAG,..."]`` for each folio that starts
    before page ``npages`` (the file's size; a folio reaching past it keeps its order),
    flags from :data:`CACHE_KPF`."""
    out: list[list[object]] = []
    for index, order, flags in folios:
        if index < npages:
            names = ",".join(n for n in CACHE_KPF if flags >> KPF[n] & 1)
            out.append([index, order, names])
    return out


def _sc(name: str, title: str, backing: str, *steps: Step,
        settings: tuple[tuple[str, str], ...] = ()) -> Scenario:
    return Scenario(name, title, tuple(steps), counters=FILE_COUNTERS, settings=settings,
                    backing=backing, sizes=FILE_SIZES, items=FILE_ITEMS)


ALWAYS = (("shmem_enabled", "always"),)


def _thp_file(kind: str, *more: Step) -> list[Step]:
    """A 2 MiB file holding one order-9 folio: a memfd written under shmem_enabled=always,
    an ext4 file written in one pwrite (``clean``: fsync()ed too)."""
    steps = [Step("create"), Step("pwrite", 0, 2 * M)]
    if kind == "clean":
        steps.append(Step("fsync"))
    return steps + list(more)


def _holes() -> list[Scenario]:
    out = []
    for kind, backing, settings in (("shmem", "memfd", ALWAYS), ("clean", "ext4", ()),
                                    ("dirty", "ext4", ())):
        for name, (off, length) in HOLES.items():
            if kind == "dirty" and name not in ("200", "64k"):
                continue
            out.append(_sc(f"{kind}_hole_{name}", f"{kind} 2 MiB THP: punch {name}", backing,
                           *_thp_file(kind, Step("punch", off, length)), settings=settings))
        out.append(_sc(f"{kind}_truncate_261", f"{kind} 2 MiB THP: ftruncate to 261 pages",
                       backing, *_thp_file(kind, Step("ftruncate", 0, TRUNC_261)),
                       settings=settings))
    return out


def _mapped(*more: Step) -> list[Step]:
    return [Step("create", 0, 2 * M), Step("mmap", 0, 2 * M, "shared"),
            Step("write", 0, 2 * M), *more]


FILE_SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    _sc("memfd_thp_fault", "memfd, shmem_enabled=always: a write fault maps a PMD", "memfd",
        *_mapped(), settings=ALWAYS),
    _sc("memfd_share", "memfd THP shared with a child, then one page unmapped", "memfd",
        *_mapped(Step("fork_and_read_in_child", 0, 2 * M), Step("munmap", P, P),
                 Step("child_exit")), settings=ALWAYS),
    _sc("memfd_mprotect_one", "memfd THP: mprotect one page, read one, read all", "memfd",
        *_mapped(Step("mprotect", P, P, "r"), Step("read", 100 * P, P),
                 Step("read", 0, 2 * M)), settings=ALWAYS),
    _sc("memfd_munmap_one", "memfd THP: munmap one page, read the rest, the shrinkers",
        "memfd", *_mapped(Step("munmap", P, P), Step("read", 0, P),
                          Step("read", 2 * P, 2 * M - 2 * P), Step("drop_caches")),
        settings=ALWAYS),
    _sc("memfd_punch_mapped", "memfd THP mapped by a PMD: punch page 200, read all", "memfd",
        *_mapped(Step("punch", 200 * P, P), Step("read", 0, 2 * M)), settings=ALWAYS),
    _sc("memfd_madv_remove", "memfd THP: MADV_REMOVE of 10 pages", "memfd",
        *_mapped(Step("madvise", 0, 10 * P, "remove")), settings=ALWAYS),
    _sc("memfd_eof_shrinker", "memfd: an 8 KiB write gets a THP; the shrinker splits it",
        "memfd", Step("create"), Step("pwrite", 0, 8 * K), Step("drop_caches"),
        settings=ALWAYS),
    _sc("memfd_64k", "memfd, hugepages-64kB/shmem_enabled=always: 64 KiB folios", "memfd",
        Step("create", 0, 256 * K), Step("mmap", 0, 256 * K, "shared"),
        Step("write", 0, 256 * K), Step("punch", 20 * P, P),
        settings=(("hugepages-64kB/shmem_enabled", "always"),)),
    _sc("memfd_within_size", "memfd, shmem_enabled=within_size: writes fit the size",
        "memfd", Step("create"), Step("pwrite", 0, 12 * K), Step("pwrite", 64 * K, 64 * K),
        Step("pwrite", 1 * M, 1 * M), settings=(("shmem_enabled", "within_size"),)),
    _sc("shared_anon_fault", "MAP_SHARED|MAP_ANONYMOUS, 2048kB=always: fault, fork, mprotect",
        "shared_anon", Step("mmap", 0, 2 * M, "shared"), Step("write", 0, 2 * M),
        Step("fork_and_read_in_child", 0, 2 * M), Step("mprotect", 2 * P, P, "r"),
        Step("read", 0, 2 * M), Step("child_exit"),
        settings=(("hugepages-2048kB/shmem_enabled", "always"),)),
    _sc("ext4_write_orders", "ext4: write() sizes give folio orders", "ext4",
        Step("create"), Step("pwrite", P, 64 * K), Step("pwrite", 1 * M, 1 * M),
        Step("pwrite", 2 * M + 64 * K, 2 * M), Step("pwrite", 0, P)),
    _sc("ext4_thp_fault", "ext4 4 MiB in two order-9 folios: PMD-mapped, shared, unmapped",
        "ext4", Step("create"), Step("pwrite", 0, 4 * M), Step("fsync"),
        Step("mmap", 0, 4 * M, "shared,r"), Step("read", 0, 4 * M),
        Step("fork_and_read_in_child", 0, 4 * M), Step("munmap", P, P), Step("child_exit")),
    _sc("ext4_shared_write", "ext4 MAP_SHARED: read (a read-only PMD), write one page",
        "ext4", Step("create"), Step("pwrite", 0, 4 * M), Step("fsync"),
        Step("mmap", 0, 4 * M, "shared"), Step("read", 0, 4 * M), Step("write", 3 * P, P)),
    _sc("ext4_private_cow", "ext4 MAP_PRIVATE: read (PMD), write one page (COW), fork",
        "ext4", Step("create"), Step("pwrite", 0, 4 * M), Step("fsync"),
        Step("mmap", 0, 4 * M, "private"), Step("read", 0, 4 * M), Step("write", 3 * P, P),
        Step("fork_and_read_in_child", 0, 4 * M), Step("child_exit")),
    _sc("ext4_fault_readahead", "ext4, cold: a fault reads around it, 16 PTEs mapped",
        "ext4", Step("create"), Step("pwrite", 0, 16 * M), Step("evict"),
        Step("mmap", 0, 16 * M, "shared,r"), Step("read", 1029 * P, P, io_timing=READ_IO)),
    _sc("ext4_fault_hugepage", "ext4, cold, MADV_HUGEPAGE: two order-9 folios, one PMD",
        "ext4", Step("create"), Step("pwrite", 0, 16 * M), Step("evict"),
        Step("mmap", 0, 16 * M, "shared,r"), Step("madvise", 0, 16 * M, "hugepage"),
        Step("read", 1029 * P, P)),
    _sc("ext4_read_readahead", "ext4, cold: 4 KiB reads ramp readahead up", "ext4",
        Step("create"), Step("pwrite", 0, 8 * M), Step("evict"), Step("pread", 0, P),
        Step("pread", P, 1 * M - P, "4096"), Step("pread", 1 * M, 7 * M, "131072")),
    _sc("ext4_punch_mapped", "ext4 THP mapped by a PMD: punch page 200, read all", "ext4",
        Step("create"), Step("pwrite", 0, 2 * M), Step("fsync"),
        Step("mmap", 0, 2 * M, "shared,r"), Step("read", 0, 2 * M),
        Step("punch", 200 * P, P), Step("read", 0, 2 * M)),
    *_holes(),
)}
