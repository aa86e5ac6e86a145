"""Folios: a view over a run of struct pages headed by the first, and the folio API.

Models: include/linux/mm.h, include/linux/page_ref.h, include/linux/page-flags.h (v6.18).
A :class:`Folio` holds only the machine and the head PFN; every field is read from the
memmap arrays, as ``page_folio()`` and the folio accessors read ``struct page``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfolio.include.linux.mm_types import (
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
)
from pyfolio.sim.errors import EINVAL, MmError, VmWarning
from pyfolio.sim.memmap import FOLIO_MAPPING_ANON, NO_HEAD, PG, PGTY, ZONE_DEVICE
from pyfolio.sim.units import PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA, MMStruct
    from pyfolio.sim.machine import Machine

__all__ = [
    "Folio", "page_folio", "folio_order", "folio_nr_pages", "folio_test_large", "folio_test_anon",
    "folio_test_locked", "folio_lock", "folio_unlock", "folio_ref_count", "folio_get",
    "folio_put", "folio_put_refs", "folio_ref_add", "folio_ref_sub", "folio_mapcount",
    "folio_entire_mapcount",
    "folio_large_mapcount", "folio_mapped", "folio_expected_ref_count", "folio_ref_freeze",
    "folio_ref_unfreeze", "folio_maybe_dma_pinned", "folio_is_zone_device", "page_mapcount",
    "GUP_PIN_COUNTING_BIAS", "VM_WARN_ON_FOLIO", "folio_page_idx", "is_zero_folio",
    "folio_test_swapbacked", "folio_is_longterm_pinnable", "get_mm_counter", "add_mm_counter",
    "inc_mm_counter",
    "dec_mm_counter", "mm_counter_file", "mm_counter", "get_mm_rss", "VmOperations",
    "vma_is_anonymous", "folio_test_dirty", "folio_test_uptodate", "VmFault", "ZapDetails",
    "is_cow_mapping", "PAGE_ALIGN", "ULONG_MASK",
]

#: unsigned long is 64 bits: the kernel's address and length arithmetic wraps at 2**64
ULONG_MASK = (1 << 64) - 1

#: include/linux/mm.h: a FOLL_PIN on a small folio adds this much to _refcount.
GUP_PIN_COUNTING_BIAS = 1024


@dataclass(frozen=True, slots=True)
class Folio:
    """struct folio: the head PFN of a compound page (or a single page) in a machine."""

    m: Machine
    pfn: int

    @property
    def order(self) -> int:
        return folio_order(self)

    @property
    def nr_pages(self) -> int:
        return folio_nr_pages(self)

    @property
    def refcount(self) -> int:
        return folio_ref_count(self)

    @property
    def mapcount(self) -> int:
        return folio_mapcount(self)

    @property
    def entire_mapcount(self) -> int:
        return folio_entire_mapcount(self) if folio_test_large(self) else 0

    @property
    def pincount(self) -> int:
        return int(self.m.mem._pincount[self.pfn]) if folio_test_large(self) else 0

    def page_mapcounts(self) -> list[int]:
        """Each page's own PTE mapcount (``_mapcount + 1``)."""
        return [int(x) + 1 for x in self.m.mem._mapcount[self.pfn: self.pfn + self.nr_pages]]

    def __repr__(self) -> str:
        return (f"Folio(pfn={self.pfn:#x}, order={self.order}, refcount={self.refcount}, "
                f"mapcount={self.mapcount})")


def VM_WARN_ON_FOLIO(cond: bool, folio: Folio, what: str = "") -> None:
    """VM_WARN_ON_FOLIO() - raise VmWarning when a kernel rule is broken.

    Models: include/linux/mmdebug.h:VM_WARN_ON_FOLIO() (v6.18).
    """
    if cond:
        raise VmWarning(f"VM_WARN_ON_FOLIO({what}) on {folio!r}")


def page_folio(m: Machine, pfn: int) -> Folio:
    """page_folio() - the folio a page belongs to (follows compound_head of a tail page).

    Models: include/linux/page-flags.h:page_folio() (v6.18).
    """
    if not 0 <= pfn < m.mem.nr:
        raise MmError(EINVAL, f"pfn {pfn:#x} is outside the memmap (0..{m.mem.nr - 1:#x})")
    head = int(m.mem.compound_head[pfn])
    return Folio(m, pfn if head == NO_HEAD else head)


def folio_page_idx(folio: Folio, pfn: int) -> int:
    """folio_page_idx() - the index of page ``pfn`` inside the folio.

    Models: include/linux/mm.h:folio_page_idx() (v6.18).
    """
    return pfn - folio.pfn


def folio_test_large(folio: Folio) -> bool:
    """folio_test_large() - is the folio more than one page (PG_head set)?

    Models: include/linux/page-flags.h:folio_test_large() (v6.18).
    """
    return folio.m.mem.test(folio.pfn, PG.head)


def folio_order(folio: Folio) -> int:
    """folio_order() - log2 of the folio's size in pages (0 for a small folio).

    Models: include/linux/mm.h:folio_order() (v6.18).
    """
    return int(folio.m.mem.order[folio.pfn]) if folio_test_large(folio) else 0


def folio_nr_pages(folio: Folio) -> int:
    """folio_nr_pages() - the number of pages in the folio (2^order).

    Models: include/linux/mm.h:folio_nr_pages() (v6.18).
    """
    return 1 << folio_order(folio)


def folio_test_anon(folio: Folio) -> bool:
    """folio_test_anon() - the low bit of folio->mapping is FOLIO_MAPPING_ANON.

    Models: include/linux/page-flags.h:folio_test_anon() (v6.18).
    """
    return bool(int(folio.m.mem.mapping[folio.pfn]) & FOLIO_MAPPING_ANON)


def folio_is_zone_device(folio: Folio) -> bool:
    """folio_is_zone_device() - does the folio live in ZONE_DEVICE memory?

    Models: include/linux/mm.h:folio_is_zone_device() (v6.18).
    """
    return int(folio.m.mem.zone[folio.pfn]) == ZONE_DEVICE


def is_zero_folio(folio: Folio) -> bool:
    """is_zero_folio() or is_huge_zero_folio(): the shared zero page or huge zero folio.

    Models: include/linux/pgtable.h:is_zero_folio() and
    include/linux/huge_mm.h:is_huge_zero_folio() (v6.18).
    """
    return folio.pfn in (folio.m.zero_pfn, folio.m.huge_zero_pfn)


def folio_test_locked(folio: Folio) -> bool:
    """folio_test_locked() - is PG_locked set?

    Models: include/linux/page-flags.h:folio_test_locked() (v6.18).
    """
    return folio.m.mem.test(folio.pfn, PG.locked)


def folio_lock(folio: Folio) -> None:
    """folio_lock() - take the folio lock (PG_locked); the simulator never sleeps.

    Models: include/linux/pagemap.h:folio_lock() (v6.18).
    """
    VM_WARN_ON_FOLIO(folio_test_locked(folio), folio, "already locked")
    folio.m.mem.set(folio.pfn, PG.locked)


def folio_unlock(folio: Folio) -> None:
    """folio_unlock() - release the folio lock.

    Models: mm/filemap.c:folio_unlock() (v6.18).
    """
    VM_WARN_ON_FOLIO(not folio_test_locked(folio), folio, "not locked")
    folio.m.mem.clear(folio.pfn, PG.locked)


def folio_ref_count(folio: Folio) -> int:
    """folio_ref_count() - the head page's _refcount.

    Models: include/linux/page_ref.h:folio_ref_count() (v6.18).
    """
    return int(folio.m.mem._refcount[folio.pfn])


def folio_ref_add(folio: Folio, nr: int) -> None:
    """folio_ref_add() - add ``nr`` references.

    Models: include/linux/page_ref.h:folio_ref_add() (v6.18).
    """
    VM_WARN_ON_FOLIO(folio_ref_count(folio) <= 0, folio, "ref_add on a free or frozen folio")
    folio.m.mem._refcount[folio.pfn] += nr


def folio_ref_sub(folio: Folio, nr: int) -> None:
    """folio_ref_sub() - drop ``nr`` references that are not the last.

    Models: include/linux/page_ref.h:folio_ref_sub() (v6.18).
    """
    folio.m.mem._refcount[folio.pfn] -= nr
    VM_WARN_ON_FOLIO(folio_ref_count(folio) <= 0, folio, "ref_sub to zero; use folio_put")


def folio_get(folio: Folio) -> None:
    """folio_get() - take a reference (include/linux/mm.h).

    Models: include/linux/mm.h:folio_get() (v6.18).
    """
    folio_ref_add(folio, 1)


def folio_put(folio: Folio) -> None:
    """folio_put() - drop a reference; the last one frees the folio.

    Models: include/linux/mm.h:folio_put() and mm/swap.c:__folio_put() (v6.18): at zero a
    large folio is taken off the deferred split queue and the frames go back to the buddy
    allocator; a ZONE_DEVICE folio goes back to its driver (free_zone_device_folio()).
    """
    m = folio.m
    VM_WARN_ON_FOLIO(folio_ref_count(folio) <= 0, folio, "put of a free folio")
    m.mem._refcount[folio.pfn] -= 1
    if m.mem._refcount[folio.pfn]:
        return
    __folio_put(folio)


def folio_put_refs(folio: Folio, refs: int) -> None:
    """folio_put_refs() - drop ``refs`` references at once; the last one frees the folio.

    Models: include/linux/mm.h:folio_put_refs() (v6.18), used when a batch of PTEs of one
    folio is zapped together.
    """
    m = folio.m
    VM_WARN_ON_FOLIO(folio_ref_count(folio) < refs, folio, "put of more refs than held")
    m.mem._refcount[folio.pfn] -= refs
    if not m.mem._refcount[folio.pfn]:
        __folio_put(folio)


def __folio_put(folio: Folio) -> None:
    """__folio_put() - free a folio whose last reference is gone.

    Models: mm/swap.c:__folio_put() (v6.18): a ZONE_DEVICE folio goes to
    free_zone_device_folio(); any other leaves the deferred split queue
    (folio_unqueue_deferred_split()) and goes back to the buddy allocator
    (free_frozen_pages(), whose free_pages_prepare() counts an anon folio out of
    ``nr_anon``).
    """
    from pyfolio.mm.huge_memory import __folio_unqueue_deferred_split
    from pyfolio.mm.page_alloc import __free_pages

    m = folio.m
    order = folio_order(folio)
    if order > 1:  # folio_unqueue_deferred_split(): order-1 folios have no deferred list
        __folio_unqueue_deferred_split(folio)
    m.trace.emit("free_folio", changes={"freed_pages": 1 << order}, pfn=folio.pfn, order=order)
    if folio_is_zone_device(folio):
        free_zone_device_folio(folio)
        return
    __free_pages(m, folio.pfn, order)


def free_zone_device_folio(folio: Folio) -> None:
    """free_zone_device_folio() - hand a device folio back to its dev_pagemap's driver.

    Models: mm/memremap.c:free_zone_device_folio() (v6.18; with the merged series): an
    anon folio leaves ``nr_anon`` (mod_mthp_stat(order, MTHP_STAT_NR_ANON, -1), as the
    linux-mm tree has it; the v7 series lacked the decrement), then the driver's
    ``page_free`` op (``folio_free`` in newer trees) takes the frames back.
    """
    from pyfolio.include.linux.huge_mm import MTHP_STAT, mod_mthp_stat

    m = folio.m
    if folio_test_anon(folio):
        mod_mthp_stat(m, folio_order(folio), MTHP_STAT.MTHP_STAT_NR_ANON, -1)
    pgmap = m.pgmaps[int(m.mem.pgmap[folio.pfn])]
    order = folio_order(folio)
    m.mem.reset(folio.pfn, folio.pfn + (1 << order))
    m.mem.zone[folio.pfn: folio.pfn + (1 << order)] = ZONE_DEVICE
    m.mem.pgmap[folio.pfn: folio.pfn + (1 << order)] = pgmap.id  # type: ignore[attr-defined]
    pgmap.ops.page_free(folio.pfn, order)  # type: ignore[attr-defined]


def folio_mapcount(folio: Folio) -> int:
    """folio_mapcount() - page-table entries mapping any part of the folio.

    Models: include/linux/mm.h:folio_mapcount() (v6.18): small folio ``_mapcount + 1``;
    large folio ``_large_mapcount + 1`` (a PMD counts 1, each PTE counts 1).
    """
    mem = folio.m.mem
    if not folio_test_large(folio):
        return int(mem._mapcount[folio.pfn]) + 1
    return int(mem._large_mapcount[folio.pfn]) + 1


def folio_large_mapcount(folio: Folio) -> int:
    """folio_large_mapcount() - ``_large_mapcount + 1``: every PTE and PMD mapping of a large folio.

    Models: include/linux/mm.h:folio_large_mapcount() (v6.18).
    """
    return int(folio.m.mem._large_mapcount[folio.pfn]) + 1


def folio_entire_mapcount(folio: Folio) -> int:
    """folio_entire_mapcount() - PMD mappings of the whole folio (``_entire_mapcount + 1``).

    Models: include/linux/mm.h:folio_entire_mapcount() (v6.18).
    """
    VM_WARN_ON_FOLIO(not folio_test_large(folio), folio, "entire mapcount of a small folio")
    return int(folio.m.mem._entire_mapcount[folio.pfn]) + 1


def page_mapcount(m: Machine, pfn: int) -> int:
    """The page's own PTE mappings (``_mapcount + 1``, 0 for a typed page), not counting PMD
    mappings.

    Simulator helper, no kernel counterpart in v6.18: include/linux/mm.h has no
    page_mapcount() any more (the old one added the folio's entire mapcount), and the
    nearest function, fs/proc/internal.h:folio_precise_page_mapcount(), adds the entire
    mapcount too (pyfolio.fs.proc.internal.precise_page_mapcount() models that one).
    """
    if m.mem.page_type[pfn] != PGTY.none:
        return 0
    return int(m.mem._mapcount[pfn]) + 1


def folio_mapped(folio: Folio) -> bool:
    """folio_mapped() - is any page of the folio mapped (mapcount >= 1)?

    Models: include/linux/mm.h:folio_mapped() (v6.18).
    """
    return folio_mapcount(folio) >= 1


def folio_expected_ref_count(folio: Folio) -> int:
    """folio_expected_ref_count() - references explained by caches and mappings.

    Models: include/linux/mm.h:folio_expected_ref_count() (v6.18): an anon folio has one
    reference per page from the swap cache (if in it); a file folio one per page from the
    page cache (while ``folio->mapping`` is set) and one for PG_private (buffer heads);
    plus folio_mapcount(). The caller's own reference is not included.
    """
    mem, nr = folio.m.mem, folio_nr_pages(folio)
    if folio_test_anon(folio):
        refs = nr if mem.test(folio.pfn, PG.swapcache) else 0
    else:
        refs = (nr if int(mem.mapping[folio.pfn]) else 0) + mem.test(folio.pfn, PG.private)
    return refs + folio_mapcount(folio)


def folio_ref_freeze(folio: Folio, count: int) -> bool:
    """folio_ref_freeze() - if the refcount is exactly ``count``, set it to 0 and succeed.

    Models: include/linux/page_ref.h:folio_ref_freeze() (v6.18). While frozen nobody can
    take a new reference (folio_try_get() fails).
    """
    mem = folio.m.mem
    ok = int(mem._refcount[folio.pfn]) == count
    if ok:
        mem._refcount[folio.pfn] = 0
    folio.m.trace.emit("folio_ref_freeze", changes={"frozen": ok}, pfn=folio.pfn, count=count)
    return ok


def folio_ref_unfreeze(folio: Folio, count: int) -> None:
    """folio_ref_unfreeze() - store ``count`` into a frozen (zero) refcount.

    Models: include/linux/page_ref.h:folio_ref_unfreeze() (v6.18).
    """
    VM_WARN_ON_FOLIO(folio_ref_count(folio) != 0, folio, "unfreeze of a folio not frozen")
    folio.m.mem._refcount[folio.pfn] = count
    folio.m.trace.emit("folio_ref_unfreeze", pfn=folio.pfn, count=count)


def folio_maybe_dma_pinned(folio: Folio) -> bool:
    """folio_maybe_dma_pinned() - large: ``_pincount > 0``; small: refcount >= 1024.

    Models: include/linux/mm.h:folio_maybe_dma_pinned() (v6.18).
    """
    if folio_test_large(folio):
        return int(folio.m.mem._pincount[folio.pfn]) > 0
    return folio_ref_count(folio) >= GUP_PIN_COUNTING_BIAS


def folio_test_dirty(folio: Folio) -> bool:
    """folio_test_dirty() - PG_dirty: the folio holds data not yet written back.

    Models: include/linux/page-flags.h:folio_test_dirty() (v6.18).
    """
    return folio.m.mem.test(folio.pfn, PG.dirty)


def folio_test_uptodate(folio: Folio) -> bool:
    """folio_test_uptodate() - PG_uptodate: the folio's data is valid.

    Models: include/linux/page-flags.h:folio_test_uptodate() (v6.18).
    """
    return folio.m.mem.test(folio.pfn, PG.uptodate)


# -- VMAs with operations -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VmOperations:
    """struct vm_operations_struct: how faults on a file VMA are served. ``fault(vmf) ->
    vm_fault_t`` finds or reads the folio of ``vmf.pgoff`` (locked and referenced; its page
    in ``vmf.page``); ``map_pages`` is whether filemap_map_pages() may map cached folios
    around a fault; ``page_mkwrite(vmf, folio)`` is called before a shared page becomes
    writable (the file system wants write notification)."""

    name: str
    fault: Callable[[VmFault], int]
    map_pages: bool = True
    page_mkwrite: Callable[..., int] | None = None


@dataclass(eq=False, slots=True)
class VmFault:
    """struct vm_fault: one fault being handled. ``pmd`` is the (table, index) slot of the
    PMD entry; ``page`` the PFN ``vm_ops->fault`` found (-1: none yet), ``cow_page`` the
    private copy of a MAP_PRIVATE write fault; ``pgoff`` the file page of ``address``."""

    vma: VMA
    address: int
    pgoff: int
    flags: int
    pmd: tuple[int, int]
    page: int = -1
    cow_page: int = -1


@dataclass(frozen=True, slots=True)
class ZapDetails:
    """struct zap_details: ``even_cows`` false (hole punching) leaves a private mapping's
    COWed anonymous pages in place and unmaps only file pages; ``single_folio``, if set,
    the head PFN of the one folio to unmap (unmap_mapping_folio())."""

    even_cows: bool = True
    single_folio: int = -1


def vma_is_anonymous(vma: VMA) -> bool:
    """vma_is_anonymous() - a VMA with no vm_ops: private anonymous memory.

    Models: include/linux/mm.h:vma_is_anonymous() (v6.18).
    """
    return vma.vm_ops is None


def folio_is_longterm_pinnable(folio: Folio) -> bool:
    """folio_is_longterm_pinnable() - may a FOLL_LONGTERM pin hold this folio where it is?

    Models: include/linux/mm.h:folio_is_longterm_pinnable() (v6.18): not CMA or isolated
    pageblocks (none in the simulator), the zero folio yes, device-coherent memory no
    (must stay evictable), fsdax no, otherwise not ZONE_MOVABLE. The simulator's RAM is
    one ZONE_NORMAL and it has no device-coherent or fsdax memory, so every folio GUP can
    return is pinnable (device-private folios never are returned: GUP faults them back
    to RAM first).
    """
    if is_zero_folio(folio):
        return True
    if folio_is_zone_device(folio):
        return False  # coherent or fsdax ZONE_DEVICE memory; private never gets here
    return True


# -- per-mm RSS counters (mm->rss_stat[]) --------------------------------------------------
def folio_test_swapbacked(folio: Folio) -> bool:
    """folio_test_swapbacked() - PG_swapbacked: anon and shmem folios (not lazy-free ones).

    Models: include/linux/page-flags.h:folio_test_swapbacked() (v6.18).
    """
    return folio.m.mem.test(folio.pfn, PG.swapbacked)


def get_mm_counter(mm: MMStruct, member: int) -> int:
    """get_mm_counter() - pages counted in ``mm->rss_stat[member]``.

    Models: include/linux/mm.h:get_mm_counter() (v6.18; the kernel reads a per-CPU
    counter, percpu_counter_read_positive(), exact here).
    """
    return max(mm.rss_stat[member], 0)


def add_mm_counter(mm: MMStruct, member: int, value: int) -> None:
    """add_mm_counter() - add ``value`` pages to ``mm->rss_stat[member]``.

    Models: include/linux/mm.h:add_mm_counter() (v6.18).
    """
    mm.rss_stat[member] += value


def inc_mm_counter(mm: MMStruct, member: int) -> None:
    """inc_mm_counter() - add_mm_counter(mm, member, 1).

    Models: include/linux/mm.h:inc_mm_counter() (v6.18).
    """
    add_mm_counter(mm, member, 1)


def dec_mm_counter(mm: MMStruct, member: int) -> None:
    """dec_mm_counter() - add_mm_counter(mm, member, -1).

    Models: include/linux/mm.h:dec_mm_counter() (v6.18).
    """
    add_mm_counter(mm, member, -1)


def mm_counter_file(folio: Folio) -> int:
    """mm_counter_file() - MM_SHMEMPAGES for a swap-backed (shmem) file folio, else
    MM_FILEPAGES.

    Models: include/linux/mm.h:mm_counter_file() (v6.18).
    """
    return MM_SHMEMPAGES if folio_test_swapbacked(folio) else MM_FILEPAGES


def mm_counter(folio: Folio) -> int:
    """mm_counter() - the rss_stat index a mapping of ``folio`` counts in: MM_ANONPAGES for
    an anon folio (device-private ones included), else mm_counter_file().

    Models: include/linux/mm.h:mm_counter() (v6.18).
    """
    return MM_ANONPAGES if folio_test_anon(folio) else mm_counter_file(folio)


def get_mm_rss(mm: MMStruct) -> int:
    """get_mm_rss() - resident pages: file + anon + shmem (swap entries are not resident).

    Models: include/linux/mm.h:get_mm_rss() (v6.18).
    """
    return sum(get_mm_counter(mm, i) for i in (MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES))
def is_cow_mapping(vma: VMA) -> bool:
    """is_cow_mapping() - private and may be written: a write copies (COW).

    Models: include/linux/mm.h:is_cow_mapping() (v6.18): ``(flags & (VM_SHARED |
    VM_MAYWRITE)) == VM_MAYWRITE``.
    """
    from pyfolio.include.linux.mm_types import VM

    return int(vma.vm_flags) & (VM.SHARED | VM.MAYWRITE) == VM.MAYWRITE


def PAGE_ALIGN(addr: int) -> int:
    """PAGE_ALIGN() - round up to a page boundary, in unsigned long arithmetic (so a
    length within a page of 2**64 wraps to 0, as the syscalls' overflow checks expect).

    Models: include/linux/mm.h:PAGE_ALIGN() (v6.18).

    >>> PAGE_ALIGN(1), PAGE_ALIGN(4096), PAGE_ALIGN((1 << 64) - 1)
    (4096, 4096, 0)
    """
    return (addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & ULONG_MASK
