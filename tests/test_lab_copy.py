"""tools/lab.py: the lab's working copy of the chapters (what `make lab` opens).

The copy is made once and then belongs to the student: sync never overwrites it, reset keeps
the old copy in lab/.backup/. Its Markdown is what jupyterlab-myst renders (no glue, term or doc
roles left), and the book's "Solution" cells are not in it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("lab", ROOT / "tools" / "lab.py")
assert _spec and _spec.loader
lab: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lab)

RAW = re.compile(r"\{glue|\{term\}|\{doc\}")


def test_glossary_reads_every_term_as_plain_text() -> None:
    terms = lab.glossary()
    assert {"pmd", "folio", "thp", "entire mapcount", "anon-exclusive"} <= set(terms)
    assert all(d and "`" not in d and "(" not in d and "{" not in d for d in terms.values())


def test_readable_markdown() -> None:
    terms = {"pmd": "Page Middle Directory entry - level 2 -"}
    md = ("A {term}`PMD` maps {glue:text}`ch07_ref0` and {glue}`x.y` pages; see "
          "{doc}`chapter 12 <12-code-review-lab>` and {doc}`../book/how-to-use`; "
          "{term}`unknown words`.\n\n```{glue:md} ch07_kernel\n:format: myst\n```\n")
    out = lab.readable(md, terms)
    assert out == ("A {abbr}`PMD (Page Middle Directory entry - level 2 -)` maps "
                   "{eval}`glued['ch07_ref0']` and {eval}`glued['x.y']` pages; see "
                   "[chapter 12](12-code-review-lab.ipynb) and *how to use* (a page of the "
                   "book); *unknown words*.\n\n{eval}`glued['ch07_kernel']`\n")


@pytest.mark.parametrize("chapter", sorted((ROOT / "chapters").glob("[0-9][0-9]-*.md")),
                         ids=lambda p: p.stem)
def test_every_chapter_becomes_a_readable_notebook_without_solutions(chapter: Path) -> None:
    nb = lab.lab_notebook(chapter)
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [s for s in md if RAW.search(s)], chapter.name
    assert not [c for c in code if "solution" in c.metadata.get("tags", [])]
    assert not any(".solution()" in c.source or "solution_details(" in c.source for c in code)
    assert code[0].metadata["tags"] == [lab.SETUP_TAG] and nb.cells[0].cell_type == "markdown"
    glue_cells = [c for c in code if "glue(" in c.source and "remove-cell" in
                  c.metadata.get("tags", [])]
    assert all(c.metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
               for c in glue_cells)
    assert nb.metadata["kernelspec"]["name"] == "python3" and "jupytext" not in nb.metadata


def test_sync_keeps_student_work_and_reset_backs_it_up(tmp_path: Path) -> None:
    made = lab.sync(tmp_path)
    assert sorted(p.name for p in made) == sorted(
        f"{p.stem}.ipynb" for p in (ROOT / "chapters").glob("[0-9][0-9]-*.md"))
    mine = tmp_path / "07-pmd-to-ptes.ipynb"
    nb = json.loads(mine.read_text())
    nb["cells"][0]["source"] = "my notes"
    mine.write_text(json.dumps(nb))
    assert lab.sync(tmp_path) == [] and "my notes" in mine.read_text()
    assert lab.reset(["7"], tmp_path) == [mine]
    assert "my notes" not in mine.read_text()
    backups = list((tmp_path / ".backup").glob("07-pmd-to-ptes.*.ipynb"))
    assert len(backups) == 1 and "my notes" in backups[0].read_text()
    with pytest.raises(SystemExit, match="names 0 chapters"):
        lab.reset(["99"], tmp_path)


def test_lab_folder_is_ignored_by_git() -> None:
    assert "lab/" in (ROOT / ".gitignore").read_text().split()
