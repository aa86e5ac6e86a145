"""Benchmark: fault and split THPs, on the simulator and on the running kernel side by side.

For each of 32 THPs in a 64 MiB region (MADV_HUGEPAGE): write all of it (one THP fault),
then MADV_FREE its first 10 pages, which splits the PMD and the folio at once
(mm/huge_memory.c:madvise_free_huge_pmd() -> split_folio(): ``thp_split_pmd`` and
``thp_split_page`` +1 each). Times are per THP. The kernel side runs in this process on its
own mapping (the kernel lab's ctypes helpers) and changes no setting; the THP counters are
read before and after (they are global, so other processes may add to them).
Run alone: ``.venv/bin/python benchmarks/bench_kernel.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyfolio import KiB, MiB, System  # noqa: E402

N = 32
THP = 2 * MiB
FREE = 10 * 4 * KiB
COUNTERS = ("thp_fault_alloc", "thp_split_pmd", "thp_split_page")


def simulator() -> tuple[float, float, dict[str, int]]:
    """Seconds per THP to fault it and to split it, and the counters' deltas."""
    m = System(ram=N * THP + 64 * MiB, thp="madvise")
    m.trace.enabled = False
    p = m.spawn()
    a = p.mmap(N * THP)
    p.madvise(a, N * THP, "hugepage")
    before = m.vmstat()
    t0 = time.perf_counter()
    for i in range(N):
        p.touch(a + i * THP, THP)
    t1 = time.perf_counter()
    for i in range(N):
        p.madvise(a + i * THP, FREE, "free")
    t2 = time.perf_counter()
    after = m.vmstat()
    assert m.check() == []
    return (t1 - t0) / N, (t2 - t1) / N, {c: after[c] - before.get(c, 0) for c in COUNTERS}


def kernel() -> tuple[float, float, dict[str, int]] | str:
    """The same on the running kernel, or the reason it cannot run here."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    import ctypes

    from pyfolio.kernel_lab import _child, readers

    try:
        settings = readers.thp_settings()
        before = readers.vmstat()
    except readers.Unavailable as e:
        return e.reason
    if readers.thp_policy(settings) == "never":
        return "THP is set to never"
    libc, madv = _child._libc, _child.MADV
    a = _child._map_region(N * THP)
    try:
        if libc.madvise(a, N * THP, madv["hugepage"]):
            return f"madvise(MADV_HUGEPAGE) failed: errno {ctypes.get_errno()}"
        t0 = time.perf_counter()
        for i in range(N):
            ctypes.memset(a + i * THP, 0x5A, THP)
        t1 = time.perf_counter()
        for i in range(N):
            libc.madvise(a + i * THP, FREE, madv["free"])
        t2 = time.perf_counter()
        after = readers.vmstat()
    finally:
        libc.munmap(a, N * THP)
    return (t1 - t0) / N, (t2 - t1) / N, {c: after[c] - before.get(c, 0) for c in COUNTERS}


def run() -> None:
    print(f"== kernel side by side: fault and split {N} THPs (MADV_FREE of 10 pages each) ==")
    sim = simulator()
    real = kernel()
    print(f"   {'per THP':24s} {'simulator µs':>13s} {'kernel µs':>10s} {'ratio':>7s}")
    for i, step in enumerate(("fault (write 2 MiB)", "split (MADV_FREE 40 KiB)")):
        if isinstance(real, str):
            print(f"   {step:24s} {sim[i] * 1e6:13.0f} {'n/a':>10s} {'n/a':>7s}")
        else:
            print(f"   {step:24s} {sim[i] * 1e6:13.0f} {real[i] * 1e6:10.0f} "
                  f"{sim[i] / real[i]:7.2f}")
    print(f"   counters, simulator: {sim[2]}")
    print(f"   counters, kernel:    {real if isinstance(real, str) else real[2]}")


if __name__ == "__main__":
    run()
