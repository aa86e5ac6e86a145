"""The batched paths (issue 20) change nothing but speed: random scenarios run on two
machines in lockstep, one with ``System.batch`` on and one with it off, and after every
step both hold the same debug_vm.snapshot() (memmap arrays with the data stamps, page
tables, free lists, vmstat, mTHP stats, RSS counters, VMAs, LRU places...), the same trace
events (names, arguments, changes, sequence numbers) and cost counters, and every call
returned or raised the same on both.

The scenarios are hypothesis state machines: processes that mmap, touch (long runs: the
batched fault), read, write, munmap, mprotect, madvise (MADV_FREE among them), migrate to
a device with or without 2 MiB pages (the split fallback: batched finalize and pages)
and back (by the driver, or by a CPU fault: read, write), fork and exit (all of them at
the end: the batched zap), with THP and mTHP
settings, fragmented free lists, small RAM (a run that meets the last free frame) and a
short or disabled trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pyfolio import MmError, Process, SegmentationFault, System
from pyfolio.mm.debug_vm import snapshot
from pyfolio.mm.memory_batch import do_anonymous_page_run
from pyfolio.sim.errors import KernelBug
from pyfolio.sim.units import PAGE_SIZE, MiB

MAX_PROCS = 3
PAGES = st.sampled_from([1, 2, 5, 64, 255, 511, 512, 513, 700, 1024, 1300])
PICK = st.integers(0, 1 << 16)


def _outcome(fn: Callable[[], Any]) -> tuple[str, str]:
    """What a call did, comparably: its result, or its exception's type and message."""
    try:
        got = fn()
    except (MmError, SegmentationFault, ValueError, TypeError, KernelBug) as e:
        return type(e).__name__, str(e)
    return "ok", repr(got) if not isinstance(got, Process) else f"pid {got.pid}"


def _add(procs: list[Process], p: Process) -> int:
    procs.append(p)
    return p.pid


class BatchedVsPerPage(RuleBasedStateMachine):
    """Two machines, ``batch`` on (a) and off (b), driven by the same calls."""

    @initialize(ram=st.sampled_from(["8M", "12M", "24M"]),
                thp=st.sampled_from(["madvise", "always", "never"]),
                mthp=st.sampled_from([None, None, None, "16kB", "64kB"]),
                trace=st.sampled_from(["default", "short", "off"]),
                fragment=st.booleans())
    def boot(self, ram: str, thp: str, mthp: str | None, trace: str, fragment: bool) -> None:
        self.systems = (System(ram=ram, thp=thp, device="6M"),
                        System(ram=ram, thp=thp, device="6M"))
        self.systems[1].batch = False
        for s in self.systems:
            if mthp:
                s.set_mthp(mthp, "always")
            s.trace.enabled = trace != "off"
            if trace == "short":
                s.trace.limit = 700
            if fragment:
                s.fragment()
        self.bug = False
        self.procs: tuple[list[Process], list[Process]] = ([], [])
        self.regions: list[tuple[int, int, int]] = []  # (proc index, addr, pages)
        self.thps: list[tuple[int, int, int]] = []  # the regions thp_region() made
        self._both(lambda s, ps: _add(ps, s.spawn()))
        self.mmap(0, 1024, "nohugepage", 1)

    @precondition(lambda self: self.regions)
    @rule(pick=PICK)
    def touch_region(self, pick: int) -> None:
        i, addr, pages = self.regions[pick % len(self.regions)]
        self._both(lambda s, ps: ps[i].touch(addr, pages * PAGE_SIZE))

    def _both(self, step: Callable[[System, list[Process]], Any]) -> None:
        a = _outcome(lambda: step(self.systems[0], self.procs[0]))
        b = _outcome(lambda: step(self.systems[1], self.procs[1]))
        assert a == b, f"batched {a} != per-page {b}"
        self.bug = self.bug or a[0] == "KernelBug"  # a kernel bug the model reproduces

    def _range(self, pick: int, off: int, pages: int) -> tuple[int, int, int]:
        """(proc index, addr, length) inside (or running past) a region."""
        i, addr, n = self.regions[pick % len(self.regions)]
        start = off % n
        return i, addr + start * PAGE_SIZE, min(pages, n - start + 3) * PAGE_SIZE

    @precondition(lambda self: len(self.procs[0]) < MAX_PROCS)
    @rule(pick=PICK)
    def fork(self, pick: int) -> None:
        i = pick % len(self.procs[0])
        self._both(lambda s, ps: _add(ps, ps[i].fork()))
        self.regions += [(len(self.procs[0]) - 1, a, n) for j, a, n in self.regions if j == i]
        self.thps += [(len(self.procs[0]) - 1, a, n) for j, a, n in self.thps if j == i]

    @rule(pick=PICK, pages=PAGES, advice=st.sampled_from([None, "nohugepage", "hugepage"]),
          skew=st.integers(0, 3))
    def mmap(self, pick: int, pages: int, advice: str | None, skew: int) -> None:
        i = pick % len(self.procs[0])
        pages += skew
        addrs: list[int] = []

        def step(s: System, ps: list[Process]) -> int:
            addr = ps[i].mmap(pages * PAGE_SIZE)
            addrs.append(addr)
            if advice:
                ps[i].madvise(addr, pages * PAGE_SIZE, advice)
            return addr

        self._both(step)
        if len(addrs) == 2 and addrs[0] == addrs[1]:
            self.regions.append((i, addrs[0], pages))

    @precondition(lambda self: self.regions)
    @rule(pick=PICK, off=PICK, pages=PAGES, value=st.one_of(st.none(), st.integers(0, 99)))
    def touch(self, pick: int, off: int, pages: int, value: int | None) -> None:
        i, addr, length = self._range(pick, off, pages)
        self._both(lambda s, ps: ps[i].touch(addr, length, value))

    @precondition(lambda self: self.regions)
    @rule(pick=PICK, off=PICK, write=st.booleans())
    def access(self, pick: int, off: int, write: bool) -> None:
        i, addr, _ = self._range(pick, off, 1)
        self._both(lambda s, ps: ps[i].write(addr, 7) if write else ps[i].read(addr))

    @precondition(lambda self: self.regions)
    @rule(pick=PICK, off=PICK, pages=PAGES,
          how=st.sampled_from(["munmap", "r", "rw", "none", "dontneed", "free", "cold"]))
    def change(self, pick: int, off: int, pages: int, how: str) -> None:
        i, addr, length = self._range(pick, off, pages)

        def step(s: System, ps: list[Process]) -> None:
            if how == "munmap":
                ps[i].munmap(addr, length)
            elif how in ("r", "rw", "none"):
                ps[i].mprotect(addr, length, how)
            else:
                ps[i].madvise(addr, length, how)

        self._both(step)

    @rule(pick=PICK, thps=st.integers(1, 2), off=st.integers(0, 1023),
          then=st.sampled_from([None, "free", "free", "cold", "r"]))
    def thp_region(self, pick: int, thps: int, off: int, then: str | None) -> None:
        """A region of THPs (MADV_HUGEPAGE, every page written), for the split fallback
        of a device migration and the split of MADV_FREE; ``then`` MADV_FREE, MADV_COLD or
        mprotect() of 10 of its pages at once (while its THPs are PMD-mapped)."""
        i = pick % len(self.procs[0])
        addrs: list[int] = []

        def step(s: System, ps: list[Process]) -> None:
            addr = ps[i].mmap(thps * 2 * MiB)
            addrs.append(addr)
            ps[i].madvise(addr, thps * 2 * MiB, "hugepage")
            ps[i].touch(addr, thps * 2 * MiB)
            start = addr + off % (thps * 512 - 10) * PAGE_SIZE
            if then == "r":
                ps[i].mprotect(start, 10 * PAGE_SIZE, then)
            elif then:
                ps[i].madvise(start, 10 * PAGE_SIZE, then)

        self._both(step)
        if len(addrs) == 2 and addrs[0] == addrs[1]:
            self.regions.append((i, addrs[0], thps * 512))
            self.thps.append((i, addrs[0], thps * 512))

    @precondition(lambda self: self.thps)
    @rule(pick=PICK, ops=st.lists(st.tuples(
        PICK, st.sampled_from([1, 10, 40, 100, 511]),
        st.sampled_from(["free", "free", "free", "cold", "r", "none", "munmap"])),
        min_size=1, max_size=4))
    def thp_part(self, pick: int, ops: list[tuple[int, int, str]]) -> None:
        """MADV_FREE, MADV_COLD, mprotect() or munmap() of parts of a THP region (the
        batched folio split of a PMD-mapped THP, the batched MADV_FREE walk and lazyfree
        batch, and the batched PMD split; a THP fork() shared is left alone by MADV_FREE
        and split at the PMD by the others)."""
        i, addr, n = self.thps[pick % len(self.thps)]

        def step(s: System, ps: list[Process]) -> None:
            for off, pages, how in ops:
                start = addr + (off % n) * PAGE_SIZE
                length = min(pages, n - off % n) * PAGE_SIZE
                if how == "munmap":
                    ps[i].munmap(start, length)
                elif how in ("r", "none"):
                    ps[i].mprotect(start, length, how)
                else:
                    ps[i].madvise(start, length, how)

        self._both(step)

    @precondition(lambda self: self.regions)
    @rule(pick=PICK, off=PICK, pages=PAGES, large=st.booleans(),
          way=st.sampled_from(["to", "back", "to and back"]), whole=st.booleans())
    def migrate(self, pick: int, off: int, pages: int, large: bool, way: str,
                whole: bool) -> None:
        """Device migration of a whole region or part of one, to a device with or without
        2 MiB pages (the split fallback), back to system memory, or both (the CPU's way
        back is a fault: ``access``)."""
        i, addr, length = self._range(pick, off, pages)
        if whole:
            i, addr, n = self.regions[pick % len(self.regions)]
            length = n * PAGE_SIZE

        def step(s: System, ps: list[Process]) -> object:
            dev = s.device
            assert dev is not None
            dev.large_pages = large
            got = [] if way == "back" else [dev.migrate_to_device(ps[i], addr, length)]
            if way != "to":
                got.append(dev.migrate_to_system(ps[i], addr, length))
            return got

        self._both(step)

    @precondition(lambda self: self.regions)
    @rule(pick=PICK, stride=st.sampled_from([2, 3, 64, 512]),
          prot=st.sampled_from(["r", "r", "none", "rw"]), unmap=st.booleans())
    def stripes(self, pick: int, stride: int, prot: str, unmap: bool) -> None:
        """mprotect one page per ``stride`` of a region (many small VMAs, as the
        benchmark's), then maybe munmap it whole (one munmap across those VMAs)."""
        i, addr, n = self.regions[pick % len(self.regions)]

        def step(s: System, ps: list[Process]) -> None:
            for k in range(1, n, stride):
                ps[i].mprotect(addr + k * PAGE_SIZE, PAGE_SIZE, prot)
            if unmap:
                ps[i].munmap(addr, n * PAGE_SIZE)

        self._both(step)

    @rule(pick=PICK, thps=st.integers(1, 3), stride=st.sampled_from([256, 512, 700]),
          prot=st.sampled_from(["r", "r", "none"]), keep=st.integers(0, 2),
          holes=st.booleans(), child=st.sampled_from([None, "exits", "stays"]))
    def split_thps(self, pick: int, thps: int, stride: int, prot: str, keep: int,
                   holes: bool, child: str | None) -> None:
        """The benchmark's THP steps in small: THPs (where the settings and free memory
        give them) split by mprotect() of one page per ``stride`` into PTE-mapped folios
        in many VMAs, then one munmap of all but the last ``keep`` pages (a folio left
        partly mapped stays queued for deferred split). With ``holes``, MADV_DONTNEED
        first zaps a few pages (none entries among the PTEs). With a ``child``, fork()
        write-protects the PTEs; after the child exits, writes reuse some pages (those
        PTEs writable and dirty again, the rest not: one folio_pte_batch() run across
        both); a child that stays shares the folios during the munmap, and unmaps them
        at its exit."""
        i = pick % len(self.procs[0])
        n = thps * 512

        def step(s: System, ps: list[Process]) -> None:
            a = ps[i].mmap(n * PAGE_SIZE)
            ps[i].madvise(a, n * PAGE_SIZE, "hugepage")
            ps[i].touch(a, n * PAGE_SIZE)
            for k in range(1, n, stride):
                ps[i].mprotect(a + k * PAGE_SIZE, PAGE_SIZE, prot)
            if holes:
                ps[i].madvise(a + 300 * PAGE_SIZE, 5 * PAGE_SIZE, "dontneed")
            forked = ps[i].fork() if child else None
            if forked is not None and child == "exits":
                forked.exit()
                for k in range(7, n, 200):
                    ps[i].write(a + k * PAGE_SIZE, 3)
            ps[i].munmap(a, (n - keep) * PAGE_SIZE)
            if forked is not None and child == "stays":
                forked.exit()

        self._both(step)

    @precondition(lambda self: len(self.procs[0]) > 1)
    @rule(pick=PICK)
    def exit(self, pick: int) -> None:
        i = 1 + pick % (len(self.procs[0]) - 1)
        self._both(lambda s, ps: ps.pop(i).exit())
        self.regions = [(j - (j > i), a, n) for j, a, n in self.regions if j != i]
        self.thps = [(j - (j > i), a, n) for j, a, n in self.thps if j != i]

    @invariant()
    def same(self) -> None:
        if not hasattr(self, "systems"):
            return
        a, b = self.systems
        sa, sb = snapshot(a.machine), snapshot(b.machine)
        assert [k for k in sa if sa[k] != sb[k]] == []
        assert a.trace.events == b.trace.events
        assert a.trace.costs == b.trace.costs
        assert a.check() == b.check()
        assert self.bug or a.check() == []

    def teardown(self) -> None:
        """Every process exits (exit_mmap() zaps all that is left), the same on both."""
        if not hasattr(self, "systems"):
            return
        for i in reversed(range(len(self.procs[0]))):
            self._both(lambda s, ps: ps.pop(i).exit())  # noqa: B023 - called at once
        self.same()


TestBatchedVsPerPage = BatchedVsPerPage.TestCase
TestBatchedVsPerPage.settings = settings(
    max_examples=200, stateful_step_count=10, deadline=None, database=None,
    suppress_health_check=list(HealthCheck))


def test_the_batch_is_taken() -> None:
    """The scenarios exercise the batched fault: a long touch takes it, page by page it
    does not (so equality above is not two per-page runs compared)."""
    s = System(ram="16M")
    p = s.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "nohugepage")
    p.touch(a, PAGE_SIZE)  # the first fault allocates the table and the anon_vma
    vma = p.vma_at(a)
    assert vma is not None
    s.batch = False
    assert len(do_anonymous_page_run(vma, a + PAGE_SIZE, a + 2 * MiB)[2]) == 0
    s.batch = True
    table, first, pfns = do_anonymous_page_run(vma, a + PAGE_SIZE, a + 2 * MiB)
    assert len(pfns) == 511 and first == 1 and table


def test_batch_switch_refuses_a_non_bool() -> None:
    s = System(ram="16M")
    with pytest.raises(MmError, match="batch must be True or False"):
        s.batch = 1  # type: ignore[assignment]
    assert s.batch is True


def _spy(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    """Replace ``module.name`` by a wrapper that records what each call returned (or its
    argument's length, for a function returning None)."""
    seen: list[Any] = []
    real = getattr(module, name)

    def spy(*args: Any) -> Any:
        got = real(*args)
        seen.append(len(args[-1]) if got is None else got)
        return got

    monkeypatch.setattr(module, name, spy)
    return seen


def _both_ways(steps: Callable[[Process, int], None], size: int, advice: str,
               ram: str = "24M") -> list[tuple[Any, ...]]:
    """``steps(process, addr)`` on a touched region of ``size`` bytes, batch on then off:
    the two machines' snapshot, events and costs."""
    states = []
    for batch in (True, False):
        s = System(ram=ram, thp="madvise")
        s.batch = batch
        p = s.spawn()
        a = p.mmap(size)
        p.madvise(a, size, advice)
        p.touch(a, size)
        steps(p, a)
        states.append((snapshot(s.machine), s.trace.events, s.trace.costs))
    return states


def _stripes(p: Process, a: int, size: int) -> None:
    """mprotect() one page per 2 MiB to read-only (the benchmark's step)."""
    for off in range(0, size, 2 * MiB):
        p.mprotect(a + off + PAGE_SIZE, PAGE_SIZE, "r")


def test_a_munmap_zaps_its_tables_in_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """munmap() of a region of 4 KiB pages over several tables takes the batched zap once
    (zap_pte_ranges()), and leaves what the per-page zap leaves."""
    import pyfolio.mm.memory_batch as mb

    calls = _spy(monkeypatch, mb, "_zap_small_anon")
    states = _both_ways(lambda p, a: p.munmap(a, 6 * MiB), 6 * MiB, "nohugepage")
    assert calls == [3 * 512] and states[0] == states[1]


@pytest.mark.parametrize("fork", [False, True])
def test_the_split_fallback_migration_is_batched(monkeypatch: pytest.MonkeyPatch,
                                                 fork: bool) -> None:
    """THPs to a device without 2 MiB pages (each split into 512 folios), back by the
    driver, to the device again and back by CPU faults: the batched pages and finalize
    steps are taken, and leave what the per-entry path leaves (a THP shared by fork()
    meets the kernel bug of the split fallback both ways alike)."""
    import pyfolio.lib.dmirror_batch as dmb
    import pyfolio.mm.migrate_device as md
    import pyfolio.mm.migrate_device_collect as mdc

    taken: list[str] = []

    def counting(name: str, mod: Any = md) -> Callable[..., Any]:
        real = getattr(mod, name)

        def counted(*args: Any) -> Any:
            got = real(*args)
            if got:
                taken.append(name)
            return got
        return counted

    for name in ("migrate_device_finalize_run", "migrate_folios_run", "migrate_pages_run",
                 "migrate_device_unmap_run"):
        monkeypatch.setattr(md, name, counting(name))
    monkeypatch.setattr(mdc, "collect_device_ptes_run", counting("collect_device_ptes_run", mdc))
    monkeypatch.setattr(dmb, "devmem_fault_alloc_and_copy_run",
                        counting("devmem_fault_alloc_and_copy_run", dmb))
    monkeypatch.setattr(dmb, "devmem_alloc_pages_run", counting("devmem_alloc_pages_run", dmb))
    states = []
    for batch in (True, False):
        s = System(ram="32M", thp="madvise", device="8M")
        s.batch = batch
        p = s.spawn()
        a = p.mmap(6 * MiB)
        p.madvise(a, 6 * MiB, "hugepage")
        p.touch(a, 6 * MiB - 3 * PAGE_SIZE, 5)
        if fork:
            p.fork()
        assert s.device is not None
        s.device.large_pages = False
        got = [_outcome(lambda: s.device.migrate_to_device(p, a, 4 * MiB)),  # noqa: B023
               _outcome(lambda: s.device.migrate_to_system(p, a, 6 * MiB)),  # noqa: B023
               _outcome(lambda: s.device.migrate_to_device(p, a, 6 * MiB))]  # noqa: B023
        got += [_outcome(lambda: p.read(a + k * PAGE_SIZE))  # noqa: B023
                for k in range(0, 1536, 97)]
        states.append((snapshot(s.machine), s.trace.events, s.trace.costs, got, s.check()))
    assert states[0] == states[1]
    every = {"migrate_device_finalize_run", "migrate_folios_run", "migrate_pages_run",
             "migrate_device_unmap_run", "collect_device_ptes_run",
             "devmem_fault_alloc_and_copy_run", "devmem_alloc_pages_run"}
    assert "migrate_folios_run" in taken and (fork or set(taken) == every)


def test_a_munmap_across_many_vmas_is_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """munmap() of a region that mprotect() cut into many VMAs zaps them all in one step
    (unmap_vmas_run()), and leaves what the per-VMA, per-page zap leaves."""
    import pyfolio.mm.mmap as mmap_mod

    taken = _spy(monkeypatch, mmap_mod, "unmap_vmas_run")

    def steps(p: Process, a: int) -> None:
        _stripes(p, a, 6 * MiB)
        assert len(p.mm.vmas) == 7
        p.munmap(a, 6 * MiB)

    states = _both_ways(steps, 6 * MiB, "nohugepage")
    assert taken == [True, False] and states[0] == states[1]


def test_a_munmap_of_pte_mapped_thps_is_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's THP steps: mprotect() of one page per 2 MiB splits each PMD and
    cuts the region into VMAs; munmap() then zaps the PTE-mapped THPs of all those VMAs
    in one step (deferred split queueing, frees and events as the per-page zap leaves),
    and free_pgtables() frees their 4 PTE tables in one step too."""
    import pyfolio.mm.memory_batch as mb

    taken = _spy(monkeypatch, mb, "unmap_large_runs")
    walk = mb.free_pte_tables_run
    tables: list[int] = []

    def counted(*args: Any) -> bool:
        got = walk(*args)
        tables.append(len(args[-1]))  # the PTE tables freed so far
        return got

    monkeypatch.setattr(mb, "free_pte_tables_run", counted)

    def steps(p: Process, a: int) -> None:
        _stripes(p, a, 8 * MiB)
        p.munmap(a, 8 * MiB)

    states = _both_ways(steps, 8 * MiB, "hugepage", ram="32M")
    assert taken == [True] and states[0] == states[1]
    assert [e.name for e in states[0][1]].count("deferred_split_folio") == 4
    assert tables == [4]  # free_pgtables() walked the PMD table in one step


def test_a_munmap_leaving_thps_partly_mapped_is_one_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PTE-mapped THPs whose PTEs differ in their write and dirty bits (fork() made them
    read-only, writes after the child's exit made some writable again: one
    folio_pte_batch() run across both), with holes MADV_DONTNEED left, munmapped but for
    a few pages at each end: the batched zap is taken, the two folios left partly mapped
    stay on the deferred split queue (flagged, counted), the others are freed off it, and
    everything is as the per-page zap leaves it."""
    import pyfolio.mm.memory_batch as mb

    taken = _spy(monkeypatch, mb, "unmap_large_runs")
    queues = []

    def steps(p: Process, a: int) -> None:
        _stripes(p, a, 8 * MiB)
        p.madvise(a + 900 * PAGE_SIZE, 4 * PAGE_SIZE, "dontneed")
        p.fork().exit()
        for k in range(7, 2048, 300):
            p.write(a + k * PAGE_SIZE, 3)
        p.munmap(a + 2 * PAGE_SIZE, 8 * MiB - 5 * PAGE_SIZE)
        queues.append(list(p.system.machine.deferred_split_queue))

    states = _both_ways(steps, 8 * MiB, "hugepage", ram="32M")
    assert taken[-1] is True and states[0] == states[1]
    assert len(queues[0]) == 2 and queues[0] == queues[1]
    assert states[0][0]["vmstat"]["thp_deferred_split_page"] == 4


@pytest.mark.parametrize("fork", [False, True])
def test_the_thp_splits_are_batched(monkeypatch: pytest.MonkeyPatch, fork: bool) -> None:
    """MADV_FREE and MADV_COLD of part of a THP take the batched folio split, the batched
    MADV_FREE PTE walk and lazyfree batch (100 pages: the batch fills past 31 and is moved
    on the way), mprotect() and munmap() of part of one the batched PMD split; and they
    leave what the per-entry paths leave. A THP fork() shared is left alone by MADV_FREE
    (no split) and split at the PMD by mprotect()."""
    import pyfolio.mm.huge_memory as hm
    import pyfolio.mm.huge_memory_split as hms
    import pyfolio.mm.madvise as madvise
    import pyfolio.mm.swap_batch as sb

    seen = {name: _spy(monkeypatch, mod, name) for mod, name in (
        (hms, "folio_split_pmd_mapped_run"), (hm, "split_huge_pmd_present_run"),
        (madvise, "madvise_free_pte_run"), (sb, "folio_batch_move_lru_run"))}

    def steps(p: Process, a: int) -> None:
        if fork:
            p.fork()
        p.madvise(a + 5 * PAGE_SIZE, 10 * PAGE_SIZE, "free")
        p.madvise(a + 2 * MiB + PAGE_SIZE, 100 * PAGE_SIZE, "free")
        p.madvise(a + 4 * MiB, 10 * PAGE_SIZE, "cold")
        p.mprotect(a + 6 * MiB + PAGE_SIZE, PAGE_SIZE, "r")
        p.munmap(a + 8 * MiB + 3 * PAGE_SIZE, 20 * PAGE_SIZE)
        p.madvise(a + 6 * MiB, 2 * MiB, "free")  # a PTE-mapped THP: per PTE

    states = _both_ways(steps, 10 * MiB, "hugepage", ram="48M")
    assert states[0] == states[1]
    taken = {name: [x for x in got if x] for name, got in seen.items()}
    assert len(taken["split_huge_pmd_present_run"]) == 2
    if fork:
        assert not taken["folio_split_pmd_mapped_run"]
    else:
        assert len(taken["folio_split_pmd_mapped_run"]) == 3
        assert taken["madvise_free_pte_run"] and taken["folio_batch_move_lru_run"]
