"""Benchmark: split every THP of a 1 GiB region (512 order-9 folios) to order 0.

``run(report)`` is what ``make bench`` (benchmarks/run.py) calls; ``report(name, seconds)``
receives each step's wall time. Run alone: ``.venv/bin/python benchmarks/bench_split.py``.
Target: under 0.5 s per step on 2 cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pyfolio import GiB, System
from pyfolio.include.linux.mm import folio_get, folio_lock, folio_put, folio_unlock, page_folio
from pyfolio.mm.huge_memory_split import folio_split, split_folio_to_order

TARGET_SECONDS = 0.5


def _region() -> tuple[System, list[int]]:
    """A fresh 1280M machine with a touched, madvised 1 GiB region: 512 PMD-mapped THPs."""
    m = System(ram="1280M", thp="madvise", seed=0)
    m.trace.enabled = False
    p = m.spawn()
    a = p.mmap(GiB)
    p.madvise(a, GiB, "hugepage")
    p.touch(a, GiB)
    heads = [p.folio_at(a + i * 512 * 4096).pfn for i in range(512)]
    assert all(page_folio(m.machine, h).order == 9 for h in heads)
    return m, heads


def _split_all(m: System, heads: list[int], uniform: bool) -> float:
    """Split each THP to order 0 (uniformly, or buddy-style at its page 0); seconds."""
    mm = m.machine
    t0 = time.perf_counter()
    for h in heads:
        folio = page_folio(mm, h)
        folio_get(folio)
        folio_lock(folio)
        ret = split_folio_to_order(folio, 0) if uniform else folio_split(folio, 0, h, None)
        assert ret == 0, ret
        folio_unlock(folio)
        folio_put(folio)
    return time.perf_counter() - t0


def run(report: Callable[[str, float], None]) -> dict[str, float]:
    """Both steps on fresh machines; checks the result; reports and returns the seconds."""
    out = {}
    for name, uniform in (("split 512 THPs to order 0, uniform", True),
                          ("split 512 THPs to order 0, non-uniform at page 0", False)):
        m, heads = _region()
        secs = _split_all(m, heads, uniform)
        assert m.vmstat()["thp_split_page"] == 512 and m.check() == []
        report(name, secs)
        out[name] = secs
    return out


def main() -> None:
    run(lambda name, s: print(f"{name}: {s:.3f} s (target < {TARGET_SECONDS} s)"))


if __name__ == "__main__":
    main()
