"""Execute every chapter listed in _toc.yml in a fresh kernel (one test per chapter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, execute_chapter, toc_chapters

CHAPTER_FILES = toc_chapters()


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", CHAPTER_FILES, ids=[p.stem for p in CHAPTER_FILES])
def test_chapter_executes(chapter: Path) -> None:
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    try:
        execute_chapter(chapter)
    except (CellExecutionError, CellTimeoutError) as exc:
        pytest.fail(
            f"chapter {chapter.relative_to(ROOT)} failed while executing a cell:\n{exc}",
            pytrace=False,
        )
