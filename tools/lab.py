"""The lab's working copy of the chapters: what `make lab` opens in JupyterLab.

The chapters in ``chapters/`` are the book's sources and are never opened in the lab. On its
first run ``make lab`` writes one notebook per chapter into ``lab/`` (git-ignored); students
work there, and their edits, answers and outputs stay there across sessions. Later runs add
the notebooks of new chapters and leave existing ones alone (they say which are older than
their chapter). ``reset`` replaces copies with fresh ones; the old ones go to
``lab/.backup/``::

    python tools/lab.py sync         # make lab runs this: create the missing copies
    python tools/lab.py reset 07 10  # chapters 7 and 10 afresh (make lab-reset CH="07 10")
    python tools/lab.py reset        # every chapter afresh (make lab-reset)
    python tools/lab.py convert SRC.md OUT.ipynb   # one chapter, as the lab shows it

A copy reads like the book in JupyterLab with jupyterlab-myst (the `lab` extra): each
``{glue}`` number becomes a jupyterlab-myst inline expression (``{eval}``) that shows the value
once the cells above it have run, a ``{glue:md}`` block the same for its Markdown, ``{term}``
an abbreviation whose tooltip is the glossary's definition, ``{doc}`` a link to the other
notebook. Cells the book hides keep their place, collapsed; cells tagged ``solution`` (the
book's collapsed "Solution" blocks) are left out: in the lab each exercise has its own
"Show solution" button (none in graded mode: ``make lab GRADED=1``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
GLOSSARY = ROOT / "book" / "glossary.md"
LAB = ROOT / "lab"

#: the first code cell of every copy: keeps each glued value, so the prose's {eval} can show it
SETUP = '''\
# Added by `make lab`: keep each glue()d value, so the text above and below can show it.
import myst_nb

glued = {}


def _keep_glued(name, variable, display=True, _glue=myst_nb.glue):
    glued[name] = variable
    return _glue(name, variable, display)


myst_nb.glue = _keep_glued'''
SETUP_TAG = "lab-setup"

#: book tag -> the JupyterLab cell metadata that collapses the same part
_COLLAPSE = {"remove-cell": ("source_hidden", "outputs_hidden"), "hide-cell": ("source_hidden",),
             "remove-input": ("source_hidden",), "hide-input": ("source_hidden",),
             "remove-output": ("outputs_hidden",), "hide-output": ("outputs_hidden",)}

_GLUE_ROLE = re.compile(r"\{glue(?::text)?\}`([\w.-]+)`")
_GLUE_MD = re.compile(r"```\{glue:md\}\s+([\w.-]+)\n(?::[\w-]+:[^\n]*\n)*```")
_TERM = re.compile(r"\{term\}`([^`<]+?)(?:\s*<([^`>]+)>)?`")
_DOC = re.compile(r"\{doc\}`(?:([^`<]+?)\s*<([^`>]+)>|([^`]+))`")


def glossary(path: Path = GLOSSARY) -> dict[str, str]:
    """term (lower case) -> its definition as one line of plain text, from the book's
    ``{glossary}`` block (a term line, then its indented definition)."""
    text = path.read_text()
    block = text[text.index("```{glossary}"):]
    block = block[:block.index("\n```", 3)]
    out: dict[str, list[str]] = {}
    term = None
    for line in block.splitlines()[1:]:
        if not line.strip() or line.startswith(":"):
            continue
        if not line.startswith(" "):
            term = line.strip().lower()
            out[term] = []
        elif term is not None:
            out[term].append(line.strip())
    return {t: _plain(" ".join(d)) for t, d in out.items()}


def _plain(md: str) -> str:
    """Markdown as plain text for a tooltip: roles and code marks dropped, no parentheses
    (the abbreviation role takes its title from the last pair of them)."""
    md = _TERM.sub(lambda m: m.group(1), md)
    md = re.sub(r"\{\w+\}`([^`]*)`", r"\1", md).replace("`", "").replace("$", "")
    return md.replace("(", "- ").replace(")", " -").replace("  ", " ")


def _term(m: re.Match[str], terms: dict[str, str]) -> str:
    text, target = m.group(1).strip(), (m.group(2) or m.group(1)).strip().lower()
    definition = terms.get(target) or terms.get(target.rstrip("s")) or ""
    if not definition:
        return f"*{text}*"
    return f"{{abbr}}`{text} ({definition})`"


def _doc(m: re.Match[str]) -> str:
    text, target = (m.group(1), m.group(2)) if m.group(2) else (None, m.group(3))
    name = Path(target.strip()).name
    if (CHAPTERS / f"{name}.md").is_file() and "/" not in target.strip().lstrip("./"):
        return f"[{text or name}]({name}.ipynb)"
    return f"*{text or name.replace('-', ' ')}* (a page of the book)"


def readable(md: str, terms: dict[str, str]) -> str:
    """A Markdown cell of a chapter as jupyterlab-myst can render it (see the module doc)."""
    md = _GLUE_MD.sub(lambda m: f"{{eval}}`glued[{m.group(1)!r}]`", md)
    md = _GLUE_ROLE.sub(lambda m: f"{{eval}}`glued[{m.group(1)!r}]`", md)
    md = _TERM.sub(lambda m: _term(m, terms), md)
    return _DOC.sub(_doc, md)


def lab_notebook(chapter: Path, terms: dict[str, str] | None = None) -> Any:
    """The lab's notebook for one chapter (an nbformat node; nothing is written)."""
    import jupytext
    import nbformat

    terms = glossary() if terms is None else terms
    nb = jupytext.read(chapter)
    nb.metadata.pop("jupytext", None)
    cells = []
    for cell in nb.cells:
        tags = list(cell.metadata.get("tags", []))
        if "solution" in tags:
            continue
        if cell.cell_type == "markdown":
            cell.source = readable(cell.source, terms)
        elif cell.cell_type == "code":
            for key in {k for t in tags for k in _COLLAPSE.get(t, ())}:
                cell.metadata.setdefault("jupyter", {})[key] = True
        cells.append(cell)
    setup = nbformat.v4.new_code_cell(SETUP, metadata={
        "tags": [SETUP_TAG], "jupyter": {"source_hidden": True}})
    first_md = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), -1)
    cells.insert(first_md + 1, setup)
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["pyfolio_lab"] = {"source": chapter.relative_to(ROOT).as_posix()
                                  if chapter.is_relative_to(ROOT) else str(chapter)}
    nbformat.validator.normalize(nb)
    return nb


def _write(chapter: Path, target: Path, terms: dict[str, str]) -> None:
    import nbformat

    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(lab_notebook(chapter, terms), target)


def chapters(names: Sequence[str] = ()) -> list[Path]:
    """The chapter sources named by number or name prefix ("07", "7", "07-pmd"); all if none."""
    every = sorted(CHAPTERS.glob("[0-9][0-9]-*.md"))
    if not names:
        return every
    out = []
    for name in names:
        key = name.zfill(2) if name.isdigit() else name
        hits = [p for p in every if p.stem.startswith(key)]
        if len(hits) != 1:
            raise SystemExit(f"lab.py: {name!r} names {len(hits)} chapters; "
                             f"chapters: {', '.join(p.stem for p in every)}")
        out += hits
    return out


def sync(lab: Path = LAB) -> list[Path]:
    """Create the copies that are missing; return them. Existing copies are left alone."""
    terms = glossary()
    made = []
    for chapter in chapters():
        target = lab / f"{chapter.stem}.ipynb"
        if not target.exists():
            _write(chapter, target, terms)
            made.append(target)
        elif chapter.stat().st_mtime > target.stat().st_mtime:
            print(f"lab/{target.name}: its chapter changed since; `make lab-reset "
                  f"CH={chapter.stem[:2]}` starts it again (your copy goes to lab/.backup/)")
    return made


def reset(names: Sequence[str] = (), lab: Path = LAB) -> list[Path]:
    """Replace the named copies (all if none) with fresh ones; old ones go to lab/.backup/."""
    terms = glossary()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    done = []
    for chapter in chapters(names):
        target = lab / f"{chapter.stem}.ipynb"
        if target.exists():
            backup = lab / ".backup" / f"{chapter.stem}.{stamp}.ipynb"
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(target, backup)
        _write(chapter, target, terms)
        done.append(target)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/lab.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("sync", help="create the missing copies (make lab runs this)")
    r = sub.add_parser("reset", help="replace copies with fresh ones (all if none named)")
    r.add_argument("chapters", nargs="*", help='e.g. "07" or "07-pmd-to-ptes"')
    c = sub.add_parser("convert", help="write one chapter's lab notebook")
    c.add_argument("source", type=Path)
    c.add_argument("target", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "sync":
        made = sync()
        print(f"lab/: {len(made)} new notebook(s)" if made else "lab/: up to date")
    elif args.cmd == "reset":
        for path in reset(args.chapters):
            print(f"reset {path.relative_to(ROOT)}")
    else:
        _write(args.source, args.target, glossary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
