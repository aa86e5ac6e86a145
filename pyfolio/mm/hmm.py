"""hmm_range_fault(): a device driver reads (and faults in) the CPU page tables of a range.

Models: mm/hmm.c and include/linux/hmm.h (v6.18 with the 2025 device-private THP series;
read in gregkh/linux 5c40cd7d, the 6.16 form with hmm_vma_fault(), and in the series tree,
which adds hmm_vma_handle_absent_pmd()): hmm_range_fault(), the walk callbacks
hmm_vma_walk_test(), hmm_vma_walk_hole(), hmm_vma_walk_pmd(), hmm_vma_handle_pmd(),
hmm_vma_handle_absent_pmd(), hmm_vma_handle_pte(), the fault decision hmm_pte_need_fault() /
hmm_range_need_fault() and hmm_vma_fault().

The driver fills a :class:`HmmRange` (``hmm_pfns`` holds one input word per page: the
request flags, ``HMM_PFN_REQ_FAULT`` / ``HMM_PFN_REQ_WRITE``, masked with ``pfn_flags_mask``
and or-ed with ``default_flags``) and gets back one output word per page: ``HMM_PFN_VALID``
(and ``HMM_PFN_WRITE``) with the PFN and the mapping order (9 for a PMD), ``HMM_PFN_ERROR``
for what cannot be mapped (no VMA, PROT_NONE), or 0: not present, and no fault was asked
for. Device-private memory of the caller's own device (``dev_private_owner``) is reported
as it is, without a fault; anything else the request needs is faulted in first (a
device-private page of another device migrates back to RAM, a device-exclusive entry is
restored), after which the walk restarts where it stopped (-EBUSY inside the loop).

Simplifications: no PUD leaves or hugetlb; a migration entry never survives an operation
in the simulator, so the kernel's migration_entry_wait() branch cannot be reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_RW,
    _PAGE_SPECIAL,
    pmd_leaf,
    pmd_protnone,
    pte_pfn,
    pte_present,
    pte_protnone,
    swp_offset,
)
from pyfolio.include.linux.mm_types import VM, VMA, MMStruct
from pyfolio.include.linux.swapops import (
    is_device_exclusive_entry,
    is_device_private_entry,
    is_migration_entry,
    is_writable_device_private_entry,
)
from pyfolio.mm.memory import FAULT_FLAG_WRITE, VM_FAULT_OOM, VM_FAULT_SIGBUS, handle_mm_fault
from pyfolio.mm.mmu_notifier import MmuIntervalNotifier, mmu_interval_check_retry
from pyfolio.sim.errors import EBUSY, EFAULT, EPERM
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PMD_SIZE

__all__ = ["HMM_PFN_VALID", "HMM_PFN_WRITE", "HMM_PFN_ERROR", "HMM_PFN_DMA_MAPPED",
           "HMM_PFN_P2PDMA", "HMM_PFN_P2PDMA_BUS", "HMM_PFN_ORDER_SHIFT", "HMM_PFN_INOUT_FLAGS",
           "HMM_PFN_REQ_FAULT", "HMM_PFN_REQ_WRITE", "HMM_PFN_FLAGS", "HMM_RANGE_DEFAULT_TIMEOUT",
           "HMM_NEED_FAULT", "HMM_NEED_WRITE_FAULT", "HmmRange", "hmm_range_fault",
           "hmm_pfn_to_pfn", "hmm_pfn_to_map_order", "hmm_pte_need_fault",
           "hmm_range_need_fault", "hmm_vma_fault", "hmm_vma_walk_hole", "hmm_vma_walk_test",
           "hmm_vma_walk_pmd", "hmm_vma_handle_pmd", "hmm_vma_handle_absent_pmd",
           "hmm_vma_handle_pte"]

#: include/linux/hmm.h, BITS_PER_LONG 64: output flags at the top of each word
HMM_PFN_VALID = 1 << 63
HMM_PFN_WRITE = 1 << 62
HMM_PFN_ERROR = 1 << 61
#: sticky flags, carried from input to output
HMM_PFN_DMA_MAPPED = 1 << 60
HMM_PFN_P2PDMA = 1 << 59
HMM_PFN_P2PDMA_BUS = 1 << 58
HMM_PFN_ORDER_SHIFT = 64 - 11  # a 5-bit mapping order (hmm_pfn_to_map_order())
HMM_PFN_INOUT_FLAGS = HMM_PFN_DMA_MAPPED | HMM_PFN_P2PDMA | HMM_PFN_P2PDMA_BUS
#: input flags
HMM_PFN_REQ_FAULT = HMM_PFN_VALID
HMM_PFN_REQ_WRITE = HMM_PFN_WRITE
HMM_PFN_FLAGS = ((1 << 64) - 1) & ~((1 << HMM_PFN_ORDER_SHIFT) - 1)
#: ms a driver should keep retrying an invalidated range
HMM_RANGE_DEFAULT_TIMEOUT = 1000
#: mm/hmm.c: what a range needs
HMM_NEED_FAULT, HMM_NEED_WRITE_FAULT = 1 << 0, 1 << 1
_NEED_ALL = HMM_NEED_FAULT | HMM_NEED_WRITE_FAULT


@dataclass
class HmmRange:
    """struct hmm_range: [start, end) of ``notifier``'s mm, ``hmm_pfns`` one word per page
    (input: request flags; output: the result), ``default_flags`` and ``pfn_flags_mask``
    (the request is ``(hmm_pfns[i] & pfn_flags_mask) | default_flags``), and
    ``dev_private_owner`` (device-private pages of this pgmap owner are reported, not
    faulted). ``notifier`` is the driver's interval notifier (its ``mm`` is the one walked)
    and ``notifier_seq`` what mmu_interval_read_begin() returned; ``mm`` may be given
    directly when there is no notifier (then nothing can ask for a retry)."""

    notifier: MmuIntervalNotifier | None = None
    notifier_seq: int = 0
    start: int = 0
    end: int = 0
    hmm_pfns: list[int] = field(default_factory=list)
    default_flags: int = 0
    pfn_flags_mask: int = 0
    dev_private_owner: object = None
    mm: MMStruct | None = None


@dataclass
class _HmmVmaWalk:
    """struct hmm_vma_walk: the range and where a fault restarts the walk (``last``)."""

    range: HmmRange
    last: int


def hmm_pfn_to_pfn(hmm_pfn: int) -> int:
    """hmm_pfn_to_page() as a PFN: the low bits below the flags.

    Models: include/linux/hmm.h:hmm_pfn_to_page() (v6.18).
    """
    return hmm_pfn & ~HMM_PFN_FLAGS


def hmm_pfn_to_map_order(hmm_pfn: int) -> int:
    """hmm_pfn_to_map_order() - the order of the CPU mapping (9 for a PMD).

    Models: include/linux/hmm.h:hmm_pfn_to_map_order() (v6.18).
    """
    return (hmm_pfn >> HMM_PFN_ORDER_SHIFT) & 0x1F


def _fill(rng: HmmRange, addr: int, end: int, cpu_flags: int) -> int:
    """hmm_pfns_fill(): every word of [addr, end) keeps its sticky flags, gets cpu_flags."""
    i = (addr - rng.start) >> PAGE_SHIFT
    for k in range(i, i + ((end - addr) >> PAGE_SHIFT)):
        rng.hmm_pfns[k] = (rng.hmm_pfns[k] & HMM_PFN_INOUT_FLAGS) | cpu_flags
    return 0


def hmm_pte_need_fault(rng: HmmRange, pfn_req_flags: int, cpu_flags: int) -> int:
    """hmm_pte_need_fault() - HMM_NEED_* for one page: nothing unless the request has
    REQ_FAULT; a write fault when REQ_WRITE and the CPU entry is not writable; a fault
    when the CPU entry is not valid.

    Models: mm/hmm.c:hmm_pte_need_fault() (v6.18).
    """
    req = (pfn_req_flags & rng.pfn_flags_mask) | rng.default_flags
    if not req & HMM_PFN_REQ_FAULT:
        return 0
    if req & HMM_PFN_REQ_WRITE and not cpu_flags & HMM_PFN_WRITE:
        return HMM_NEED_FAULT | HMM_NEED_WRITE_FAULT
    if not cpu_flags & HMM_PFN_VALID:
        return HMM_NEED_FAULT
    return 0


def hmm_range_need_fault(rng: HmmRange, first: int, npages: int, cpu_flags: int) -> int:
    """hmm_range_need_fault() - HMM_NEED_* for ``npages`` words from index ``first``: 0 at
    once when neither default_flags nor pfn_flags_mask can ask for a fault.

    Models: mm/hmm.c:hmm_range_need_fault() (v6.18).
    """
    if not (rng.default_flags | rng.pfn_flags_mask) & HMM_PFN_REQ_FAULT:
        return 0
    need = 0
    for k in range(first, first + npages):
        need |= hmm_pte_need_fault(rng, rng.hmm_pfns[k], cpu_flags)
        if need == _NEED_ALL:
            break
    return need


def hmm_vma_fault(hvw: _HmmVmaWalk, vma: VMA, addr: int, end: int, required: int) -> int:
    """hmm_vma_fault() - fault every page of [addr, end) in (FAULT_FLAG_REMOTE, a write
    fault for HMM_NEED_WRITE_FAULT): -EPERM for a write to a VMA without VM_WRITE,
    -EFAULT if a fault fails, else -EBUSY so the walk restarts at ``addr``.

    Models: mm/hmm.c:hmm_vma_fault() (v6.18).
    """
    hvw.last = addr
    flags = 0
    if required & HMM_NEED_WRITE_FAULT:
        if not vma.vm_flags & VM.WRITE:
            return -EPERM
        flags |= FAULT_FLAG_WRITE
    for a in range(addr, end, PAGE_SIZE):
        if handle_mm_fault(vma, a, flags) & (VM_FAULT_OOM | VM_FAULT_SIGBUS):
            return -EFAULT
    return -EBUSY


def hmm_vma_walk_test(hvw: _HmmVmaWalk, vma: VMA, start: int, end: int) -> int:
    """hmm_vma_walk_test() - a VMA without VM_READ (PROT_NONE; or VM_IO/VM_PFNMAP, not
    modelled) cannot be mirrored: -EFAULT if any page asks for a fault, else every word
    HMM_PFN_ERROR and the VMA skipped (1). 0: walk it.

    Models: mm/hmm.c:hmm_vma_walk_test() (v6.18).
    """
    if vma.vm_flags & VM.READ:
        return 0
    rng = hvw.range
    if hmm_range_need_fault(rng, (start - rng.start) >> PAGE_SHIFT, (end - start) >> PAGE_SHIFT,
                            0):
        return -EFAULT
    _fill(rng, start, end, HMM_PFN_ERROR)
    return 1


def hmm_vma_walk_hole(hvw: _HmmVmaWalk, vma: VMA | None, addr: int, end: int) -> int:
    """hmm_vma_walk_hole() - nothing mapped: with no VMA, -EFAULT if a fault is asked for,
    else HMM_PFN_ERROR; inside a VMA, fault what is asked for, else 0.

    Models: mm/hmm.c:hmm_vma_walk_hole() (v6.18).
    """
    rng = hvw.range
    required = hmm_range_need_fault(rng, (addr - rng.start) >> PAGE_SHIFT,
                                    (end - addr) >> PAGE_SHIFT, 0)
    if vma is None:
        return -EFAULT if required else _fill(rng, addr, end, HMM_PFN_ERROR)
    if required:
        return hmm_vma_fault(hvw, vma, addr, end, required)
    return _fill(rng, addr, end, 0)


def _order_flags(order: int) -> int:
    """hmm_pfn_flags_order()."""
    return order << HMM_PFN_ORDER_SHIFT


def hmm_vma_handle_pmd(hvw: _HmmVmaWalk, vma: VMA, addr: int, end: int, pmd: int) -> int:
    """hmm_vma_handle_pmd() - a PMD leaf: every page VALID (WRITE if the PMD is writable)
    with order 9 and its PFN, unless a fault is needed (a PROT_NONE PMD is not valid).

    Models: mm/hmm.c:hmm_vma_handle_pmd() and pmd_to_hmm_pfn_flags() (v6.18).
    """
    rng = hvw.range
    first, npages = (addr - rng.start) >> PAGE_SHIFT, (end - addr) >> PAGE_SHIFT
    cpu_flags = 0 if pmd_protnone(pmd) else (
        HMM_PFN_VALID | (HMM_PFN_WRITE if pmd & _PAGE_RW else 0)
        | _order_flags(PMD_SHIFT - PAGE_SHIFT))
    required = hmm_range_need_fault(rng, first, npages, cpu_flags)
    if required:
        return hmm_vma_fault(hvw, vma, addr, end, required)
    pfn = pte_pfn(pmd) + ((addr & (PMD_SIZE - 1)) >> PAGE_SHIFT)
    for k in range(npages):
        rng.hmm_pfns[first + k] = (rng.hmm_pfns[first + k] & HMM_PFN_INOUT_FLAGS) \
            | (pfn + k) | cpu_flags
    return 0


def hmm_vma_handle_absent_pmd(hvw: _HmmVmaWalk, vma: VMA, addr: int, end: int,
                              pmd: int) -> int:
    """hmm_vma_handle_absent_pmd() - a non-present PMD: a device-private PMD of the
    caller's own device is reported (VALID, WRITE if writable, order 9, every page's
    device PFN); another device's is faulted when asked (migrate_to_ram); anything else
    asked for is -EFAULT, else HMM_PFN_ERROR.

    Models: mm/hmm.c:hmm_vma_handle_absent_pmd() (the device-private THP series).
    """
    from pyfolio.mm.memremap import page_pgmap

    rng = hvw.range
    m = vma.vm_mm.m
    first, npages = (addr - rng.start) >> PAGE_SHIFT, (end - addr) >> PAGE_SHIFT
    if is_device_private_entry(pmd) and \
            page_pgmap(m, swp_offset(pmd)).owner is rng.dev_private_owner:
        cpu_flags = HMM_PFN_VALID | _order_flags(PMD_SHIFT - PAGE_SHIFT) | (
            HMM_PFN_WRITE if is_writable_device_private_entry(pmd) else 0)
        pfn = swp_offset(pmd) + ((addr & (PMD_SIZE - 1)) >> PAGE_SHIFT)
        for k in range(npages):
            rng.hmm_pfns[first + k] = (rng.hmm_pfns[first + k] & HMM_PFN_INOUT_FLAGS) \
                | (pfn + k) | cpu_flags
        return 0
    required = hmm_range_need_fault(rng, first, npages, 0)
    if required:
        if is_device_private_entry(pmd):
            return hmm_vma_fault(hvw, vma, addr, end, required)
        return -EFAULT
    return _fill(rng, addr, end, HMM_PFN_ERROR)


def hmm_vma_handle_pte(hvw: _HmmVmaWalk, vma: VMA, addr: int, end: int, pte: int) -> int:
    """hmm_vma_handle_pte() - one PTE: none -> fault if asked, else 0; a device-private
    entry of the caller's device -> VALID (WRITE if writable) and the device PFN, no fault;
    another swap-format entry (another device's page, a device-exclusive entry) -> fault if
    asked, else 0; a present PTE -> VALID (WRITE) and its PFN (the zero page too), or a
    fault when a write is asked of a read-only PTE (a PROT_NONE one is not valid).

    Models: mm/hmm.c:hmm_vma_handle_pte() and pte_to_hmm_pfn_flags() (v6.18).
    """
    from pyfolio.mm.memremap import page_pgmap

    rng = hvw.range
    m = vma.vm_mm.m
    i = (addr - rng.start) >> PAGE_SHIFT
    req = rng.hmm_pfns[i]
    new = 0
    if pte == 0:
        required = hmm_pte_need_fault(rng, req, 0)
        if required:
            return hmm_vma_fault(hvw, vma, addr, end, required)
    elif not pte_present(pte):
        if is_device_private_entry(pte) and \
                page_pgmap(m, swp_offset(pte)).owner is rng.dev_private_owner:
            new = swp_offset(pte) | HMM_PFN_VALID | (
                HMM_PFN_WRITE if is_writable_device_private_entry(pte) else 0)
        else:
            required = hmm_pte_need_fault(rng, req, 0)
            if required:
                if is_device_private_entry(pte) or is_device_exclusive_entry(pte):
                    return hmm_vma_fault(hvw, vma, addr, end, required)
                assert not is_migration_entry(pte), "no migration entry outlives an operation"
                return -EFAULT
    else:
        cpu_flags = 0 if pte_protnone(pte) else (
            HMM_PFN_VALID | (HMM_PFN_WRITE if pte & _PAGE_RW else 0))
        required = hmm_pte_need_fault(rng, req, cpu_flags)
        if required:
            return hmm_vma_fault(hvw, vma, addr, end, required)
        special = pte & _PAGE_SPECIAL and pte_pfn(pte) != m.zero_pfn  # !vm_normal_page()
        new = HMM_PFN_ERROR if special else pte_pfn(pte) | cpu_flags
    rng.hmm_pfns[i] = (req & HMM_PFN_INOUT_FLAGS) | new
    return 0


def hmm_vma_walk_pmd(hvw: _HmmVmaWalk, vma: VMA, start: int, end: int) -> int:
    """hmm_vma_walk_pmd() - [start, end) inside one PMD: none -> hole; a non-present PMD
    -> hmm_vma_handle_absent_pmd(); a leaf -> hmm_vma_handle_pmd(); a table -> each PTE.

    Models: mm/hmm.c:hmm_vma_walk_pmd() (v6.18 with the series).
    """
    from pyfolio.mm.memory import pmd_slot, pte_slot

    m = vma.vm_mm.m
    slot = pmd_slot(vma.vm_mm, start)
    pmd = int(m.pgtables[slot[0]][slot[1]]) if slot is not None else 0
    if not pmd:
        return hmm_vma_walk_hole(hvw, vma, start, end)
    if not pmd & _PAGE_PRESENT and not pmd_leaf(pmd):
        assert not is_migration_entry(pmd), "no migration entry outlives an operation"
        return hmm_vma_handle_absent_pmd(hvw, vma, start, end, pmd)
    if pmd_leaf(pmd):
        return hmm_vma_handle_pmd(hvw, vma, start, end, pmd)
    for addr in range(start, end, PAGE_SIZE):
        pslot = pte_slot(vma.vm_mm, addr)
        assert pslot is not None
        r = hmm_vma_handle_pte(hvw, vma, addr, end, int(m.pgtables[pslot[0]][pslot[1]]))
        if r:
            return r
    return 0


def _walk_page_range(mm: MMStruct, start: int, end: int, hvw: _HmmVmaWalk) -> int:
    """walk_page_range() with hmm_walk_ops: holes between VMAs go to pte_hole with no VMA;
    each VMA is tested (test_walk), then walked PMD by PMD; the first error stops it."""
    addr = start
    while addr < end:
        vma = mm.find_vma(addr)
        if vma is None:
            after = [v.vm_start for v in mm.vmas_between(addr, end)]
            nxt = min(after) if after else end
            r = hmm_vma_walk_hole(hvw, None, addr, nxt)
            if r:
                return r
            addr = nxt
            continue
        hi = min(vma.vm_end, end)
        r = hmm_vma_walk_test(hvw, vma, addr, hi)
        if r < 0:
            return r
        if r == 0:
            a = addr
            while a < hi:
                nxt = min((a | (PMD_SIZE - 1)) + 1, hi)
                r = hmm_vma_walk_pmd(hvw, vma, a, nxt)
                if r:
                    return r
                a = nxt
        addr = hi
    return 0


def hmm_range_fault(rng: HmmRange) -> int:
    """hmm_range_fault() - fill ``rng.hmm_pfns`` from the CPU page tables, faulting in what
    the request asks for; 0, -EBUSY (an invalidation ran since ``notifier_seq``: the caller
    must start over with a new sequence number), -EFAULT (no VMA, PROT_NONE, or a fault
    failed) or -EPERM (a write asked of a read-only VMA).

    Models: mm/hmm.c:hmm_range_fault() (v6.18): loop { mmu_interval_check_retry() ->
    -EBUSY; walk_page_range() from ``last``; a fault inside ends the walk with -EBUSY and
    the walk restarts where it stopped }. Every word before ``last`` holds its output.
    """
    mm = rng.mm if rng.mm is not None or rng.notifier is None else rng.notifier.mm
    assert mm is not None
    hvw = _HmmVmaWalk(rng, rng.start)
    while True:
        if rng.notifier is not None and mmu_interval_check_retry(rng.notifier,
                                                                 rng.notifier_seq):
            return -EBUSY
        ret = _walk_page_range(mm, hvw.last, rng.end, hvw)
        if ret != -EBUSY:
            return ret
