"""Execute every chapter listed in _toc.yml in a fresh kernel (one test per chapter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ChapterExecutionError, chapter_params, executed_chapter, toc_chapters

CHAPTER_FILES = toc_chapters()


@pytest.mark.notebook
@pytest.mark.parametrize("chapter", chapter_params(CHAPTER_FILES))
def test_chapter_executes(chapter: Path) -> None:
    try:
        executed_chapter(chapter)  # executed in this run (shared with the browser test)
    except ChapterExecutionError as exc:
        failure = str(exc)
    else:
        return
    pytest.fail(f"chapter {failure}", pytrace=False)
