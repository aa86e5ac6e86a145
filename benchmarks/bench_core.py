"""Core benchmark: a 1 GiB anonymous region on the simulator and on the running kernel.

Steps (each timed): fault every page, mprotect one page per 2 MiB (512 PMD splits with
THP), munmap everything; once with MADV_HUGEPAGE (512 THPs) and once with MADV_NOHUGEPAGE
(262,144 4 KiB faults). The kernel side uses ctypes mmap/madvise/memset/mprotect/munmap in
this process on its own mapping and changes no system setting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import mmap as _mmap
import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from pyfolio import GiB, KiB, MiB, System

SIZE = 1 * GiB
MADV_HUGEPAGE, MADV_NOHUGEPAGE = 14, 15
STEPS = ("fault every page", "mprotect 1 page per 2 MiB", "munmap all")


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _rss_mb() -> float:
    """This process's resident memory now (Linux /proc/self/statm), else its peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _mmap.PAGESIZE / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulator(thp: bool) -> tuple[list[float], float]:
    """Seconds per step and the simulator's memory (MB): resident memory added by building
    the machine and faulting the region in. The simulator runs as a user gets it (trace
    on, up to its event limit; the batched paths on: ``System.batch``). Timed without tracemalloc, which would slow
    every allocation several times over."""
    gc.collect()
    base = _rss_mb()
    m = System(ram=SIZE + 256 * MiB, thp="madvise")  # default settings: the trace is on
    p = m.spawn()
    a = p.mmap(SIZE)
    p.madvise(a, SIZE, "hugepage" if thp else "nohugepage")
    times = [_timed(lambda: p.touch(a, SIZE))]
    used = _rss_mb() - base
    times += [
        _timed(lambda: [p.mprotect(a + off + 4 * KiB, 4 * KiB, "r")
                        for off in range(0, SIZE, 2 * MiB)]),
        _timed(lambda: p.munmap(a, SIZE)),
    ]
    assert m.check() == []
    return times, used


def simulator_alone(thp: bool) -> tuple[list[float], float, float]:
    """simulator() in a fresh process (spawned: nothing inherited): its times, the memory
    its faults added, and that process's peak RSS (MB), interpreter and NumPy included."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_simulator_and_peak, thp).result()


def _simulator_and_peak(thp: bool) -> tuple[list[float], float, float]:
    # a forked-then-exec'd child inherits its parent's high-water mark: reset it first
    # (proc(5): writing 5 to clear_refs resets VmHWM to the current RSS)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    times, used = simulator(thp)
    return times, used, _peak_mb()


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM), else getrusage's ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def kernel(thp: bool) -> list[float] | None:
    """The same steps on the running kernel, or None where it cannot run (not Linux)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    for fn in (libc.madvise, libc.mprotect, libc.munmap):
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int][: 3 if fn is not
                                                                          libc.munmap else 2]
    addr = libc.mmap(None, SIZE, _mmap.PROT_READ | _mmap.PROT_WRITE,
                     _mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS, -1, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        return None
    libc.madvise(addr, SIZE, MADV_HUGEPAGE if thp else MADV_NOHUGEPAGE)
    return [
        _timed(lambda: ctypes.memset(addr, 1, SIZE)),
        _timed(lambda: [libc.mprotect(addr + off + 4096, 4096, _mmap.PROT_READ)
                        for off in range(0, SIZE, 2 * MiB)]),
        _timed(lambda: libc.munmap(addr, SIZE)),
    ]


def run() -> None:
    print("== core: 1 GiB anonymous region (simulator vs running kernel) ==")
    for thp in (True, False):
        label = "THP (512 x 2 MiB)" if thp else "no THP (262,144 x 4 KiB)"
        sim, used, peak = simulator_alone(thp)
        real = kernel(thp)
        verdict = "ok" if peak < 300 else "OVER TARGET"
        print(f"-- {label}; simulator: peak RSS {peak:.0f} MB (target < 300 MB: {verdict}), "
              f"{used:.0f} MB of it added by the faults")
        print(f"   {'step':28s} {'simulator s':>12s} {'kernel s':>10s} {'ratio':>8s}")
        for i, step in enumerate(STEPS):
            k = f"{real[i]:10.4f}" if real else f"{'n/a':>10s}"
            r = f"{sim[i] / real[i]:8.2g}" if real and real[i] > 0 else f"{'n/a':>8s}"
            print(f"   {step:28s} {sim[i]:12.3f} {k} {r}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"benchmark process peak RSS (the kernel runs' 1 GiB): {rss:.0f} MB")


if __name__ == "__main__":
    run()
