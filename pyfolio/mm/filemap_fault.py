"""Page faults on files: filemap_fault() and the fault-around of filemap_map_pages().

Models: mm/filemap.c (v6.18; the whole-large-folio fault-around as read in the linux-mm
tree and measured on 6.18.44): filemap_fault(), do_sync_mmap_readahead(),
do_async_mmap_readahead(), filemap_map_pages(), filemap_map_pmd(),
next_uptodate_folio(), filemap_map_folio_range() and filemap_map_order0_folio(). The
page cache itself is :mod:`pyfolio.mm.filemap`.

filemap_map_pages() maps only what is cached and uptodate (never a folio marked
PG_readahead, never past EOF), so it never allocates: the first uptodate folio of the
window is mapped by one PMD when it is PMD-sized, lies within EOF (shmem: always) and
the VMA allows (do_set_pmd()); otherwise each folio is mapped by PTEs, a large one whole
when it lies inside the VMA and one page table and within EOF (or is shmem), else only
the pages in the window. A fault that had to read from the disk returns VM_FAULT_RETRY
(the kernel drops the mmap lock for the I/O); the retried fault maps the pages through
fault-around.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import i_size_read
from pyfolio.include.linux.mm import (
    Folio,
    VmFault,
    add_mm_counter,
    folio_get,
    folio_lock,
    folio_nr_pages,
    folio_order,
    folio_put,
    folio_ref_add,
    folio_test_locked,
    folio_test_uptodate,
    folio_unlock,
    mm_counter_file,
)
from pyfolio.include.linux.mm_types import (
    FAULT_FLAG_TRIED,
    VM,
    VM_FAULT_LOCKED,
    VM_FAULT_MAJOR,
    VM_FAULT_NOPAGE,
    VM_FAULT_OOM,
    VM_FAULT_RETRY,
    VM_FAULT_SIGBUS,
)
from pyfolio.include.linux.pagemap import FGP, folio_file_page, folio_next_index
from pyfolio.lib.xarray import XaValue, xa_find
from pyfolio.mm.filemap import __filemap_get_folio, filemap_get_folio
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace

__all__ = ["filemap_fault", "do_sync_mmap_readahead", "do_async_mmap_readahead",
           "filemap_map_pages", "filemap_map_pmd", "next_uptodate_folio",
           "filemap_map_folio_range"]


def do_sync_mmap_readahead(vmf: VmFault) -> bool:
    """do_sync_mmap_readahead() - a fault missed the page cache: read around it.

    Models: mm/filemap.c:do_sync_mmap_readahead() (v6.18): in a VM_HUGEPAGE VMA, two
    PMD-sized folios at the 2 MiB-aligned index (``ra->size = 2 * HPAGE_PMD_NR``,
    ``ra->order = HPAGE_PMD_ORDER``: the second one marked for async readahead); else
    mmap read-around: ``ra_pages`` order-0 pages centred on the fault (start at
    ``pgoff - ra_pages / 2``, a quarter of them asynchronous). Returns True: the mmap
    lock was dropped for the I/O (maybe_unlock_mmap_for_io()), so the fault is retried.
    Not modelled: VM_RAND_READ / VM_SEQ_READ (MADV_RANDOM, MADV_SEQUENTIAL) and the
    mmap_miss back-off.
    """
    from pyfolio.mm.readahead import page_cache_ra_order

    file = vmf.vma.vm_file
    assert file is not None
    ra, mapping = file.f_ra, file.f_mapping
    if vmf.vma.vm_flags & VM.HUGEPAGE:
        index = vmf.pgoff & ~(HPAGE_PMD_NR - 1)
        ra.size = 2 * HPAGE_PMD_NR
        ra.async_size = HPAGE_PMD_NR
        ra.order = HPAGE_PMD_ORDER
        page_cache_ra_order(file, mapping, index, ra)
        return True
    if not ra.ra_pages:
        return False
    ra.start = max(0, vmf.pgoff - ra.ra_pages // 2)
    ra.size = ra.ra_pages
    ra.async_size = ra.ra_pages // 4
    ra.order = 0
    page_cache_ra_order(file, mapping, ra.start, ra)
    return True


def do_async_mmap_readahead(vmf: VmFault, folio: Folio) -> bool:
    """do_async_mmap_readahead() - a fault found a cached folio marked PG_readahead: move
    the readahead window on (page_cache_async_ra()); True if it read (retry the fault).

    Models: mm/filemap.c:do_async_mmap_readahead() (v6.18).
    """
    from pyfolio.mm.readahead import page_cache_async_ra

    file = vmf.vma.vm_file
    assert file is not None
    if not file.f_ra.ra_pages or not folio.m.mem.test(folio.pfn, PG.readahead):
        return False
    page_cache_async_ra(file, file.f_mapping, folio, file.f_ra.ra_pages)
    return True


def filemap_fault(vmf: VmFault) -> int:
    """filemap_fault() - ``vm_ops->fault`` of page-cache files (ext4): find the folio of
    ``vmf.pgoff``, reading it in if needed; VM_FAULT_LOCKED with ``vmf.page`` set.

    Models: mm/filemap.c:filemap_fault() (v6.18): past EOF is VM_FAULT_SIGBUS; a cached
    folio may start async readahead (not on a retried fault); a miss counts a major fault,
    reads around (do_sync_mmap_readahead()) and, as the I/O dropped the mmap lock,
    returns VM_FAULT_RETRY; an allocation failure is VM_FAULT_OOM.
    """
    file = vmf.vma.vm_file
    assert file is not None
    mapping = file.f_mapping
    max_idx = -(-i_size_read(mapping.host) // PAGE_SIZE)
    if vmf.pgoff >= max_idx:
        return VM_FAULT_SIGBUS
    folio = filemap_get_folio(mapping, vmf.pgoff)
    if folio is not None:
        if not vmf.flags & FAULT_FLAG_TRIED and do_async_mmap_readahead(vmf, folio):
            folio_put(folio)
            return VM_FAULT_RETRY
        ret = 0
    else:
        if do_sync_mmap_readahead(vmf):
            return VM_FAULT_MAJOR | VM_FAULT_RETRY
        got = __filemap_get_folio(mapping, vmf.pgoff, FGP.CREAT | FGP.FOR_MMAP)
        if not isinstance(got, Folio):
            return VM_FAULT_OOM
        folio, ret = got, VM_FAULT_MAJOR
        if not folio_test_uptodate(folio):
            from pyfolio.mm.filemap import fill_folio_from_disk

            fill_folio_from_disk(folio)  # filemap_read_folio()
    folio_lock(folio)
    vmf.page = folio_file_page(folio, vmf.pgoff)
    return ret | VM_FAULT_LOCKED


def next_uptodate_folio(mapping: AddressSpace, index: int, end_pgoff: int
                        ) -> tuple[int, Folio] | None:
    """next_uptodate_folio() - the next cached folio at or after page ``index`` (up to
    ``end_pgoff``) that fault-around may map: uptodate, not PG_readahead, not locked,
    not past EOF; returned locked and referenced, with the index it was found at.

    Models: mm/filemap.c:next_uptodate_folio() (v6.18).
    """
    m = mapping.host.i_sb.m
    max_idx = -(-i_size_read(mapping.host) // PAGE_SIZE)
    while index <= end_pgoff:
        found = xa_find(mapping.i_pages, index, end_pgoff)
        if found is None:
            return None
        head, order, pfn = found
        at = max(index, head)
        index = head + (1 << order)
        if isinstance(pfn, XaValue):  # xa_is_value(): a swapped-out shmem page
            continue
        folio = Folio(m, pfn)
        if folio_test_locked(folio) or not folio_test_uptodate(folio) \
                or m.mem.test(pfn, PG.readahead) or at >= max_idx:
            continue
        folio_get(folio)
        folio_lock(folio)
        return at, folio
    return None


def filemap_map_pmd(vmf: VmFault, folio: Folio, start: int) -> bool:
    """filemap_map_pmd() - a PMD already maps here, or ``folio`` is PMD-sized and
    do_set_pmd() maps it: True (the fault is handled; the folio's reference went to the
    PMD, or was dropped). Otherwise the PTE table do_fault_around() preallocated is
    installed (pmd_install()) and False returned.

    Models: mm/filemap.c:filemap_map_pmd() (v6.18).
    """
    from pyfolio.arch.x86.pgtable import pmd_leaf
    from pyfolio.mm.memory import pte_slot
    from pyfolio.mm.memory_file import do_set_pmd

    m = folio.m
    pmd = int(m.pgtables[vmf.pmd[0]][vmf.pmd[1]])
    if pmd_leaf(pmd):
        folio_unlock(folio)
        folio_put(folio)
        return True
    if pmd == 0 and folio_order(folio) == HPAGE_PMD_ORDER:
        if not do_set_pmd(vmf, folio, folio_file_page(folio, start)):
            folio_unlock(folio)
            return True
    if int(m.pgtables[vmf.pmd[0]][vmf.pmd[1]]) == 0:
        pte_slot(vmf.vma.vm_mm, vmf.address, alloc=True)  # pmd_install(prealloc_pte)
    return False


def filemap_map_folio_range(vmf: VmFault, folio: Folio, start: int, addr: int, nr_pages: int,
                            can_map_large: bool) -> tuple[int, int]:
    """filemap_map_folio_range() - map pages [start, start + nr_pages) of ``folio`` at
    ``addr``, skipping PTEs that are not none; the whole folio when ``can_map_large`` and
    it lies inside the VMA and inside one page table. Returns (VM_FAULT_NOPAGE if the
    faulting address got mapped else 0, pages mapped); each mapped page takes a reference.

    Models: mm/filemap.c:filemap_map_folio_range() (v6.18; the whole-folio mapping as
    read in the linux-mm tree, "map entire large folio faultaround", and measured on
    6.18.44: a fault on order-4 folios maps 32 PTEs). filemap_map_order0_folio() is the
    one-page case.
    """
    from pyfolio.mm.memory import pte_slot
    from pyfolio.mm.memory_file import set_pte_range

    vma, m = vmf.vma, folio.m
    nr = folio_nr_pages(folio)
    addr0 = addr - start * PAGE_SIZE
    if can_map_large and nr > 1 and addr0 >= vma.vm_start \
            and addr0 + nr * PAGE_SIZE <= vma.vm_end \
            and addr0 & ~(PMD_SIZE - 1) == (addr0 + nr * PAGE_SIZE - 1) & ~(PMD_SIZE - 1):
        start, addr, nr_pages = 0, addr0, nr
    slot = pte_slot(vma.vm_mm, addr, alloc=True)
    assert slot is not None
    tbl = m.pgtables[slot[0]]
    first = slot[1]
    ret = mapped = 0
    i = 0
    while i < nr_pages:
        j = i
        while j < nr_pages and int(tbl[first + j]) == 0:
            j += 1
        if j > i:
            a = addr + i * PAGE_SIZE
            set_pte_range(vmf, folio, folio.pfn + start + i, j - i, a)
            folio_ref_add(folio, j - i)
            mapped += j - i
            if a <= vmf.address < a + (j - i) * PAGE_SIZE:
                ret = VM_FAULT_NOPAGE
        i = j + 1
    return ret, mapped


def filemap_map_pages(vmf: VmFault, start_pgoff: int, end_pgoff: int) -> int:
    """filemap_map_pages() - ``vm_ops->map_pages``: map the cached pages of
    [start_pgoff, end_pgoff] (the fault-around window) without reading anything.

    Models: mm/filemap.c:filemap_map_pages() (v6.18 with the stable fix "Do not allow to
    map with PMD across i_size"): the window ends at EOF; the first mappable folio may be
    mapped by a PMD (filemap_map_pmd()) only if it ends before the file's last page
    (``file_end >= folio_next_index(folio)``) or is shmem; that same test,
    ``can_map_large``, lets filemap_map_folio_range() map a large folio whole. When the
    test fails with no PTE table yet, nothing is mapped here (pte_offset_map_lock() finds
    no table) and the fault goes on to ``vm_ops->fault`` and finish_fault(), which may
    still map a PMD (so a folio ending exactly at EOF is PMD-mapped, as measured on
    6.18.44). The pages count in the mm's mm_counter_file(). VM_FAULT_NOPAGE when the
    faulting address is now mapped.
    """
    from pyfolio.mm.shmem import shmem_mapping

    vma = vmf.vma
    file = vma.vm_file
    assert file is not None
    mapping = file.f_mapping
    got = next_uptodate_folio(mapping, start_pgoff, end_pgoff)
    if got is None:
        return 0
    file_end = -(-i_size_read(mapping.host) // PAGE_SIZE) - 1
    end_pgoff = min(end_pgoff, file_end)
    index, folio = got
    shmem = shmem_mapping(mapping)
    can_map_large = shmem or file_end >= folio_next_index(folio)
    if can_map_large and filemap_map_pmd(vmf, folio, start_pgoff):
        return VM_FAULT_NOPAGE
    from pyfolio.mm.rmap import pte_table_of

    if pte_table_of(folio.m, vmf.pmd) is None:  # pte_offset_map_lock() found no table
        folio_unlock(folio)
        folio_put(folio)
        return 0
    ret = rss = 0
    ftype = mm_counter_file(folio)
    while got is not None:
        index, folio = got
        first = int(folio.m.mem.index[folio.pfn])
        end = first + folio_nr_pages(folio) - 1
        nr_pages = min(end, end_pgoff) - index + 1
        addr = vma.address_of(index)
        r, n = filemap_map_folio_range(vmf, folio, index - first, addr, nr_pages,
                                       can_map_large)
        ret |= r
        rss += n
        folio_unlock(folio)
        folio_put(folio)
        got = next_uptodate_folio(mapping, end + 1, end_pgoff)
    add_mm_counter(vma.vm_mm, ftype, rss)
    return ret
