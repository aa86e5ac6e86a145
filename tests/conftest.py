"""Shared helpers for the book-level tests (chapters, TOC, built HTML).

Kept minimal: the repository root, the chapters the TOC lists, and execution of a chapter with
nbclient. An execution is kept on disk for the rest of the same pytest run (keyed by run and by
the chapter's and pyfolio's sources), so the notebook test and the browser test of a chapter
(grouped onto one xdist worker) execute it once; every run executes every chapter afresh.
Unit tests of pyfolio need nothing from here.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
EXEC_ROOT = ROOT / ".pytest_cache" / "executed-chapters"
RUN_VAR = "SPLITTING_FOLIOS_TEST_RUN"  # set by the controller, inherited by xdist workers
EXEC_TIMEOUT = 300  # seconds per cell, as in _config.yml


def _toc_files(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                yield node[key]
        for value in node.values():
            yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def toc_files() -> list[str]:
    """Every document named in _toc.yml, without suffix, in TOC order."""
    import yaml

    return list(dict.fromkeys(_toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))))


def toc_chapters() -> list[Path]:
    """The chapter files (under chapters/) that _toc.yml lists."""
    return [ROOT / f"{name}.md" for name in toc_files() if name.startswith("chapters/")]


class ChapterExecutionError(Exception):
    """A chapter cell raised (or timed out); the message names the chapter, cell and traceback."""


def _describe_failure(chapter: Path, nb: Any, exc: Exception) -> str:
    """Name the failing code cell by number and by line in the .md file, then nbclient's text."""
    text = chapter.read_text()
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    # The cell with an error output; for a timeout or a dead kernel, the first one not finished.
    failed = [c for c in code_cells if any(o.get("output_type") == "error" for o in c.outputs)]
    failed = failed or [c for c in code_cells if c.get("execution_count") is None]
    where = "an unknown cell"
    if failed:
        cell = failed[0]
        offset = text.find(cell.source) if cell.source else -1
        line = text.count("\n", 0, offset) + 1 if offset >= 0 else "?"
        where = f"code cell {code_cells.index(cell) + 1} of {len(code_cells)} (line {line})"
    rel = chapter.relative_to(ROOT).as_posix()
    return f"{rel}: {where} failed: {type(exc).__name__}\n{exc}"


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller already chose the run id
    os.environ[RUN_VAR] = uuid.uuid4().hex[:12]
    # executions of earlier runs; a run that started in the last hour may still be going
    stale = time.time() - 3600
    for run in EXEC_ROOT.glob("*") if EXEC_ROOT.is_dir() else ():
        if run.stat().st_mtime < stale:
            shutil.rmtree(run, ignore_errors=True)


def _cache_path(chapter: Path) -> Path:
    run = os.environ.get(RUN_VAR, "no-run")
    return EXEC_ROOT / run / f"{chapter.stem}-{_source_digest(chapter)}.ipynb"


def _source_digest(chapter: Path) -> str:
    h = hashlib.sha256(chapter.read_bytes())
    for path in sorted((ROOT / "pyfolio").rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def execute_chapter(chapter: Path) -> Any:
    """Run a chapter in a fresh kernel (cwd chapters/) and return the executed notebook.

    Raises ChapterExecutionError naming the chapter, the cell (number and .md line), the cell's
    source and the traceback (from nbclient's CellExecutionError).
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    nb = jupytext.read(chapter)
    client = NotebookClient(
        nb,
        timeout=EXEC_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(CHAPTERS)}},
        allow_errors=False,
    )
    try:
        client.execute()
    except Exception as exc:  # CellExecutionError, CellTimeoutError, DeadKernelError
        raise ChapterExecutionError(_describe_failure(chapter, nb, exc)) from None
    target = _cache_path(chapter)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(target)  # atomic: another xdist worker may be writing the same file
    return nb


def executed_chapter(chapter: Path) -> Any:
    """The executed notebook of a chapter, executing it unless this run already did."""
    import nbformat

    cached = _cache_path(chapter)
    if cached.is_file():
        return nbformat.read(cached, as_version=4)
    return execute_chapter(chapter)


def chapter_params(chapters: list[Path]) -> list[Any]:
    """One parameter per chapter, grouped by chapter for ``pytest -n 2 --dist loadgroup``."""
    return [pytest.param(c, id=c.stem, marks=pytest.mark.xdist_group(c.stem)) for c in chapters]


def glued(chapter: Path) -> dict[str, Any]:
    """The values a chapter glued into its prose (myst_nb ``glue``), from the executed
    notebook of this run: name -> the Python value of its text/plain output (the text itself
    when it is not a literal)."""
    import ast

    out: dict[str, Any] = {}
    for cell in executed_chapter(chapter).cells:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if meta:
                text = o.get("data", {}).get(meta.get("mime_prefix", "") + "text/plain", "")
                try:
                    out[meta["name"]] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    out[meta["name"]] = text.strip("'\"")
    return out
