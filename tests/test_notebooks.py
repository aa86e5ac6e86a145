"""Execute every chapter listed in _toc.yml in a fresh kernel (one test per chapter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ChapterExecutionError, execute_chapter, toc_chapters

CHAPTER_FILES = toc_chapters()


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", CHAPTER_FILES, ids=[p.stem for p in CHAPTER_FILES])
def test_chapter_executes(chapter: Path) -> None:
    try:
        execute_chapter(chapter)
    except ChapterExecutionError as exc:
        failure = str(exc)
    else:
        return
    pytest.fail(f"chapter {failure}", pytrace=False)
