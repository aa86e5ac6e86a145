"""python -m pyfolio.exercises CHAPTER -s SEED [-k KIND] [-c]: print a seeded question set.

Like OSTEP's homework simulators it echoes its parameters first (``ARG seed 3``), prints
the questions, and with ``-c`` (``--solve``) the worked answers. The same seed always prints
the same text (golden files in tests/golden pin it).

For a graded class (see book/instructor.md):

- ``CHAPTER --student ID [--secret S]``: that student's graded questions (seed
  ``seed_for(ID, secret)``; the secret defaults to $PYFOLIO_SECRET), ``-c`` for the key;
- ``grade answers.csv [--secret S] [--roster R] [-o OUT]``: the batch grader;
- ``assignment CHAPTER --course DIR``: the nbgrader source notebook;
- ``instances CHAPTER --course DIR (--roster R | --students A,B) [--secret S]``: a filled
  copy of the nbgrader release notebook per student;
- ``deliver CHAPTER --course DIR --hub URL (--roster R | --students A,B)``: each instance
  into its student's server on a JupyterHub; ``collect`` (same arguments) copies them back
  into nbgrader's ``submitted/`` (the API token: $JUPYTERHUB_API_TOKEN);
- ``variety``: how much every kind varies over seeds 1..100.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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


def _instances_main(argv: Sequence[str]) -> int:
    from pyfolio.exercises.assignments import write_instances
    from pyfolio.exercises.grading import secret_from

    ap = argparse.ArgumentParser(prog="python -m pyfolio.exercises instances",
                                 description="Fill the nbgrader release notebook of a chapter "
                                             "with each student's questions.")
    ap.add_argument("chapter", type=int)
    ap.add_argument("--course", required=True, help="the nbgrader course directory")
    _students(ap)
    ap.add_argument("--secret", help="the instructor's secret (default: $PYFOLIO_SECRET)")
    args = ap.parse_args(argv)
    try:
        students = _read_students(args)
        for path in write_instances(args.chapter, args.course, students,
                                    secret_from(args.secret)):
            print(path)
    except (ValueError, OSError) as e:
        ap.error(str(e))
    return 0


def _students(ap: argparse.ArgumentParser) -> None:
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--roster", help="CSV with a 'student' or 'id' column")
    who.add_argument("--students", help="student ids, separated by commas")


def _read_students(args: argparse.Namespace) -> list[str]:
    from pyfolio.exercises.grading import read_roster

    if args.roster:
        return sorted(read_roster(Path(args.roster).read_text()))
    return [s.strip().lower() for s in args.students.split(",") if s.strip()]


def _hub_main(verb: str, argv: Sequence[str]) -> int:
    """deliver / collect: through a JupyterHub's API (token: $JUPYTERHUB_API_TOKEN)."""
    import os

    from pyfolio.exercises.assignments import assignment_id
    from pyfolio.exercises.hub import HubClient, collect, deliver

    what = ("copy each student's instance into their server (starting it if needed)"
            if verb == "deliver" else "copy each student's notebook into submitted/")
    ap = argparse.ArgumentParser(prog=f"python -m pyfolio.exercises {verb}",
                                 description=f"{verb.capitalize()} a chapter's assignment: "
                                             f"{what}. The API token comes from "
                                             f"$JUPYTERHUB_API_TOKEN.")
    ap.add_argument("chapter", type=int)
    ap.add_argument("--course", required=True, help="the nbgrader course directory")
    ap.add_argument("--hub", required=True, help="the hub's address, e.g. https://hub.uni.edu")
    _students(ap)
    args = ap.parse_args(argv)
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        ap.error("set JUPYTERHUB_API_TOKEN to an API token with the scopes admin:users, "
                 "admin:servers and access:servers")
    try:
        students = _read_students(args)
        client = HubClient(args.hub, token)
        aid = assignment_id(args.chapter)
        if verb == "deliver":
            client.start_servers(students)
            done = deliver(client, args.course, aid, students)
        else:
            done = [str(p) for p in collect(client, args.course, aid, students)]
    except (ValueError, OSError, RuntimeError) as e:
        ap.error(str(e))
    print("\n".join(map(str, done)))
    return 0


def _assignment_main(argv: Sequence[str]) -> int:
    from pyfolio.exercises.assignments import write_source

    ap = argparse.ArgumentParser(prog="python -m pyfolio.exercises assignment",
                                 description="Write a chapter's nbgrader source notebook.")
    ap.add_argument("chapter", type=int)
    ap.add_argument("--course", required=True, help="the nbgrader course directory")
    args = ap.parse_args(argv)
    try:
        print(write_source(args.chapter, args.course))
    except ValueError as e:
        ap.error(str(e))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["grade"]:
        from pyfolio.exercises.grading import grade_main

        return grade_main(argv[1:])
    if argv[:1] == ["assignment"]:
        return _assignment_main(argv[1:])
    if argv[:1] == ["instances"]:
        return _instances_main(argv[1:])
    if argv[:1] in (["deliver"], ["collect"]):
        return _hub_main(argv[0], argv[1:])
    if argv[:1] == ["variety"]:
        from pyfolio.exercises.variety import variety_table

        sys.stdout.write(variety_table() + "\n")
        return 0
    ap = argparse.ArgumentParser(prog="python -m pyfolio.exercises",
                                 description="Seeded exercises for the book's chapters. Also: "
                                             "grade, assignment, instances, deliver, collect, "
                                             "variety (each with --help).")
    ap.add_argument("chapter", nargs="?", type=int, help=f"chapter: {sorted(CHAPTERS)}")
    ap.add_argument("--chapter", dest="chapter_opt", type=int, help="the same, as an option")
    ap.add_argument("-s", "--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--student", help="a student's graded questions: the seed is "
                                      "seed_for(STUDENT, secret) (instructors)")
    ap.add_argument("--secret", help="with --student: the secret (default: $PYFOLIO_SECRET)")
    ap.add_argument("-k", "--kind", help="only this kind of exercise")
    ap.add_argument("-c", "--solve", action="store_true", help="print the worked answers")
    args = ap.parse_args(argv)
    chapter = args.chapter if args.chapter is not None else args.chapter_opt
    if chapter is None:
        ap.error("give a chapter, e.g. `python -m pyfolio.exercises 4 -s 3`")
    seed = args.seed
    try:
        if args.student is not None:
            from pyfolio.exercises.grading import secret_from, seed_for

            seed = seed_for(args.student, secret_from(args.secret))
        elif args.secret is not None:
            ap.error("--secret needs --student")
        text = render(chapter, seed, args.kind, args.solve)
    except ValueError as e:
        ap.error(str(e))
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
