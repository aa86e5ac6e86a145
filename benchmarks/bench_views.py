"""Benchmark: latency of a large view (issue 5); each widget's action is in bench_widgets.py.

- a 1 GiB region view: region_strip of a 1 GiB mapping (half PMD-mapped) rendered to PNG;
  target median under 300 ms.

Run alone: ``.venv/bin/python benchmarks/bench_views.py``; ``make bench`` calls ``main()``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

from pyfolio import MiB, System  # noqa: E402
from pyfolio.views import region_strip  # noqa: E402
from pyfolio.widgets._common import png  # noqa: E402

TARGETS = {"region_strip 1 GiB + PNG": 0.300}


def times(setup: Callable[[], Callable[[], object]], n: int) -> list[float]:
    """``n`` timings (s) of the callable ``setup()`` returns; ``setup`` itself is not timed."""
    out = []
    for _ in range(n):
        act = setup()
        t0 = time.perf_counter()
        act()
        out.append(time.perf_counter() - t0)
    return out


def main(n: int = 15) -> dict[str, tuple[float, float]]:
    m = System(ram="1G", thp="always", seed=0)
    m.trace.enabled = False
    p = m.spawn()
    a = p.mmap(1024 * MiB)
    p.touch(a, 512 * MiB)
    results = {}
    for name, setup in (("region_strip 1 GiB + PNG",
                         lambda: (lambda: png(region_strip(p, a, 1024 * MiB)))),):
        ts = sorted(times(setup, n))
        med, p95 = statistics.median(ts), ts[min(len(ts) - 1, int(0.95 * len(ts)))]
        results[name] = (med, p95)
        ok = "ok" if med < TARGETS[name] else "OVER TARGET"
        print(f"{name:40s} median {med * 1e3:7.1f} ms  p95 {p95 * 1e3:7.1f} ms  "
              f"(target {TARGETS[name] * 1e3:.0f} ms median: {ok})")
    return results


if __name__ == "__main__":
    main()
