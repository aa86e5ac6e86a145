"""hmm_range_fault() (mm/hmm.c): what a driver reads from the CPU page tables, and what it
faults in. Expected values: mm/hmm.c and include/linux/hmm.h (research notes device_api
§1, R1, R2); no device memory on the lab machine, so source only.
"""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.hmm import (
    HMM_PFN_ERROR,
    HMM_PFN_REQ_FAULT,
    HMM_PFN_REQ_WRITE,
    HMM_PFN_VALID,
    HMM_PFN_WRITE,
    HmmRange,
    hmm_pfn_to_map_order,
    hmm_pfn_to_pfn,
    hmm_range_fault,
)
from pyfolio.mm.mmu_notifier import (
    MmuIntervalNotifier,
    MmuIntervalNotifierOps,
    mmu_interval_notifier_insert,
    mmu_interval_read_begin,
    mmu_interval_read_retry,
    mmu_interval_set_seq,
)
from pyfolio.mm.rmap import make_device_exclusive
from pyfolio.sim.errors import EBUSY, EFAULT, EPERM
from pyfolio.system import Process


def _range(p: Process, start: int, npages: int, flags: int = 0, owner: object = None
           ) -> HmmRange:
    return HmmRange(start=start, end=start + npages * 4 * KiB, hmm_pfns=[0] * npages,
                    default_flags=flags, dev_private_owner=owner, mm=p.mm)


def test_snapshot_without_faulting() -> None:
    # default_flags 0: nothing is faulted; none -> 0, zero page VALID, written WRITE
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.read(a + 4 * KiB)
    p.write(a + 8 * KiB, 1)
    before = snapshot(m.machine)
    rng = _range(p, a, 4)
    assert hmm_range_fault(rng) == 0 and snapshot(m.machine) == before
    v = rng.hmm_pfns
    assert v[0] == 0 and v[3] == 0
    assert v[1] == HMM_PFN_VALID | m.machine.zero_pfn  # the zero page: valid, not write
    assert v[2] == HMM_PFN_VALID | HMM_PFN_WRITE | p.pfn_at(a + 8 * KiB)


def test_req_fault_and_req_write_fault_the_pages_in() -> None:
    # HMM_PFN_REQ_FAULT: a read fault (the zero page); with REQ_WRITE a write fault (COW)
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    rng = _range(p, a, 4, HMM_PFN_REQ_FAULT)
    assert hmm_range_fault(rng) == 0
    assert all(v == HMM_PFN_VALID | m.machine.zero_pfn for v in rng.hmm_pfns)
    rng = _range(p, a, 4, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE)
    assert hmm_range_fault(rng) == 0
    assert all(v & (HMM_PFN_VALID | HMM_PFN_WRITE) == HMM_PFN_VALID | HMM_PFN_WRITE
               and hmm_pfn_to_pfn(v) == p.pfn_at(a + i * 4 * KiB)
               for i, v in enumerate(rng.hmm_pfns))
    assert p.status()["RssAnon"] == 16 and m.check() == []


def test_a_pmd_reports_order_9_on_every_page() -> None:
    m = System(ram="64M")
    p, a = m.spawn_with_thp()
    rng = _range(p, a + 8 * KiB, 4, HMM_PFN_REQ_FAULT)
    assert hmm_range_fault(rng) == 0
    head = p.folio_at(a).pfn
    for i, v in enumerate(rng.hmm_pfns):
        assert hmm_pfn_to_map_order(v) == 9 and hmm_pfn_to_pfn(v) == head + 2 + i
        assert v & HMM_PFN_WRITE


def test_prot_none_and_holes_are_errors_or_efault() -> None:
    # hmm_vma_walk_test(): no VM_READ -> -EFAULT when a fault is asked for, else ERROR;
    # hmm_vma_walk_hole() with no VMA the same (hmm-tests anon_read_prot: -EFAULT)
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.touch(a, 16 * KiB)
    p.mprotect(a + 4 * KiB, 4 * KiB, "none")
    p.munmap(a + 12 * KiB, 4 * KiB)
    rng = _range(p, a, 4)
    assert hmm_range_fault(rng) == 0
    assert [v & (HMM_PFN_VALID | HMM_PFN_ERROR) for v in rng.hmm_pfns] == [
        HMM_PFN_VALID, HMM_PFN_ERROR, HMM_PFN_VALID, HMM_PFN_ERROR]
    before = snapshot(m.machine)
    for start, n in ((a, 4), (a + 4 * KiB, 1), (a + 12 * KiB, 1)):
        assert hmm_range_fault(_range(p, start, n, HMM_PFN_REQ_FAULT)) == -EFAULT
    assert snapshot(m.machine) == before


def test_a_write_to_a_read_only_vma_is_eperm() -> None:
    # hmm_vma_fault(): HMM_NEED_WRITE_FAULT without VM_WRITE -> -EPERM (anon_write_prot)
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(16 * KiB, "r")
    assert hmm_range_fault(_range(p, a, 1, HMM_PFN_REQ_FAULT)) == 0  # a read: zero page
    before = snapshot(m.machine)
    assert hmm_range_fault(_range(p, a, 4, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE)) == -EPERM
    assert snapshot(m.machine) == before


def test_own_device_private_pages_are_reported_others_faulted_back() -> None:
    # hmm_vma_handle_pte()/_absent_pmd(): dev_private_owner's pages: VALID (+WRITE), device
    # PFN, no fault (order 9 for a device PMD); another owner: with REQ_FAULT migrated back
    m = System(ram="64M", device="16M")
    dev = m.device
    p, a = m.spawn_with_thp(4 * MiB)
    p.touch(a + 2 * MiB, 16 * KiB)
    dev.migrate_to_device(p, a, 2 * MiB)
    dev.migrate_to_device(p, a + 2 * MiB, 16 * KiB)
    owner = dev.driver
    rng = _range(p, a, 2, HMM_PFN_REQ_FAULT, owner)
    assert hmm_range_fault(rng) == 0
    assert all(v & HMM_PFN_VALID and hmm_pfn_to_map_order(v) == 9 for v in rng.hmm_pfns)
    assert hmm_pfn_to_pfn(rng.hmm_pfns[1]) == p.lookup(a).pfn + 1
    rng = _range(p, a + 2 * MiB, 4, HMM_PFN_REQ_FAULT, owner)
    assert hmm_range_fault(rng) == 0
    assert [hmm_pfn_to_pfn(v) for v in rng.hmm_pfns] == [
        p.lookup(a + 2 * MiB + i * 4 * KiB).pfn for i in range(4)]
    assert p.lookup(a + 2 * MiB).kind == "device_private"  # not faulted
    snap = _range(p, a + 2 * MiB, 4, 0, object())  # another owner, no fault: 0
    assert hmm_range_fault(snap) == 0 and snap.hmm_pfns == [0] * 4
    other = _range(p, a + 2 * MiB, 4, HMM_PFN_REQ_FAULT, object())
    assert hmm_range_fault(other) == 0
    assert p.lookup(a + 2 * MiB).kind == "page" and m.machine.is_ram(
        hmm_pfn_to_pfn(other.hmm_pfns[0]))
    assert m.check() == []


def test_a_device_exclusive_entry_reads_0_or_is_restored() -> None:
    m = System(ram="64M")
    p = m.spawn()
    a = p.mmap(16 * KiB)
    p.write(a, 3)
    from pyfolio.include.linux.mm import folio_unlock, page_folio
    from pyfolio.mm.gup import put_user_page

    pfn = make_device_exclusive(p.mm, a, None)
    folio_unlock(page_folio(m.machine, pfn))
    put_user_page(m.machine, pfn)
    rng = _range(p, a, 1)
    assert hmm_range_fault(rng) == 0 and rng.hmm_pfns == [0]  # not present, no fault
    rng = _range(p, a, 1, HMM_PFN_REQ_FAULT)
    assert hmm_range_fault(rng) == 0 and hmm_pfn_to_pfn(rng.hmm_pfns[0]) == pfn
    assert p.lookup(a).kind == "page" and m.check() == []


def _set_seq(mni: MmuIntervalNotifier, range_: object, cur_seq: int) -> bool:
    mmu_interval_set_seq(mni, cur_seq)  # what a driver's invalidate op does
    return True


@pytest.mark.parametrize("moved", [False, True])
def test_an_invalidation_since_read_begin_is_ebusy(moved: bool) -> None:
    # mmu_interval_check_retry() at the top of the loop: -EBUSY, nothing read
    m = System(ram="64M")
    p, a = m.spawn_with_thp()
    sub = MmuIntervalNotifier(MmuIntervalNotifierOps(_set_seq))
    mmu_interval_notifier_insert(sub, p.mm, a, 2 * MiB, sub.ops)
    seq = mmu_interval_read_begin(sub)
    if moved:  # MADV_DONTNEED of another page of the range: MMU_NOTIFY_CLEAR
        p.madvise(a + MiB, 4 * KiB, "dontneed")
    rng = HmmRange(notifier=sub, notifier_seq=seq, start=a, end=a + 4 * KiB, hmm_pfns=[0])
    assert hmm_range_fault(rng) == (-EBUSY if moved else 0)
    assert bool(rng.hmm_pfns[0]) is not moved
    assert mmu_interval_read_retry(sub, seq) is moved
