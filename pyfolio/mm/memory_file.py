"""Faults on file mappings and unmapping a file's pages: the file half of mm/memory.c.

Models: mm/memory.c (v6.18): do_fault() with do_read_fault(), do_cow_fault() and
do_shared_fault(); __do_fault(), do_fault_around(), finish_fault(), set_pte_range(),
do_set_pmd(), do_page_mkwrite(), fault_dirty_shared_page(), wp_page_shared(); and
unmap_mapping_range(), unmap_mapping_pages(), unmap_mapping_folio(). The anonymous
half is :mod:`pyfolio.mm.memory`.

A read fault first maps what the page cache already holds around the address
(fault-around: 16 pages, or a whole large folio that fits, or one PMD for a PMD-sized
folio at a suitable address); only if that leaves the address unmapped does it ask the
file system (``vm_ops->fault``: filemap_fault() or shmem_fault()) for the folio and map
it (finish_fault()). A MAP_PRIVATE write copies the page into an anonymous one; a
MAP_SHARED write maps the page-cache page writable and dirties the folio. fork() does not
copy the page tables of a shared file mapping: the child faults them in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import (
    _PAGE_PSE,
    _PAGE_RW,
    pfn_pte,
    pte_index,
    pte_mkdirty,
    vm_get_page_prot,
)
from pyfolio.include.linux.mm import (
    Folio,
    VmFault,
    ZapDetails,
    add_mm_counter,
    folio_lock,
    folio_nr_pages,
    folio_order,
    folio_put,
    folio_ref_add,
    folio_test_dirty,
    folio_test_locked,
    folio_unlock,
    mm_counter_file,
    page_folio,
)
from pyfolio.include.linux.mm_types import (
    MM_ANONPAGES,
    VM,
    VM_FAULT_DONE_COW,
    VM_FAULT_ERROR,
    VM_FAULT_FALLBACK,
    VM_FAULT_LOCKED,
    VM_FAULT_NOPAGE,
    VM_FAULT_OOM,
    VM_FAULT_RETRY,
    VMA,
)
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace

__all__ = ["FAULT_AROUND_PAGES", "do_fault", "do_read_fault", "do_cow_fault",
           "do_shared_fault", "__do_fault", "should_fault_around", "do_fault_around",
           "finish_fault", "set_pte_range", "do_set_pmd", "do_page_mkwrite",
           "fault_dirty_shared_page", "wp_page_shared", "unmap_mapping_range",
           "unmap_mapping_pages", "unmap_mapping_folio", "vma_page_prot"]

#: VM_SHARED|VM_WRITE as a plain int (an IntFlag operation costs a call on a hot path)
_SHARED_WRITE = int(VM.SHARED | VM.WRITE)
#: mm/memory.c: fault_around_pages = 65536 >> PAGE_SHIFT (debugfs fault_around_bytes)
FAULT_AROUND_PAGES = 65536 >> PAGE_SHIFT


def vma_page_prot(vma: VMA) -> int:
    """The VMA's ``vm_page_prot``: what vm_get_page_prot(vm_flags) gives (x86-64
    protection_map[]), read-only again where the mapping wants write notification.

    Models: mm/mmap.c:vma_set_page_prot() (v6.18): a private mapping's protection has no
    RW (a write goes through a COW fault); a MAP_SHARED writable one has RW (PAGE_SHARED)
    unless vma_wants_writenotify(): the file system has ``page_mkwrite`` (ext4) and must
    see the first write to each page.
    """
    flags = int(vma.vm_flags)
    prot = vm_get_page_prot(flags)  # PAGE_NONE for a PROT_NONE VMA
    shared_write = flags & _SHARED_WRITE == _SHARED_WRITE
    if shared_write and not (vma.vm_ops is not None and vma.vm_ops.page_mkwrite is not None):
        prot |= _PAGE_RW
    return prot


def do_fault(vmf: VmFault) -> int:
    """do_fault() - a fault on a none PTE of a file VMA.

    Models: mm/memory.c:do_fault() (v6.18): a read goes to do_read_fault(), a write to a
    private mapping to do_cow_fault(), a write to a shared one to do_shared_fault().
    """
    from pyfolio.include.linux.mm_types import FAULT_FLAG_WRITE

    if not vmf.flags & FAULT_FLAG_WRITE:
        return do_read_fault(vmf)
    if not vmf.vma.vm_flags & VM.SHARED:
        return do_cow_fault(vmf)
    return do_shared_fault(vmf)


def __do_fault(vmf: VmFault) -> int:
    """__do_fault() - ask ``vm_ops->fault`` for the folio of ``vmf->pgoff``; on success
    ``vmf.page`` is set and its folio is locked and referenced.

    Models: mm/memory.c:__do_fault() (v6.18): a folio returned without VM_FAULT_LOCKED
    is locked here.
    """
    vma = vmf.vma
    assert vma.vm_ops is not None
    ret = vma.vm_ops.fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY | VM_FAULT_DONE_COW):
        return ret
    folio = page_folio(vma.vm_mm.m, vmf.page)
    if not ret & VM_FAULT_LOCKED:
        folio_lock(folio)
    return ret


def should_fault_around(vmf: VmFault) -> bool:
    """should_fault_around() - the VMA's operations map cached pages (``map_pages``) and
    fault_around_pages is more than one.

    Models: mm/memory.c:should_fault_around() (v6.18).
    """
    ops = vmf.vma.vm_ops
    return ops is not None and ops.map_pages and FAULT_AROUND_PAGES > 1


def do_fault_around(vmf: VmFault) -> int:
    """do_fault_around() - map the cached pages of the 16-page aligned window around the
    fault (clamped to the VMA and to the PTE table) through filemap_map_pages().

    Models: mm/memory.c:do_fault_around() (v6.18). Returns VM_FAULT_NOPAGE when the
    faulting address got mapped.
    """
    from pyfolio.mm.filemap_fault import filemap_map_pages

    vma = vmf.vma
    nr = FAULT_AROUND_PAGES
    pte_off = pte_index(vmf.address)
    vma_off = vmf.pgoff - vma.vm_pgoff
    from_pte = max(pte_off & ~(nr - 1), pte_off - min(pte_off, vma_off))
    vma_pages = (vma.vm_end - vma.vm_start) >> PAGE_SHIFT
    to_pte = min(from_pte + nr, 512, pte_off + vma_pages - vma_off) - 1
    return filemap_map_pages(vmf, vmf.pgoff + from_pte - pte_off,
                             vmf.pgoff + to_pte - pte_off)


def do_read_fault(vmf: VmFault) -> int:
    """do_read_fault() - a read of an unmapped page of a file VMA: fault-around first;
    if that did not map the address, ``vm_ops->fault`` and finish_fault().

    Models: mm/memory.c:do_read_fault() (v6.18).
    """
    if should_fault_around(vmf):
        ret = do_fault_around(vmf)
        if ret:
            return ret
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        return ret
    ret |= finish_fault(vmf)
    folio = page_folio(vmf.vma.vm_mm.m, vmf.page)
    folio_unlock(folio)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        folio_put(folio)
    return ret


def do_cow_fault(vmf: VmFault) -> int:
    """do_cow_fault() - a write to an unmapped page of a MAP_PRIVATE file VMA: the
    file's page is copied into a new anonymous page, which is mapped writable.

    Models: mm/memory.c:do_cow_fault() (v6.18): vmf_anon_prepare() (the VMA's anon_vma),
    folio_prealloc(), __do_fault() for the page-cache page, the copy, finish_fault() with
    the copy (counted in MM_ANONPAGES); the page-cache folio is unlocked and put.
    """
    from pyfolio.mm.page_alloc import alloc_pages
    from pyfolio.mm.rmap import anon_vma_prepare
    from pyfolio.sim.errors import MmError

    m = vmf.vma.vm_mm.m
    anon_vma_prepare(vmf.vma)
    try:
        cow = alloc_pages(m, 0)
    except MmError:
        return VM_FAULT_OOM
    vmf.cow_page = cow
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        folio_put(Folio(m, cow))
        return ret
    m.mem.stamp[cow] = m.mem.stamp[vmf.page]  # copy_mc_user_highpage()
    m.trace.cost("pages_copied")
    m.mem.set(cow, PG.uptodate | PG.swapbacked)
    ret |= finish_fault(vmf)
    page = page_folio(m, vmf.page)
    folio_unlock(page)
    folio_put(page)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        folio_put(Folio(m, cow))
    return ret


def do_shared_fault(vmf: VmFault) -> int:
    """do_shared_fault() - a write to an unmapped page of a MAP_SHARED file VMA: the
    page-cache folio is mapped writable and dirtied.

    Models: mm/memory.c:do_shared_fault() (v6.18): __do_fault(), ``page_mkwrite`` if the
    file system wants it (do_page_mkwrite()), finish_fault(), fault_dirty_shared_page().
    """
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        return ret
    folio = page_folio(vmf.vma.vm_mm.m, vmf.page)
    if vmf.vma.vm_ops is not None and vmf.vma.vm_ops.page_mkwrite is not None:
        folio_unlock(folio)
        do_page_mkwrite(vmf, folio)
        folio_lock(folio)
    ret |= finish_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        folio_unlock(folio)
        folio_put(folio)
        return ret
    return ret | fault_dirty_shared_page(vmf, folio)


def do_page_mkwrite(vmf: VmFault, folio: Folio) -> int:
    """do_page_mkwrite() - let the file system prepare a shared page for writing
    (``vm_ops->page_mkwrite``; ext4_page_mkwrite() attaches buffers and dirties it).

    Models: mm/memory.c:do_page_mkwrite() (v6.18).
    """
    ops = vmf.vma.vm_ops
    assert ops is not None and ops.page_mkwrite is not None
    return int(ops.page_mkwrite(vmf, folio))


def fault_dirty_shared_page(vmf: VmFault, folio: Folio) -> int:
    """fault_dirty_shared_page() - mark the folio a shared write fault mapped dirty and
    unlock it (the mapping's reference stays).

    Models: mm/memory.c:fault_dirty_shared_page() (v6.18).
    """
    from pyfolio.mm.filemap import folio_mark_dirty

    folio_mark_dirty(folio)
    folio_unlock(folio)
    return 0


def finish_fault(vmf: VmFault) -> int:
    """finish_fault() - map the page __do_fault() found (or its COW copy).

    Models: mm/memory.c:finish_fault() (v6.18): with no PTE table yet, a PMD-sized folio
    is mapped by one PMD (do_set_pmd()) where the VMA allows; else a PTE table is
    allocated. A tmpfs/shmem VMA maps the whole large folio at once when it lies inside
    the VMA and inside one PTE table; any other maps just the faulting page. A range that
    is not all none falls back to the one page. Each PTE takes a folio reference (the one
    __do_fault() took is the first); the pages count in MM_ANONPAGES for a COW copy,
    else in mm_counter_file().
    """
    from pyfolio.mm.memory import pte_range_none, pte_slot
    from pyfolio.mm.shmem import vma_is_shmem

    vma, m = vmf.vma, vmf.vma.vm_mm.m
    is_cow = bool(vmf.flags & 1) and not vma.vm_flags & VM.SHARED
    page = vmf.cow_page if is_cow else vmf.page
    folio = page_folio(m, page)
    pmd = int(m.pgtables[vmf.pmd[0]][vmf.pmd[1]])
    if pmd == 0 and folio_order(folio) == HPAGE_PMD_ORDER:
        ret = do_set_pmd(vmf, folio, page)
        if ret != VM_FAULT_FALLBACK:
            return ret
    slot = pte_slot(vma.vm_mm, vmf.address, alloc=True)
    if slot is None:
        return VM_FAULT_NOPAGE  # a PMD appeared meanwhile
    nr, addr, one_page = folio_nr_pages(folio), vmf.address, page
    if not vma_is_shmem(vma) or nr == 1:
        nr = 1
    else:
        idx = page - folio.pfn
        vma_off = vmf.pgoff - vma.vm_pgoff
        pte_off = pte_index(vmf.address)
        vma_pages = (vma.vm_end - vma.vm_start) >> PAGE_SHIFT
        if (vma_off < idx or vma_off + (nr - idx) > vma_pages or pte_off < idx
                or pte_off + (nr - idx) > 512):
            nr = 1
        else:
            addr = vmf.address - idx * PAGE_SIZE
            page = folio.pfn
    if nr > 1 and not pte_range_none(m, slot[0], pte_index(addr), nr):
        nr, addr, page = 1, vmf.address, one_page  # needs_fallback
    if nr == 1 and int(m.pgtables[slot[0]][slot[1]]):
        return VM_FAULT_NOPAGE  # vmf_pte_changed()
    folio_ref_add(folio, nr - 1)
    set_pte_range(vmf, folio, page, nr, addr)
    add_mm_counter(vma.vm_mm, MM_ANONPAGES if is_cow else mm_counter_file(folio), nr)
    return 0


def set_pte_range(vmf: VmFault, folio: Folio, page: int, nr: int, addr: int) -> None:
    """set_pte_range() - map ``nr`` pages of ``folio`` from ``page`` at ``addr``.

    Models: mm/memory.c:set_pte_range() (v6.18): entries from the VMA's protection
    (young: x86 PAGE_* have A); a write makes them dirty and, where the VMA is writable,
    writable; a writable entry of a dirty folio is made dirty too. A COW copy becomes a
    new exclusive anon folio (folio_add_new_anon_rmap()) on the LRU; page-cache pages
    get file rmaps (folio_add_file_rmap_ptes()).
    """
    from pyfolio.mm.memory import maybe_mkwrite, pte_slot, set_pte_at
    from pyfolio.mm.rmap import RMAP_EXCLUSIVE, folio_add_new_anon_rmap
    from pyfolio.mm.rmap_file import folio_add_file_rmap_ptes

    vma, m = vmf.vma, folio.m
    write = bool(vmf.flags & 1)
    prot = vma_page_prot(vma)
    if write and not vma.vm_flags & VM.SHARED:
        folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE)
        m.mem.set(folio.pfn, PG.lru)
    else:
        folio_add_file_rmap_ptes(folio, page, nr, vma)
    first = pte_index(addr)
    slot = pte_slot(vma.vm_mm, addr)
    assert slot is not None
    for i in range(nr):
        entry = pfn_pte(page + i, prot)
        if write:
            entry = maybe_mkwrite(pte_mkdirty(entry), vma)
        elif entry & _PAGE_RW and folio_test_dirty(folio):
            entry = pte_mkdirty(entry)
        set_pte_at(m, (slot[0], first + i), entry)


def do_set_pmd(vmf: VmFault, folio: Folio, page: int) -> int:
    """do_set_pmd() - map a PMD-sized page-cache folio with one PMD; 0 or
    VM_FAULT_FALLBACK.

    Models: mm/memory.c:do_set_pmd() (v6.18): refused (fallback) for a VMA with THP
    disabled (MADV_NOHUGEPAGE), where the 2 MiB around the address is not inside the VMA
    or the VMA's file offset is not 2 MiB-congruent with its address
    (thp_vma_suitable_order()), or for a folio that is not PMD-sized. The sysfs
    ``enabled`` knobs are not asked: a large folio already in the page cache is mapped
    whole. The PMD takes the caller's reference; the pages count in mm_counter_file();
    ``thp_file_mapped`` is counted.
    """
    from pyfolio.mm.huge_memory import _set_pmd_at, maybe_pmd_mkwrite, thp_vma_suitable_orders
    from pyfolio.mm.rmap_file import folio_add_file_rmap_pmd

    vma, m = vmf.vma, folio.m
    haddr = vmf.address & ~(PMD_SIZE - 1)
    if vma.vm_flags & VM.NOHUGEPAGE:
        return VM_FAULT_FALLBACK
    if not thp_vma_suitable_orders(vma, haddr, 1 << HPAGE_PMD_ORDER):
        return VM_FAULT_FALLBACK
    if folio_order(folio) != HPAGE_PMD_ORDER:
        return VM_FAULT_FALLBACK
    if int(m.pgtables[vmf.pmd[0]][vmf.pmd[1]]):
        return VM_FAULT_FALLBACK
    from pyfolio.arch.x86.pgtable import pmd_mkdirty

    entry = pfn_pte(folio.pfn, vma_page_prot(vma) | _PAGE_PSE)
    if vmf.flags & 1:
        entry = maybe_pmd_mkwrite(pmd_mkdirty(entry), vma)
    add_mm_counter(vma.vm_mm, mm_counter_file(folio), HPAGE_PMD_NR)
    folio_add_file_rmap_pmd(folio, folio.pfn, vma)
    _set_pmd_at(m, vmf.pmd, entry)
    m.vmstat["thp_file_mapped"] += 1
    m.trace.emit("do_set_pmd", address=haddr, pfn=folio.pfn)
    del page
    return 0


def wp_page_shared(vmf: VmFault, folio: Folio, slot: tuple[int, int]) -> int:
    """wp_page_shared() - a write to a write-protected PTE of a MAP_SHARED mapping: no
    copy; the file system is told (page_mkwrite), the PTE made writable and dirty
    (wp_page_reuse()) and the folio dirtied.

    Models: mm/memory.c:wp_page_shared() (v6.18).
    """
    from pyfolio.arch.x86.pgtable import _PAGE_ACCESSED
    from pyfolio.mm.memory import maybe_mkwrite, set_pte_at

    m = folio.m
    if vmf.vma.vm_ops is not None and vmf.vma.vm_ops.page_mkwrite is not None:
        do_page_mkwrite(vmf, folio)
    pte = int(m.pgtables[slot[0]][slot[1]])
    set_pte_at(m, slot, maybe_mkwrite(pte_mkdirty(pte | _PAGE_ACCESSED), vmf.vma))
    folio_lock(folio)
    return fault_dirty_shared_page(vmf, folio)


def unmap_mapping_pages(mapping: AddressSpace, start: int, nr: int, even_cows: bool,
                        single_folio: int = -1) -> None:
    """unmap_mapping_pages() - unmap file pages [start, start + nr) (``nr`` 0: to the
    end) from every VMA mapping them (``mapping->i_mmap``).

    Models: mm/memory.c:unmap_mapping_pages() (v6.18) with unmap_mapping_range_tree():
    each VMA's part of the range is zapped (zap_page_range_single() with the
    zap_details); ``even_cows`` false leaves private COW copies.
    """
    from pyfolio.mm.memory import zap_page_range

    last = (1 << 62) if not nr else start + nr
    details = ZapDetails(even_cows, single_folio)
    for vma in sorted(mapping.i_mmap, key=lambda v: (v.vm_mm.id, v.vm_start)):
        vma_last = vma.vm_pgoff + ((vma.vm_end - vma.vm_start) >> PAGE_SHIFT)
        lo, hi = max(start, vma.vm_pgoff), min(last, vma_last)
        if lo < hi:
            zap_page_range(vma, vma.address_of(lo), vma.address_of(hi), details=details)


def unmap_mapping_range(mapping: AddressSpace, holebegin: int, holelen: int,
                        even_cows: bool) -> None:
    """unmap_mapping_range() - unmap the bytes [holebegin, holebegin + holelen) of the
    file (``holelen`` 0: to the end) from every process.

    Models: mm/memory.c:unmap_mapping_range() (v6.18).
    """
    start = holebegin >> PAGE_SHIFT
    nr = (holelen + PAGE_SIZE - 1) >> PAGE_SHIFT if holelen else 0
    unmap_mapping_pages(mapping, start, nr, even_cows)


def unmap_mapping_folio(folio: Folio) -> None:
    """unmap_mapping_folio() - unmap one page-cache folio from every process.

    Models: mm/memory.c:unmap_mapping_folio() (v6.18).
    """
    from pyfolio.include.linux.pagemap import folio_mapping

    mapping = folio_mapping(folio)
    assert mapping is not None and folio_test_locked(folio)
    first = int(folio.m.mem.index[folio.pfn])
    unmap_mapping_pages(mapping, first, folio_nr_pages(folio), False, folio.pfn)

