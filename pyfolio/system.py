"""The facade chapters, widgets and tests use: a machine with RAM and processes.

``System`` and ``Process`` read like the story (``p.touch(buf)``, ``p.fork()``); each
method is a thin call into the kernel-named functions of the model modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.arch.x86.pgtable import _PAGE_ACCESSED, _PAGE_DIRTY, Entry, decode_entry, walk
from pyfolio.device import Device
from pyfolio.device import split_design as design_switch
from pyfolio.fs.proc.page import kpagecount, kpageflags
from pyfolio.fs.proc.task_mmu import PagemapEntry, pagemap, smaps, task_mem
from pyfolio.include.linux.mm import Folio, page_folio
from pyfolio.include.linux.mm_types import TASK_SIZE, VM, VMA, MMStruct
from pyfolio.kernel.fork import check_mm, dup_mm, mm_alloc
from pyfolio.mm.debug_vm import Violation, check
from pyfolio.mm.gup import fault_in, follow_page, pin_user_pages, put_user_page, unpin_user_page
from pyfolio.mm.huge_memory_split import shrink_deferred_split, split_mapped_folio
from pyfolio.mm.huge_memory_sysfs import thpsize_stats
from pyfolio.mm.madvise import do_madvise
from pyfolio.mm.memory_batch import anon_run_vma, do_anonymous_page_run
from pyfolio.mm.mm_init import boot_machine
from pyfolio.mm.mmap import do_mmap, do_munmap, exit_mmap
from pyfolio.mm.mprotect import do_mprotect
from pyfolio.mm.page_alloc import defragment, fragment
from pyfolio.mm.shmem import shm_mnt
from pyfolio.mm.shmem_huge import shmem_enabled_store, thpsize_shmem_enabled_store
from pyfolio.mm.swap import lru_add_drain
from pyfolio.mm.swapfile_swapon import swap_show, sys_swapoff, sys_swapon
from pyfolio.mm.vmscan import try_to_free_mem_cgroup_pages
from pyfolio.mm.vmstat import vmstat
from pyfolio.sim.errors import (
    EBADF,
    EBUSY,
    EEXIST,
    EINVAL,
    EOPNOTSUPP,
    MmError,
    SegmentationFault,
)
from pyfolio.sim.machine import MTHP_POLICIES, THP_POLICIES, THPSIZE_ORDERS, mthp_size_order
from pyfolio.sim.trace import Trace
from pyfolio.sim.units import (
    HPAGE_PMD_NR,
    PAGE_SHIFT,
    PAGE_SIZE,
    PMD_SIZE,
    parse_size,
    to_size,
    to_stamp,
    to_ulong,
)

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import File
    from pyfolio.include.linux.swap import SwapInfoStruct
    from pyfolio.sim.machine import Machine

__all__ = ["System", "Process"]


class System:
    """A simulated machine: ``ram`` of RAM (int bytes or "256M"), a THP policy, a seed.

    >>> from pyfolio import System, MiB
    >>> m = System(ram="64M", thp="madvise")
    >>> p = m.spawn()
    >>> a = p.mmap(4 * MiB); p.madvise(a, 2 * MiB, "hugepage"); p.touch(a, 2 * MiB)
    >>> p.lookup(a).level, p.folio_at(a).order, m.vmstat()["thp_fault_alloc"]
    ('pmd', 9, 1)
    >>> m.check()
    []
    """

    def __init__(self, ram: int | str = "256M", thp: str = "madvise", seed: int = 0,
                 device: int | str = 0, split_design: str = "split-unmapped-folio") -> None:
        design_switch(split_design)  # MmError(EINVAL) for an unknown design, before anything
        ram_pages = parse_size(ram) // PAGE_SIZE
        self.machine = boot_machine(ram_pages, parse_size(device) // PAGE_SIZE, thp=thp, seed=seed)
        self.seed = seed
        self.processes: list[Process] = []
        self._next_pid = 1
        self.devices: dict[str, Device] = {}
        self._split_design = split_design

    @property
    def split_design(self) -> str:
        """The split fallback of device migration: "split-unmapped-folio" (merged Nov 2025,
        folio_split_unmapped()) or "unmapped-param" (v7 patch 11/16's flag)."""
        return self._split_design

    @split_design.setter
    def split_design(self, name: str) -> None:
        switch = design_switch(name)
        self._split_design = name
        for dev in self.devices.values():
            dev.driver.split_design = switch

    @property
    def device(self) -> Device:
        """The first device; with none added yet, a "dmirror0" over the ``device=`` memory.
        MmError(EINVAL) when there is neither."""
        if not self.devices:
            self.devices["dmirror0"] = Device(self.machine, "dmirror0",
                                              design=self._split_design)
        return next(iter(self.devices.values()))

    def add_device(self, name: str = "dmirror0", memory: int | str = "64M",
                   large_pages: bool = True) -> Device:
        """A dmirror-like device with ``memory`` of its own device-private memory (a
        multiple of 2 MiB). ``large_pages=False``: its order-9 allocations fail."""
        if name in self.devices:
            raise MmError(EEXIST, f"a device named {name!r} exists already")
        size = parse_size(memory)
        if size <= 0 or size % PMD_SIZE:
            raise MmError(EINVAL, f"device memory {memory!r} is not a positive multiple of 2 MiB")
        frames = self.machine.add_device_memory(size // PAGE_SIZE)
        dev = Device(self.machine, name, frames, large_pages, self._split_design)
        self.devices[name] = dev
        return dev

    def split(self, pfn: int, new_order: int = 0, *, uniform: bool = True,
              at: int | None = None) -> None:
        """Split the folio holding ``pfn`` to ``new_order`` as debugfs split_huge_pages
        does; ``uniform=False`` is the buddy-style folio_split() around page ``at``.
        MmError with the kernel's errno on failure (nothing changed but the
        ``thp_split_page_failed`` count __folio_split() keeps). Unlike debugfs, which
        skips a folio that fails can_split_folio() silently, the split is attempted, so
        the reader sees its -EAGAIN. TypeError for a ``pfn``, ``new_order`` or ``at`` that
        is not an int (or ``uniform`` not a bool); MmError(EINVAL) for a value out of
        range; nothing changes then."""
        for name, value in (("pfn", pfn), ("new_order", new_order)) + (
                (("at", at),) if at is not None else ()):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"split: {name} must be an int, not {value!r}")
        if not isinstance(uniform, bool):
            raise TypeError(f"split: uniform must be True or False, not {uniform!r}")
        split_mapped_folio(self.machine, pfn, new_order, uniform=uniform, at=at)

    def mount_tmpfs(self, path: str, huge: str = "never") -> None:
        """``mount -t tmpfs -o huge=<huge> tmpfs <path>``: files opened under ``path``
        (``Process.open("<path>/f")``) are tmpfs files whose folio orders follow ``huge``
        (never, always, within_size, advise) as a memfd's follow ``shmem_enabled``; while
        such a file is linked, a fault gets a PMD-sized folio or a small one, never an
        mTHP. MmError(EINVAL) for another value or a bad path, MmError(EBUSY) if a tmpfs
        is mounted there already; nothing changes then.

        >>> m = System(ram="64M"); m.mount_tmpfs("/mnt/huge", "within_size")
        >>> p = m.spawn(); fd = p.open("/mnt/huge/f"); _ = p.pwrite(fd, 0, "12K", 1)
        >>> p.page_cache(fd)
        [(0, 1), (2, 0)]
        """
        from pyfolio.mm.shmem_super import shmem_fill_super

        shmem_fill_super(self.machine, path, huge)

    def split_huge_pages(self, text: str) -> int:
        """``echo text > /sys/kernel/debug/split_huge_pages``, the file form:
        ``"<path>,0x<off_start>,0x<off_end>[,<new_order>[,<in_folio_offset>]]"`` (page
        offsets in hex) splits the large page-cache folios of the disk file at ``path``
        that hold a page of that range, to ``new_order`` (default 0), uniformly or, with
        ``in_folio_offset``, non-uniformly at that page of each folio. Returns the input's
        length, as the write() does; MmError(EINVAL) for input it cannot read, or a path
        that cannot be opened, changing nothing. The pid form is :meth:`split`.

        >>> m = System(ram="64M"); p = m.spawn(); fd = p.open("/f")
        >>> _ = p.pwrite(fd, 0, "2M", 1); p.fsync(fd)
        >>> m.split_huge_pages("/f,0x0,0x200,3"), len(p.page_cache(fd))
        (14, 64)
        """
        from pyfolio.mm.huge_memory_debugfs import split_huge_pages_write

        return split_huge_pages_write(self.machine, text)

    # -- swap -----------------------------------------------------------------------------
    #: where the facade's one swap area lives, per kind (the lab's names for them)
    SWAP_NAMES = {"file": "/var/tmp/pyfolio-swap/swapfile", "block": "/dev/loop0",
                  "zram": "/dev/zram1"}
    #: the largest area the simulator sets up (the kernel's limit is the swap PTE offset)
    MAX_SWAP = 64 << 30

    def swapon(self, size: int | str, kind: str = "file", *, solidstate: bool | None = None,
               prio: int = -1) -> int:
        """``mkswap`` + ``swapon(2)`` of a swap area of ``size`` bytes (header page
        included): ``kind`` "file" (a swap file on ext4: never takes a large folio whole),
        "block" (a block device that is not synchronous, as the loop device over such a
        file is here: takes large folios whole) or "zram" (a synchronous solid-state
        block device). Returns the swap type. ``solidstate`` overrides whether the
        device counts as non-rotational (this machine's disk, and so its loop devices,
        are rotational; zram is not).

        Models mm/swapfile.c:sys_swapon() (:func:`pyfolio.mm.swapfile_swapon.sys_swapon`).
        The facade keeps one area: swapon while one is active is EBUSY, as swapon(2) of
        the active area is; a size of less than 2 pages is EINVAL ("Empty swap-file":
        a header and at least one slot); so is a size that is not a whole number of
        pages, or an unknown kind. Nothing changes on error.

        >>> m = System(ram="16M"); m.swapon("8M", "block")
        0
        >>> m.swaps()[0]["Type"], m.swaps()[0]["Size"], m.swaps()[0]["Priority"]
        ('partition', 8188, -2)
        """
        size_b = parse_size(size)
        if size_b % PAGE_SIZE or size_b > self.MAX_SWAP:
            raise MmError(EINVAL, f"swapon: size {size!r} is not a whole number of 4 KiB "
                                  f"pages up to {self.MAX_SWAP >> 30} GiB")
        if kind not in self.SWAP_NAMES:
            raise MmError(EINVAL, f"swapon: kind {kind!r} is not one of "
                                  f"{', '.join(self.SWAP_NAMES)}")
        active = [si for si in self.machine.swap_info if si is not None]
        if active:
            raise MmError(EBUSY, f"swapon: {active[0].swap_file} is already an active swap "
                                 "area (the facade keeps one; swapoff() it first)")
        return sys_swapon(self.machine, kind, size_b // PAGE_SIZE, self.SWAP_NAMES[kind], prio,
                          solidstate).type

    def swapoff(self) -> None:
        """``swapoff(2)`` of the active swap area: every swapped-out page comes back
        (swap-cache folios at their order, the rest read in as order 0) and the area goes.
        EINVAL when no area is active (as the kernel answers a second swapoff).

        Models mm/swapfile.c:sys_swapoff() (:func:`pyfolio.mm.swapfile_swapon.sys_swapoff`).
        """
        active = [si for si in self.machine.swap_info if si is not None]
        if not active:
            raise MmError(EINVAL, "swapoff: no swap area is active")
        sys_swapoff(self.machine, active[0].swap_file)

    def swaps(self) -> list[dict[str, object]]:
        """/proc/swaps: Filename, Type, Size, Used (kB, slots the swap cache alone holds
        included), Priority of each active area (mm/swapfile.c:swap_show())."""
        return swap_show(self.machine)

    @property
    def swap_area(self) -> SwapInfoStruct | None:
        """The active swap area's swap_info_struct (slots, clusters, swap cache), or None."""
        return next((si for si in self.machine.swap_info if si is not None), None)

    def reclaim(self, nr_pages: int) -> int:
        """Reclaim at least ``nr_pages`` pages (SWAP_CLUSTER_MAX at least) from the anon
        LRU lists, oldest first, as a memory cgroup does when told to give memory back
        (mm/vmscan.c:try_to_free_mem_cgroup_pages(), on the root cgroup); returns the
        pages freed (a split folio's pieces are all written in the same pass; written
        folios on a device that is not synchronous stay in the swap cache until a later
        pass frees them, so a pass may free fewer than it wrote). A freshly used page is
        kept once (PG_referenced) and taken on the next pass. Nothing can be reclaimed
        without free swap. ``nr_pages`` must be a positive int (else EINVAL, nothing
        changed).

        >>> m = System(ram="32M"); _ = m.swapon("16M", "block"); p, a = m.spawn_with_thp()
        >>> m.reclaim(512), p.pagemap(a)[0].swapped, m.vmstat()["thp_swpout"]
        (512, True, 1)
        """
        if isinstance(nr_pages, bool) or not isinstance(nr_pages, int) or nr_pages <= 0:
            raise MmError(EINVAL, f"reclaim: {nr_pages!r} is not a positive number of pages")
        return try_to_free_mem_cgroup_pages(self.machine, nr_pages)

    def drop_caches(self) -> int:
        """``echo 2 > /proc/sys/vm/drop_caches``: runs the shrinkers, among them the deferred
        split shrinker and tmpfs's shrinker of huge folios past EOF
        (shmem_unused_huge_shrink()); returns how many folios they split."""
        from pyfolio.mm.shmem_truncate import shmem_unused_huge_shrink

        shm_mnt(self.machine)  # mounted on first use: every tmpfs superblock has a shrinker
        return shrink_deferred_split(self.machine) + sum(
            shmem_unused_huge_shrink(sb) for sb in list(self.machine.super_blocks.values())
            if sb.s_type == "tmpfs")

    def shmem_thp(self, size: str | None = None) -> str:
        """``/sys/kernel/mm/transparent_hugepage/shmem_enabled`` (``size`` None) or
        ``hugepages-<size>/shmem_enabled`` ("8kB" to "2048kB")."""
        if size is None:
            return self.machine.shmem_huge
        return self.machine.thp_shmem_enabled[mthp_size_order(size, THPSIZE_ORDERS)]

    def set_shmem_thp(self, policy: str, size: str | None = None) -> None:
        """``echo policy > .../shmem_enabled`` (``size`` None: the top level, which memfd and
        tmpfs files follow for write(), and which ``inherit`` sizes follow: always,
        within_size, advise, never, deny, force) or ``.../hugepages-<size>/shmem_enabled``
        (always, inherit, within_size, advise, never: faults in anonymous shmem mappings:
        MAP_SHARED|MAP_ANONYMOUS and memfd mappings). MmError(EINVAL) for a bad size or
        value (and as the kernel refuses force / inherit combinations); nothing changes
        then.

        >>> m = System(ram="16M"); m.set_shmem_thp("always", "64kB"); m.shmem_thp("64kB")
        'always'
        """
        if size is None:
            shmem_enabled_store(self.machine, policy)
        else:
            thpsize_shmem_enabled_store(self.machine, mthp_size_order(size, THPSIZE_ORDERS),
                                        policy)

    def set_max_ptes_none(self, n: int) -> None:
        """``echo n > /sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none``
        (mm/khugepaged.c:max_ptes_none_store(), v6.18). Below its default 511, the
        deferred split shrinker splits a queued THP that is not partially mapped when more
        than ``n`` of its pages are all zeros (thp_underused()). MmError(EINVAL) outside
        0..511; nothing changes then."""
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= HPAGE_PMD_NR - 1:
            raise MmError(EINVAL, f"max_ptes_none {n!r} is not an integer from 0 to "
                                  f"{HPAGE_PMD_NR - 1}")
        self.machine.khugepaged_max_ptes_none = n

    def lru_add_drain(self) -> None:
        """Drain the CPU's LRU batches (mm/swap.c:lru_add_drain()): the small folios a
        MADV_FREE left in the lazyfree batch become lazy-free now (PG_swapbacked cleared,
        ``pglazyfree`` counted, LazyFree in smaps). A real kernel drains them at the next
        MADV_FREE or MADV_COLD on that CPU, when 31 are waiting, at exit, or whenever
        another task or khugepaged drains that CPU: after milliseconds or seconds."""
        lru_add_drain(self.machine)

    @property
    def trace(self) -> Trace:
        return self.machine.trace

    @property
    def thp(self) -> str:
        return self.machine.thp_enabled

    @thp.setter
    def thp(self, policy: str) -> None:
        if policy not in THP_POLICIES:
            raise MmError(EINVAL, f"THP policy {policy!r} is not one of {', '.join(THP_POLICIES)}")
        self.machine.thp_enabled = policy

    def mthp(self, size: str) -> str:
        """The setting of ``/sys/kernel/mm/transparent_hugepage/hugepages-<size>/enabled``
        (``size`` as in sysfs, "16kB" to "2048kB")."""
        return self.machine.thp_anon_enabled[mthp_size_order(size)]

    def set_mthp(self, size: str, policy: str) -> None:
        """``echo policy > .../hugepages-<size>/enabled``: anonymous folios of this size
        "always", per the global policy ("inherit"), with MADV_HUGEPAGE ("madvise") or
        "never" (mm/huge_memory.c:anon_enabled_store(), v6.18). The defaults: "inherit"
        for 2048kB, "never" for the rest. MmError(EINVAL) for a size x86-64 does not
        offer or an unknown value; nothing changes then.

        >>> m = System(ram="64M"); m.set_mthp("64kB", "madvise"); m.mthp("64kB")
        'madvise'
        """
        order = mthp_size_order(size)
        if policy not in MTHP_POLICIES:
            raise MmError(EINVAL, f"mTHP policy {policy!r} is not one of "
                                  f"{', '.join(MTHP_POLICIES)}")
        self.machine.thp_anon_enabled[order] = policy

    def mthp_stats(self, size: str) -> dict[str, int]:
        """Every file of ``/sys/kernel/mm/transparent_hugepage/hugepages-<size>/stats/``
        with its value, under the kernel's names (mm/huge_memory.c, v6.18): all 17
        mthp_stat_item files for "16kB".."2048kB", the 11 file-size ones for "8kB".
        MmError(EINVAL) for a size x86-64 does not have.

        >>> m = System(ram="16M"); p, a = m.spawn_with_thp()
        >>> s = m.mthp_stats("2048kB"); s["anon_fault_alloc"], s["nr_anon"], len(s)
        (1, 1, 17)
        """
        return thpsize_stats(self.machine, mthp_size_order(size, THPSIZE_ORDERS))

    @property
    def use_zero_page(self) -> bool:
        """/sys/kernel/mm/transparent_hugepage/use_zero_page (default on)."""
        return self.machine.thp_use_zero_page

    def set_use_zero_page(self, enabled: bool) -> None:
        """``echo 0|1 > .../transparent_hugepage/use_zero_page``: whether a read fault in a
        THP-eligible range maps the huge zero page (do_huge_pmd_anonymous_page()).
        ``enabled`` must be a bool; anything else is MmError(EINVAL) (the kernel's
        single_hugepage_flag_store() refuses values other than 0 and 1) and changes nothing.

        >>> m = System(ram="16M"); m.set_use_zero_page(False); m.use_zero_page
        False
        """
        if not isinstance(enabled, bool):
            raise MmError(EINVAL, f"use_zero_page must be True or False, not {enabled!r}")
        self.machine.thp_use_zero_page = enabled

    @property
    def batch(self) -> bool:
        """Whether long runs of one kernel step take the simulator's batched paths (default
        on; not a kernel setting). Both ways leave the same state, counters and trace
        (tests/test_batch.py); off, every page goes through the per-page models.

        >>> m = System(ram="16M"); m.batch = False; m.batch
        False
        """
        return self.machine.batch

    @batch.setter
    def batch(self, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise MmError(EINVAL, f"batch must be True or False, not {enabled!r}")
        self.machine.batch = enabled

    def spawn(self) -> Process:
        """A new process with an empty address space."""
        return self._add(mm_alloc(self.machine))

    def spawn_with_thp(self, length: int | str = PMD_SIZE) -> tuple[Process, int]:
        """A new process that maps ``length`` bytes, asks for THP on the first 2 MiB
        (MADV_HUGEPAGE) and writes them: (process, address). Where THP can be had, that
        is one PMD-mapped order-9 folio at the address (the chapters spell the steps out).
        """
        p = self.spawn()
        a = p.mmap(length)
        p.madvise(a, PMD_SIZE, "hugepage")
        p.touch(a, PMD_SIZE)
        return p, a

    def spawn_with_shmem_thp(self, name: str = "shm") -> tuple[Process, int, int]:
        """A new process with a 2 MiB memfd ``name`` mapped shared and written: (process,
        fd, address). With ``set_shmem_thp("always")`` (``shmem_enabled``) that is one
        PMD-mapped order-9 folio of the memfd's page cache (mm/shmem.c:shmem_get_folio_gfp()
        allocating at the PMD order); with ``never``, 512 order-0 folios."""
        p = self.spawn()
        fd = p.memfd_create(name)
        p.ftruncate(fd, PMD_SIZE)
        a = p.mmap(PMD_SIZE, shared=True, fd=fd)
        p.touch(a, PMD_SIZE)
        return p, fd, a

    def _add(self, mm: MMStruct) -> Process:
        p = Process(self, mm, self._next_pid)
        self._next_pid += 1
        self.processes.append(p)
        return p

    def folio(self, pfn: int) -> Folio:
        """The folio holding frame ``pfn``."""
        return page_folio(self.machine, pfn)

    def fragment(self) -> int:
        """Hold one frame in every 2 MiB block so THP faults fall back to 4 KiB pages."""
        return fragment(self.machine)

    def defragment(self) -> int:
        return defragment(self.machine)

    def kpageflags(self, pfns: list[int] | range) -> list[int]:
        return kpageflags(self.machine, pfns)

    def kpagecount(self, pfns: list[int] | range) -> list[int]:
        return kpagecount(self.machine, pfns)

    def vmstat(self) -> dict[str, int]:
        return vmstat(self.machine)

    def check(self) -> list[Violation]:
        return check(self.machine)

    def nr_free_pages(self) -> int:
        return self.machine.free_area.nr_free


class Process:
    """A process: an mm_struct plus the calls a program would make."""

    def __init__(self, system: System, mm: MMStruct, pid: int) -> None:
        self.system, self.mm, self.pid = system, mm, pid
        self.alive = True
        #: the pins this process took: (address, pinned page), as a driver keeps the
        #: struct page pointers pin_user_pages() returned
        self._pins: list[tuple[int, int]] = []
        #: the FOLL_GET references get_user_pages() took: the pages, one entry per reference
        self._gets: list[int] = []
        #: the file descriptor table (struct files_struct): fd -> open file
        self.files: dict[int, File] = {}

    @property
    def m(self) -> Machine:
        return self.system.machine

    def __repr__(self) -> str:
        return f"Process(pid={self.pid}, vmas={len(self.mm.vmas)})"

    def _live(self) -> None:
        """MmError(EINVAL) for a process that has exited (its mm is gone)."""
        if not self.alive:
            raise MmError(EINVAL, f"process {self.pid} has exited")

    # -- system calls -----------------------------------------------------------------------
    # Arguments are checked as the C ABI would pass them, before anything happens: an
    # address or length that is not an int (or, for a length, a size string such as "2M")
    # is a TypeError; an int is taken as an unsigned long (to_ulong()); the kernel's own
    # checks then give its errno (MmError), changing nothing.
    def mmap(self, length: int | str, prot: str = "rw", *, shared: bool = False,
             fd: int | None = None, offset: int = 0, addr: int | None = None) -> int:
        """mmap(NULL, length, prot, flags, fd, offset): the new mapping's address.

        MAP_PRIVATE|MAP_ANONYMOUS by default; ``shared`` alone is MAP_SHARED|MAP_ANONYMOUS
        (shmem); with ``fd`` the file from byte ``offset`` (page aligned), shared or
        private. A mapping that can hold PMD-sized folios is placed for them (anonymous:
        a length that is a multiple of 2 MiB on a 2 MiB boundary; a file: its offset
        congruent modulo 2 MiB, thp_get_unmapped_area() / shmem_get_unmapped_area()).
        ``addr`` asks for that address (MAP_FIXED_NOREPLACE: EEXIST if it is taken).
        EBADF for an fd not open, EINVAL for a bad offset, EACCES as the kernel gives it.
        """
        self._live()
        length, prot = to_size(length), _word(prot, "prot")
        fixed = None if addr is None else to_ulong(addr)
        file = None if fd is None else self._file(fd)
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, not {type(offset).__name__} {offset!r}")
        if offset < 0 or offset % PAGE_SIZE:
            raise MmError(EINVAL, f"mmap: offset {offset!r} is not a page-aligned byte offset")
        return do_mmap(self.mm, length, prot, shared=shared, file=file,
                       pgoff=offset // PAGE_SIZE, fixed=fixed)

    # -- files --------------------------------------------------------------------------
    def _file(self, fd: int) -> File:
        self._live()
        f = self.files.get(fd) if isinstance(fd, int) else None
        if f is None:
            raise MmError(EBADF, f"fd {fd!r} is not an open file of pid {self.pid}")
        return f

    def _install(self, f: File) -> int:
        fd = 3
        while fd in self.files:
            fd += 1
        self.files[fd] = f
        return fd

    def memfd_create(self, name: str) -> int:
        """memfd_create(name, 0): a new empty file in memory (tmpfs, unlinked); its fd.

        >>> m = System(ram="16M"); p = m.spawn(); fd = p.memfd_create("x")
        >>> _ = p.pwrite(fd, 0, 8192, 5); p.pread(fd, 4096), p.page_cache(fd)
        (5, [(0, 0), (1, 0)])
        """
        from pyfolio.mm.memfd import memfd_create

        self._live()
        return self._install(memfd_create(self.m, name))

    def open(self, path: str, create: bool = True, *, mode: str = "rw") -> int:
        """open(path, O_RDWR|O_CREAT) on the disk file system (ext4): ``path`` absolute,
        such as "/data/f" (directories need no creating); ``mode`` "r" opens O_RDONLY.
        ENOENT if it does not exist and ``create`` is False."""
        from pyfolio.fs.open import do_sys_open
        from pyfolio.include.linux.fs import FMODE

        self._live()
        if mode not in ("r", "rw"):
            raise MmError(EINVAL, f"open: mode {mode!r} is not 'r' or 'rw'")
        fmode = FMODE.READ | (FMODE.WRITE if mode == "rw" else FMODE(0))
        return self._install(do_sys_open(self.m, path, create, fmode))

    def unlink(self, path: str) -> None:
        """unlink(path): remove the file's name (on a tmpfs mounted above it, or on the
        disk file system). A file still open or mapped lives on, unlinked, until the last
        close or munmap; a tmpfs file unlinked before it is mapped is then anonymous shared
        memory, whose faults follow the per-size ``shmem_enabled`` knobs. ENOENT if there
        is no such file."""
        from pyfolio.fs.namei import do_unlinkat

        self._live()
        do_unlinkat(self.m, path)

    def close(self, fd: int) -> None:
        """close(fd); EBADF if it is not open. Mappings of the file stay."""
        from pyfolio.fs.open import filp_close

        filp_close(self._file(fd))
        del self.files[fd]

    def pwrite(self, fd: int, offset: int, length: int | str, value: int) -> int:
        """pwrite(): write ``length`` bytes at ``offset``; every page written gets the
        64-bit stamp ``value`` (as :meth:`write` does for memory). The bytes written."""
        from pyfolio.fs.read_write import ksys_pwrite64

        return ksys_pwrite64(self._file(fd), offset, parse_size(length), value)

    def pread(self, fd: int, offset: int) -> int:
        """pread() of the page at ``offset``: its 64-bit stamp (0 for a hole or past EOF,
        where the kernel returns zeroes or nothing)."""
        from pyfolio.fs.read_write import ksys_pread64

        got = ksys_pread64(self._file(fd), offset, PAGE_SIZE - offset % PAGE_SIZE
                           if isinstance(offset, int) and offset >= 0 else 0)
        return got[0] if got else 0

    def ftruncate(self, fd: int, length: int | str) -> None:
        """ftruncate(): set the file's size; shrinking truncates its page cache there
        (splitting a large folio the new end falls in)."""
        from pyfolio.fs.open import do_ftruncate

        do_ftruncate(self._file(fd), parse_size(length))

    def fallocate(self, fd: int, mode: str, offset: int, length: int | str) -> None:
        """fallocate(): ``mode`` "punch_hole" (FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE),
        "allocate" (0) or "keep_size" (FALLOC_FL_KEEP_SIZE). EOPNOTSUPP for another mode."""
        from pyfolio.fs.open import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, vfs_fallocate

        modes = {"punch_hole": FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, "allocate": 0,
                 "keep_size": FALLOC_FL_KEEP_SIZE}
        f = self._file(fd)
        if mode not in modes:
            raise MmError(EOPNOTSUPP, f"fallocate: mode {mode!r} is not one of "
                                      f"{', '.join(modes)}")
        vfs_fallocate(f, modes[mode], offset, parse_size(length))

    def fsync(self, fd: int) -> None:
        """fsync(): write the file's dirty folios back (a disk file's become clean)."""
        f = self._file(fd)
        f.f_op.fsync(f)

    def fadvise(self, fd: int, offset: int, length: int | str, advice: str) -> None:
        """posix_fadvise(); "dontneed" writes the range back and evicts its clean, unmapped
        folios (a disk file; tmpfs ignores it)."""
        from pyfolio.mm.fadvise import generic_fadvise

        generic_fadvise(self._file(fd), offset, parse_size(length), advice)

    def page_cache(self, fd: int) -> list[tuple[int, int]]:
        """Every folio of the file in the page cache, mapped or not: (index, order) in
        index order (a shmem file's swapped-out pages are not: :meth:`swapped_entries`)."""
        from pyfolio.lib.xarray import xa_entries

        return [(index, order) for index, order, e in
                xa_entries(self._file(fd).f_mapping.i_pages) if isinstance(e, int)]

    def swapped_entries(self, fd: int) -> list[tuple[int, int, int, int]]:
        """The swap entries a shmem file's page cache holds for its swapped-out pages:
        (index, order, swap type, first swap offset) in index order (mm/shmem.c keeps
        them as XArray value entries, swp_to_radix_entry())."""
        from pyfolio.include.linux.swapops import radix_to_swp_entry, swp_offset, swp_type
        from pyfolio.lib.xarray import XaValue, xa_entries

        out = []
        for index, order, e in xa_entries(self._file(fd).f_mapping.i_pages):
            if isinstance(e, XaValue):
                swp = radix_to_swp_entry(e)
                out.append((index, order, swp_type(swp), swp_offset(swp)))
        return out

    def munmap(self, addr: int, length: int | str) -> None:
        """munmap(addr, length): EINVAL for an unaligned address, a range that leaves the
        user address space (a negative address is a huge unsigned one) or a length of 0."""
        self._live()
        do_munmap(self.mm, to_ulong(addr), to_size(length))

    def mprotect(self, addr: int, length: int | str, prot: str) -> None:
        self._live()
        do_mprotect(self.mm, to_ulong(addr), to_size(length), _word(prot, "prot"))

    def madvise(self, addr: int, length: int | str, advice: str) -> None:
        self._live()
        do_madvise(self.mm, to_ulong(addr), to_size(length), _word(advice, "advice"))

    def mincore(self, addr: int, length: int | str) -> list[int]:
        """mincore(addr, length, vec): 1 for each page in memory (mapped, in the page cache,
        or, for shmem and swapped anon pages, still in the swap cache), else 0
        (:func:`pyfolio.mm.mincore.sys_mincore`: EINVAL misaligned, ENOMEM unmapped)."""
        from pyfolio.mm.mincore import sys_mincore

        self._live()
        return sys_mincore(self.mm, to_ulong(addr), to_size(length))

    def mremap(self, old_addr: int, old_len: int | str, new_len: int | str, *,
               maymove: bool = False, new_addr: int | None = None,
               dontunmap: bool = False) -> int:
        """mremap(old_addr, old_len, new_len, flags, new_addr): the mapping's address after.

        ``maymove`` is MREMAP_MAYMOVE, ``new_addr`` MREMAP_FIXED to that address (which
        needs ``maymove``), ``dontunmap`` MREMAP_DONTUNMAP (the old range stays mapped,
        empty). Page-table entries move as they are (mm/mremap.c:do_mremap(), see
        :func:`pyfolio.mm.mremap.do_mremap`); MmError with the kernel's errno otherwise.

        >>> from pyfolio import MiB
        >>> m = System(ram="16M"); p, a = m.spawn_with_thp(4 * MiB)
        >>> p.mremap(a, 2 * MiB, 1 * MiB) == a, p.status()["RssAnon"]
        (True, 1024)
        """
        from pyfolio.mm.mremap import MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, do_mremap

        self._live()
        for name, flag in (("maymove", maymove), ("dontunmap", dontunmap)):
            if not isinstance(flag, bool):
                raise TypeError(f"mremap: {name} must be True or False, not {flag!r}")
        flags = (MREMAP_MAYMOVE if maymove else 0) | (MREMAP_DONTUNMAP if dontunmap else 0) \
            | (MREMAP_FIXED if new_addr is not None else 0)
        return do_mremap(self.mm, old_addr, parse_size(old_len), parse_size(new_len), flags,
                         new_addr or 0)

    def fork(self) -> Process:
        """fork(): a child sharing every anonymous page copy-on-write."""
        from pyfolio.mm.mmap import get_file

        self._live()
        child = self.system._add(dup_mm(self.mm))
        child.files = {fd: get_file(f) for fd, f in self.files.items()}  # dup_fd()
        return child

    def exit(self) -> None:
        """exit(): release this process's pins and GUP references, then tear its address
        space down."""
        self._live()
        for _, pfn in self._pins:
            unpin_user_page(self.m, pfn)
        for pfn in self._gets:
            put_user_page(self.m, pfn)
        self._pins.clear()
        self._gets.clear()
        exit_mmap(self.mm)
        from pyfolio.fs.open import filp_close

        for f in self.files.values():  # exit_files()
            filp_close(f)
        self.files.clear()
        self.alive = False
        self.system.processes.remove(self)
        check_mm(self.mm)  # __mmdrop(): every RSS counter must be back at zero

    # -- memory accesses --------------------------------------------------------------------
    def _fault(self, addr: int, write: bool) -> int:
        """do_user_addr_fault(): find the VMA, check access, fault if needed; the PFN."""
        self._live()
        addr = to_ulong(addr)
        vma = self.mm.find_vma(addr)
        if vma is None:
            raise SegmentationFault(f"pid {self.pid}: {addr:#x} is not mapped")
        if write and not vma.vm_flags & VM.WRITE:
            raise SegmentationFault(f"pid {self.pid}: write to read-only {addr:#x}")
        if not vma.vm_flags & VM.READ:
            raise SegmentationFault(f"pid {self.pid}: access to PROT_NONE {addr:#x}")
        # the CPU re-executes the access: a fault that left no usable entry (a device
        # folio split by migrate_to_ram; a file fault that read from disk and returned
        # VM_FAULT_RETRY) faults again; VM_FAULT_SIGBUS is a SIGBUS (BusError)
        return fault_in(self.mm, vma, addr, write, lambda a: self._young_dirty(a, write),
                        cpu=True)

    def _young_dirty(self, addr: int, write: bool) -> bool:
        """Set the accessed (and for a write, dirty) bit of the present entry mapping
        ``addr`` as the CPU does on an access it allows (x86: no fault, no soft-dirty);
        False when there is no such entry."""
        w = walk(self.m, self.mm.pgd, addr)
        if not w.raw & 0x1 or w.level not in ("pte", "pmd"):
            return False
        need = 0x20 | (0x40 if write else 0)
        if w.raw & need != need:
            tbl, idx = w.slot()
            self.m.pgtables[tbl][idx] = w.raw | need
        return True

    def write(self, addr: int, value: int) -> None:
        """Store a 64-bit stamp (an int in [0, 2**64)) into the page at ``addr`` (write
        fault as needed). TypeError or ValueError for another value, before any fault."""
        value = _stamp(value)
        pfn = self._fault(addr, True)
        self.m.mem.stamp[pfn] = value

    def read(self, addr: int) -> int:
        """The 64-bit stamp of the page at ``addr`` (read fault as needed; zero pages read 0)."""
        return int(self.m.mem.stamp[self._fault(addr, False)])

    def touch(self, addr: int, length: int | str | None = None, value: int | None = None) -> None:
        """Write every page of [addr, addr + length) (default: the VMA at addr to its end).

        Each page gets ``value``, or by default its own page number plus one, so data
        survives checks after splits and migrations. The arguments are checked before the
        first page is written (TypeError, ValueError); a fault that fails part way (an
        unmapped page, ENOMEM) leaves the pages before it written, as a memset would.
        """
        self._live()
        addr = to_ulong(addr)
        if value is not None:
            value = _stamp(value)
        if length is None:
            vma = self.mm.find_vma(addr)
            if vma is None:
                raise SegmentationFault(f"pid {self.pid}: {addr:#x} is not mapped")
            length = vma.vm_end - addr
        end = addr + to_size(length)
        a = addr & ~(PAGE_SIZE - 1)
        never = 0  # below this address (a VMA's end) no batch can be taken in this call
        while a < end:
            if self.m.batch and a >= never:
                n, never = self._touch_run(a, end, value)
                if n:
                    a += n * PAGE_SIZE
                    continue
            pfn = self._fault(a, True)
            w = walk(self.m, self.mm.pgd, a)
            if w.level == "pmd" and a & (PMD_SIZE - 1) == 0 and end - a >= PMD_SIZE:
                vpn = a >> 12
                self.m.mem.stamp[pfn: pfn + 512] = (
                    [value] * 512 if value is not None else range(vpn + 1, vpn + 513))
                a += PMD_SIZE
                continue
            self.m.mem.stamp[pfn] = value if value is not None else (a >> 12) + 1
            a += PAGE_SIZE

    def _touch_run(self, addr: int, end: int, value: int | None) -> tuple[int, int]:
        """touch()'s batched path: the write faults of a run of none PTEs from ``addr`` in
        one step (pyfolio.mm.memory_batch), the CPU's accessed and dirty bits on each
        entry (what _young_dirty() sets per page), the data written. Returns the pages
        done (0: take the per-page path) and, when the VMA can never take a batch
        (anon_run_vma()), its end (else ``addr``)."""
        vma = self.mm.find_vma(addr)
        if vma is None:
            return 0, addr
        if not anon_run_vma(vma):
            return 0, vma.vm_end
        table, first, pfns = do_anonymous_page_run(vma, addr, end)
        n = len(pfns)
        if n:
            self.m.pgtables[table][first: first + n] |= np.uint64(_PAGE_ACCESSED | _PAGE_DIRTY)
            vpn = addr >> PAGE_SHIFT
            self.m.mem.stamp[pfns] = value if value is not None else np.arange(
                vpn + 1, vpn + 1 + n, dtype=np.uint64)
        return n, addr

    def pin(self, addr: int, length: int | str) -> list[int]:
        """FOLL_PIN|FOLL_WRITE pins on every page of the range (pin_user_pages())."""
        self._live()
        addr = to_ulong(addr)
        pfns = pin_user_pages(self.mm, addr, to_size(length) // PAGE_SIZE)
        self._pins.extend((addr + i * PAGE_SIZE, pfn) for i, pfn in enumerate(pfns))
        return pfns

    def unpin(self, addr: int, length: int | str) -> None:
        """Drop the pins this process took on [addr, addr + length) (unpin_user_pages() of
        the pages pinned there, even if the range has since been unmapped)."""
        self._live()
        addr, n = to_ulong(addr), to_size(length) // PAGE_SIZE
        wanted = [addr + i * PAGE_SIZE for i in range(n)]
        held = [next((pin for pin in self._pins if pin[0] == a), None) for a in wanted]
        if any(pin is None for pin in held):
            raise MmError(EINVAL, f"unpin: [{addr:#x}, +{n} pages) was not pinned "
                          f"by pid {self.pid}")
        for pin in held:
            assert pin is not None
            self._pins.remove(pin)
            unpin_user_page(self.m, pin[1])

    def get_user_pages(self, addr: int, npages: int, *, pin: bool = False,
                       longterm: bool = False) -> list[int]:
        """GUP on ``npages`` pages from ``addr`` for writing, as a driver or gup_test would:
        FOLL_GET references (get_user_pages()), or with ``pin`` FOLL_PIN pins
        (pin_user_pages()), ``longterm`` adding FOLL_LONGTERM (needs ``pin``: -EINVAL
        otherwise). Each page is faulted in writable first (COW broken, a device-private
        page migrated back to RAM). Returns the PFNs; give them back with
        :meth:`release_user_pages`. MmError(EFAULT) for a page outside a writable VMA
        (PROT_NONE, read-only, unmapped), nothing taken.

        >>> from pyfolio import MiB
        >>> m = System(ram="16M"); p, a = m.spawn_with_thp()
        >>> pages = p.get_user_pages(a, 2, pin=True)
        >>> f = p.folio_at(a); f.refcount, f.pincount
        (3, 2)
        >>> p.release_user_pages(pages, pin=True); f.refcount, f.pincount
        (1, 0)
        """
        from pyfolio.mm.gup import FOLL_LONGTERM, FOLL_WRITE, get_user_pages

        self._live()
        for name, flag in (("pin", pin), ("longterm", longterm)):
            if not isinstance(flag, bool):
                raise TypeError(f"get_user_pages: {name} must be True or False, not {flag!r}")
        if isinstance(npages, bool) or not isinstance(npages, int) or npages < 0:
            raise TypeError(f"get_user_pages: npages must be an int >= 0, not {npages!r}")
        flags = FOLL_WRITE | (FOLL_LONGTERM if longterm else 0)
        addr = to_ulong(addr)
        if pin:
            pfns = pin_user_pages(self.mm, addr, npages, flags)
            self._pins.extend((addr + i * PAGE_SIZE, pfn) for i, pfn in enumerate(pfns))
        else:
            pfns = get_user_pages(self.mm, addr, npages, flags)
            self._gets.extend(pfns)
        return pfns

    def release_user_pages(self, pages: list[int], *, pin: bool = False) -> None:
        """Give back pages :meth:`get_user_pages` returned: unpin_user_pages() for pins
        (``pin``), put_page() for FOLL_GET references. MmError(EINVAL), nothing changed,
        when one of ``pages`` is not held that way by this process."""
        from collections import Counter

        self._live()
        held = Counter([p for _, p in self._pins] if pin else self._gets)
        want = Counter(pages)
        if any(held[pfn] < n for pfn, n in want.items()):
            raise MmError(EINVAL, f"release_user_pages: pid {self.pid} holds no "
                          f"{'pin' if pin else 'GUP reference'} on some of {pages!r}")
        for pfn in pages:
            if pin:
                self._pins.remove(next(held for held in self._pins if held[1] == pfn))
                unpin_user_page(self.m, pfn)
            else:
                self._gets.remove(pfn)
                put_user_page(self.m, pfn)

    # -- looking at it --------------------------------------------------------------------
    def _user_addr(self, addr: int) -> int:
        """An address to look at: the process is alive (MmError(EINVAL)), ``addr`` is an
        int (TypeError) below TASK_SIZE (MmError(EINVAL): no user page is mapped above)."""
        self._live()
        addr = to_ulong(addr)
        if addr >= TASK_SIZE:
            raise MmError(EINVAL, f"{addr:#x} is above the user address space "
                          f"(TASK_SIZE {TASK_SIZE:#x})")
        return addr

    def vma_at(self, addr: int) -> VMA | None:
        return self.mm.find_vma(self._user_addr(addr))

    def lookup(self, addr: int) -> Entry:
        """The entry that maps ``addr`` (a PMD leaf or a PTE), decoded; level "pmd"/"pte"."""
        w = walk(self.m, self.mm.pgd, self._user_addr(addr))
        return decode_entry(w.raw, w.level)

    def folio_at(self, addr: int) -> Folio | None:
        """The folio mapped at ``addr`` (present or device-private), or None."""
        e = self.lookup(addr)
        if e.kind in ("huge", "page", "zero"):
            pfn = e.pfn + ((addr & (PMD_SIZE - 1)) >> 12 if e.level == "pmd" else 0)
        elif e.kind in ("device_private", "migration"):
            pfn = e.pfn
        else:
            return None
        return page_folio(self.m, pfn)

    def pfn_at(self, addr: int) -> int | None:
        got = follow_page(self.mm, self._user_addr(addr))
        return None if got is None else got[0]

    def pagemap(self, addr: int, n: int = 1) -> list[PagemapEntry]:
        addr = self._user_addr(addr)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise TypeError(f"pagemap: n must be a non-negative int, not {n!r}")
        return pagemap(self.mm, addr, n)

    def smaps(self) -> list[dict[str, int]]:
        self._live()
        return smaps(self.mm)

    def status(self) -> dict[str, int]:
        """The RSS lines of /proc/PID/status in kB (fs/proc/task_mmu.c:task_mem()): VmRSS,
        RssAnon, RssFile, RssShmem, VmSwap, from the mm's counters (mm->rss_stat[]).

        >>> m = System(ram="16M"); p, a = m.spawn_with_thp()
        >>> p.madvise(a, 40 * 1024, "dontneed"); p.status()["RssAnon"]
        2008
        """
        self._live()
        return task_mem(self.mm)

def _word(value: object, what: str) -> str:
    """A string argument (a protection, an advice): TypeError for anything else."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__} {value!r}")
    return value


_stamp = to_stamp  # the facade's name for it
