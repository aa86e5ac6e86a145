"""A stateful fuzzer of the facade (issue 21): random sequences of every System, Process
and Device operation, checked step by step.

:class:`FacadeMachine` is a hypothesis rule-based state machine. After every step:
``check()`` finds no violation; every page of every process holds what the shadow
(:mod:`fuzz_shadow`) says it may (copy-on-write after fork, MADV_DONTNEED zeroes,
MADV_FREE either value until written, device reads agree with the CPU's); the VMAs
are the ones the calls made. A refused call (bad input, an unmapped or read-only page)
raises the kernel's errno or a TypeError/ValueError and leaves ``snapshot()`` and the
facade's own state as they were; a call that runs out of memory may have done part of
its work but breaks nothing. When every process has exited, nothing is left: every RAM
frame but the zero pages is free, every device frame back on its driver's lists.

One kernel bug is expected, not a defect of the simulator: a THP shared by fork() that
meets the split fallback of device migration reaches remove_migration_pte()'s
VM_BUG_ON_FOLIO (issue 21, A). The simulator raises KernelBug there; the sequence stops
and is counted. tests/test_fuzz.py runs the machine in ``make test``; tools/fuzz.py runs
it for ``make fuzz`` and prints a summary of :data:`STATS`.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
from fuzz_shadow import Shadow, allowed, default_stamp, peek_chunk
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pyfolio import (
    EAGAIN,
    EBUSY,
    EEXIST,
    EFAULT,
    EINVAL,
    ENOMEM,
    KernelBug,
    MmError,
    Process,
    SegmentationFault,
    System,
    VmWarning,
)
from pyfolio.include.linux.huge_mm import MTHP_STAT
from pyfolio.include.linux.mm_types import VM
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.madvise import ADVICE
from pyfolio.sim.errors import EPERM
from pyfolio.sim.machine import MTHP_POLICIES, THP_POLICIES
from pyfolio.sim.units import HPAGE_PMD_NR, PAGE_SIZE, PMD_SIZE, KiB, MiB

__all__ = ["FacadeMachine", "Stats", "STATS", "InvariantBroken", "DataMismatch", "LeakFound",
           "BadInputDefect"]

DESIGNS = ("split-unmapped-folio", "unmapped-param")
MTHP_SIZES = ("16kB", "32kB", "64kB", "128kB", "256kB", "512kB", "1024kB", "2048kB")
MAX_PROCS = 4
#: the message of the one kernel bug a sequence may reach (issue 21, A)
KNOWN_KERNEL_BUG = "remove_migration_pte"
#: the one kernel WARN a sequence may reach: HMM_DMIRROR_WRITE over a page of the mirroring
#: device's own memory that is mapped read-only (shared by fork() after the migration):
#: mm/hmm.c:hmm_vma_handle_pte() reports such a page and never faults it in, and
#: lib/test_hmm.c:dmirror_do_fault() then hits WARN_ON(default_flags & HMM_PFN_WRITE) and
#: returns -EFAULT (v6.18; the model raises the WARN as VmWarning)
KNOWN_KERNEL_WARN = "a write fault left a page read-only"


@dataclass
class Stats:
    """Counters over every sequence run in this process (tools/fuzz.py prints them)."""

    sequences: int = 0
    steps: int = 0
    refused: int = 0          # calls refused as the kernel refuses them (checked unchanged)
    out_of_memory: int = 0    # calls that ran out of memory (checked consistent)
    bad_inputs: int = 0       # bad-input calls made
    kernel_bugs: int = 0      # sequences stopped by the known kernel bug (A)
    kernel_warns: int = 0     # sequences stopped by the known kernel WARN (test_hmm.c)
    #: what the sequences exercised: the machines' vmstat counters summed, and device pages
    coverage: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, Counter() if f.name == "coverage" else 0)


STATS = Stats()


class InvariantBroken(AssertionError):
    """check() found a violation, or the VMAs are not the ones the calls made."""


class DataMismatch(AssertionError):
    """A page, a read or a device read holds a value the shadow does not allow."""


class LeakFound(AssertionError):
    """Something is left after every process has exited."""


class BadInputDefect(AssertionError):
    """A refused call was not refused as the kernel would, or it changed state."""


WHO = st.integers(0, 7)
PICK = st.integers(0, 1 << 20)
#: a positive count may run past the mapping; a negative one is clipped to it (see _range)
NPAGES = st.sampled_from([1, 2, 3, 16, 255, 256, 511, 512, 513, 1024]).flatmap(
    lambda n: st.sampled_from([n, -n, -n, -n]))
VALUE = st.one_of(st.none(), st.integers(0, (1 << 64) - 1))


#: MADV_DONTFORK / DOFORK / WIPEONFORK / KEEPONFORK: (which shadow set, add or remove)
_FORK_ADVICE = {"dontfork": (0, True), "dofork": (0, False), "wipeonfork": (1, True),
                "keeponfork": (1, False)}


def _prot(flags: VM) -> str:
    return "rw" if flags & VM.WRITE else "r" if flags & VM.READ else "none"


class FacadeMachine(RuleBasedStateMachine):
    """Random sequences of facade operations against a shadow of every page's value."""

    def __init__(self) -> None:
        super().__init__()
        STATS.sequences += 1
        self.m: System = None  # type: ignore[assignment]  # made by boot()
        self.sh: dict[int, Shadow] = {}
        self.gone: list[Process] = []
        self.dead = False  # the known kernel bug was reached: the machine is not consistent
        self.free0 = 0
        self.fragmented = False

    # -- set-up ----------------------------------------------------------------------------
    @initialize(ram=st.sampled_from(["16M", "24M"]), thp=st.sampled_from(THP_POLICIES),
                design=st.sampled_from(DESIGNS),
                devices=st.lists(st.tuples(st.sampled_from(["2M", "4M"]), st.booleans()),
                                 max_size=2),
                with_thp=st.booleans())
    def boot(self, ram: str, thp: str, design: str, devices: list[tuple[str, bool]],
             with_thp: bool) -> None:
        self.m = System(ram=ram, thp=thp, split_design=design)
        self.m.trace.enabled = False  # the counters are kept; the event list is not needed
        self.free0 = self.m.nr_free_pages()
        for i, (memory, large) in enumerate(devices):
            self.m.add_device(f"d{i}", memory=memory, large_pages=large)
        self.spawn(with_thp)

    # -- helpers -----------------------------------------------------------------------------
    def _proc(self, who: int) -> Shadow | None:
        procs = self.m.processes
        return self.sh[procs[who % len(procs)].pid] if procs else None

    def _range(self, sh: Shadow, pick: int, npages: int, align: bool) -> tuple[int, int]:
        """A range near a mapped page: that page (or the 2 MiB boundary below it, with
        ``align``), ``npages`` long. A negative ``npages`` keeps the range inside the
        mapped run it starts in (most calls then succeed); a positive one may run past it."""
        pages = sorted(sh.prot)
        a = pages[pick % len(pages)] if pages else 0x10000
        if align:
            a &= ~(PMD_SIZE - 1)
        if npages < 0:
            run = 0
            while a + run * PAGE_SIZE in sh.prot and run < -npages:
                run += 1
            npages = max(run, 1)
        return a, npages * PAGE_SIZE

    def _state(self) -> tuple[object, ...]:
        """The facade's own state, which a refused call must not change either."""
        m = self.m
        return (snapshot(m.machine), [(p.pid, list(p._pins)) for p in m.processes],
                list(m.devices), m.split_design, m.thp, dict(m.machine.thp_anon_enabled),
                m.use_zero_page, m.machine.khugepaged_max_ptes_none,
                [(d.large_pages, d.driver.flags, d.driver.split_design)
                 for d in m.devices.values()])

    def _run(self, call: Callable[[], object], refusal: tuple[type, int | None] | None = None,
             may_fail: tuple[int, ...] = ()) -> tuple[bool, object]:
        """Run one operation. ``refusal``: the exception (class, errno) it must raise, with
        nothing changed. ``may_fail``: errnos it may fail with after doing part of its work.
        Returns (succeeded, result or exception)."""
        STATS.steps += 1
        rule_name = sys._getframe(1).f_code.co_name
        before = self._state() if refusal is not None else None
        try:
            result = call()
        except (KernelBug, VmWarning) as e:
            bug = isinstance(e, KernelBug)  # a kernel bug (A) or a kernel WARN, both known
            if (KNOWN_KERNEL_BUG if bug else KNOWN_KERNEL_WARN) not in str(e):
                raise
            if bug:
                STATS.kernel_bugs += 1
            else:
                STATS.kernel_warns += 1
            self.dead = True
            return False, e
        except (MmError, TypeError, ValueError) as e:
            if refusal is not None:
                _refused_as(e, refusal)
                if self._state() != before:
                    raise BadInputDefect(f"{call} refused with {e!r} but changed state") from e
                STATS.refused += 1
                return False, e
            if isinstance(e, MmError) and e.errno in may_fail:
                STATS.out_of_memory += 1
                return False, e
            raise
        if refusal is not None:
            raise BadInputDefect(f"{call} should have raised {refusal}, returned {result!r}")
        STATS.coverage[f"{rule_name} ok"] += 1
        return True, result

    def _accessible(self, sh: Shadow, a: int, write: bool) -> bool:
        prot = sh.prot.get(a & ~(PAGE_SIZE - 1))
        return prot == "rw" if write else prot in ("r", "rw")

    @precondition(lambda self: self.dead)
    @rule()
    def after_the_kernel_bug(self) -> None:
        """Nothing runs on a machine the kernel bug left inconsistent."""

    # -- processes --------------------------------------------------------------------------
    @precondition(lambda self: not self.dead and len(self.m.processes) < MAX_PROCS)
    @rule(with_thp=st.booleans())
    def spawn(self, with_thp: bool) -> None:
        ok, got = self._run(lambda: self.m.spawn_with_thp() if with_thp else (self.m.spawn(), 0),
                            may_fail=(ENOMEM,))
        if not ok:  # spawn_with_thp() ran out of memory part way: the process, its mapping
            for p in self.m.processes:  # and some of the pages written may exist
                if p.pid not in self.sh:
                    sh = self.sh[p.pid] = Shadow(p)
                    for v in p.mm.vmas:
                        for page in range(v.vm_start, v.vm_end, PAGE_SIZE):
                            sh.prot[page] = _prot(v.vm_flags)
                            sh.maybe(page, default_stamp(page))
            return
        p, a = got  # type: ignore[misc]
        sh = self.sh[p.pid] = Shadow(p)
        if with_thp:
            for page in sh.pages(a, PMD_SIZE):
                sh.prot[page] = "rw"
                sh.write(page, default_stamp(page))

    @precondition(lambda self: not self.dead and 0 < len(self.m.processes) < MAX_PROCS)
    @rule(who=WHO)
    def fork(self, who: int) -> None:
        sh = self._proc(who)
        assert sh is not None
        ok, child = self._run(sh.proc.fork, may_fail=(ENOMEM,))
        if ok:
            assert isinstance(child, Process)
            self.sh[child.pid] = sh.fork(child)

    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO)
    def exit(self, who: int) -> None:
        sh = self._proc(who)
        assert sh is not None
        self._run(sh.proc.exit)
        del self.sh[sh.proc.pid]
        self.gone.append(sh.proc)

    # -- system calls -------------------------------------------------------------------------
    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, npages=st.sampled_from([1, 2, 5, 16, 512, 1024, 1024, 513]),
          odd=st.sampled_from([False, False, True]),
          prot=st.sampled_from(["rw", "rw", "rw", "r", "none"]),
          hugepage=st.sampled_from([True, True, False]))
    def mmap(self, who: int, npages: int, odd: bool, prot: str, hugepage: bool) -> None:
        sh = self._proc(who)
        assert sh is not None
        length = npages * PAGE_SIZE - (PAGE_SIZE // 2 if odd else 0)
        ok, a = self._run(lambda: sh.proc.mmap(length, prot), may_fail=(ENOMEM,))
        if not ok:
            return
        assert isinstance(a, int)
        new = sh.pages(a, length)
        if any(page in sh.prot for page in new):
            raise InvariantBroken(f"mmap returned {a:#x}, which overlaps a mapping")
        for page in new:
            sh.prot[page] = prot
        if hugepage:
            self._run(lambda: sh.proc.madvise(a, length, "hugepage"))

    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK, npages=NPAGES, align=st.booleans())
    def munmap(self, who: int, pick: int, npages: int, align: bool) -> None:
        sh = self._proc(who)
        assert sh is not None
        a, length = self._range(sh, pick, npages, align)
        self._run(lambda: sh.proc.munmap(a, length))
        for page in sh.pages(a, length):
            sh.unmap(page)

    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK, npages=NPAGES, align=st.booleans(),
          prot=st.sampled_from(["r", "rw", "rw", "none"]))
    def mprotect(self, who: int, pick: int, npages: int, align: bool, prot: str) -> None:
        sh = self._proc(who)
        assert sh is not None
        a, length = self._range(sh, pick, npages, align)
        pages = sh.pages(a, length)
        if not all(page in sh.prot for page in pages):
            self._run(lambda: sh.proc.mprotect(a, length, prot), refusal=(MmError, ENOMEM))
            return
        self._run(lambda: sh.proc.mprotect(a, length, prot))
        for page in pages:
            sh.prot[page] = prot

    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK, npages=NPAGES, align=st.booleans(),
          advice=st.sampled_from(ADVICE))
    def madvise(self, who: int, pick: int, npages: int, align: bool, advice: str) -> None:
        sh = self._proc(who)
        assert sh is not None
        a, length = self._range(sh, pick, npages, align)
        pages = sh.pages(a, length)
        if not all(page in sh.prot for page in pages):
            self._run(lambda: sh.proc.madvise(a, length, advice), refusal=(MmError, ENOMEM))
            return
        if advice == "remove":  # every mapping here is private anonymous: madvise_remove()
            self._run(lambda: sh.proc.madvise(a, length, advice), refusal=(MmError, EINVAL))
            return
        fails = (EINVAL, EAGAIN, ENOMEM) if advice == "collapse" else ()
        ok, _ = self._run(lambda: sh.proc.madvise(a, length, advice), may_fail=fails)
        if ok and advice == "dontneed":
            for page in pages:
                sh.zap(page)
        elif ok and advice == "free":
            for page in pages:
                sh.lazyfree(page)
        elif ok and advice in _FORK_ADVICE:
            which, add = _FORK_ADVICE[advice]
            marked = (sh.dontfork, sh.wipeonfork)[which]
            (marked.update if add else marked.difference_update)(pages)

    # -- memory accesses ----------------------------------------------------------------------
    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK, value=VALUE)
    def write(self, who: int, pick: int, value: int | None) -> None:
        sh = self._proc(who)
        assert sh is not None
        a, _ = self._range(sh, pick, 1, False)
        v = default_stamp(a) if value is None else value
        if not self._accessible(sh, a, True):
            self._run(lambda: sh.proc.write(a, v), refusal=(SegmentationFault, EFAULT))
            return
        ok, _ = self._run(lambda: sh.proc.write(a, v), may_fail=(ENOMEM,))
        if ok:
            sh.write(a, v)

    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK)
    def read(self, who: int, pick: int) -> None:
        sh = self._proc(who)
        assert sh is not None
        a, _ = self._range(sh, pick, 1, False)
        if not self._accessible(sh, a, False):
            self._run(lambda: sh.proc.read(a), refusal=(SegmentationFault, EFAULT))
            return
        ok, seen = self._run(lambda: sh.proc.read(a), may_fail=(ENOMEM,))
        if ok and not sh.observe(a, int(seen)):  # type: ignore[call-overload]
            raise DataMismatch(f"pid {sh.proc.pid} read {seen} at {a:#x}, expected "
                               f"{sorted(allowed(sh.get(a)))}")

    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK, npages=NPAGES, align=st.booleans(), value=VALUE)
    def touch(self, who: int, pick: int, npages: int, align: bool, value: int | None) -> None:
        sh = self._proc(who)
        assert sh is not None
        a, length = self._range(sh, pick, npages, align)
        pages = list(sh.pages(a, length))
        stop = next((i for i, page in enumerate(pages) if not self._accessible(sh, page, True)),
                    len(pages))
        may = (ENOMEM, EFAULT) if stop < len(pages) else (ENOMEM,)
        ok, err = self._run(lambda: sh.proc.touch(a, length, value), may_fail=may)
        if not ok and isinstance(err, SegmentationFault) and stop == len(pages):
            raise DataMismatch(f"touch of accessible pages at {a:#x} faulted: {err}")
        if ok and stop < len(pages):
            raise DataMismatch(f"touch ran over an inaccessible page at {pages[stop]:#x}")
        certain = isinstance(err, SegmentationFault) or ok
        for page in pages[:stop]:
            v = default_stamp(page) if value is None else value
            sh.write(page, v) if certain else sh.maybe(page, v)

    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK, npages=st.integers(-4, 4).filter(bool))
    def pin(self, who: int, pick: int, npages: int) -> None:
        sh = self._proc(who)
        assert sh is not None
        a, length = self._range(sh, pick, npages, False)
        pages = list(sh.pages(a, length))
        if not all(self._accessible(sh, page, True) for page in pages):
            self._run(lambda: sh.proc.pin(a, length), refusal=(MmError, EFAULT))
            return
        ok, _ = self._run(lambda: sh.proc.pin(a, length), may_fail=(ENOMEM,))
        for page in pages if ok else ():
            sh.pins[page] = sh.pins.get(page, 0) + 1

    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK)
    def unpin(self, who: int, pick: int) -> None:
        sh = self._proc(who)
        assert sh is not None
        pinned = sorted(sh.pins)
        a = pinned[pick % len(pinned)] if pinned else self._range(sh, pick, 1, False)[0]
        if not sh.pins.get(a):
            self._run(lambda: sh.proc.unpin(a, PAGE_SIZE), refusal=(MmError, EINVAL))
            return
        self._run(lambda: sh.proc.unpin(a, PAGE_SIZE))
        sh.pins[a] -= 1
        if not sh.pins[a]:
            del sh.pins[a]

    # -- folios and policies ------------------------------------------------------------------
    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK, new_order=st.integers(0, 8), uniform=st.booleans(),
          at=st.integers(0, 511))
    def split(self, who: int, pick: int, new_order: int, uniform: bool, at: int) -> None:
        sh = self._proc(who)
        assert sh is not None
        a, _ = self._range(sh, pick, 1, False)
        if a not in sh.prot:
            return
        folio = sh.proc.folio_at(a)
        if folio is None:
            return
        pfn, nr = folio.pfn, folio.nr_pages
        at %= nr
        before = snapshot(self.m.machine)
        ok, err = self._run(lambda: self.m.split(pfn, new_order, uniform=uniform, at=at),
                            may_fail=(EINVAL, EAGAIN, EBUSY))
        if not ok and not self.dead:  # nothing changed but the split_failed counters
            after = snapshot(self.m.machine)
            vb, va = before.pop("vmstat"), after.pop("vmstat")
            sb, sa = before.pop("mthp_stats"), after.pop("mthp_stats")
            assert isinstance(vb, dict) and isinstance(va, dict)
            assert isinstance(sb, dict) and isinstance(sa, dict)
            stats = {k for k in sa.keys() | sb.keys() if sa.get(k) != sb.get(k)}
            if after != before or va["thp_split_page_failed"] - vb["thp_split_page_failed"] > 1 \
                    or any(k[1] != MTHP_STAT.MTHP_STAT_SPLIT_FAILED for k in stats):
                raise BadInputDefect(f"a failed split ({err}) changed the machine")

    @precondition(lambda self: not self.dead)
    @rule(knob=st.integers(0, 12), thp=st.sampled_from(THP_POLICIES),
          size=st.sampled_from(MTHP_SIZES), policy=st.sampled_from(MTHP_POLICIES),
          design=st.sampled_from(DESIGNS), which=st.integers(0, 1),
          memory=st.sampled_from(["2M", "4M"]), large=st.booleans(),
          ptes=st.sampled_from([0, 64, 256, 511]))
    def knob(self, knob: int, thp: str, size: str, policy: str, design: str, which: int,
             memory: str, large: bool, ptes: int) -> None:
        """The machine-wide settings and the devices' knobs: THP and mTHP policies, the
        split design, use_zero_page, max_ptes_none, drop_caches, lru_add_drain,
        fragment/defragment, a new device, a device's allocation failures, fragmentation
        and large pages."""
        m = self.m
        if knob >= 10:
            self._run([lambda: m.set_use_zero_page(large), lambda: m.set_max_ptes_none(ptes),
                       m.lru_add_drain][knob - 10])
            return
        if knob >= 6 and not m.devices:
            knob = 5
        if knob == 5 and len(m.devices) >= 2:
            knob = 3
        if knob == 4:
            self._run(m.defragment if self.fragmented else m.fragment)
            self.fragmented = not self.fragmented
            return
        d = self._dev(which) if m.devices else None
        calls: list[Callable[[], object]] = [
            lambda: setattr(m, "thp", thp), lambda: m.set_mthp(size, policy),
            lambda: setattr(m, "split_design", design), m.drop_caches, m.fragment,
            lambda: m.add_device(f"d{len(m.devices)}", memory=memory, large_pages=large),
            lambda: d.fail_next_alloc(), lambda: d.fragment(),  # type: ignore[union-attr]
            lambda: setattr(d, "large_pages", large), lambda: setattr(d, "large_pages", True)]
        self._run(calls[knob])

    @precondition(lambda self: not self.dead)
    @rule(op=st.integers(0, 3), kind=st.sampled_from(["file", "block", "zram"]),
          size=st.sampled_from(["8K", "64K", "1M", "8M"]), nr=st.sampled_from([1, 32, 512]))
    def swap(self, op: int, kind: str, size: str, nr: int) -> None:
        """swapon (EBUSY while an area is active), swapoff (EINVAL with none), or
        reclaim (once or twice): swapped-out pages keep their values, which the shadow
        checks."""
        m = self.m
        active = m.swap_area is not None
        if op == 0:
            self._run(lambda: m.swapon(size, kind),
                      refusal=(MmError, EBUSY) if active else None)
        elif op == 1:
            self._run(m.swapoff, refusal=None if active else (MmError, EINVAL),
                      may_fail=(ENOMEM,))
        else:  # a first pass keeps what was used since the last (PG_referenced): op 3 asks twice
            self._run(lambda: [m.reclaim(nr) for _ in range(op - 1)])

    def _dev(self, which: int):  # type: ignore[no-untyped-def]
        devs = list(self.m.devices.values())
        return devs[which % len(devs)]

    @precondition(lambda self: not self.dead and self.m.devices and self.m.processes)
    @rule(which=st.integers(0, 1), who=WHO, pick=PICK, npages=NPAGES, align=st.booleans(),
          design=st.sampled_from((None,) + DESIGNS), back=st.booleans())
    def migrate(self, which: int, who: int, pick: int, npages: int, align: bool,
                design: str | None, back: bool) -> None:
        d, sh = self._dev(which), self._proc(who)
        assert sh is not None
        a, length = self._range(sh, pick, npages, align)
        readable = all(sh.prot.get(page) in ("r", "rw") for page in sh.pages(a, length))
        def call() -> object:
            if back:
                return d.migrate_to_system(sh.proc, a, length)
            return d.migrate_to_device(sh.proc, a, length, design=design)

        if not readable:
            self._run(call, refusal=(MmError, EINVAL))
        else:
            self._run(call, may_fail=(ENOMEM,) if back else ())

    @precondition(lambda self: not self.dead and self.m.devices and self.m.processes)
    @rule(which=st.integers(0, 1), who=WHO, pick=PICK)
    def device_read(self, which: int, who: int, pick: int) -> None:
        d, sh = self._dev(which), self._proc(who)
        assert sh is not None
        a, _ = self._range(sh, pick, 1, False)
        ok, seen = self._run(lambda: d.read(sh.proc, a))
        if seen is not None and (a not in sh.prot or seen not in allowed(sh.get(a))):
            raise DataMismatch(f"device {d.name} read {seen} at {a:#x} of pid {sh.proc.pid}, "
                               f"expected {sorted(allowed(sh.get(a)))}")

    @precondition(lambda self: not self.dead and self.m.devices and self.m.processes)
    @rule(which=st.integers(0, 1), who=WHO, pick=PICK,
          npages=st.sampled_from([1, 2, 33, 64]).flatmap(lambda n: st.sampled_from([n, -n])),
          op=st.sampled_from(["read", "write", "exclusive", "snapshot"]))
    def mirror(self, which: int, who: int, pick: int, npages: int, op: str) -> None:
        """The device's own access through hmm_range_fault() (HMM_DMIRROR_READ / WRITE /
        SNAPSHOT) or make_device_exclusive() (HMM_DMIRROR_EXCLUSIVE): a range with a hole
        or a PROT_NONE page is EFAULT (a write to a read-only page EPERM, an exclusive
        one EFAULT), nothing changed; reads see the shadow's values, writes set them."""
        d, sh = self._dev(which), self._proc(who)
        assert sh is not None
        a, length = self._range(sh, pick, npages, False)
        pages = sh.pages(a, length)
        refused = 0
        for page in pages:
            prot = sh.prot.get(page, "none")
            if prot == "none" or (op == "exclusive" and prot != "rw"):
                refused = EFAULT
            elif op == "write" and prot == "r":
                refused = EPERM
            if refused:
                break
        values = [default_stamp(page) ^ 0x5A5A for page in pages]
        call: Callable[[], object] = {
            "read": lambda: d.read_range(sh.proc, a, len(pages)),
            "write": lambda: d.write_range(sh.proc, a, values),
            "exclusive": lambda: d.make_exclusive(sh.proc, a, len(pages)),
            "snapshot": lambda: d.snapshot(sh.proc, a, len(pages))}[op]
        if refused and op != "snapshot":
            self._run(call, refusal=(MmError, refused))
            return
        # a fault that cannot allocate is VM_FAULT_OOM, which hmm_vma_fault() turns into
        # -EFAULT (and GUP into -ENOMEM) after part of the range was done
        ok, got = self._run(call, may_fail=(EFAULT, ENOMEM))
        if op == "write":
            for page, v in zip(pages, values, strict=True):
                (sh.write if ok else sh.maybe)(page, v)
        elif ok and op in ("read", "exclusive"):
            assert isinstance(got, list)
            for page, seen in zip(pages, got, strict=True):
                if not sh.observe(page, seen):
                    raise DataMismatch(f"device {d.name} {op} saw {seen} at {page:#x} of pid "
                                       f"{sh.proc.pid}, expected {sorted(allowed(sh.get(page)))}")
        elif ok:
            assert isinstance(got, bytes) and len(got) == len(pages)

    # -- looking -------------------------------------------------------------------------------
    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK, off=st.sampled_from([0, 0, 4 * KiB, 2 * MiB, 1 << 30]))
    def look(self, who: int, pick: int, off: int) -> None:
        sh = self._proc(who)
        assert sh is not None
        a = self._range(sh, pick, 1, False)[0] + off
        before = snapshot(self.m.machine)
        p = sh.proc
        m = self.m
        pfn = p.pfn_at(a) or 0
        self._run(lambda: (p.lookup(a), p.folio_at(a), p.pfn_at(a), p.pagemap(a, 4),
                           p.vma_at(a), p.smaps(), p.status(), m.vmstat(),
                           m.mthp_stats(MTHP_SIZES[pick % len(MTHP_SIZES)]),
                           m.kpageflags(range(pfn, pfn + 4)), m.kpagecount(range(pfn, pfn + 4))))
        if snapshot(self.m.machine) != before:
            raise InvariantBroken("looking at the machine changed it")

    # -- bad input -------------------------------------------------------------------------------
    @precondition(lambda self: not self.dead and self.m.processes)
    @rule(who=WHO, pick=PICK, case=st.integers(0, 10 ** 6))
    def bad_input(self, who: int, pick: int, case: int) -> None:
        sh = self._proc(who)
        assert sh is not None
        a = self._range(sh, pick, 1, False)[0]
        cases = bad_calls(self, sh, a)
        call, refusal = cases[case % len(cases)]
        STATS.bad_inputs += 1
        self._run(call, refusal=refusal)

    # -- checks after every step ------------------------------------------------------------
    @invariant()
    def sound(self) -> None:
        if self.dead or self.m is None:
            return
        bad = self.m.check()
        if bad:
            raise InvariantBroken("; ".join(str(v) for v in bad[:5]))
        for sh in self.sh.values():
            self._check_vmas(sh)
            self._check_values(sh)

    def _check_vmas(self, sh: Shadow) -> None:
        got = {}
        for v in sh.proc.mm.vmas:
            prot = _prot(v.vm_flags)
            for page in range(v.vm_start, v.vm_end, PAGE_SIZE):
                got[page] = prot
        if got != sh.prot:
            diff = sorted(set(got.items()) ^ set(sh.prot.items()))[:4]
            raise InvariantBroken(f"pid {sh.proc.pid}: VMAs differ from the calls made: {diff}")

    def _check_values(self, sh: Shadow) -> None:
        """Every mapped page holds a value the shadow allows (vectorised per 2 MiB)."""
        pages = np.fromiter(sh.prot, np.int64, len(sh.prot))
        want = np.zeros(len(pages), np.uint64)
        exact = np.ones(len(pages), bool)
        for k, page in enumerate(pages.tolist()):
            v = sh.val.get(page)
            if v is None:
                continue
            if isinstance(v, int):
                want[k] = v
            else:
                exact[k] = False
        bases = pages & ~(PMD_SIZE - 1)
        for base in np.unique(bases).tolist():
            sel = np.flatnonzero(bases == base)
            values, readable = peek_chunk(sh.proc, base)
            idx = (pages[sel] >> 12) & 511
            have = values[idx]
            bad = ~readable[idx] | (exact[sel] & (have != want[sel]))
            for k in sel[~exact[sel]]:
                if int(values[(pages[k] >> 12) & 511]) not in allowed(sh.val[int(pages[k])]):
                    bad[np.flatnonzero(sel == k)] = True
            if bad.any():
                k = int(sel[np.flatnonzero(bad)[0]])
                page = int(pages[k])
                i = (page >> 12) & 511
                raise DataMismatch(f"pid {sh.proc.pid} page {page:#x} holds {int(values[i])}"
                                   f"{'' if readable[i] else ' (not readable)'}, expected "
                                   f"{sorted(allowed(sh.get(page)))}")

    def teardown(self) -> None:
        """Every process exits; then nothing may be left."""
        if self.m is None:
            return
        STATS.coverage.update({k: v for k, v in self.m.machine.vmstat.items() if v})
        STATS.coverage.update(device_pages=sum(d.driver.calloc for d in self.m.devices.values()))
        if self.dead:
            return
        for p in list(self.m.processes):
            p.exit()
        if self.fragmented:
            self.m.defragment()
        if self.m.swap_area is not None:  # the swap cache holds what it wrote until swapoff
            self.m.swapoff()
        self.m.drop_caches()
        check_no_leak(self.m, self.free0)


def _refused_as(e: Exception, refusal: tuple[type, int | None]) -> None:
    cls, errno = refusal
    if not isinstance(e, cls) or (errno is not None and getattr(e, "errno", None) != errno):
        raise BadInputDefect(f"expected {cls.__name__}({errno}), got {e!r}") from e


def check_no_leak(m: System, free0: int) -> None:
    """After every process exited: check() is clean, every RAM frame is free but the zero
    pages, no page table, pin, queued folio or held reference is left, and every device
    frame is back on its driver's free lists."""
    mc = m.machine
    bad = m.check()
    if bad:
        raise LeakFound("; ".join(str(v) for v in bad[:5]))
    want = free0 - (HPAGE_PMD_NR if mc.huge_zero_pfn >= 0 else 0)
    left = {"free pages": (m.nr_free_pages(), want), "page tables": (len(mc.pgtables), 0),
            "pins": (len(+mc.pins), 0), "deferred split queue": (len(mc.deferred_split_queue), 0),
            "references held": (len(+mc.mem.extra_refs), 0), "mms": (len(mc.mms), 0)}
    for d in m.devices.values():
        start, end = d.driver.pgmap.range
        free = HPAGE_PMD_NR * d.free_large + d.free_small
        left[f"{d.name} free frames"] = (free, end - start)
        left[f"{d.name} allocated - freed"] = (d.driver.calloc - d.driver.cfree, 0)
    wrong = {k: v for k, v in left.items() if v[0] != v[1]}
    if wrong:
        raise LeakFound(f"left after every process exited (have, want): {wrong}")


def bad_calls(fz: FacadeMachine, sh: Shadow, a: int
              ) -> list[tuple[Callable[[], object], tuple[type, int | None]]]:
    """Calls the kernel (or the facade's argument checks) must refuse, changing nothing:
    (call, (exception class, errno or None))."""
    m, p = fz.m, sh.proc
    unmapped = max(sh.prot, default=0x10000) + 64 * PMD_SIZE
    out: list[tuple[Callable[[], object], tuple[type, int | None]]] = [
        (lambda: p.munmap(a, 1 << 60), (MmError, EINVAL)),
        (lambda: p.munmap(-4096, 4096), (MmError, EINVAL)),
        (lambda: p.munmap(a + 1, 4096), (MmError, EINVAL)),
        (lambda: p.munmap(a, 0), (MmError, EINVAL)),
        (lambda: p.munmap(a, 4096.0), (TypeError, None)),
        (lambda: p.mmap(0), (MmError, EINVAL)),
        (lambda: p.mmap(-1), (MmError, ENOMEM)),
        (lambda: p.mmap("lots"), (MmError, EINVAL)),
        (lambda: p.mmap(4096, "x"), (MmError, EINVAL)),
        (lambda: p.mprotect(a, 4096, "x"), (MmError, EINVAL)),
        (lambda: p.mprotect(a + 1, 4096, "r"), (MmError, EINVAL)),
        (lambda: p.mprotect(a, -1, "r"), (MmError, ENOMEM)),
        (lambda: p.mprotect(unmapped, 4096, "r"), (MmError, ENOMEM)),
        (lambda: p.madvise(a, 4096, "sometimes"), (MmError, EINVAL)),
        (lambda: p.madvise(a, -1, "dontneed"), (MmError, EINVAL)),
        (lambda: p.madvise(unmapped, 4096, "dontneed"), (MmError, ENOMEM)),
        (lambda: p.write(a, 1.5), (TypeError, None)),
        (lambda: p.write(a, -1), (ValueError, None)),
        (lambda: p.touch(a, 8192, 1 << 64), (ValueError, None)),
        (lambda: p.touch(a, 8192, "7"), (TypeError, None)),
        (lambda: p.write(unmapped, 1), (SegmentationFault, EFAULT)),
        (lambda: p.read(unmapped), (SegmentationFault, EFAULT)),
        (lambda: p.pin(unmapped, 4096), (MmError, EFAULT)),
        (lambda: p.unpin(unmapped, 4096), (MmError, EINVAL)),
        (lambda: p.lookup(1 << 47), (MmError, EINVAL)),
        (lambda: p.lookup("0x1000"), (TypeError, None)),
        (lambda: m.split(10 ** 9), (MmError, EINVAL)),
        (lambda: m.split(0.5), (TypeError, None)),
        (lambda: setattr(m, "thp", "sometimes"), (MmError, EINVAL)),
        (lambda: m.set_mthp("3kB", "always"), (MmError, EINVAL)),
        (lambda: m.set_mthp("64kB", "often"), (MmError, EINVAL)),
        (lambda: setattr(m, "split_design", "flag"), (MmError, EINVAL)),
        (lambda: m.add_device("x", memory="3M"), (MmError, EINVAL)),
        (lambda: m.set_max_ptes_none(512), (MmError, EINVAL)),
        (lambda: m.set_max_ptes_none(1.5), (MmError, EINVAL)),
        (lambda: m.set_use_zero_page(1), (MmError, EINVAL)),
        (lambda: m.mthp_stats("3kB"), (MmError, EINVAL)),
        (lambda: m.swapon(5000, "block"), (MmError, EINVAL)),
        (lambda: m.swapon("1M", "tape"), (MmError, EINVAL)),
        (lambda: m.reclaim(0), (MmError, EINVAL)),
    ]
    folio = p.folio_at(a) if a in sh.prot else None
    if folio is not None:
        pfn = folio.pfn
        out += [(lambda: m.split(pfn, "1"), (TypeError, None)),
                (lambda: m.split(pfn, -1), (MmError, EINVAL)),
                (lambda: m.split(pfn, 0, uniform=False, at=10 ** 9), (MmError, EINVAL)),
                (lambda: m.split(pfn, 0, uniform="no"), (TypeError, None))]
    if m.swap_area is None:  # a header page and no slot: "Empty swap-file"
        out += [(lambda: m.swapon("4K", "block"), (MmError, EINVAL)),
                (lambda: m.swapoff(), (MmError, EINVAL))]
    if m.devices:
        d = next(iter(m.devices.values()))
        out += [(lambda: d.migrate_to_device(p, a + 1, 4096), (MmError, EINVAL)),
                (lambda: d.migrate_to_device(p, a, 4096, design="flag"), (MmError, EINVAL)),
                (lambda: d.migrate_to_device(p, unmapped, 4096), (MmError, EINVAL)),
                (lambda: d.migrate_to_system(p, unmapped, 4096), (MmError, EINVAL)),
                (lambda: d.read("pid 1", a), (TypeError, None)),
                (lambda: m.add_device(d.name), (MmError, EEXIST))]
    if fz.gone:
        q = fz.gone[-1]
        out += [(lambda: q.read(a), (MmError, EINVAL)), (lambda: q.lookup(a), (MmError, EINVAL)),
                (lambda: q.folio_at(a), (MmError, EINVAL)), (lambda: q.fork(), (MmError, EINVAL)),
                (lambda: q.munmap(a, 4096), (MmError, EINVAL)),
                (lambda: q.status(), (MmError, EINVAL))]
    return out

