"""Benchmark: every widget's action, model + redraw (issue 14: under 100 ms median each).

Each action is timed from the control's change (what a click or a slider move does in the
kernel) to the new PNG and text being set on the widget; whatever prepares the next sample
(a Reset, a fresh widget) is not timed. What the browser adds (the comm round trip, decoding
the PNG) is measured by tests/test_lab.py, click to redrawn DOM, in .pytest_cache/lab-latency.json.

Run alone: ``.venv/bin/python benchmarks/bench_widgets.py``; ``make bench`` calls ``main()``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")

from pyfolio import MiB, System  # noqa: E402
from pyfolio.exercises import make  # noqa: E402
from pyfolio.exercises.widget import exercise_widget  # noqa: E402
from pyfolio.widgets import (  # noqa: E402
    address_walker,
    buddy_explorer,
    device_fault_explorer,
    fault_explorer,
    folio_inspector,
    fork_cow_scenario,
    pmd_remap_viewer,
    refcount_watcher,
    split_explorer,
)
from pyfolio.widgets.design_review import design_review  # noqa: E402
from pyfolio.widgets.migration_cost import cost_explorer  # noqa: E402

try:
    from benchmarks.bench_views import times
except ModuleNotFoundError:  # run as a script: benchmarks/ is on the path, not the root
    from bench_views import times  # type: ignore[no-redef]

TARGET_S = 0.100

#: an action: ``prepare()`` (not timed) returns the timed callable
Action = Callable[[], Callable[[], object]]


def _cycle(values: list[object], set_value: Callable[[object], None]) -> Action:
    """An action that sets the next of ``values`` each time."""
    state = {"i": 0}

    def prepare() -> Callable[[], object]:
        state["i"] += 1
        v = values[state["i"] % len(values)]
        return lambda: set_value(v)
    return prepare


def actions() -> dict[str, Action]:
    """name -> action, one or more per widget of the book."""
    out: dict[str, Action] = {}
    b = buddy_explorer()

    def buddy() -> Callable[[], object]:
        b.reset()
        b.order.value = 3
        return b.alloc_button.click
    out["ch02 buddy explorer: allocate"] = buddy

    fi = folio_inspector()
    out["ch03 folio inspector: page slider"] = _cycle(
        [1, 2, 3, 100], lambda v: setattr(fi.page, "value", v))
    m = System(ram="64M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 4 * MiB)
    aw = address_walker(p, a, 4 * MiB)
    # a picture is kept per address shown: a first visit draws, a revisit does not
    out["ch04 address walker: slider (first visit)"] = _cycle(
        [a + i * 0x1000 for i in range(1, 1024)], lambda v: setattr(aw.addr, "value", v))
    aw_seen = address_walker(p, a, 4 * MiB)
    out["ch04 address walker: slider (seen before)"] = _cycle(
        [a + 0x1000, a + 0x200000, a + 0x201000], lambda v: setattr(aw_seen.addr, "value", v))
    out["ch04 address walker: typed address (first visit)"] = _cycle(
        [hex(a + i * 0x1000 + 0x234) for i in range(1, 1024)],
        lambda v: setattr(aw.typed, "value", v))

    fe = fault_explorer()

    def fault() -> Callable[[], object]:
        fe.reset()
        return fe.run_button.click
    out["ch05 fault explorer: run"] = fault

    # a frame's picture is kept once drawn (a recorded frame never changes)
    def frame_first() -> Callable[[], object]:
        w = refcount_watcher(fork_cow_scenario)
        w.run()
        return lambda: setattr(w.slider, "value", w.slider.max - 1)
    out["ch06 refcount watcher: frame slider (first visit)"] = frame_first
    rw = refcount_watcher(fork_cow_scenario)
    rw.run()
    out["ch06 refcount watcher: frame slider (seen before)"] = _cycle(
        list(range(rw.slider.max + 1)) * 2, lambda v: setattr(rw.slider, "value", v))

    def remap_first() -> Callable[[], object]:
        v = pmd_remap_viewer("munmap part")
        return lambda: setattr(v.step, "value", 5)
    out["ch07 remap viewer: step (first visit)"] = remap_first
    rv = pmd_remap_viewer("munmap part")
    out["ch07 remap viewer: step (seen before)"] = _cycle(
        list(range(rv.step.max + 1)) * 2, lambda v: setattr(rv.step, "value", v))
    out["ch07 remap viewer: trigger"] = _cycle(
        ["mprotect one page", "munmap part", "MADV_DONTNEED part", "COW after fork"],
        lambda v: setattr(rv.trigger, "value", v))

    se = split_explorer()

    def split() -> Callable[[], object]:
        se.reset()
        se.kind.value, se.new_order.value, se.at.value = "non-uniform", 0, 257
        return se.split_button.click
    out["ch08 split explorer: split"] = split

    def pin() -> Callable[[], object]:
        se.reset()
        se.pin_page.value = "3"
        return se.pin_button.click
    out["ch08 split explorer: pin"] = pin
    out["ch08 split explorer: at page slider"] = _cycle(
        [0, 257, 300], lambda v: setattr(se.at, "value", v))

    de = device_fault_explorer(ram="64M", device="8M")

    def migrate() -> Callable[[], object]:
        de.reset()
        return de.migrate_button.click
    out["ch09 device fault explorer: migrate"] = migrate

    def cpu_read() -> Callable[[], object]:
        de.reset()
        de.migrate_button.click()
        return de.read_button.click
    out["ch09 device fault explorer: CPU read"] = cpu_read

    ce = cost_explorer(sizes=[2, 4, 8], size=2, backing="thp")
    out["ch10 cost explorer: backing toggle"] = _cycle(
        ["4k", "thp"], lambda v: setattr(ce.backing, "value", v))
    out["ch10 cost explorer: size slider"] = _cycle(
        [2, 4, 8, 4], lambda v: setattr(ce.size, "value", v))

    dr = design_review(seed=0, thps=1)
    out["ch12 design review: step"] = _cycle(
        list(range(1, dr.step.max + 1)), lambda v: setattr(dr.step, "value", v))
    out["ch12 design review: design"] = _cycle(
        list(dr.design.options), lambda v: setattr(dr.design, "value", v))

    ew = exercise_widget(make(8, "errno", 1))

    def check() -> Callable[[], object]:
        ew.box.value = "-EAGAIN, 1"
        return ew.check
    out["exercise: check an answer"] = check
    return out


def main(n: int = 15) -> dict[str, tuple[float, float]]:
    t0 = time.perf_counter()
    acts = actions()
    print(f"(widgets built in {time.perf_counter() - t0:.1f} s, not timed below)")
    results = {}
    for name, prepare in acts.items():
        ts = sorted(times(prepare, n))
        med, p95 = statistics.median(ts), ts[min(len(ts) - 1, int(0.95 * len(ts)))]
        results[name] = (med, p95)
        ok = "ok" if med < TARGET_S else "OVER TARGET"
        print(f"{name:42s} median {med * 1e3:7.1f} ms  p95 {p95 * 1e3:7.1f} ms  "
              f"(target {TARGET_S * 1e3:.0f} ms median: {ok})")
    return results


if __name__ == "__main__":
    main()
