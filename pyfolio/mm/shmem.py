"""tmpfs and shared memory: memfd_create(), MAP_SHARED|MAP_ANONYMOUS, and which folio
sizes they get.

Models: mm/shmem.c (v6.18): shmem_alloc_and_add_folio(), shmem_get_folio_gfp(),
shmem_write_begin()/shmem_write_end(), shmem_file_read_iter(), shmem_fault(), shmem_mmap(),
shmem_get_unmapped_area(), shmem_zero_setup(), shmem_file_setup(), shmem_recalc_inode(),
shmem_uncharge(), shmem_mapping(), shmem_fallocend(). Which orders a new folio may have
(shmem_allowable_huge_orders() and the sysfs stores) is :mod:`pyfolio.mm.shmem_huge`;
truncation, hole punching, fallocate() and the unused-huge shrinker are in
:mod:`pyfolio.mm.shmem_truncate`.

Which knob decides (the research for issue 17, measured on 6.18.44):

* ``write()`` and ``fallocate()`` follow the *mount's* policy only (the internal mount
  ``shm_mnt`` of memfd and MAP_SHARED|MAP_ANONYMOUS follows the top-level
  ``shmem_enabled``): always -> orders 1..9 tried from the PMD order down;
  within_size -> the orders that end within max(i_size, write end); advise/never -> 0.
* A fault in an *anonymous shmem* VMA (MAP_SHARED|MAP_ANONYMOUS, a memfd, any shmem
  file unlinked when mapped) follows the per-size ``hugepages-<size>kB/shmem_enabled``
  knobs, where ``inherit`` means "if the mount's policy allows a huge page here".
* A fault in a linked tmpfs file's VMA can only get the PMD order (6.18's
  shmem_huge_global_enabled() returns the PMD order when given a VMA).
* ``deny`` (top level) forbids every huge folio; ``force`` forces the PMD order on every
  mount (and makes the per-size ``inherit`` sizes the anon-shmem fault orders).

Swapping shmem folios out and in is :mod:`pyfolio.mm.shmem_swap`: a swapped-out page is a
swap entry (an XArray value entry) in the page cache, which :func:`shmem_get_folio_gfp`
swaps back in; :func:`shmem_recalc_inode` keeps ``ShmemInodeInfo.alloced`` (pages charged:
cached + ``swapped``), which :mod:`pyfolio.mm.debug_vm` checks against the page cache.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import (
    FMODE,
    AddressSpaceOperations,
    File,
    FileOperations,
    Inode,
    SuperBlock,
    i_size_read,
    i_size_write,
    new_inode,
)
from pyfolio.include.linux.huge_mm import MTHP_STAT, count_mthp_stat
from pyfolio.include.linux.mm import (
    Folio,
    VmFault,
    VmOperations,
    folio_lock,
    folio_nr_pages,
    folio_order,
    folio_put,
    folio_test_uptodate,
    folio_unlock,
)
from pyfolio.include.linux.mm_types import (
    VM_FAULT_LOCKED,
    VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
    VMA,
)
from pyfolio.include.linux.pagemap import mapping_set_large_folios
from pyfolio.include.linux.shmem_fs import SHMEM_I, SHMEM_SB, ShmemInodeInfo, ShmemSbInfo
from pyfolio.lib.xarray import XaValue
from pyfolio.mm.filemap import (
    __filemap_add_folio,
    filemap_alloc_folio,
    filemap_get_entry,
    folio_mark_dirty,
    generic_perform_write,
)
from pyfolio.mm.shmem_huge import (
    SHMEM_SB_of,
    huge_shmem_orders,
    shmem_allowable_huge_orders,
    shmem_suitable_orders,
)
from pyfolio.sim.errors import EEXIST, EINVAL, ENOMEM, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace
    from pyfolio.include.linux.mm_types import MMStruct
    from pyfolio.sim.machine import Machine

__all__ = ["SGP", "shmem_init", "shm_mnt", "shmem_mapping",
           "vma_is_anon_shmem", "vma_is_shmem", "shmem_alloc_and_add_folio", "shmem_get_folio_gfp",
           "shmem_recalc_inode", "shmem_uncharge", "shmem_fallocend", "shmem_write_begin",
           "shmem_write_end", "shmem_file_read_iter", "shmem_fault", "shmem_mmap",
           "shmem_get_unmapped_area", "shmem_file_setup", "shmem_zero_setup",
           "shmem_vm_ops", "shmem_anon_vm_ops", "shmem_aops"]


class SGP(enum.IntEnum):
    """mm/shmem.c enum sgp_type: what shmem_get_folio_gfp() may do on a hole."""

    SGP_READ = 0  # do not allocate: a hole reads as zeroes
    SGP_NOALLOC = 1
    SGP_CACHE = 2  # allocate (a fault), not past i_size
    SGP_WRITE = 3  # allocate, the caller writes (may pass i_size)
    SGP_FALLOC = 4  # allocate for fallocate()


def shmem_init(m: Machine) -> SuperBlock:
    """shmem_init() - mount the internal tmpfs ``shm_mnt`` (memfd, MAP_SHARED|ANONYMOUS).

    Models: mm/shmem.c:shmem_init() (v6.18): its ``huge`` is the top-level
    shmem_enabled (boot default never); the PMD size's per-size knob is ``inherit``
    (huge_shmem_orders_inherit = BIT(HPAGE_PMD_ORDER)).
    """
    sb = SuperBlock(m, "tmpfs", "shm_mnt", ShmemSbInfo(huge=m.shmem_huge))
    from pyfolio.include.linux.fs import BackingDevInfo

    sb.s_bdi = BackingDevInfo(ra_pages=0, io_pages=0)  # noop_backing_dev_info
    m.super_blocks["shm_mnt"] = sb
    return sb


def shm_mnt(m: Machine) -> SuperBlock:
    """The internal tmpfs mount (``shm_mnt->mnt_sb``), mounted on first use."""
    return m.super_blocks.get("shm_mnt") or shmem_init(m)


def shmem_mapping(mapping: AddressSpace | None) -> bool:
    """shmem_mapping() - is this a tmpfs/shmem page cache?

    Models: mm/shmem.c:shmem_mapping() (v6.18).
    """
    return mapping is not None and mapping.a_ops is shmem_aops


def vma_is_anon_shmem(vma: VMA) -> bool:
    """vma_is_anon_shmem() - a VMA of anonymous shared memory (``shmem_anon_vm_ops``:
    MAP_SHARED|MAP_ANONYMOUS, or a shmem file unlinked when mapped, such as a memfd).

    Models: mm/shmem.c:vma_is_anon_shmem() (v6.18).
    """
    return vma.vm_ops is shmem_anon_vm_ops


def vma_is_shmem(vma: VMA) -> bool:
    """vma_is_shmem() - any shmem VMA (anonymous or a linked tmpfs file).

    Models: mm/shmem.c:vma_is_shmem() (v6.18).
    """
    return vma_is_anon_shmem(vma) or vma.vm_ops is shmem_vm_ops


def shmem_recalc_inode(inode: Inode, alloced: int, swapped: int) -> None:
    """shmem_recalc_inode() - add ``alloced`` pages to the inode's charge, then give back
    the charge of pages no longer in the page cache (``alloced - swapped - nrpages``).

    Models: mm/shmem.c:shmem_recalc_inode() (v6.18; the block accounting,
    shmem_inode_unacct_blocks(), is the same number in the simulator).
    """
    info = SHMEM_I(inode)
    info.alloced += alloced
    info.swapped += swapped
    freed = info.alloced - info.swapped - inode.i_mapping.nrpages
    if freed > 0:
        info.alloced -= freed


def shmem_uncharge(inode: Inode, pages: int) -> None:
    """shmem_uncharge() - pages left the page cache (a split dropped pieces past EOF):
    recalculate the charge (``pages`` only helps debugging).

    Models: mm/shmem.c:shmem_uncharge() (v6.18): shmem_recalc_inode(inode, 0, 0).
    """
    del pages
    shmem_recalc_inode(inode, 0, 0)


def shmem_fallocend(inode: Inode, eof: int) -> int:
    """shmem_fallocend() - max(``eof``, the end of the last fallocate(KEEP_SIZE)), pages.

    Models: mm/shmem.c:shmem_fallocend() (v6.18).
    """
    return max(SHMEM_I(inode).fallocend, eof)


def shmem_alloc_and_add_folio(vmf: VmFault | None, inode: Inode, index: int,
                              orders: int) -> Folio | int:
    """shmem_alloc_and_add_folio() - allocate a folio of the highest suitable order (or
    order 0) at ``index`` rounded down to it, and add it to the page cache: locked,
    PG_swapbacked, on the LRU, charged to the inode; the folio or -ENOMEM / -EEXIST.

    Models: mm/shmem.c:shmem_alloc_and_add_folio() (v6.18): each order that cannot be
    allocated counts the size's ``shmem_fallback`` (and ``thp_file_fallback`` for the PMD
    size) before the next lower one is tried.
    """
    m = inode.i_sb.m
    mapping = inode.i_mapping
    folio = None
    if orders:
        orders = shmem_suitable_orders(inode, vmf, mapping, index, orders)
        while orders:
            order = orders.bit_length() - 1
            folio = filemap_alloc_folio(m, order)
            if folio is not None:
                index &= ~((1 << order) - 1)
                break
            if order == HPAGE_PMD_ORDER:
                m.vmstat["thp_file_fallback"] += 1
            count_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_SHMEM_FALLBACK)
            orders &= ~(1 << order)
    else:
        folio = filemap_alloc_folio(m, 0)
    if folio is None:
        return -ENOMEM
    folio_lock(folio)  # __folio_set_locked()
    m.mem.set(folio.pfn, PG.swapbacked)
    if __filemap_add_folio(mapping, folio, index):  # shmem_add_to_page_cache()
        folio_unlock(folio)
        folio_put(folio)
        return -EEXIST
    shmem_recalc_inode(inode, folio_nr_pages(folio), 0)
    m.mem.set(folio.pfn, PG.lru)  # folio_add_lru()
    return folio


def shmem_get_folio_gfp(inode: Inode, index: int, write_end: int, sgp: SGP,
                        vmf: VmFault | None = None) -> Folio | None | int:
    """shmem_get_folio_gfp() - the folio of page ``index``, locked and referenced; None
    for a hole read with SGP_READ; -EINVAL past i_size for SGP_READ/SGP_CACHE; -ENOMEM.

    Models: mm/shmem.c:shmem_get_folio_gfp() (v6.18): a cached folio is returned (a
    not-yet-uptodate fallocated one is cleared first, except for SGP_READ); on a hole,
    shmem_allowable_huge_orders() decides the large orders to try
    (shmem_alloc_and_add_folio(); success counts ``thp_file_alloc`` for the PMD size and
    the size's ``shmem_alloc``), else one page. A large folio reaching past EOF puts the
    inode on the superblock's shrinklist. A new folio is zeroed and uptodate unless the
    caller writes it (SGP_WRITE, SGP_FALLOC clear it themselves). A swapped-out page (a
    value entry) is brought back whatever ``sgp`` says
    (:func:`pyfolio.mm.shmem_swap.shmem_swapin_folio`).
    """
    m = inode.i_sb.m
    if sgp <= SGP.SGP_CACHE and index << PAGE_SHIFT >= i_size_read(inode):
        return -EINVAL
    folio = filemap_get_entry(inode.i_mapping, index)
    if isinstance(folio, XaValue):  # xa_is_value(): swapped out
        from pyfolio.mm.shmem_swap import shmem_swapin_folio

        back = shmem_swapin_folio(inode, index, folio, sgp, vmf.vma if vmf else None,
                                  vmf is not None)
        if back == -EEXIST:
            return shmem_get_folio_gfp(inode, index, write_end, sgp, vmf)  # repeat
        return back
    if folio is not None:
        folio_lock(folio)
        if sgp == SGP.SGP_WRITE:
            m.mem.set(folio.pfn, PG.referenced)  # folio_mark_accessed()
        if folio_test_uptodate(folio) or sgp != SGP.SGP_READ:
            if not folio_test_uptodate(folio):
                _clear_folio(folio)
            return folio
        folio_unlock(folio)
        folio_put(folio)
    if sgp in (SGP.SGP_READ, SGP.SGP_NOALLOC):
        return None
    vma = vmf.vma if vmf is not None else None
    orders = shmem_allowable_huge_orders(inode, vma, index, write_end, False)
    got: Folio | int = -ENOMEM
    if orders:
        got = shmem_alloc_and_add_folio(vmf, inode, index, orders)
        if isinstance(got, Folio):
            if folio_order(got) == HPAGE_PMD_ORDER:
                m.vmstat["thp_file_alloc"] += 1
            count_mthp_stat(m, folio_order(got), MTHP_STAT.MTHP_STAT_SHMEM_ALLOC)
        elif got == -EEXIST:
            return shmem_get_folio_gfp(inode, index, write_end, sgp, vmf)
    if not isinstance(got, Folio):
        got = shmem_alloc_and_add_folio(vmf, inode, index, 0)
        if not isinstance(got, Folio):
            return got
    folio = got
    first = int(m.mem.index[folio.pfn])
    if folio_nr_pages(folio) > 1 and -(-i_size_read(inode) // PAGE_SIZE) \
            < first + folio_nr_pages(folio):
        sbinfo = SHMEM_SB(inode)
        if inode not in sbinfo.shrinklist:
            sbinfo.shrinklist.append(inode)
    if sgp == SGP.SGP_WRITE:
        m.mem.set(folio.pfn, PG.referenced)
    if sgp not in (SGP.SGP_WRITE, SGP.SGP_FALLOC) and not folio_test_uptodate(folio):
        _clear_folio(folio)
    if sgp <= SGP.SGP_CACHE and index << PAGE_SHIFT >= i_size_read(inode):
        folio_unlock(folio)
        folio_put(folio)
        return -EINVAL
    return folio


def _clear_folio(folio: Folio) -> None:
    """clear_highpage() of every page, then folio_mark_uptodate()."""
    folio.m.mem.stamp[folio.pfn: folio.pfn + folio_nr_pages(folio)] = 0
    folio.m.trace.cost("pages_zeroed", folio_nr_pages(folio))
    folio.m.mem.set(folio.pfn, PG.uptodate)


# -- read, write, fault ----------------------------------------------------------------------
def shmem_write_begin(file: File, mapping: AddressSpace, pos: int, length: int) -> Folio:
    """shmem_write_begin() - the folio a write step goes into: shmem_get_folio() with
    SGP_WRITE and the write's end as the within_size hint.

    Models: mm/shmem.c:shmem_write_begin() (v6.18).
    """
    got = shmem_get_folio_gfp(mapping.host, pos >> PAGE_SHIFT, pos + length, SGP.SGP_WRITE)
    if not isinstance(got, Folio):
        raise MmError(ENOMEM, f"shmem write at {pos}: no memory for a folio")
    return got


def shmem_write_end(file: File, mapping: AddressSpace, pos: int, copied: int,
                    folio: Folio) -> None:
    """shmem_write_end() - grow i_size, zero the rest of a new folio and mark it uptodate,
    mark it dirty, unlock and put it.

    Models: mm/shmem.c:shmem_write_end() (v6.18).
    """
    inode, m = mapping.host, folio.m
    if pos + copied > i_size_read(inode):
        i_size_write(inode, pos + copied)
    if not folio_test_uptodate(folio):
        first = int(m.mem.index[folio.pfn])
        lo, hi = (pos >> PAGE_SHIFT) - first, ((pos + copied - 1) >> PAGE_SHIFT) - first
        stamps = m.mem.stamp[folio.pfn: folio.pfn + folio_nr_pages(folio)]
        stamps[:lo] = 0
        stamps[hi + 1:] = 0  # folio_zero_segments()
        m.mem.set(folio.pfn, PG.uptodate)
    folio_mark_dirty(folio)
    folio_unlock(folio)
    folio_put(folio)


def shmem_file_write_iter(file: File, pos: int, count: int, value: int) -> int:
    """shmem_file_write_iter() - write(): generic_perform_write() with shmem's
    write_begin/write_end.

    Models: mm/shmem.c:shmem_file_write_iter() (v6.18).
    """
    return generic_perform_write(file, pos, count, value)


def shmem_file_read_iter(file: File, pos: int, count: int) -> list[int]:
    """shmem_file_read_iter() - read(): page by page, SGP_READ (a hole reads zeroes and
    allocates nothing); the stamp of each page read, nothing past EOF.

    Models: mm/shmem.c:shmem_file_read_iter() (v6.18).
    """
    inode, m = file.f_inode, file.f_inode.i_sb.m
    end = min(pos + count, i_size_read(inode))
    out: list[int] = []
    while pos < end:
        index = pos >> PAGE_SHIFT
        got = shmem_get_folio_gfp(inode, index, 0, SGP.SGP_READ)
        if isinstance(got, Folio):
            folio_unlock(got)
            out.append(int(m.mem.stamp[got.pfn + index - int(m.mem.index[got.pfn])]))
            folio_put(got)
        else:
            out.append(0)
        pos = (index + 1) << PAGE_SHIFT
    return out


def shmem_fault(vmf: VmFault) -> int:
    """shmem_fault() - ``vm_ops->fault`` of shmem: shmem_get_folio_gfp() with SGP_CACHE
    (a read of a hole allocates too); VM_FAULT_LOCKED with ``vmf.page`` set, SIGBUS past
    i_size, OOM.

    Models: mm/shmem.c:shmem_fault() (v6.18).
    """
    file = vmf.vma.vm_file
    assert file is not None
    got = shmem_get_folio_gfp(file.f_inode, vmf.pgoff, 0, SGP.SGP_CACHE, vmf)
    if got == -EINVAL:
        return VM_FAULT_SIGBUS
    if not isinstance(got, Folio):
        return VM_FAULT_OOM
    vmf.page = got.pfn + (vmf.pgoff - int(got.m.mem.index[got.pfn]))
    return VM_FAULT_LOCKED


def shmem_mmap(file: File, vma: VMA) -> None:
    """shmem_mmap() - a shmem file unlinked when mapped (a memfd) is anonymous shared
    memory (``shmem_anon_vm_ops``); a linked one gets ``shmem_vm_ops``.

    Models: mm/shmem.c:shmem_mmap() (v6.18).
    """
    vma.vm_ops = shmem_vm_ops if file.f_inode.i_nlink else shmem_anon_vm_ops


def shmem_get_unmapped_area(mm: MMStruct, file: File | None, length: int, pgoff: int) -> int:
    """shmem_get_unmapped_area() - place a shmem mapping so its huge folios can be
    mapped whole: congruent to the file offset modulo the largest size it may get.

    Models: mm/shmem.c:shmem_get_unmapped_area() (v6.18): no alignment when
    shmem_enabled is ``deny``; for a file, the PMD size unless its mount's huge is
    never (and the top level not force); for MAP_SHARED|MAP_ANONYMOUS (``file`` None),
    the largest size whose hugepages-<size>kB/shmem_enabled is always, within_size or
    advise, or inherit when shm_mnt's huge is not never. Mappings shorter than that
    size, or offset into it and too short to reach a second one, are not aligned.
    """
    from pyfolio.mm.mmap import mm_get_unmapped_area

    m = mm.m
    if m.shmem_huge == "deny":
        return mm_get_unmapped_area(mm, length)
    hpage_size = PMD_SIZE
    if m.shmem_huge != "force":
        order = 0
        if file is not None:
            sbinfo = SHMEM_SB(file.f_inode)
        else:
            sbinfo = SHMEM_SB_of(shm_mnt(m))
            orders = (huge_shmem_orders(m, "always") | huge_shmem_orders(m, "within_size")
                      | huge_shmem_orders(m, "advise"))
            if sbinfo.huge != "never":
                orders |= huge_shmem_orders(m, "inherit")
            if orders:
                order = orders.bit_length() - 1
                hpage_size = PAGE_SIZE << order
        if sbinfo.huge == "never" and not order:
            return mm_get_unmapped_area(mm, length)
    if length < hpage_size:
        return mm_get_unmapped_area(mm, length)
    offset = (pgoff << PAGE_SHIFT) & (hpage_size - 1)
    if offset and offset + length < 2 * hpage_size:
        return mm_get_unmapped_area(mm, length)
    return mm_get_unmapped_area(mm, length, hpage_size, offset)


def shmem_file_setup(m: Machine, name: str, size: int, *, mode: FMODE = FMODE.READ | FMODE.WRITE
                     ) -> File:
    """shmem_file_setup() - a new unlinked file on the internal tmpfs mount of ``size``
    bytes (memfd_create() and MAP_SHARED|MAP_ANONYMOUS use it).

    Models: mm/shmem.c:__shmem_file_setup() (v6.18): a new inode
    (mapping_set_large_folios()), i_size set, ``clear_nlink()`` ("It is unlinked").
    """
    from pyfolio.mm.shmem_truncate import shmem_inode_operations

    sb = shm_mnt(m)
    inode = new_inode(sb, shmem_inode_operations, shmem_file_operations, shmem_aops)
    inode.i_private = ShmemInodeInfo()
    mapping_set_large_folios(inode.i_mapping)
    inode.i_size = size
    inode.i_nlink = 0
    inode.i_count = 1
    return File(inode, mode, name)


def shmem_zero_setup(vma: VMA) -> None:
    """shmem_zero_setup() - back a MAP_SHARED|MAP_ANONYMOUS VMA with a new shmem file
    ("dev/zero") the size of the VMA; its faults go through ``shmem_anon_vm_ops``.

    Models: mm/shmem.c:shmem_zero_setup() (v6.18).
    """
    vma.vm_file = shmem_file_setup(vma.vm_mm.m, "dev/zero", vma.vm_end - vma.vm_start)
    vma.vm_ops = shmem_anon_vm_ops


def _shmem_fallocate(file: File, mode: int, offset: int, length: int) -> None:
    from pyfolio.mm.shmem_truncate import shmem_fallocate

    shmem_fallocate(file, mode, offset, length)


def _shmem_fsync(file: File) -> None:
    """noop_fsync(): tmpfs has nothing to write back."""
    del file


shmem_aops = AddressSpaceOperations("shmem_aops", write_begin=shmem_write_begin,
                                    write_end=shmem_write_end)
shmem_file_operations = FileOperations(
    "shmem_file_operations", read_iter=shmem_file_read_iter, write_iter=shmem_file_write_iter,
    mmap=shmem_mmap, fallocate=_shmem_fallocate, fsync=_shmem_fsync,
    get_unmapped_area=shmem_get_unmapped_area)
#: linked tmpfs files
shmem_vm_ops = VmOperations("shmem_vm_ops", fault=shmem_fault)
#: MAP_SHARED|MAP_ANONYMOUS, memfd and other unlinked shmem files
shmem_anon_vm_ops = VmOperations("shmem_anon_vm_ops", fault=shmem_fault)
