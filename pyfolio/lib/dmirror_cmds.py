"""dmirror's mirror commands: the device reads, writes and snapshots a process's memory
through its own page table, filled by hmm_range_fault(), and takes pages for atomic access.

Models: lib/test_hmm.c (v6.18): dmirror_do_fault(), dmirror_range_fault(), dmirror_fault(),
dmirror_do_read(), dmirror_do_write(), dmirror_read(), dmirror_write() (HMM_DMIRROR_READ /
WRITE), dmirror_mkentry(), dmirror_snapshot() (HMM_DMIRROR_SNAPSHOT), dmirror_atomic_map(),
dmirror_exclusive() (HMM_DMIRROR_EXCLUSIVE), dmirror_check_atomic()
(HMM_DMIRROR_CHECK_EXCLUSIVE) and the ioctl's own checks in dmirror_fops_unlocked_ioctl();
the command numbers and HMM_DMIRROR_PROT_* bytes of lib/test_hmm_uapi.h.

Simplifications: a page's data is its frame's stamp (one value per page); the 1000 ms
timeouts are a number of tries; a range the walk (or make_device_exclusive()'s GUP) would
refuse somewhere is refused before anything is faulted in (see _rw() and
dmirror_exclusive()).

Place: the continuation of pyfolio/lib/dmirror.py (lib/test_hmm.c's driver is called
dmirror; a module named test_hmm*.py would be collected by pytest as a test file).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import folio_unlock, page_folio
from pyfolio.lib.dmirror import DPT_XA_TAG_ATOMIC, DPT_XA_TAG_WRITE, Dmirror, dmirror_fops_open
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
    ULONG_MAX,
    MmuIntervalNotifier,
    MmuIntervalNotifierOps,
    MmuNotifierRange,
    mmu_interval_notifier_insert,
    mmu_interval_notifier_remove,
    mmu_interval_read_begin,
    mmu_interval_read_retry,
    mmu_interval_set_seq,
)
from pyfolio.sim.errors import EBUSY, EFAULT, EINVAL, ENOENT, EPERM, MmError, VmWarning
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import MMStruct

__all__ = ["HmmDmirrorCmd", "DmirrorBounce",
           "HMM_DMIRROR_READ", "HMM_DMIRROR_WRITE", "HMM_DMIRROR_MIGRATE_TO_DEV",
           "HMM_DMIRROR_MIGRATE_TO_SYS", "HMM_DMIRROR_SNAPSHOT", "HMM_DMIRROR_EXCLUSIVE",
           "HMM_DMIRROR_CHECK_EXCLUSIVE", "HMM_DMIRROR_RELEASE", "HMM_DMIRROR_FLAGS",
           "HMM_DMIRROR_PROT_ERROR", "HMM_DMIRROR_PROT_NONE", "HMM_DMIRROR_PROT_READ",
           "HMM_DMIRROR_PROT_WRITE", "HMM_DMIRROR_PROT_PMD", "HMM_DMIRROR_PROT_PUD",
           "HMM_DMIRROR_PROT_ZERO", "HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL",
           "HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE", "HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL",
           "HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE", "DMIRROR_CHUNK_PAGES", "DMIRROR_RANGE_TRIES",
           "dmirror_do_fault", "dmirror_range_fault", "dmirror_fault", "dmirror_do_read",
           "dmirror_do_write", "dmirror_read", "dmirror_write", "dmirror_mkentry",
           "dmirror_snapshot", "dmirror_atomic_map", "dmirror_exclusive", "dmirror_check_atomic",
           "dmirror_fops_unlocked_ioctl"]

#: lib/test_hmm_uapi.h: the ioctl commands (_IOWR('H', n, struct hmm_dmirror_cmd))
HMM_DMIRROR_READ, HMM_DMIRROR_WRITE = 0x00, 0x01
HMM_DMIRROR_MIGRATE_TO_DEV, HMM_DMIRROR_MIGRATE_TO_SYS = 0x02, 0x03
HMM_DMIRROR_SNAPSHOT, HMM_DMIRROR_EXCLUSIVE, HMM_DMIRROR_CHECK_EXCLUSIVE = 0x04, 0x05, 0x06
HMM_DMIRROR_RELEASE, HMM_DMIRROR_FLAGS = 0x07, 0x08
#: lib/test_hmm_uapi.h: HMM_DMIRROR_SNAPSHOT's byte per page
HMM_DMIRROR_PROT_ERROR = 0xFF
HMM_DMIRROR_PROT_NONE = 0x00
HMM_DMIRROR_PROT_READ = 0x01
HMM_DMIRROR_PROT_WRITE = 0x02
HMM_DMIRROR_PROT_PMD = 0x04
HMM_DMIRROR_PROT_PUD = 0x08
HMM_DMIRROR_PROT_ZERO = 0x10
HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL = 0x20
HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE = 0x30
HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL = 0x40
HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE = 0x50
#: dmirror_fault() and dmirror_snapshot() work in chunks of ``unsigned long pfns[32]``
DMIRROR_CHUNK_PAGES = 32
#: dmirror_range_fault()/dmirror_range_snapshot() give up with -EBUSY after
#: HMM_RANGE_DEFAULT_TIMEOUT (1000 ms) of retries; here after this many tries
DMIRROR_RANGE_TRIES = 64


@dataclass
class HmmDmirrorCmd:
    """struct hmm_dmirror_cmd: ``addr`` and ``npages`` of the range; ``ptr`` the user
    buffer, one value per page (a page's data is its stamp here): read into by READ,
    EXCLUSIVE and the migrations, written from by WRITE; SNAPSHOT puts a byte per page;
    ``cpages`` and ``faults`` as the driver counts them."""

    addr: int
    npages: int
    ptr: list[int] = field(default_factory=list)
    cpages: int = 0
    faults: int = 0


@dataclass
class DmirrorBounce:
    """struct dmirror_bounce: the kernel-side copy of the user buffer for [addr, addr +
    size), and ``cpages``, the pages copied so far."""

    addr: int
    size: int
    data: list[int] = field(default_factory=list)
    cpages: int = 0

    def __post_init__(self) -> None:
        self.data = [0] * (self.size // PAGE_SIZE)


def _tag(entry: tuple[int, int] | None) -> int:
    """xa_pointer_tag(): the entry's tag; -1 for no entry."""
    return -1 if entry is None else int(entry[1])


def dmirror_do_fault(dmirror: Dmirror, mm: MMStruct, rng: HmmRange) -> int:
    """dmirror_do_fault() - store what hmm_range_fault() returned in the device page
    table: each page, WRITE-tagged when HMM_PFN_WRITE; 0, or -EFAULT when a write was
    asked and a page came back read-only.

    Models: lib/test_hmm.c:dmirror_do_fault() (v6.18). A device-private page of this
    device is stored as itself (its data is on the device); a system page as the page.
    """
    for i, hpfn in enumerate(rng.hmm_pfns):
        if hpfn & HMM_PFN_ERROR or not hpfn & HMM_PFN_VALID:
            raise VmWarning(f"dmirror_do_fault: hmm_range_fault() returned {hpfn:#x} "
                            "for a page it was asked to fault in")
        if hpfn & HMM_PFN_WRITE:
            tag = DPT_XA_TAG_WRITE
        elif rng.default_flags & HMM_PFN_REQ_WRITE:
            raise VmWarning("dmirror_do_fault: a write fault left a page read-only")
        else:
            tag = 0
        dmirror.pt[(mm.id, rng.start + i * PAGE_SIZE)] = (hmm_pfn_to_pfn(hpfn), tag)
    return 0


def dmirror_range_fault(dmirror: Dmirror, mm: MMStruct, rng: HmmRange) -> int:
    """dmirror_range_fault() - hmm_range_fault() until it returns with no invalidation
    since mmu_interval_read_begin(), then dmirror_do_fault() "under the mutex" after
    mmu_interval_read_retry() said the result is still good.

    Models: lib/test_hmm.c:dmirror_range_fault() (v6.18): -EBUSY from hmm_range_fault()
    (an invalidation while it faulted) or a stale result: start again with a new
    sequence number; -EBUSY after the timeout (here DMIRROR_RANGE_TRIES tries); any other
    error is returned.
    """
    assert rng.notifier is not None
    for _ in range(DMIRROR_RANGE_TRIES):
        rng.notifier_seq = mmu_interval_read_begin(rng.notifier)
        ret = hmm_range_fault(rng)
        if ret == -EBUSY:
            continue
        if ret:
            return ret
        if mmu_interval_read_retry(rng.notifier, rng.notifier_seq):
            continue
        return dmirror_do_fault(dmirror, mm, rng)
    return -EBUSY


def dmirror_fault(dmirror: Dmirror, mm: MMStruct, start: int, end: int, write: bool) -> int:
    """dmirror_fault() - fault [start, end) into the device page table, 32 pages at a time
    (HMM_PFN_REQ_FAULT, with HMM_PFN_REQ_WRITE for a write; device-private pages of this
    device are taken as they are); stops at the first error.

    Models: lib/test_hmm.c:dmirror_fault() (v6.18).
    """
    notifier = dmirror_fops_open(dmirror, mm)
    flags = HMM_PFN_REQ_FAULT | (HMM_PFN_REQ_WRITE if write else 0)
    addr = start
    while addr < end:
        nxt = min(end, addr + DMIRROR_CHUNK_PAGES * PAGE_SIZE)
        rng = HmmRange(notifier=notifier, start=addr, end=nxt,
                       hmm_pfns=[0] * ((nxt - addr) // PAGE_SIZE), default_flags=flags,
                       pfn_flags_mask=0, dev_private_owner=dmirror)
        ret = dmirror_range_fault(dmirror, mm, rng)
        if ret:
            return ret
        addr = nxt
    return 0


def dmirror_do_read(dmirror: Dmirror, mm_id: int, start: int, end: int,
                    bounce: DmirrorBounce) -> int:
    """dmirror_do_read() - copy [start, end) from the pages the device page table holds
    into the bounce buffer, counting ``cpages``; -ENOENT at the first page with no entry.

    Models: lib/test_hmm.c:dmirror_do_read() (v6.18).
    """
    stamp = dmirror.m.mem.stamp
    for addr in range(start, end, PAGE_SIZE):
        entry = dmirror.pt.get((mm_id, addr))
        if entry is None:
            return -ENOENT
        bounce.data[(addr - bounce.addr) // PAGE_SIZE] = int(stamp[entry[0]])
        bounce.cpages += 1
    return 0


def dmirror_do_write(dmirror: Dmirror, mm_id: int, start: int, end: int,
                     bounce: DmirrorBounce) -> int:
    """dmirror_do_write() - copy the bounce buffer into the pages of [start, end);
    -ENOENT at the first page with no entry or one the device may not write (its tag
    has no DPT_XA_TAG_WRITE bit; an ATOMIC entry has one).

    Models: lib/test_hmm.c:dmirror_do_write() (v6.18).
    """
    stamp = dmirror.m.mem.stamp
    for addr in range(start, end, PAGE_SIZE):
        entry = dmirror.pt.get((mm_id, addr))
        if entry is None or not _tag(entry) & DPT_XA_TAG_WRITE:
            return -ENOENT
        stamp[entry[0]] = bounce.data[(addr - bounce.addr) // PAGE_SIZE]
        bounce.cpages += 1
    return 0


def _walk_refuses(mm: MMStruct, start: int, end: int, write: bool) -> int:
    """What hmm_range_fault() with HMM_PFN_REQ_FAULT (and REQ_WRITE for ``write``) returns
    at the first page of [start, end) it can never fault in: -EFAULT for a hole
    (hmm_vma_walk_hole()) or a VMA without VM_READ (hmm_vma_walk_test(): PROT_NONE),
    -EPERM for a write to a VMA without VM_WRITE (hmm_vma_fault()); else 0."""
    from pyfolio.include.linux.mm_types import VM

    addr = start
    while addr < end:
        vma = mm.find_vma(addr)
        if vma is None:
            return -EFAULT
        if not vma.vm_flags & VM.READ:
            return -EFAULT
        if write and not vma.vm_flags & VM.WRITE:
            return -EPERM
        addr = vma.vm_end
    return 0


def _rw(dmirror: Dmirror, mm: MMStruct, cmd: HmmDmirrorCmd, write: bool) -> int:
    """The loop dmirror_read() and dmirror_write() share: copy; on -ENOENT fault the
    rest of the range in (from the first page not copied) and copy again, counting
    ``faults``. Simplification: a range the walk would refuse somewhere
    (:func:`_walk_refuses`) fails with that errno before anything is faulted in (the
    kernel has faulted in, and mirrored, the 32-page chunks before the bad page by then;
    the errno is the same, as no page it refuses can have a device entry)."""
    start = cmd.addr
    end = start + cmd.npages * PAGE_SIZE
    ret = _walk_refuses(mm, start, end, write)
    if ret:
        return ret
    bounce = DmirrorBounce(start, end - start)
    if write:
        if len(cmd.ptr) < cmd.npages:
            return -EFAULT  # copy_from_user() of a short buffer
        bounce.data = list(cmd.ptr[:cmd.npages])
    do = dmirror_do_write if write else dmirror_do_read
    while True:
        ret = do(dmirror, mm.id, start, end, bounce)
        if ret != -ENOENT:
            break
        start = cmd.addr + bounce.cpages * PAGE_SIZE
        ret = dmirror_fault(dmirror, mm, start, end, write)
        if ret:
            break
        cmd.faults += 1
    if ret == 0 and not write:
        cmd.ptr[:] = bounce.data  # copy_to_user()
    cmd.cpages = bounce.cpages
    return ret


def dmirror_read(dmirror: Dmirror, mm: MMStruct, cmd: HmmDmirrorCmd) -> int:
    """dmirror_read() - HMM_DMIRROR_READ: the device reads [addr, addr + npages) through
    its own page table, faulting in (hmm_range_fault()) what it has no entry for.

    Models: lib/test_hmm.c:dmirror_read() (v6.18): ``cpages`` the pages copied, ``faults``
    the rounds of dmirror_fault() over the remaining range (0 when the device already
    mirrors all of it). Errors: hmm_range_fault()'s -EFAULT (a hole, a PROT_NONE VMA, a
    failed fault) and -EBUSY.
    """
    return _rw(dmirror, mm, cmd, False)


def dmirror_write(dmirror: Dmirror, mm: MMStruct, cmd: HmmDmirrorCmd) -> int:
    """dmirror_write() - HMM_DMIRROR_WRITE: the device writes ``ptr`` into the range,
    faulting in for writing (HMM_PFN_REQ_WRITE: COW broken) what it may not write yet.

    Models: lib/test_hmm.c:dmirror_write() (v6.18): as dmirror_read(), plus -EPERM from
    hmm_vma_fault() for a write to a VMA without VM_WRITE.
    """
    return _rw(dmirror, mm, cmd, True)


def _snapshot_invalidate(mni: MmuIntervalNotifier, range_: MmuNotifierRange,
                         cur_seq: int) -> bool:
    """dmirror_snapshot_invalidate(): the temporary notifier only moves its sequence."""
    mmu_interval_set_seq(mni, cur_seq)
    return True


def dmirror_mkentry(dmirror: Dmirror, hpfn: int) -> int:
    """dmirror_mkentry() - the HMM_DMIRROR_PROT_* byte for one hmm_pfns word.

    Models: lib/test_hmm.c:dmirror_mkentry() (v6.18): ERROR -> PROT_ERROR; not VALID ->
    PROT_NONE; a device-private page: DEV_PRIVATE_LOCAL if this device's, else _REMOTE;
    the zero page (is_zero_pfn(): not the huge zero page) ZERO; then WRITE or READ, and
    PMD for a PMD-sized mapping order.
    """
    from pyfolio.mm.memremap import folio_is_device_private

    if hpfn & HMM_PFN_ERROR:
        return HMM_DMIRROR_PROT_ERROR
    if not hpfn & HMM_PFN_VALID:
        return HMM_DMIRROR_PROT_NONE
    m, pfn = dmirror.m, hmm_pfn_to_pfn(hpfn)
    folio = page_folio(m, pfn)
    if folio_is_device_private(folio):
        mine = dmirror.pgmap.range[0] <= pfn < dmirror.pgmap.range[1]
        perm = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL if mine else \
            HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE
    elif pfn == m.zero_pfn:
        perm = HMM_DMIRROR_PROT_ZERO
    else:
        perm = HMM_DMIRROR_PROT_NONE
    perm |= HMM_DMIRROR_PROT_WRITE if hpfn & HMM_PFN_WRITE else HMM_DMIRROR_PROT_READ
    if hmm_pfn_to_map_order(hpfn) + PAGE_SHIFT == PMD_SHIFT:
        perm |= HMM_DMIRROR_PROT_PMD
    return perm


def dmirror_snapshot(dmirror: Dmirror, mm: MMStruct, cmd: HmmDmirrorCmd) -> int:
    """dmirror_snapshot() - HMM_DMIRROR_SNAPSHOT: what the CPU page tables hold, a byte
    per page (dmirror_mkentry()), without faulting anything in and without touching the
    device page table.

    Models: lib/test_hmm.c:dmirror_snapshot() and dmirror_range_snapshot() (v6.18): 32
    pages at a time, each under a temporary interval notifier on that range; a walk an
    invalidation overtook is retried (-EBUSY after the timeout). ``cpages`` += each
    chunk's pages.
    """
    start, end = cmd.addr, cmd.addr + cmd.npages * PAGE_SIZE
    out: list[int] = []
    addr = start
    while addr < end:
        nxt = min(end, addr + DMIRROR_CHUNK_PAGES * PAGE_SIZE)
        sub = MmuIntervalNotifier(MmuIntervalNotifierOps(_snapshot_invalidate))
        mmu_interval_notifier_insert(sub, mm, addr, nxt - addr, sub.ops)
        rng = HmmRange(notifier=sub, start=addr, end=nxt,
                       hmm_pfns=[0] * ((nxt - addr) // PAGE_SIZE), dev_private_owner=dmirror)
        try:
            for _ in range(DMIRROR_RANGE_TRIES):
                rng.notifier_seq = mmu_interval_read_begin(sub)
                ret = hmm_range_fault(rng)
                if ret == -EBUSY or (not ret and mmu_interval_read_retry(sub,
                                                                         rng.notifier_seq)):
                    continue
                break
            else:
                ret = -EBUSY
        finally:
            mmu_interval_notifier_remove(sub)
        if ret:
            return ret
        out.extend(dmirror_mkentry(dmirror, h) for h in rng.hmm_pfns)
        cmd.cpages += len(rng.hmm_pfns)
        addr = nxt
    cmd.ptr[:] = out
    return 0


def dmirror_atomic_map(dmirror: Dmirror, mm_id: int, addr: int, pfn: int) -> int:
    """dmirror_atomic_map() - store the exclusive page in the device page table, tagged
    DPT_XA_TAG_ATOMIC.

    Models: lib/test_hmm.c:dmirror_atomic_map() (v6.18).
    """
    dmirror.pt[(mm_id, addr)] = (pfn, DPT_XA_TAG_ATOMIC)
    return 0


def dmirror_exclusive(dmirror: Dmirror, mm: MMStruct, cmd: HmmDmirrorCmd) -> int:
    """dmirror_exclusive() - HMM_DMIRROR_EXCLUSIVE: take each page of the range for the
    device's atomic access (make_device_exclusive(), owner NULL), map it ATOMIC, then
    read the range back (dmirror_do_read()).

    Models: lib/test_hmm.c:dmirror_exclusive() (v6.18): per page make_device_exclusive()
    (its GUP faults the page in writable, PMD-splitting a THP), dmirror_atomic_map(),
    folio_unlock() and folio_put(); an error stops the loop and is returned.
    Simplification: a range the GUP would refuse somewhere (a hole, a VMA without
    VM_WRITE: -EFAULT) is refused before the first page is taken, so nothing changes (the
    kernel has taken the pages before the bad one).
    """
    from pyfolio.include.linux.mm_types import VM
    from pyfolio.mm.gup import put_user_page
    from pyfolio.mm.rmap import make_device_exclusive

    start, end = cmd.addr, cmd.addr + cmd.npages * PAGE_SIZE
    for addr in range(start, end, PAGE_SIZE):
        vma = mm.find_vma(addr)
        if vma is None or not vma.vm_flags & VM.WRITE:  # check_vma_flags(FOLL_WRITE)
            return -EFAULT
    dmirror_fops_open(dmirror, mm)
    m = dmirror.m
    for addr in range(start, end, PAGE_SIZE):
        try:
            pfn = make_device_exclusive(mm, addr, None)
        except MmError as e:
            return -e.errno
        ret = dmirror_atomic_map(dmirror, mm.id, addr, pfn)
        folio_unlock(page_folio(m, pfn))
        put_user_page(m, pfn)
        if ret:
            return ret
    bounce = DmirrorBounce(start, end - start)
    ret = dmirror_do_read(dmirror, mm.id, start, end, bounce)
    if ret == 0:
        cmd.ptr[:] = bounce.data
    cmd.cpages = bounce.cpages
    return ret


def dmirror_check_atomic(dmirror: Dmirror, mm: MMStruct, cmd: HmmDmirrorCmd) -> int:
    """dmirror_check_atomic() - HMM_DMIRROR_CHECK_EXCLUSIVE: -EPERM while the device
    still holds a page of the range atomically (an ATOMIC entry: no CPU access since
    HMM_DMIRROR_EXCLUSIVE took it), else 0.

    Models: lib/test_hmm.c:dmirror_check_atomic() (v6.18).
    """
    for addr in range(cmd.addr, cmd.addr + cmd.npages * PAGE_SIZE, PAGE_SIZE):
        if _tag(dmirror.pt.get((mm.id, addr))) == DPT_XA_TAG_ATOMIC:
            return -EPERM
    return 0


def dmirror_fops_unlocked_ioctl(dmirror: Dmirror, mm: MMStruct, command: int,
                                cmd: HmmDmirrorCmd) -> int:
    """dmirror_fops_unlocked_ioctl() - the ioctl's own checks, then the command; 0 or a
    negative errno. A failed command's ``cmd`` is not copied back to the caller.

    Models: lib/test_hmm.c:dmirror_fops_unlocked_ioctl() (v6.18): -EINVAL for an
    unaligned ``addr``, for ``addr >= addr + (npages << PAGE_SHIFT)`` (no pages, or a
    range that wraps) and for an unknown command; ``cpages`` and ``faults`` start at 0.
    READ, WRITE, SNAPSHOT, EXCLUSIVE and CHECK_EXCLUSIVE are dispatched here (the
    migrations and RELEASE have their own functions above).
    """
    if cmd.addr & (PAGE_SIZE - 1) or cmd.npages <= 0 or \
            cmd.addr + cmd.npages * PAGE_SIZE > ULONG_MAX + 1:
        return -EINVAL
    run: Callable[[Dmirror, MMStruct, HmmDmirrorCmd], int] | None = {
        HMM_DMIRROR_READ: dmirror_read, HMM_DMIRROR_WRITE: dmirror_write,
        HMM_DMIRROR_SNAPSHOT: dmirror_snapshot, HMM_DMIRROR_EXCLUSIVE: dmirror_exclusive,
        HMM_DMIRROR_CHECK_EXCLUSIVE: dmirror_check_atomic}.get(command)
    if run is None:
        return -EINVAL
    work = HmmDmirrorCmd(cmd.addr, cmd.npages, list(cmd.ptr))
    ret = run(dmirror, mm, work)
    if ret == 0:  # copy_to_user() of the command
        cmd.ptr, cmd.cpages, cmd.faults = work.ptr, work.cpages, work.faults
    return ret
