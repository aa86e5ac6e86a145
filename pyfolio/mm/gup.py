"""GUP pins: pin_user_pages() and unpin_user_pages().

Models: mm/gup.c (v6.18): FOLL_PIN|FOLL_WRITE first faults each page in for writing
(breaking COW, so the pinned page is exclusive to the process), then try_grab_folio()
takes the pin: on a large folio ``_refcount`` +1 and ``_pincount`` +1; on a small folio
``_refcount`` + GUP_PIN_COUNTING_BIAS (1024).
"""

from __future__ import annotations

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
from pyfolio.include.linux.mm_types import MMStruct
from pyfolio.mm.memory import FAULT_FLAG_WRITE, VM_FAULT_OOM, handle_mm_fault
from pyfolio.sim.errors import EFAULT, ENOMEM, MmError

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine
from pyfolio.arch.x86.pgtable import _PAGE_PRESENT, _PAGE_RW, pmd_leaf, pte_pfn, walk
from pyfolio.sim.units import PAGE_SIZE, PMD_SIZE

__all__ = ["pin_user_pages", "unpin_user_page", "follow_page"]


def follow_page(mm: MMStruct, addr: int) -> tuple[int, bool] | None:
    """follow_page_mask() - the PFN mapped at ``addr`` and whether it is writable.

    Models: mm/gup.c:follow_page_mask() (v6.18).
    """
    w = walk(mm.m, mm.pgd, addr)
    if not w.raw & _PAGE_PRESENT:
        return None
    if w.level == "pmd" and pmd_leaf(w.raw):
        return pte_pfn(w.raw) + ((addr & (PMD_SIZE - 1)) >> 12), bool(w.raw & _PAGE_RW)
    if w.level != "pte":
        return None
    return pte_pfn(w.raw), bool(w.raw & _PAGE_RW)


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
    Should a fault fail (-ENOMEM), the pins already taken are released again.
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
            got = follow_page(mm, addr)
            if got is None or not got[1]:
                if handle_mm_fault(vma, addr, FAULT_FLAG_WRITE) & VM_FAULT_OOM:
                    # faultin_page(): VM_FAULT_OOM -> -ENOMEM
                    raise MmError(ENOMEM, f"pin: out of memory faulting {addr:#x} in")
                got = follow_page(mm, addr)
            assert got is not None
            _try_grab_folio(page_folio(mm.m, got[0]))
            pfns.append(got[0])
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
