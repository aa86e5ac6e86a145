"""Property tests: random sequences of mm operations keep every invariant.

Random mmap, touch, write, mprotect, munmap, madvise, fork, pin/unpin and exit across
several processes; debug_vm.check() after every step; at the end every process exits
and every frame is free again (no leaked frame, no leaked page table).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyfolio import KiB, MiB, MmError, System
from pyfolio.mm.debug_vm import snapshot

OPS = st.sampled_from(["mmap", "touch", "write", "read", "mprotect", "munmap", "madvise",
                       "fork", "pin", "unpin", "exit"])
STEP = st.tuples(OPS, st.integers(0, 7), st.integers(0, 1023), st.integers(1, 600),
                 st.sampled_from(["hugepage", "nohugepage", "dontneed", "free"]),
                 st.sampled_from(["r", "rw"]))


def _apply(m: System, regions: list, op: str, who: int, off: int, n: int, adv: str,
           prot: str) -> None:
    procs = m.processes
    if not procs:
        m.spawn()
        return
    p = procs[who % len(procs)]
    if op == "mmap" or not regions:
        regions.append(p.mmap(4 * MiB))
        if op != "mmap":
            return
    a = regions[off % len(regions)] + (off * 37 % 1024) * 4 * KiB
    length = min(n, 1024 - (a - regions[off % len(regions)]) // 4096) * 4 * KiB
    if op == "touch":
        p.touch(a, length)
    elif op == "write":
        p.write(a, off + 1)
    elif op == "read":
        p.read(a)
    elif op == "mprotect":
        p.mprotect(a, length, prot)
    elif op == "munmap":
        p.munmap(a, length)
    elif op == "madvise":
        p.madvise(a, length, adv)
    elif op == "fork" and len(procs) < 4:
        p.fork()
    elif op == "pin":
        p.pin(a, min(length, 8 * KiB))
    elif op == "unpin" and p._pins:
        pinned_at, _pfn = p._pins[0]  # the oldest pin this process holds: (address, pfn)
        p.unpin(pinned_at, 4 * KiB)
    elif op == "exit" and len(procs) > 1:
        p.exit()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=1, max_size=14), st.sampled_from(["always", "madvise", "never"]))
def test_random_operations_keep_invariants(steps: list, thp: str) -> None:
    m = System(ram="24M", thp=thp)
    free = m.nr_free_pages()
    m.spawn()
    regions: list[int] = []
    for step in steps:
        before = snapshot(m.machine)
        try:
            _apply(m, regions, *step)
        except MmError as e:
            # A refused system call or a single faulting access changes nothing. touch is
            # many accesses (a memset): pages written before the faulting one stay written,
            # as they would on Linux; so do pages faulted in before an ENOMEM.
            if e.errno != 12 and step[0] != "touch":
                assert snapshot(m.machine) == before, f"{step} failed with {e} but changed state"
        assert m.check() == [], step
    for p in list(m.processes):
        p.exit()
    assert m.check() == []
    assert m.nr_free_pages() + (1 if m.machine.huge_zero_pfn < 0 else 513) == free + 1
    assert m.machine.pgtables == {}
