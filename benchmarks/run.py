"""`make bench`: run every benchmark module present and print its figures."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODULES = ("bench_core", "bench_split", "bench_migrate", "bench_views", "bench_widgets",
           "bench_kernel")

if __name__ == "__main__":
    for name in MODULES:
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as e:
            print(f"({name}: not present: {e})")
            continue
        runner = getattr(mod, "main", None) or mod.run  # main(): the entry point, if any
        runner()
        print()
