"""GUP: get_user_pages() and pin_user_pages(), with the FOLL_* flags, and their release.

Models: mm/gup.c (v6.18; read in the linux-mm tree, which batches follow_page_pte(), and
followed one page at a time as 6.18 does): is_valid_gup_args() (-EINVAL), the VMA checks
(check_vma_flags(): -EFAULT without FOLL_FORCE for a write to a read-only VMA or any access
to a PROT_NONE one), the follow/fault loop of __get_user_pages() (a page that is missing,
read-only for FOLL_WRITE, or not present at all, such as a device-private page, is faulted
in first: the fault migrates a device-private page back to RAM), try_grab_folio() (FOLL_GET:
``_refcount`` +1 on the folio; FOLL_PIN: on a large folio ``_refcount`` +1 and
``_pincount`` +1, on a small one ``_refcount`` + GUP_PIN_COUNTING_BIAS (1024), nothing on the
zero page), and FOLL_LONGTERM's check_and_migrate_movable_pages() (folios a long-term pin must
not hold where they are are migrated and the pin retried; none exist in the simulator).

Simplifications: a range with a page outside any VMA, or one check_vma_flags() refuses, fails
with -EFAULT before anything is taken (the kernel returns how many pages it got before the
bad one); FOLL_PIN needs FOLL_WRITE (a read-only pin of a shared anonymous page takes an
unsharing fault, FAULT_FLAG_UNSHARE, which is not modelled); no gup_fast (the result is the
same: gup_fast falls back to this path for anything it cannot take). :func:`fault_in` is the
loop both GUP and a CPU access (the facade's ``Process._fault``) run: look the page up, fault,
look again, until the entry is usable.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import _PAGE_RW, pmd_leaf, pte_pfn, pte_present, walk
from pyfolio.include.linux.mm import (
    GUP_PIN_COUNTING_BIAS,
    Folio,
    folio_is_longterm_pinnable,
    folio_put_refs,
    folio_ref_add,
    folio_ref_count,
    folio_ref_sub,
    folio_test_anon,
    folio_test_large,
    is_zero_folio,
    page_folio,
)
from pyfolio.include.linux.mm_types import (
    FAULT_FLAG_TRIED,
    FAULT_FLAG_WRITE,
    VM,
    VM_FAULT_OOM,
    VM_FAULT_RETRY,
    VM_FAULT_SIGBUS,
    VMA,
    MMStruct,
)
from pyfolio.mm.memory import handle_mm_fault
from pyfolio.sim.errors import EAGAIN, EBUSY, EFAULT, EINVAL, ENOMEM, BusError, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["FOLL", "FOLL_WRITE", "FOLL_GET", "FOLL_FORCE", "FOLL_LONGTERM", "FOLL_PIN",
           "follow_page", "check_vma_flags", "can_follow_write_pte", "is_valid_gup_args",
           "try_grab_folio", "gup_put_folio", "get_user_pages", "pin_user_pages",
           "unpin_user_page",
           "put_user_page", "check_and_migrate_movable_pages", "faultin_page", "fault_in",
           "FAULT_IN_TRIES"]


class FOLL(enum.IntFlag):
    """gup_flags: the public ones of include/linux/mm_types.h and the internal ones of
    mm/internal.h (FOLL_PIN and below), values as in v6.18."""

    WRITE = 1 << 0
    GET = 1 << 1
    DUMP = 1 << 2
    FORCE = 1 << 3
    NOWAIT = 1 << 4
    NOFAULT = 1 << 5
    HWPOISON = 1 << 6
    ANON = 1 << 7
    LONGTERM = 1 << 8
    SPLIT_PMD = 1 << 9
    PCI_P2PDMA = 1 << 10
    INTERRUPTIBLE = 1 << 11
    HONOR_NUMA_FAULT = 1 << 12
    TOUCH = 1 << 16
    TRIED = 1 << 17
    REMOTE = 1 << 18
    PIN = 1 << 19
    FAST_ONLY = 1 << 20
    UNLOCKABLE = 1 << 21
    MADV_POPULATE = 1 << 22


FOLL_WRITE, FOLL_GET, FOLL_FORCE = FOLL.WRITE, FOLL.GET, FOLL.FORCE
FOLL_LONGTERM, FOLL_PIN = FOLL.LONGTERM, FOLL.PIN
_INTERNAL = FOLL.TOUCH | FOLL.TRIED | FOLL.REMOTE | FOLL.PIN | FOLL.FAST_ONLY | \
    FOLL.UNLOCKABLE | FOLL.MADV_POPULATE
#: how often :func:`fault_in` faults before it gives up (the kernel loops until the fault
#: makes progress or a fatal signal arrives; every fault here makes progress within two)
FAULT_IN_TRIES = 4


def follow_page(mm: MMStruct, addr: int) -> tuple[int, bool] | None:
    """follow_page_mask() - the PFN mapped at ``addr`` and whether it is writable; None
    when nothing present maps it (none, or a swap-format entry: migration,
    device-private, device-exclusive). A PROT_NONE entry is followed
    (gup_can_follow_protnone() without FOLL_HONOR_NUMA_FAULT).

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


def is_valid_gup_args(gup_flags: int, to_set: int) -> int:
    """is_valid_gup_args() - the flags GUP runs with, or -EINVAL: no internal flag from the
    caller, FOLL_GET and FOLL_PIN not both, FOLL_LONGTERM only with FOLL_PIN.

    Models: mm/gup.c:is_valid_gup_args() (v6.18).
    """
    if gup_flags & _INTERNAL:
        return -EINVAL
    gup_flags |= to_set
    if gup_flags & (FOLL_PIN | FOLL_GET) == FOLL_PIN | FOLL_GET:
        return -EINVAL
    if gup_flags & FOLL_LONGTERM and not gup_flags & FOLL_PIN:
        return -EINVAL
    return gup_flags


def check_vma_flags(vma: VMA, gup_flags: int) -> int:
    """check_vma_flags() - may GUP take pages of ``vma`` with these flags? 0 or -EFAULT.

    Models: mm/gup.c:check_vma_flags() (v6.18) for private anonymous VMAs: a write to a VMA
    without VM_WRITE needs FOLL_FORCE (allowed on a COW mapping); a read of a VMA without
    VM_READ (PROT_NONE) needs FOLL_FORCE and VM_MAYREAD.
    """
    flags = vma.vm_flags
    if gup_flags & FOLL_WRITE:
        if not flags & VM.WRITE and not (gup_flags & FOLL_FORCE and flags & VM.MAYWRITE):
            return -EFAULT  # FOLL_FORCE: is_cow_mapping() (private and VM_MAYWRITE)
    elif not flags & VM.READ and not (gup_flags & FOLL_FORCE and flags & VM.MAYREAD):
        return -EFAULT
    return 0


def try_grab_folio(folio: Folio, refs: int, flags: int) -> int:
    """try_grab_folio() - take ``refs`` references for GUP; 0 or -ENOMEM (a folio being
    freed). The references are the caller's (recorded in ``extra_refs`` for FOLL_GET, in
    ``m.pins`` for FOLL_PIN, so the invariant checker accounts for them).

    Models: mm/gup.c:try_grab_folio() (v6.18): FOLL_GET folio_ref_add(refs); FOLL_PIN on the
    zero folio nothing, on a large folio ``_refcount`` and ``_pincount`` += refs, on a small
    one ``_refcount`` += refs * GUP_PIN_COUNTING_BIAS.
    """
    m = folio.m
    if folio_ref_count(folio) <= 0:
        return -ENOMEM
    if flags & FOLL_GET:
        folio_ref_add(folio, refs)
        m.mem.extra_refs[folio.pfn] += refs
    elif flags & FOLL_PIN:
        if is_zero_folio(folio):
            return 0
        if folio_test_large(folio):
            folio_ref_add(folio, refs)
            m.mem._pincount[folio.pfn] += refs
        else:
            folio_ref_add(folio, refs * GUP_PIN_COUNTING_BIAS)
        m.pins[folio.pfn] += refs
    return 0


def gup_put_folio(folio: Folio, refs: int, flags: int) -> None:
    """gup_put_folio() - drop what try_grab_folio() took.

    Models: mm/gup.c:gup_put_folio() (v6.18).
    """
    m = folio.m
    if flags & FOLL_PIN:
        if is_zero_folio(folio):
            return
        m.pins[folio.pfn] -= refs
        if not m.pins[folio.pfn]:
            del m.pins[folio.pfn]
        if folio_test_large(folio):
            m.mem._pincount[folio.pfn] -= refs
        else:
            folio_ref_sub(folio, refs * (GUP_PIN_COUNTING_BIAS - 1))
    else:
        m.mem.extra_refs[folio.pfn] -= refs
    folio_put_refs(folio, refs)


def can_follow_write_pte(vma: VMA, pfn: int, writable: bool, gup_flags: int) -> bool:
    """can_follow_write_pte() - may FOLL_WRITE take this page: it is mapped writable, or
    FOLL_FORCE on a private VMA that may but does not allow writes, where the fault already
    broke COW (the page is anon and exclusive).

    Models: mm/gup.c:can_follow_write_pte() (v6.18; VM_SOFTDIRTY set, no uffd-wp).
    """
    if writable:
        return True
    if not gup_flags & FOLL_FORCE or not vma.vm_flags & VM.MAYWRITE or vma.writable:
        return False
    m = vma.vm_mm.m
    return folio_test_anon(page_folio(m, pfn)) and m.mem.test(pfn, PG.anon_exclusive)


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


def _split_pmd(vma: VMA, addr: int) -> None:
    """follow_pmd_mask() with FOLL_SPLIT_PMD: a PMD leaf at ``addr`` is split
    (split_huge_pmd()) and the page followed at the PTE level."""
    from pyfolio.mm.huge_memory import split_huge_pmd
    from pyfolio.mm.memory import pmd_slot

    slot = pmd_slot(vma.vm_mm, addr)
    if slot is not None and pmd_leaf(int(vma.vm_mm.m.pgtables[slot[0]][slot[1]])):
        split_huge_pmd(vma, slot, addr)


def _faultin(mm: MMStruct, vma: VMA, addr: int, gup_flags: int) -> int:
    """The follow/fault loop of __get_user_pages() for one page: its PFN (as
    :func:`fault_in`, with can_follow_write_pte() deciding whether a write may take it)."""
    write = bool(gup_flags & FOLL_WRITE)
    tried = False
    for _ in range(FAULT_IN_TRIES + 1):
        if gup_flags & FOLL.SPLIT_PMD:
            _split_pmd(vma, addr)
        got = follow_page(mm, addr)
        if got is not None and (not write or can_follow_write_pte(vma, got[0], got[1],
                                                                   gup_flags)):
            return got[0]
        err = faultin_page(vma, addr, write, tried)
        if err == -EBUSY:  # VM_FAULT_RETRY: again with FOLL_TRIED
            tried = True
            continue
        if err == -ENOMEM:
            raise MmError(ENOMEM, f"GUP: out of memory faulting {addr:#x} in")
        if err:
            raise MmError(EFAULT, f"GUP: the fault at {addr:#x} failed (SIGBUS)")
    raise MmError(EAGAIN, f"GUP: the fault at {addr:#x} made no progress")


def __get_user_pages(mm: MMStruct, start: int, nr_pages: int, gup_flags: int) -> list[int]:
    """__get_user_pages() - look up, fault in and grab each page; the PFNs.

    Models: mm/gup.c:__get_user_pages() (v6.18). MmError(EFAULT), nothing taken, when a
    page has no VMA or check_vma_flags() refuses; MmError(ENOMEM) when a fault fails (the
    references already taken are dropped again).
    """
    if gup_flags & FOLL_PIN and not gup_flags & FOLL_WRITE:
        raise MmError(EINVAL, "GUP: FOLL_PIN without FOLL_WRITE (an unsharing fault) is not "
                      "modelled")
    for i in range(nr_pages):
        addr = start + i * PAGE_SIZE
        vma = mm.find_vma(addr)
        if vma is None or check_vma_flags(vma, gup_flags):
            raise MmError(EFAULT, f"GUP: {addr:#x} is not mapped with the access asked for "
                          f"(check_vma_flags(), {FOLL(gup_flags)!r})")
    pfns: list[int] = []
    try:
        for i in range(nr_pages):
            addr = start + i * PAGE_SIZE
            vma = mm.find_vma(addr)
            assert vma is not None
            pfn = _faultin(mm, vma, addr, gup_flags)
            if try_grab_folio(page_folio(mm.m, pfn), 1, gup_flags):
                raise MmError(ENOMEM, f"GUP: folio at {pfn:#x} is being freed")
            pfns.append(pfn)
    except MmError:
        for pfn in pfns:
            gup_put_folio(page_folio(mm.m, pfn), 1, gup_flags)
        raise
    return pfns


def check_and_migrate_movable_pages(m: Machine, pfns: list[int], gup_flags: int) -> int:
    """check_and_migrate_movable_pages() - for FOLL_LONGTERM: 0 when every folio may stay
    pinned where it is (folio_is_longterm_pinnable()); otherwise the pins are dropped, the
    folios migrated (collect_longterm_unpinnable_folios(),
    migrate_longterm_unpinnable_folios()) and -EAGAIN makes the caller pin again.

    Models: mm/gup.c:check_and_migrate_movable_pages() (v6.18). The simulator's folios are
    all pinnable (no ZONE_MOVABLE, CMA or device-coherent memory; device-private pages
    were migrated back by the fault before they were pinned), so this returns 0; an
    unpinnable folio is MmError(EBUSY-like EAGAIN) as not modelled.
    """
    bad = [pfn for pfn in pfns if not folio_is_longterm_pinnable(page_folio(m, pfn))]
    if bad:
        raise MmError(EAGAIN, f"GUP: migrating unpinnable folios ({bad[0]:#x}) is not modelled")
    return 0


def _gup_longterm_locked(mm: MMStruct, start: int, nr_pages: int, gup_flags: int,
                         what: str) -> list[int]:
    """__gup_longterm_locked(): __get_user_pages(); with FOLL_LONGTERM,
    check_and_migrate_movable_pages() until it no longer asks to retry."""
    pfns = __get_user_pages(mm, start, nr_pages, gup_flags)
    if gup_flags & FOLL_LONGTERM:
        check_and_migrate_movable_pages(mm.m, pfns, gup_flags)
    key = "pinned" if gup_flags & FOLL_PIN else "got"
    mm.m.trace.emit(what, changes={key: len(pfns)}, start=start, nr_pages=nr_pages,
                    gup_flags=int(gup_flags))
    return pfns


def get_user_pages(mm: MMStruct, start: int, nr_pages: int, gup_flags: int) -> list[int]:
    """get_user_pages() - FOLL_GET references on ``nr_pages`` pages from ``start``; their
    PFNs, to be released with put_page() (:func:`put_user_page`).

    Models: mm/gup.c:get_user_pages() (v6.18; it acts on current->mm, passed here).
    MmError(EINVAL) for invalid flags (is_valid_gup_args()), EFAULT for a page GUP may not
    take.
    """
    flags = is_valid_gup_args(gup_flags, FOLL_GET)
    if flags < 0:
        raise MmError(EINVAL, f"get_user_pages: invalid gup_flags {gup_flags:#x}")
    return _gup_longterm_locked(mm, start, nr_pages, flags, "get_user_pages")


def pin_user_pages(mm: MMStruct, start: int, nr_pages: int,
                   gup_flags: int = FOLL_WRITE) -> list[int]:
    """pin_user_pages() - FOLL_PIN pins on ``nr_pages`` pages from ``start`` (FOLL_WRITE by
    default: each page is faulted in for writing, which breaks COW, so the pinned page is
    exclusive to the process); their PFNs, to be released with unpin_user_page().

    Models: mm/gup.c:pin_user_pages() (v6.18). MmError(EINVAL) for invalid flags,
    MmError(EFAULT), changing nothing, if a page is outside any VMA GUP may write to;
    should a fault fail (-ENOMEM), the pins already taken are released again.
    """
    flags = is_valid_gup_args(gup_flags, FOLL_PIN)
    if flags < 0:
        raise MmError(EINVAL, f"pin_user_pages: invalid gup_flags {gup_flags:#x}")
    return _gup_longterm_locked(mm, start, nr_pages, flags, "pin_user_pages")


def unpin_user_page(m: Machine, pfn: int) -> None:
    """unpin_user_page() - drop one FOLL_PIN pin (gup_put_folio()).

    Models: mm/gup.c:unpin_user_page() (v6.18).
    """
    gup_put_folio(page_folio(m, pfn), 1, FOLL_PIN)


def put_user_page(m: Machine, pfn: int) -> None:
    """put_page() of a page get_user_pages() returned: drop the FOLL_GET reference.

    Models: include/linux/mm.h:put_page() (v6.18), as GUP's callers release FOLL_GET pages.
    """
    gup_put_folio(page_folio(m, pfn), 1, FOLL_GET)
