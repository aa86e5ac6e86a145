"""python -m pyfolio.exercises CHAPTER -s SEED [-k KIND] [-c]: print a seeded question set.

Like OSTEP's homework simulators it echoes its parameters first (``ARG seed 3``), prints
the questions, and with ``-c`` (``--solve``) the worked answers. The same seed always prints
the same text (golden files in tests/golden pin it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyfolio.exercises import CHAPTERS, kinds, make

__all__ = ["main", "render"]


def render(chapter: int, seed: int, kind: str | None = None, solve: bool = False) -> str:
    """The text the CLI prints for these parameters."""
    out = [f"ARG chapter {chapter}", f"ARG seed {seed}", f"ARG kind {kind or 'all'}",
           f"ARG solve {solve}", ""]
    for n, k in enumerate([kind] if kind else kinds(chapter), 1):
        ex = make(chapter, k, seed)
        out += [f"Question {n} ({k}): {ex.title}", ex.question(), ""]
        if solve:
            out += [ex.solution(), ""]
        else:
            out += ["(compute the answer, then run with -c to check it)", ""]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyfolio.exercises",
                                 description="Seeded exercises for the book's chapters.")
    ap.add_argument("chapter", nargs="?", type=int, help=f"chapter: {sorted(CHAPTERS)}")
    ap.add_argument("--chapter", dest="chapter_opt", type=int, help="the same, as an option")
    ap.add_argument("-s", "--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("-k", "--kind", help="only this kind of exercise")
    ap.add_argument("-c", "--solve", action="store_true", help="print the worked answers")
    args = ap.parse_args(argv)
    chapter = args.chapter if args.chapter is not None else args.chapter_opt
    if chapter is None:
        ap.error("give a chapter, e.g. `python -m pyfolio.exercises 4 -s 3`")
    try:
        text = render(chapter, args.seed, args.kind, args.solve)
    except ValueError as e:
        ap.error(str(e))
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
