"""The kernel cross-reference comes from the docstrings' Models: lines."""

from __future__ import annotations

import pytest

from pyfolio.mm import huge_memory as huge_memory
from pyfolio.mm import memory as memory
from pyfolio.mm import page_alloc as page_alloc
from pyfolio.mm import rmap as rmap
from pyfolio.reading.xref import kernel_refs, read_the_kernel, xref_table


def test_every_modelled_function_names_a_kernel_file_and_function() -> None:
    refs = kernel_refs()
    assert len(refs) > 80
    for r in refs:
        assert r.kernel, f"{r.python}: Models: line names no file.c:function()"
        assert r.kernel[0][0].startswith(("mm/", "include/", "arch/", "kernel/", "fs/", "lib/"))


def test_core_kernel_functions_are_all_in_the_table() -> None:
    table = xref_table()
    for fn in ("split_huge_pmd", "do_huge_pmd_anonymous_page", "__folio_remove_rmap",
               "copy_huge_pmd", "take_page_off_buddy", "__handle_mm_fault", "copy_pte_range"):
        assert f"`{fn}()`" in table


def test_read_the_kernel_lists_file_and_function() -> None:
    text = read_the_kernel(huge_memory.split_huge_pmd, memory.do_wp_page,
                           rmap.folio_add_new_anon_rmap, page_alloc.alloc_pages)
    items = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(items) == 4
    assert items[0] == ("- [`mm/huge_memory.c:split_huge_pmd()`]"
                        "(https://elixir.bootlin.com/linux/v6.18/C/ident/split_huge_pmd), "
                        "modelled by {pysrc}`pyfolio.mm.huge_memory.split_huge_pmd`")
    assert "[`mm/memory.c:do_wp_page()`](" in items[1]
    # one index entry per kernel function, so the book's index lists them
    assert text.endswith("```{index} split_huge_pmd(), do_wp_page(), folio_add_new_anon_rmap(), "
                         "__rmqueue_smallest(), expand()\n```")


def test_series_functions_link_to_the_merge_release() -> None:
    from pyfolio.mm import huge_memory_split as split

    text = read_the_kernel(split.folio_split_unmapped, split.__folio_split)
    assert "v6.19/C/ident/folio_split_unmapped) (v6.19)" in text
    # the v7 series' `unmapped` flag was never merged: __folio_split is read at v6.18
    assert "v6.18/C/ident/__folio_split)" in text


def test_read_the_kernel_refuses_functions_without_models_line() -> None:
    with pytest.raises(ValueError, match="has no 'Models:' line"):
        read_the_kernel(test_read_the_kernel_lists_file_and_function)


# -- the reference list, missing citations, the back-matter page ------------------------------
import re  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

from pyfolio.reading.xref import (  # noqa: E402
    KERNEL_SOURCES,
    chapters_teaching,
    kernel_names,
    model_modules,
    uncited,
    xref_page,
)

ROOT = Path(__file__).resolve().parent.parent

#: Functions that present themselves as kernel functions but had no Models: line when this
#: test was written (reported to the lead). Remove names as they get their citation; a name
#: NOT in this set that lacks one fails the test.
KNOWN_UNCITED: set[str] = set()


def test_every_citation_names_a_file_of_the_reference_list() -> None:
    missing = sorted({f"{path} (cited by {r.python})" for r in kernel_refs()
                      for path, _ in r.kernel if path not in KERNEL_SOURCES})
    assert not missing, f"add these files to pyfolio.reading.xref.KERNEL_SOURCES: {missing}"
    assert all(desc for desc in KERNEL_SOURCES.values())


def test_no_new_kernel_function_without_a_citation() -> None:
    found = {name for mod in model_modules() for name in uncited(mod)}
    new = sorted(found - KNOWN_UNCITED)
    assert not new, f"kernel-style functions without a 'Models:' line: {new}"
    stale = sorted(KNOWN_UNCITED - found)
    assert not stale, f"cited now, remove from KNOWN_UNCITED: {stale}"


def test_uncited_detects_kernel_style_docstrings_and_dunder_names() -> None:
    mod = types.ModuleType("pyfolio.fake")

    def split_thing() -> None:
        """split_thing() - looks like a kernel function."""

    def __inner() -> None:
        """does inner things."""

    def cited() -> None:
        """cited() - a kernel function.

        Models: mm/huge_memory.c:cited() (v6.18).
        """

    def helper() -> None:
        """A Python helper, no kernel name."""

    for fn in (split_thing, __inner, cited, helper):
        fn.__module__ = mod.__name__
        setattr(mod, fn.__name__, fn)
    assert uncited(mod) == ["pyfolio.fake.split_thing", "pyfolio.fake.__inner"]


def test_uncited_detects_public_functions_named_after_cited_kernel_functions() -> None:
    mod = types.ModuleType("pyfolio.fake_names")

    def folio_mapcount() -> None:
        """A helper that happens to carry the name of a modelled kernel function."""

    def _folio_mapcount() -> None:
        """A private helper: not judged by its name."""

    def folio_mapped() -> None:
        """folio_mapped - cited.

        Models: include/linux/mm.h:folio_mapped() (v6.18).
        """

    def split_mapped_folio() -> None:
        """A Python helper whose name no Models: line cites."""

    for fn in (folio_mapcount, _folio_mapcount, folio_mapped, split_mapped_folio):
        fn.__module__ = mod.__name__
        setattr(mod, fn.__name__, fn)
    assert {"folio_mapcount", "folio_mapped"} <= kernel_names()
    assert "split_mapped_folio" not in kernel_names()
    assert uncited(mod) == ["pyfolio.fake_names.folio_mapcount"]
    assert uncited(mod, names=()) == []


def test_dmirror_peek_and_page_mapcount_say_what_they_model() -> None:
    from pyfolio.include.linux import mm as folio
    from pyfolio.lib import dmirror as dmirror

    refs = {r.python: r.kernel for r in kernel_refs()}
    assert refs["pyfolio.lib.dmirror.dmirror_peek"] == (("lib/test_hmm.c", "dmirror_do_read"),)
    assert "pyfolio.include.linux.mm.page_mapcount" not in refs
    assert "page_mapcount" not in kernel_names()
    assert "no kernel counterpart" in (folio.page_mapcount.__doc__ or "")
    assert dmirror.dmirror_peek.__doc__


def test_chapters_teaching_reads_read_the_kernel_calls(tmp_path: Path) -> None:
    (tmp_path / "_toc.yml").write_text("parts:\n  - chapters:\n"
                                       "      - file: chapters/03-x\n"
                                       "      # - file: chapters/04-y\n")
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "03-x.md").write_text(
        "```{code-cell} ipython3\n:tags: [remove-cell]\n\n"
        "glue('k', Markdown(read_the_kernel(\n    a, mod.b)), display=False)\n```\n")
    (tmp_path / "chapters" / "04-y.md").write_text(
        "```{code-cell} ipython3\nread_the_kernel(c)\n```\n")
    assert chapters_teaching(tmp_path) == {"a": ["chapters/03-x"], "b": ["chapters/03-x"]}


#: a kernel link as xref writes it: [`name()`](elixir URL) or [`file:name()`](elixir URL)
KERNEL_LINK = re.compile(r"\[`(?:[\w./-]+:)?(\w+)\(\)`\]\((\S+?)\)")
ELIXIR_IDENT = re.compile(r"https://elixir\.bootlin\.com/linux/(v6\.18|v6\.19)/C/ident/(\w+)")


def _rows(page: str) -> list[list[str]]:
    """The list-table rows of the page: the four cells of each ``* - ...`` item."""
    rows, row = [], None
    for line in page.splitlines():
        if line.startswith("* - "):
            row = [line[4:]]
            rows.append(row)
        elif line.startswith("  - ") and row is not None:
            row.append(line[4:])
    return [r for r in rows if r[0] != "kernel function"]


def test_xref_page_rows_and_chapter_links() -> None:
    page = xref_page(ROOT)
    rows = _rows(page)
    assert len(rows) > 200 and all(len(r) == 4 for r in rows)
    assert page.count("```{rubric} ") == len({p for r in kernel_refs() for p, _ in r.kernel})
    toc = (ROOT / "_toc.yml").read_text()
    for target in set(re.findall(r"</(chapters/[\w-]+)>", page)):
        assert f"- file: {target}\n" in toc, target
    row = next(r for r in rows if "<pyfolio.mm.huge_memory_split.folio_split_unmapped>" in r[1])
    assert "</chapters/12-code-review-lab>" in row[2]
    assert row[0].startswith("[`folio_split_unmapped()`](https://elixir.bootlin.com/linux/v6.19/")


def test_every_kernel_name_in_the_xref_has_a_well_formed_versioned_link() -> None:
    """Offline: the form of each link, not whether the server answers."""
    from pyfolio.reading.xref import SERIES_FUNCTIONS, kernel_version

    page = xref_page(ROOT)
    rows = _rows(page)
    linked = {}
    for row in rows:
        m = KERNEL_LINK.fullmatch(row[0].split(" (v6.19)")[0])
        assert m, f"kernel function without a link: {row[0]}"
        name, url = m.groups()
        u = ELIXIR_IDENT.fullmatch(url)
        assert u and u.group(2) == name, f"{name}: {url}"
        assert row[0].endswith("(v6.19)") == (u.group(1) == "v6.19"), row[0]
        linked.setdefault(name, set()).add(u.group(1))
    refs = kernel_refs()
    assert set(linked) == {fn for r in refs for _, fn in r.kernel}
    for r in refs:
        for _, fn in r.kernel:
            assert kernel_version(r, fn) in linked[fn]
            if fn in SERIES_FUNCTIONS or "merged series" in r.note.split(")")[0]:
                assert kernel_version(r, fn) == "v6.19", r.python
    # every file heading links to the file at v6.18
    for path in re.findall(r"```\{rubric\} (\S+)", page):
        assert f"[`{path}`](https://elixir.bootlin.com/linux/v6.18/source/{path})" in page


def test_every_pyfolio_name_in_the_xref_has_a_source_link() -> None:
    import importlib

    page = xref_page(ROOT)
    targets = re.findall(r"\{pysrc\}`[^`<]*<([\w.]+)>`", page)
    assert len(targets) == len(_rows(page))
    for target in set(targets):
        mod, name = target.rsplit(".", 1)
        assert hasattr(importlib.import_module(mod), name), target


def test_kernel_xref_page_is_back_matter_before_the_glossary() -> None:
    toc = (ROOT / "_toc.yml").read_text()
    assert toc.index("file: book/kernel-xref") < toc.index("file: book/glossary")
    assert "xref_page(" in (ROOT / "book" / "kernel-xref.md").read_text()
