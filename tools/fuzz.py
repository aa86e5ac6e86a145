"""make fuzz: run the facade fuzzer (tests/fuzz_facade.py) for many sequences and print a
one-line summary.

    python tools/fuzz.py [--sequences N] [--seconds S] [--steps K] [--seed BASE]

Runs batches of FacadeMachine sequences, each batch with its own hypothesis seed (BASE,
BASE + 1, ...), until N sequences have run or S seconds have passed (FUZZ_SEQUENCES,
FUZZ_SECONDS, FUZZ_STEPS and FUZZ_SEED set the defaults). A batch that fails is shrunk by
hypothesis and reported (its falsifying sequence is printed), classified as a violation
(check() or the VMAs), a data mismatch, a leak, a bad-input defect or a crash (any other
exception), and the run goes on with the next batch. Exits 1 if any batch failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_facade import (  # noqa: E402
    STATS,
    BadInputDefect,
    DataMismatch,
    FacadeMachine,
    InvariantBroken,
    LeakFound,
)
from hypothesis import HealthCheck, seed, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

KINDS = {InvariantBroken: "violations", DataMismatch: "mismatches", LeakFound: "leaks",
         BadInputDefect: "bad-input defects"}


def classify(e: BaseException) -> str:
    """The summary's name for what a failing batch raised (hypothesis may wrap several)."""
    for cls, name in KINDS.items():
        if isinstance(e, cls):
            return name
    inner = getattr(e, "exceptions", None)  # an ExceptionGroup of distinct failures
    if inner:
        return classify(inner[0])
    return "crashes"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sequences", type=int, default=int(os.environ.get("FUZZ_SEQUENCES", 20000)))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 0)))
    ap.add_argument("--steps", type=int, default=int(os.environ.get("FUZZ_STEPS", 16)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", 0)))
    ap.add_argument("--batch", type=int, default=250)
    args = ap.parse_args()
    failures = {name: 0 for name in list(KINDS.values()) + ["crashes"]}
    start, cpu0 = time.monotonic(), time.process_time()
    STATS.reset()
    batch = 0
    while STATS.sequences < args.sequences:
        if args.seconds and time.monotonic() - start >= args.seconds:
            break
        n = min(args.batch, args.sequences - STATS.sequences)
        factory = seed(args.seed + batch)(FacadeMachine)
        try:
            run_state_machine_as_test(factory, settings=settings(
                max_examples=n, stateful_step_count=args.steps, deadline=None,
                database=None, suppress_health_check=list(HealthCheck)))
        except Exception as e:  # noqa: BLE001 - every failure is counted and shown
            kind = classify(e)
            failures[kind] += 1
            print(f"fuzz: batch {batch} (seed {args.seed + batch}) failed: {kind}",
                  file=sys.stderr)
            traceback.print_exception(e, limit=3, file=sys.stderr)
        batch += 1
    wall, cpu = time.monotonic() - start, time.process_time() - cpu0
    cov = STATS.coverage
    print(f"fuzz: {STATS.sequences} sequences, {STATS.steps} steps, "
          f"{failures['violations']} violations, {failures['mismatches']} mismatches, "
          f"{failures['leaks']} leaks, {failures['bad-input defects']} bad-input defects, "
          f"{failures['crashes']} crashes; {STATS.kernel_bugs} sequences stopped at the known "
          f"kernel bug (A), {STATS.kernel_warns} at the known kernel WARN (test_hmm.c), "
          f"{STATS.refused} refusals and {STATS.bad_inputs} bad inputs "
          f"checked unchanged, {STATS.out_of_memory} out-of-memory failures checked "
          f"consistent; {cov['thp_fault_alloc']} THP faults, {cov['thp_split_page']} folio "
          f"splits, {cov['device_pages']} device pages; seeds {args.seed}.."
          f"{args.seed + batch - 1}, {wall:.0f} s ({cpu:.0f} s CPU)")
    return 1 if any(failures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
