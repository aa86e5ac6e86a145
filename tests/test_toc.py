"""_toc.yml and the files on disk must agree."""

from __future__ import annotations

from conftest import CHAPTERS, ROOT, toc_files


def test_every_chapter_is_in_the_toc() -> None:
    listed = {ROOT / f"{name}.md" for name in toc_files()}
    on_disk = CHAPTERS.glob("*.md")
    missing = sorted(p.relative_to(ROOT).as_posix() for p in on_disk if p not in listed)
    assert not missing, f"chapters missing from _toc.yml: {missing}"


def test_every_toc_entry_exists() -> None:
    absent = [
        name
        for name in toc_files()
        if not any((ROOT / f"{name}{suffix}").is_file() for suffix in (".md", ".ipynb", ".rst"))
    ]
    assert not absent, f"_toc.yml names files that do not exist: {absent}"


def test_toc_lists_at_least_one_chapter() -> None:
    assert any(name.startswith("chapters/") for name in toc_files())


def test_every_chapter_has_its_own_test_file() -> None:
    """chapters/NN-name.md -> tests/chapters/test_NN_name.py, which names the chapter."""
    missing = []
    for chapter in sorted(CHAPTERS.glob("*.md")):
        test = ROOT / "tests" / "chapters" / f"test_{chapter.stem.replace('-', '_')}.py"
        rel = chapter.relative_to(ROOT).as_posix()
        if not test.is_file() or rel not in test.read_text():
            missing.append(rel)
    assert not missing, f"chapters without a test file naming them: {missing}"
