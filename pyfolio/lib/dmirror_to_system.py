"""The dmirror driver's way back: device-private pages to system memory.

Models: lib/test_hmm.c (linux-mm tree with the 2025 THP series, commit 05ab5121):
dmirror_devmem_fault_alloc_and_copy(), dmirror_migrate_to_system()
(HMM_DMIRROR_MIGRATE_TO_SYS) and dmirror_devmem_fault() (the ``migrate_to_ram`` op a CPU
fault on a device-private entry calls). The driver itself (struct dmirror, its allocator,
the way to the device, its MMU notifier) is :mod:`pyfolio.lib.dmirror`.

Place: the continuation of pyfolio/lib/dmirror.py (lib/test_hmm.c's driver is called
dmirror; a module named test_hmm*.py would be collected by pytest as a test file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import Folio, folio_order, folio_unlock, page_folio
from pyfolio.include.linux.mm_types import VM_FAULT_OOM, VM_FAULT_SIGBUS
from pyfolio.lib.dmirror import (
    HMM_DMIRROR_FLAG_FAIL_ALLOC,
    Dmirror,
    _check_range,
    _copy,
    _lock_new,
    _windows,
    dmirror_fops_open,
)
from pyfolio.mm.migrate_device import (
    MIGRATE_PFN_COMPOUND,
    MIGRATE_PFN_MIGRATE,
    MIGRATE_PFN_WRITE,
    MIGRATE_VMA_SELECT,
    MigrateVma,
    migrate_pfn,
    migrate_pfn_to_page,
    migrate_vma_finalize,
    migrate_vma_pages,
    migrate_vma_setup,
)
from pyfolio.sim.errors import ENOMEM, MmError
from pyfolio.sim.units import PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA, MMStruct
    from pyfolio.sim.machine import Machine

__all__ = ["dmirror_devmem_fault_alloc_and_copy", "dmirror_migrate_to_system",
           "dmirror_devmem_fault"]


def dmirror_devmem_fault_alloc_and_copy(args: MigrateVma, dmirror: Dmirror) -> int:
    """dmirror_devmem_fault_alloc_and_copy() - system pages for device pages: an order-9
    folio for a large source (512 single pages if that fails or is forced to), copy,
    and erase the device page-table entries. VM_FAULT_OOM if a small page is missing;
    then no destination is left in ``dst`` and the caller's migrate_vma_finalize() maps
    every source page back (the data stays on the device).
    HMM_DMIRROR_FLAG_FAIL_ALLOC fails the next allocation and is cleared: a large source
    falls back to single pages, an order-0 source returns VM_FAULT_OOM at once. (On a CPU
    fault the kernel's #PF handler then only warns, pagefault_out_of_memory(), and the
    access is retried and succeeds; the simulator's access reports ENOMEM instead.)

    Models: lib/test_hmm.c:dmirror_devmem_fault_alloc_and_copy() (the series; the flag
    as in the merged driver, linux-mm tree 05ab5121): when a small page of the fallback
    cannot be had, "Unlock and free pages already allocated" and "Clear remaining dst
    entries" for that folio, then VM_FAULT_OOM. Deviation: the driver frees only the
    failing folio's pages; destinations it copied for earlier folios of the same window
    stay in ``dst``, and migrate_vma_finalize() without migrate_vma_pages() maps nothing
    to them (remove_migration_ptes() walks the rmap of a destination that has no
    ->mapping yet) while putting the source device page, so those pages' data is lost
    under a migration entry left behind. The simulator frees every destination of the
    window instead (a fault window holds one folio, so the fault path is as the
    driver's). With ``Machine.batch`` a run of order-0 pages goes in one step
    (:func:`pyfolio.lib.dmirror_batch.devmem_fault_alloc_and_copy_run`, same result).
    """
    from pyfolio.lib.dmirror_batch import devmem_fault_alloc_and_copy_run
    from pyfolio.mm.page_alloc import alloc_pages

    m = dmirror.m
    assert args.vma is not None
    i = 0
    while i < args.npages:
        if not dmirror.flags & HMM_DMIRROR_FLAG_FAIL_ALLOC and \
                (done := devmem_fault_alloc_and_copy_run(args, dmirror, i)):
            i += done  # a run of order-0 pages in one step (Machine.batch)
            continue
        spage = migrate_pfn_to_page(args.src[i]) if args.src[i] & MIGRATE_PFN_MIGRATE else None
        if spage is None:
            i += 1
            continue
        order = folio_order(page_folio(m, spage))
        write = MIGRATE_PFN_WRITE if args.src[i] & MIGRATE_PFN_WRITE else 0
        dpage = None
        if dmirror.flags & HMM_DMIRROR_FLAG_FAIL_ALLOC:
            dmirror.flags &= ~HMM_DMIRROR_FLAG_FAIL_ALLOC
            if not order:  # "if (!dpage && !order) return VM_FAULT_OOM"
                _free_destinations(m, args.dst)  # (the deviation above)
                return VM_FAULT_OOM
        elif order:
            try:
                dpage = alloc_pages(m, order)
            except MmError:
                dpage = None
        mm_id = args.vma.vm_mm.id
        if dpage is not None:
            _lock_new(m, dpage)
            args.dst[i] = migrate_pfn(dpage) | write | MIGRATE_PFN_COMPOUND
            _copy(m, dpage, spage, 1 << order)
            dmirror.pt.unmap_range(mm_id, args.start + i * PAGE_SIZE, 1 << order)
        else:
            for j in range(1 << order):
                try:
                    small = alloc_pages(m, 0)
                except MmError:
                    _free_destinations(m, args.dst)
                    return VM_FAULT_OOM
                _lock_new(m, small)
                args.dst[i + j] = migrate_pfn(small) | (write if not order else 0)
                _copy(m, small, spage + j, 1)
                dmirror.pt.unmap_range(mm_id, args.start + (i + j) * PAGE_SIZE, 1)
        i += 1 << order
    return 0


def _free_destinations(m: Machine, dst: list[int]) -> None:
    """unlock_page() + __free_page() of every destination allocated, and dst[] cleared."""
    from pyfolio.mm.migrate import ref_drop

    for k, d in enumerate(dst):
        page = migrate_pfn_to_page(d)
        if page is not None:
            folio_unlock(Folio(m, page))
            ref_drop(Folio(m, page))
        dst[k] = 0


def dmirror_migrate_to_system(dmirror: Dmirror, mm: MMStruct, start: int,
                              size: int) -> list[MigrateVma]:
    """dmirror_migrate_to_system() - HMM_DMIRROR_MIGRATE_TO_SYS: device pages of the
    range back to system RAM, SELECT_DEVICE_PRIVATE | SELECT_COMPOUND.

    Models: lib/test_hmm.c:dmirror_migrate_to_system() (the series).
    """
    _check_range(mm, start, size)
    dmirror_fops_open(dmirror, mm)
    done = []
    for vma, lo, hi in _windows(mm, start, start + size):
        args = MigrateVma(vma, lo, hi, pgmap_owner=dmirror, split_design=dmirror.split_design,
                          flags=MIGRATE_VMA_SELECT.DEVICE_PRIVATE | MIGRATE_VMA_SELECT.COMPOUND)
        migrate_vma_setup(args)
        if dmirror_devmem_fault_alloc_and_copy(args, dmirror):
            migrate_vma_finalize(args)
            raise MmError(ENOMEM, "dmirror_migrate_to_system: out of system memory")
        migrate_vma_pages(args)
        migrate_vma_finalize(args)
        done.append(args)
    return done


def dmirror_devmem_fault(dmirror: Dmirror, vma: VMA, address: int, pfn: int,
                         via_pte: bool) -> int:
    """dmirror_devmem_fault() - migrate_to_ram: bring the faulting device memory back.

    Models: lib/test_hmm.c:dmirror_devmem_fault() (merged series): the range is the
    device folio (order of its folio, SELECT_COMPOUND when > 0); but when the fault came
    through a PTE (``vmf->pte`` set, here ``via_pte``) the folio may be only partly mapped,
    so order 0 and one page are used (the seed's fix). Returns 0, VM_FAULT_SIGBUS if setup
    fails or VM_FAULT_OOM.
    """
    order = 0 if via_pte else folio_order(page_folio(dmirror.m, pfn))
    start = address & ~((PAGE_SIZE << order) - 1)
    flags = MIGRATE_VMA_SELECT.DEVICE_PRIVATE | (MIGRATE_VMA_SELECT.COMPOUND if order else 0)
    args = MigrateVma(vma, start, start + (PAGE_SIZE << order), pgmap_owner=dmirror,
                      flags=flags, fault_page=pfn, split_design=dmirror.split_design)
    try:
        migrate_vma_setup(args)
    except MmError:
        return VM_FAULT_SIGBUS
    ret = dmirror_devmem_fault_alloc_and_copy(args, dmirror)
    if ret:
        migrate_vma_finalize(args)
        return ret
    migrate_vma_pages(args)
    migrate_vma_finalize(args)
    return 0
