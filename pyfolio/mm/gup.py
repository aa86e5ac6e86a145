"""GUP pins: pin_user_pages() and unpin_user_pages().

Models: mm/gup.c (v6.18): FOLL_PIN|FOLL_WRITE first faults each page in for writing
(breaking COW, so the pinned page is exclusive to the process), then try_grab_folio()
takes the pin: on a large folio ``_refcount`` +1 and ``_pincount`` +1; on a small folio
``_refcount`` + GUP_PIN_COUNTING_BIAS (1024). :func:`fault_in` is the loop both GUP and
a CPU access (the facade's ``Process._fault``) run: look the page up, fault, look again,
until the entry is usable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import (
    GUP_PIN_COUNTING_BIAS,
    Folio,
    folio_put,
    folio_ref_add,
    folio_ref_sub,
    folio_test_large,
    page_folio,
)
from pyfolio.include.linux.mm_types import (
    FAULT_FLAG_TRIED,
    FAULT_FLAG_WRITE,
    VM_FAULT_OOM,
    VM_FAULT_RETRY,
    VM_FAULT_SIGBUS,
    VMA,
    MMStruct,
)
from pyfolio.mm.memory import handle_mm_fault
from pyfolio.sim.errors import EAGAIN, EBUSY, EFAULT, ENOMEM, BusError, MmError

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine
from pyfolio.arch.x86.pgtable import _PAGE_RW, pmd_leaf, pte_pfn, pte_present, walk
from pyfolio.sim.units import PAGE_SIZE, PMD_SIZE

__all__ = ["pin_user_pages", "unpin_user_page", "follow_page", "faultin_page", "fault_in",
           "FAULT_IN_TRIES"]

#: how often :func:`fault_in` faults before it gives up (the kernel loops until the fault
#: makes progress or a fatal signal arrives; every fault here makes progress within two)
FAULT_IN_TRIES = 4


def follow_page(mm: MMStruct, addr: int) -> tuple[int, bool] | None:
    """follow_page_mask() - the PFN mapped at ``addr`` and whether it is writable.

    Models: mm/gup.c:follow_page_mask() (v6.18).
    """
    w = walk(mm.m, mm.pgd, addr)
    if not pte_present(w.raw):
        return None
    if w.level == "pmd" and pmd_leaf(w.raw):
        return pte_pfn(w.raw) + ((addr & (PMD_SIZE - 1)) >> 12), bool(w.raw & _PAGE_RW)
    if w.level != "pte":
        return None
    return pte_pfn(w.raw), bool(w.raw & _PAGE_RW)


def faultin_page(vma: VMA, address: int, write: bool, tried: bool = False) -> int:
    """faultin_page() - fault the page in; 0, -EBUSY when the fault dropped the lock and
    asks to be retried (VM_FAULT_RETRY, e.g. a file fault that started a read from disk),
    or -ENOMEM / -EFAULT for a fault that failed.

    Models: mm/gup.c:faultin_page() (v6.18): handle_mm_fault() with FAULT_FLAG_WRITE for
    FOLL_WRITE and FAULT_FLAG_TRIED for FOLL_TRIED; VM_FAULT_ERROR becomes an errno
    (vm_fault_to_errno(): VM_FAULT_OOM -> -ENOMEM, VM_FAULT_SIGBUS -> -EFAULT). A fault that
    returns 0 without mapping the page (a device page split but not yet brought back, a
    folio locked by someone else) makes the caller look the page up again and retry
    (__get_user_pages(): ``goto retry``).
    """
    ret = handle_mm_fault(vma, address, (FAULT_FLAG_WRITE if write else 0)
                          | (FAULT_FLAG_TRIED if tried else 0))
    if ret & VM_FAULT_OOM:
        return -ENOMEM
    if ret & VM_FAULT_SIGBUS:
        return -EFAULT
    if ret & VM_FAULT_RETRY:
        return -EBUSY
    return 0


def fault_in(mm: MMStruct, vma: VMA, addr: int, write: bool,
             ready: Callable[[int], bool] | None = None, cpu: bool = False) -> int:
    """Look up ``addr``, fault, and look again until it is mapped (and writable for a
    write, and ``ready(addr)`` if given): the PFN. The retry loop of
    mm/gup.c:__get_user_pages() (``follow_page_mask()``, ``faultin_page()``, ``goto
    retry``), which a CPU access repeats the same way by re-executing the instruction.
    A fault that returned VM_FAULT_RETRY is retried with FAULT_FLAG_TRIED
    (__get_user_pages_locked() sets FOLL_TRIED; the CPU's retry in
    arch/x86/mm/fault.c:do_user_addr_fault() sets the same flag).
    MmError(ENOMEM) or MmError(EFAULT) when a fault fails (``cpu``: an access, so a
    BusError, the SIGBUS of an access past the end of a mapped file); MmError(EAGAIN)
    after FAULT_IN_TRIES faults without progress (where the kernel would keep looping).
    """
    tried = False
    for _ in range(FAULT_IN_TRIES + 1):
        got = follow_page(mm, addr)
        if got is not None and (got[1] or not write) and (ready is None or ready(addr)):
            return got[0]
        err = faultin_page(vma, addr, write, tried)
        if err == -EBUSY:
            tried = True
        elif err == -ENOMEM:
            raise MmError(ENOMEM, f"out of memory faulting {addr:#x}")
        elif err and cpu:
            raise BusError(f"{addr:#x} is past the end of the mapped file")
        elif err:
            raise MmError(EFAULT, f"SIGBUS: the fault at {addr:#x} failed")
    raise MmError(EAGAIN, f"fault at {addr:#x} made no progress in {FAULT_IN_TRIES} tries")


def _try_grab_folio(folio: Folio) -> None:
    """try_grab_folio(folio, 1, FOLL_PIN)."""
    if folio_test_large(folio):
        folio_ref_add(folio, 1)
        folio.m.mem._pincount[folio.pfn] += 1
    else:
        folio_ref_add(folio, GUP_PIN_COUNTING_BIAS)
    folio.m.pins[folio.pfn] += 1


def pin_user_pages(mm: MMStruct, start: int, nr_pages: int) -> list[int]:
    """pin_user_pages() - pin ``nr_pages`` pages from ``start`` for writing; their PFNs.

    Models: mm/gup.c:pin_user_pages() (v6.18).

    Raises MmError(EFAULT), changing nothing, if a page is outside any writable VMA.
    Each page is looked up and faulted until it is mapped writable (:func:`fault_in`).
    Should a fault fail (-ENOMEM, -EFAULT), the pins already taken are released again.
    """
    for i in range(nr_pages):
        addr = start + i * PAGE_SIZE
        vma = mm.find_vma(addr)
        if vma is None or not vma.writable:
            raise MmError(EFAULT, f"pin: {addr:#x} is not in a writable mapping")
    pfns: list[int] = []
    try:
        for i in range(nr_pages):
            addr = start + i * PAGE_SIZE
            vma = mm.find_vma(addr)
            assert vma is not None
            pfn = fault_in(mm, vma, addr, True)
            _try_grab_folio(page_folio(mm.m, pfn))
            pfns.append(pfn)
    except MmError:
        for pfn in pfns:
            unpin_user_page(mm.m, pfn)
        raise
    mm.m.trace.emit("pin_user_pages", changes={"pinned": len(pfns)}, start=start,
                    nr_pages=nr_pages)
    return pfns


def unpin_user_page(m: Machine, pfn: int) -> None:
    """unpin_user_page() - drop one FOLL_PIN pin (gup_put_folio()).

    Models: mm/gup.c:unpin_user_page() (v6.18).
    """
    folio = page_folio(m, pfn)
    m.pins[folio.pfn] -= 1
    if not m.pins[folio.pfn]:
        del m.pins[folio.pfn]
    if folio_test_large(folio):
        m.mem._pincount[folio.pfn] -= 1
        folio_put(folio)
    else:
        folio_ref_sub(folio, GUP_PIN_COUNTING_BIAS - 1)
        folio_put(folio)
