"""A dmirror-like device driver: device-private memory, its allocator, its faults.

Models: lib/test_hmm.c (linux-mm tree with the 2025 THP series, commit 05ab5121):
dmirror_allocate_chunk() (free 2 MiB-aligned order-9 folios and single pages),
dmirror_devmem_alloc_page(), dmirror_migrate_alloc_and_copy(),
dmirror_migrate_finalize_and_map(), dmirror_migrate_to_device(),
dmirror_devmem_folio_split() (the ``folio_split`` op), dmirror_devmem_free()
(``page_free``; ``folio_free`` newer), and the mirror's MMU notifier: dmirror_fops_open()
subscribes to the mm, dmirror_interval_invalidate() and dmirror_do_update() drop the
device's entries when the CPU's change. The way back to system memory
(dmirror_devmem_fault(), the ``migrate_to_ram`` op, and dmirror_migrate_to_system()) is
:mod:`pyfolio.lib.dmirror_to_system`.

Simplifications: one chunk covering the machine's device frames, registered at start;
the data lives in the device page's ``stamp`` (the real driver keeps a backing system
page in ``zone_device_data``), so a device page costs no RAM; an empty single-page list
is refilled by breaking up one free large folio (the driver would add a new chunk); the
device page table ``pt`` is keyed by (mm id, address): one Dmirror serves every process
it is used on, each with its own interval notifier, inserted on first use (the kernel
opens one ``struct dmirror`` per file, mirroring the opener's mm). ``fail_large_alloc``
makes every large allocation fail (``HMM_DMIRROR_FLAG_FAIL_ALLOC`` fails only the next
allocation, of any size, and is cleared by it).

Place: lib/test_hmm.c's driver is called dmirror; a module named test_hmm.py would be
collected by pytest as a test file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import Folio, folio_lock, folio_order, page_folio
from pyfolio.include.linux.mm_types import VM_FAULT_OOM, VM_FAULT_SIGBUS
from pyfolio.mm.memremap import (
    MEMORY_TYPE,
    DevPagemap,
    DevPagemapOps,
    memremap_pages,
    zone_device_folio_init,
)
from pyfolio.mm.migrate_device import (
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    MIGRATE_PFN_SHIFT,
    MIGRATE_PFN_VALID,
    MIGRATE_PFN_WRITE,
    MIGRATE_VMA_SELECT,
    MigrateVma,
    migrate_pfn,
    migrate_pfn_to_page,
    migrate_vma_finalize,
    migrate_vma_pages,
    migrate_vma_setup,
)
from pyfolio.mm.mmu_notifier import (
    MMU_NOTIFY,
    ULONG_MAX,
    MmuIntervalNotifier,
    MmuIntervalNotifierOps,
    MmuNotifierRange,
    mmu_interval_notifier_insert,
    mmu_interval_set_seq,
)
from pyfolio.sim.errors import EINVAL, ENOENT, MmError
from pyfolio.sim.memmap import NO_HEAD
from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA, MMStruct
    from pyfolio.sim.machine import Machine

__all__ = ["Dmirror", "HMM_DMIRROR_FLAG_FAIL_ALLOC", "DPT_XA_TAG_ATOMIC", "DPT_XA_TAG_WRITE",
           "VM_FAULT_OOM", "VM_FAULT_SIGBUS", "dmirror_fops_open", "dmirror_interval_invalidate",
           "dmirror_do_update",
           "dmirror_devmem_alloc_page", "dmirror_migrate_alloc_and_copy",
           "dmirror_migrate_finalize_and_map", "dmirror_migrate_to_device",
           "dmirror_devmem_folio_split", "dmirror_devmem_free",
           "dmirror_peek", "dmirror_device_evict_chunk", "dmirror_device_remove_chunks"]

HMM_DMIRROR_FLAG_FAIL_ALLOC = 1 << 0
#: lib/test_hmm.c: the tag of a device page-table entry (xa_tag_pointer()); untagged: read
DPT_XA_TAG_ATOMIC = 1
DPT_XA_TAG_WRITE = 3


Key = tuple[int, int]


class DevicePageTable(dict[Key, tuple[int, int]]):
    """The device's page table: (mm id, address) -> (pfn, tag), with a reverse
    index by device pfn so freeing a device page finds its entry without a scan.

    The reverse index holds a device pfn's one key itself, or a set when several keys
    (several mms) map it: no container per entry, which matters at 262,144 entries a GiB.
    """

    def __init__(self) -> None:
        super().__init__()
        self._by_pfn: dict[int, Key | set[Key]] = {}

    def keys_of(self, dpfn: int) -> set[Key]:
        """The keys whose entry points at device frame ``dpfn``."""
        got = self._by_pfn.get(dpfn)
        return set() if got is None else set(got) if isinstance(got, set) else {got}

    def reverse_index(self) -> dict[int, set[Key]]:
        """Device pfn -> keys, for every device frame an entry points at."""
        return {dpfn: self.keys_of(dpfn) for dpfn in self._by_pfn}

    def _index(self, dpfn: int, key: Key) -> None:
        got = self._by_pfn.get(dpfn)
        if got is None:
            self._by_pfn[dpfn] = key
        elif isinstance(got, set):
            got.add(key)
        else:
            self._by_pfn[dpfn] = {got, key}

    def _unindex(self, dpfn: int, key: Key) -> None:
        got = self._by_pfn[dpfn]
        if not isinstance(got, set):
            del self._by_pfn[dpfn]
            return
        got.discard(key)
        if len(got) == 1:
            self._by_pfn[dpfn] = got.pop()

    def __setitem__(self, key: Key, value: tuple[int, int]) -> None:
        if key in self:
            del self[key]
        super().__setitem__(key, value)
        self._index(value[0], key)

    def __delitem__(self, key: Key) -> None:
        self._unindex(self[key][0], key)
        super().__delitem__(key)

    def pop(self, key: Key, default: object = None) -> object:  # type: ignore[override]
        if key in self:
            value = self[key]
            del self[key]
            return value
        return default

    def map_range(self, mm_id: int, addr: int, dpfn: int, nr: int, tag: int) -> None:
        """``nr`` entries: page ``addr + j`` -> device frame ``dpfn + j`` (the driver's
        per-page xa_store() loop); see :meth:`map_pages`."""
        self.map_pages(mm_id, [addr + j * PAGE_SIZE for j in range(nr)],
                       list(range(dpfn, dpfn + nr)), [tag] * nr)

    def map_pages(self, mm_id: int, addrs: list[int], dpfns: list[int],
                  tags: list[int]) -> None:
        """Page ``addrs[j]`` -> device frame ``dpfns[j]`` with ``tags[j]``, for each j in
        turn; in bulk when no address has an entry, no frame is indexed yet and none
        repeats (the usual case: fresh device pages for unmapped addresses)."""
        keys = [(mm_id, a) for a in addrs]
        if self.keys().isdisjoint(keys) and self._by_pfn.keys().isdisjoint(dpfns) \
                and len(set(keys)) == len(keys) and len(set(dpfns)) == len(dpfns):
            dict.update(self, zip(keys, zip(dpfns, tags, strict=True), strict=True))
            self._by_pfn.update(zip(dpfns, keys, strict=True))
            return
        for d, key, tag in zip(dpfns, keys, tags, strict=True):
            self[key] = (d, tag)

    def unmap_range(self, mm_id: int, addr: int, nr: int) -> None:
        """Drop the entries of ``nr`` pages from ``addr`` (those that exist)."""
        keys = [(mm_id, addr + j * PAGE_SIZE) for j in range(nr)]
        by_pfn = self._by_pfn
        for key, value in zip(keys, [dict.pop(self, key, None) for key in keys], strict=True):
            if value is None:
                continue
            if by_pfn.get(value[0]) == key:  # the frame's only key
                del by_pfn[value[0]]
            else:
                self._unindex(value[0], key)

    def erase_span(self, mm_id: int, first: int, last: int) -> None:
        """Drop the entries of ``mm_id`` for the pages from ``first`` to ``last``
        (addresses, both inclusive): address by address for a short span, else by a scan
        of the entries."""
        n = (last - first) // PAGE_SIZE + 1
        if n <= len(self):
            self.unmap_range(mm_id, first, n)
            return
        for key in [k for k in self if k[0] == mm_id and first <= k[1] <= last]:
            del self[key]


class Dmirror:
    """struct dmirror_device + struct dmirror: free lists, counters, device page table."""

    def __init__(self, m: Machine, large: bool = True,
                 frames: tuple[int, int] | None = None) -> None:
        """``frames``: the device range it owns (default: all the machine's device frames)."""
        if not m.device_base:
            raise MmError(EINVAL, "dmirror: the machine has no device memory (device=0)")
        start, end = frames or (m.device_base, m.mem.nr)
        self.m = m
        self.flags = 0
        self.fail_large_alloc = False
        self.split_design = "b"
        self.calloc = self.cfree = 0
        #: dmirror_chunk->remove: the chunk is being released (freed pages are not reused)
        self.remove = False
        #: no chunk left after HMM_DMIRROR_RELEASE; the next allocation adds one
        self.released = False
        self.free_folios: list[int] = []
        self.free_pages: list[int] = []
        #: device page table: (mm id, address) -> (pfn, tag): the page the device uses there
        #: (its own device page, or a system page hmm_range_fault() returned) and the entry's
        #: tag (DPT_XA_TAG_WRITE, DPT_XA_TAG_ATOMIC, or 0: read-only)
        self.pt = DevicePageTable()
        #: struct dmirror's ``notifier``, one per mm mirrored (mm id -> subscription)
        self.notifiers: dict[int, MmuIntervalNotifier] = {}
        ops = DevPagemapOps(page_free=self._page_free, migrate_to_ram=self._migrate_to_ram,
                            folio_split=self._folio_split)
        self.pgmap = memremap_pages(m, DevPagemap((start, end),
                                                  MEMORY_TYPE.MEMORY_DEVICE_PRIVATE, ops,
                                                  owner=self))
        self._carve(start, end, large)

    def _carve(self, start: int, end: int, large: bool) -> None:
        """The free-list part of dmirror_allocate_chunk() (LIFO lists, head last)."""
        pfn = start
        while pfn < end:
            if large and pfn % HPAGE_PMD_NR == 0 and pfn + HPAGE_PMD_NR <= end:
                self.free_folios.append(pfn)
                pfn += HPAGE_PMD_NR
                continue
            self.free_pages.append(pfn)
            pfn += 1

    def fragment(self) -> int:
        """Break every free large folio into single pages: large allocations now fail."""
        n = len(self.free_folios)
        for pfn in reversed(self.free_folios):
            self._carve(pfn, pfn + HPAGE_PMD_NR, False)
        self.free_folios.clear()
        self.m.trace.emit("dmirror_fragment", changes={"folios_broken": n})
        return n

    # the dev_pagemap_ops entries the core calls
    def _page_free(self, pfn: int, order: int) -> None:
        dmirror_devmem_free(self, pfn, order)

    def _folio_split(self, head: Folio, tail: Folio | None) -> None:
        dmirror_devmem_folio_split(self, head, tail)

    def _invalidate(self, mni: MmuIntervalNotifier, range_: MmuNotifierRange,
                    cur_seq: int) -> bool:
        return dmirror_interval_invalidate(self, mni, range_, cur_seq)

    def _migrate_to_ram(self, vma: VMA, address: int, pfn: int, via_pte: bool) -> int:
        """The op: the caller (do_swap_page() / do_huge_pmd_device_private()) holds the
        faulting folio locked and referenced."""
        from pyfolio.lib.dmirror_to_system import dmirror_devmem_fault

        return dmirror_devmem_fault(self, vma, address, pfn, via_pte)


def dmirror_fops_open(dmirror: Dmirror, mm: MMStruct) -> MmuIntervalNotifier:
    """dmirror_fops_open() - mirror ``mm``: subscribe to every change of its page tables.

    Models: lib/test_hmm.c:dmirror_fops_open(): ``mmu_interval_notifier_insert(
    &dmirror->notifier, current->mm, 0, ULONG_MAX & PAGE_MASK, &dmirror_min_ops)``.
    Simplification: called on the first use of the device by a process (the ioctls and
    reads below), once per mm; the subscription lives as long as the mm (the driver
    removes it when the file closes, after the process's mm is gone).
    """
    sub = dmirror.notifiers.get(mm.id)
    if sub is None:
        sub = MmuIntervalNotifier(MmuIntervalNotifierOps(dmirror._invalidate))
        mmu_interval_notifier_insert(sub, mm, 0, ULONG_MAX & ~(PAGE_SIZE - 1), sub.ops)
        dmirror.notifiers[mm.id] = sub
    return sub


def dmirror_do_update(dmirror: Dmirror, mm_id: int, start: int, end: int) -> None:
    """dmirror_do_update() - erase the device's entries for [start, end] of the mm.

    Models: lib/test_hmm.c:dmirror_do_update(): ``xa_for_each_range(&dmirror->pt, pfn,
    entry, start >> PAGE_SHIFT, end >> PAGE_SHIFT) xa_erase(...)``. xa_for_each_range()'s
    last index is inclusive, so the page at ``end`` goes too (one more than the range:
    harmless, the device faults it in again).
    """
    last = min(end, ULONG_MAX) & ~(PAGE_SIZE - 1)
    dmirror.pt.erase_span(mm_id, start & ~(PAGE_SIZE - 1), last)


def dmirror_interval_invalidate(dmirror: Dmirror, mni: MmuIntervalNotifier,
                                range_: MmuNotifierRange, cur_seq: int) -> bool:
    """dmirror_interval_invalidate() - the notifier's ``invalidate`` op: the CPU tables of
    [start, end) are about to change, so the device drops its entries there.

    Models: lib/test_hmm.c:dmirror_interval_invalidate(): its own migrations
    (MMU_NOTIFY_MIGRATE with ``owner`` this device) are ignored, "since the invalidation
    is handled as part of the migration process"; any other event, read, write and atomic
    entries alike: mmu_interval_set_seq(), dmirror_do_update(). Always True (blockable).
    """
    if range_.event == MMU_NOTIFY.MMU_NOTIFY_MIGRATE and range_.owner is dmirror:
        return True
    mmu_interval_set_seq(mni, cur_seq)
    dmirror_do_update(dmirror, range_.mm.id, range_.start, range_.end)
    return True


def _new_chunk(dmirror: Dmirror) -> None:
    """dmirror_allocate_chunk() after HMM_DMIRROR_RELEASE: the device range becomes a
    chunk again, its 2 MiB blocks on ``free_folios``; a block that still holds a live
    device folio (one eviction could not bring back, see dmirror_device_evict_chunk())
    is left out, and its other frames go on ``free_pages``."""
    import numpy as np

    start, end = dmirror.pgmap.range
    live = dmirror.m.mem._refcount[start:end] > 0
    heads = dmirror.m.mem.compound_head[start:end]
    live |= heads != NO_HEAD
    pfn = start
    while pfn < end:
        nxt = min(end, (pfn // HPAGE_PMD_NR + 1) * HPAGE_PMD_NR)
        block = live[pfn - start: nxt - start]
        if not block.any():
            dmirror._carve(pfn, nxt, True)
        else:
            for f in np.flatnonzero(~block):
                dmirror.free_pages.append(pfn + int(f))
        pfn = nxt
    dmirror.released = False


def dmirror_devmem_alloc_page(dmirror: Dmirror, is_large: bool) -> int | None:
    """dmirror_devmem_alloc_page() - a device page (or 2 MiB folio), locked, refcount 1
    held by the driver until finalize (recorded in extra_refs). None if none is free.

    Models: lib/test_hmm.c:dmirror_devmem_alloc_page() (the series: ``is_large``).
    """
    m = dmirror.m
    if dmirror.released and not dmirror.free_folios and not dmirror.free_pages:
        _new_chunk(dmirror)
    if is_large:
        if dmirror.fail_large_alloc or not dmirror.free_folios:
            return None
        dpage = dmirror.free_folios.pop()
    else:
        if not dmirror.free_pages and dmirror.free_folios:
            head = dmirror.free_folios.pop()  # dmirror_allocate_chunk(): more pages
            dmirror._carve(head, head + HPAGE_PMD_NR, False)
        if not dmirror.free_pages:
            return None
        dpage = dmirror.free_pages.pop()
    order = HPAGE_PMD_ORDER if is_large else 0
    dmirror.calloc += 1 << order
    zone_device_folio_init(Folio(m, dpage), dmirror.pgmap, order)
    m.mem.extra_refs[dpage] += 1
    return dpage


def _copy(m: Machine, dst: int, src: int | None, n: int) -> None:
    """copy_highpage() / clear_highpage() of ``n`` pages (the data is the stamp)."""
    m.mem.stamp[dst: dst + n] = 0 if src is None else m.mem.stamp[src: src + n]
    m.trace.cost("pages_copied", n)


def dmirror_migrate_alloc_and_copy(args: MigrateVma, dmirror: Dmirror) -> None:
    """dmirror_migrate_alloc_and_copy() - allocate device pages for every MIGRATE entry
    and copy. A COMPOUND source asks for a large device folio (dst |= COMPOUND); when
    that fails it falls back to 512 single pages, which makes the core split the source
    (migrate_vma_split_unmapped_folio()). Entries left 0 are not migrated.
    HMM_DMIRROR_FLAG_FAIL_ALLOC fails the next allocation, of any size, and is cleared by
    it: a large one falls back to single pages, a small one is simply not migrated
    (``if (!is_large) goto next``).

    Models: lib/test_hmm.c:dmirror_migrate_alloc_and_copy() (the 2025 series; the flag as
    in the merged driver, linux-mm tree 05ab5121). With ``Machine.batch`` the single pages
    of a fallback are allocated and copied in one step
    (:func:`pyfolio.lib.dmirror_batch.devmem_alloc_pages_run`, same result).
    """
    from pyfolio.lib.dmirror_batch import devmem_alloc_pages_run

    m, src, dst = dmirror.m, args.src, args.dst
    i = 0
    while i < args.npages:
        s = src[i]
        is_large = bool(s & MIGRATE_PFN_COMPOUND)
        write = MIGRATE_PFN_WRITE if s & MIGRATE_PFN_WRITE else 0
        if not s & MIGRATE_PFN_MIGRATE:
            i += 1
            continue
        spage = migrate_pfn_to_page(s)
        if dmirror.flags & HMM_DMIRROR_FLAG_FAIL_ALLOC:
            dmirror.flags &= ~HMM_DMIRROR_FLAG_FAIL_ALLOC
            dpage = None
        else:
            dpage = dmirror_devmem_alloc_page(dmirror, is_large)
        if dpage is None:
            if not is_large:
                i += 1
                continue
            want = min(HPAGE_PMD_NR, args.npages - i)
            smalls = devmem_alloc_pages_run(dmirror, want)  # in one step (Machine.batch)
            if smalls is not None:
                dst[i: i + len(smalls)] = [migrate_pfn(p) | write for p in smalls]
                m.mem.stamp[smalls] = 0 if spage is None else \
                    m.mem.stamp[spage: spage + len(smalls)]
                m.trace.cost("pages_copied", len(smalls))
                i += HPAGE_PMD_NR
                continue
            for j in range(want):
                small = dmirror_devmem_alloc_page(dmirror, False)
                if small is None:
                    break
                dst[i + j] = migrate_pfn(small) | write
                _copy(m, small, None if spage is None else spage + j, 1)
            i += HPAGE_PMD_NR
            continue
        dst[i] = migrate_pfn(dpage) | write | (MIGRATE_PFN_COMPOUND if is_large else 0)
        n = HPAGE_PMD_NR if is_large else 1
        _copy(m, dpage, spage, n)
        i += n


def dmirror_migrate_finalize_and_map(args: MigrateVma, dmirror: Dmirror) -> None:
    """dmirror_migrate_finalize_and_map() - record migrated pages in the device page
    table (WRITE-tagged when the dst entry has MIGRATE_PFN_WRITE).

    Models: lib/test_hmm.c:dmirror_migrate_finalize_and_map().
    """
    import numpy as np

    assert args.vma is not None
    n = args.npages  # the entries in order (a COMPOUND one for its 512 pages), at once
    sa, da = np.array(args.src[:n], np.int64), np.array(args.dst[:n], np.int64)
    idx = np.flatnonzero((sa & MIGRATE_PFN_MIGRATE != 0) & (da & MIGRATE_PFN_VALID != 0))
    d = da[idx]
    nr = np.where(d & MIGRATE_PFN_COMPOUND, HPAGE_PMD_NR, 1)
    entry = np.repeat(np.arange(len(idx)), nr)  # the entry of each page, and its place
    off = np.arange(len(entry)) - np.repeat(np.cumsum(nr) - nr, nr)
    addrs = (args.start + (idx[entry] + off) * PAGE_SIZE).tolist()
    dpfns = ((d >> MIGRATE_PFN_SHIFT)[entry] + off).tolist()
    tags = np.where(d & MIGRATE_PFN_WRITE, DPT_XA_TAG_WRITE, 0)[entry].tolist()
    dmirror.pt.map_pages(args.vma.vm_mm.id, addrs, dpfns, tags)


def _check_range(mm: MMStruct, start: int, size: int) -> None:
    """The ioctl's checks (dmirror_fops_unlocked_ioctl and the per-VMA lookup): -EINVAL."""
    from pyfolio.include.linux.mm_types import VM

    if start % PAGE_SIZE or size <= 0 or size % PAGE_SIZE or start + size > ULONG_MAX:
        raise MmError(EINVAL, f"dmirror: [{start:#x}, +{size:#x}) is not page aligned, "
                      "is empty or wraps")
    addr = start
    while addr < start + size:
        vma = mm.find_vma(addr)
        if vma is None or not vma.vm_flags & VM.READ:
            raise MmError(EINVAL, f"dmirror: {addr:#x} is not in a readable VMA")
        addr = vma.vm_end


def _windows(mm: MMStruct, start: int, end: int) -> list[tuple[VMA, int, int]]:
    """The loop of dmirror_migrate_to_*(): at most 512 pages, never past the VMA end."""
    out, addr = [], start
    while addr < end:
        vma = mm.find_vma(addr)
        assert vma is not None
        nxt = min(end, addr + HPAGE_PMD_NR * PAGE_SIZE, vma.vm_end)
        out.append((vma, addr, nxt))
        addr = nxt
    return out


def dmirror_migrate_to_device(dmirror: Dmirror, mm: MMStruct, start: int, size: int,
                              split_design: str | None = None
                              ) -> tuple[list[MigrateVma], int]:
    """dmirror_migrate_to_device() - HMM_DMIRROR_MIGRATE_TO_DEV: per 2 MiB window,
    SELECT_SYSTEM | SELECT_COMPOUND, setup, alloc_and_copy, pages, finalize_and_map,
    finalize; then "return the migrated data for verification": dmirror_do_read() over
    the whole range. Raises MmError(EINVAL) before touching anything for a bad range;
    returns each window's migrate_vma (its src entries say what migrated) and the
    ioctl's return value: 0, or -ENOENT when any page of the range is not on the device
    afterwards (a page that could not migrate); what did migrate stays migrated.
    ``split_design`` (the simulator's switch, "a" or "b") overrides the device's for
    this call only.

    Models: lib/test_hmm.c:dmirror_migrate_to_device() (the series).
    """
    _check_range(mm, start, size)
    design = dmirror.split_design if split_design is None else split_design
    dmirror_fops_open(dmirror, mm)
    done = []
    for vma, lo, hi in _windows(mm, start, start + size):
        args = MigrateVma(vma, lo, hi, pgmap_owner=dmirror, split_design=design,
                          flags=MIGRATE_VMA_SELECT.SYSTEM | MIGRATE_VMA_SELECT.COMPOUND)
        migrate_vma_setup(args)
        dmirror_migrate_alloc_and_copy(args, dmirror)
        migrate_vma_pages(args)
        dmirror_migrate_finalize_and_map(args, dmirror)
        migrate_vma_finalize(args)
        done.append(args)
    # dmirror_do_read() over [start, start + size): -ENOENT at the first page the device
    # page table has no entry for
    pt, mm_id = dmirror.pt, mm.id
    on_device = all((mm_id, addr) in pt for addr in range(start, start + size, PAGE_SIZE))
    return done, 0 if on_device else -ENOENT


def _lock_new(m: Machine, pfn: int) -> None:
    """lock_page() on a freshly allocated destination; the allocation reference is the
    driver's until finalize."""
    folio_lock(Folio(m, pfn))
    m.mem.extra_refs[pfn] += 1


def dmirror_devmem_folio_split(dmirror: Dmirror, head: Folio, tail: Folio | None) -> None:
    """dmirror_devmem_folio_split() - the ``folio_split`` op: a new folio of a split
    device folio inherits ``mapping`` and ``pgmap`` (the driver's backing-page bookkeeping
    has no counterpart here: the data is in the device page itself).

    Models: lib/test_hmm.c:dmirror_devmem_folio_split() (the 2025 series).
    """
    if tail is None:
        return
    mem = dmirror.m.mem
    mem.mapping[tail.pfn] = mem.mapping[head.pfn]
    mem.pgmap[tail.pfn] = mem.pgmap[head.pfn]


def dmirror_devmem_free(dmirror: Dmirror, pfn: int, order: int) -> None:
    """dmirror_devmem_free() - page_free: the device folio goes back on the free list of
    its size (``cfree`` counts pages returned). The device's page table is not touched:
    its entries went when the CPU mapping went (dmirror_interval_invalidate()).

    Models: lib/test_hmm.c:dmirror_devmem_free() (the series): an order-9 folio goes on
    ``free_folios``, a page on ``free_pages``. The driver goes by the order of the
    *backing* folio, which dmirror_devmem_folio_split() resets to 0 when it splits, and
    the kernel splits device folios only to order 0 (migrate_vma_split_folio(),
    migrate_vma_split_unmapped_folio()); a folio of an order between (only
    ``System.split()`` makes one, as debugfs split_huge_pages cannot: ZONE_DEVICE is not
    a managed zone) goes back here as single pages, so the lists never hold more than
    the device (the driver would put back the head page alone). While
    HMM_DMIRROR_RELEASE removes the chunks (``remove``) nothing goes back.
    """
    if dmirror.remove:  # "Return page to our allocator if not freeing the chunk"
        return
    dmirror.cfree += 1 << order
    if order == HPAGE_PMD_ORDER:
        dmirror.free_folios.append(pfn)
    else:
        dmirror.free_pages.extend(range(pfn, pfn + (1 << order)))


def dmirror_peek(dmirror: Dmirror, mm: MMStruct, addr: int) -> int | None:
    """The device reading one page through its own page table: the page's data, or None
    when the device has no entry there.

    Models: lib/test_hmm.c:dmirror_do_read() (v6.18), for one page: xa_load() from the
    device page table, -ENOENT (here None) when there is no entry. HMM_DMIRROR_READ
    (pyfolio.lib.dmirror_cmds.dmirror_read()) then faults the range in with
    hmm_range_fault() and copies again; this function does not.
    """
    dmirror_fops_open(dmirror, mm)
    got = dmirror.pt.get((mm.id, addr & ~(PAGE_SIZE - 1)))
    return None if got is None else int(dmirror.m.mem.stamp[got[0]])



def dmirror_device_evict_chunk(dmirror: Dmirror) -> int:
    """dmirror_device_evict_chunk() - bring every device page of the chunk back to RAM,
    whoever maps it: migrate_device_range() over the chunk, a system page (or a folio of
    the same order for a COMPOUND entry) for each, the data copied, migrate_device_pages(),
    migrate_device_finalize(). Returns the pages evicted.

    Models: lib/test_hmm.c:dmirror_device_evict_chunk() (the series, linux-mm). The
    kernel does not check the order-9 folio_alloc() ("TODO Support splitting here"): it
    would oops when none is free; the simulator leaves such a folio on the device (its dst
    0: migrate_device_pages() clears MIGRATE, finalize maps it back).
    """
    from pyfolio.mm.migrate_device_range import (
        migrate_device_finalize,
        migrate_device_pages,
        migrate_device_range,
    )
    from pyfolio.mm.page_alloc import alloc_pages

    m = dmirror.m
    start, end = dmirror.pgmap.range
    npages = end - start
    src: list[int] = [0] * npages
    dst: list[int] = [0] * npages
    migrate_device_range(m, src, start, npages)
    evicted = 0
    for i in range(npages):
        spage = migrate_pfn_to_page(src[i])
        if spage is None or not src[i] & MIGRATE_PFN_MIGRATE:
            continue
        order = folio_order(page_folio(m, spage)) if src[i] & MIGRATE_PFN_COMPOUND else 0
        try:
            dpage = alloc_pages(m, order)
        except MmError:
            continue  # see the docstring: the kernel has no fallback here
        _lock_new(m, dpage)
        dst[i] = migrate_pfn(dpage) | (src[i] & MIGRATE_PFN_WRITE) | (
            MIGRATE_PFN_COMPOUND if order else 0)
        _copy(m, dpage, spage, 1 << order)  # folio_copy() from BACKING_PAGE(spage)
        evicted += 1 << order
    migrate_device_pages(m, src, dst, npages)
    migrate_device_finalize(m, src, dst, npages)
    m.trace.emit("dmirror_device_evict_chunk", changes={"evicted": evicted}, start=start)
    return evicted


def dmirror_device_remove_chunks(dmirror: Dmirror) -> int:
    """dmirror_device_remove_chunks() - HMM_DMIRROR_RELEASE: the whole device memory goes
    away: the chunk is marked ``remove`` (freed pages no longer return to the free lists),
    its free pages are dropped, every used page is evicted
    (dmirror_device_evict_chunk()), and the device is left with no chunk. Returns the
    pages evicted (the ioctl returns 0).

    Models: lib/test_hmm.c:dmirror_device_remove_chunks() (the series). Simplification:
    the simulator keeps the frames registered (no memunmap_pages()); the next device
    allocation adds them back as a new chunk (dmirror_allocate_chunk()).
    """
    dmirror.remove = True
    dmirror.free_pages.clear()  # dmirror_remove_free_pages()
    dmirror.free_folios.clear()
    try:
        evicted = dmirror_device_evict_chunk(dmirror)
    finally:
        dmirror.remove = False
    dmirror.released = True
    return evicted
