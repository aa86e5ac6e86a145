"""The built site, read as files (no browser): the furniture a static reader relies on.

Needs the built book (``make book``; ``make test`` builds it first). The browser test
(tests/test_browser.py) checks what needs a rendered page: layout, widgets, contrast.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import ROOT, toc_files

sys.path.insert(0, str(ROOT / "tools"))
from book_extras.download import BOOK_URL, wheel_name  # noqa: E402
from book_extras.site import book_version  # noqa: E402

HTML = ROOT / "_build" / "html"
PAGES = toc_files()
CHAPTERS = [p for p in PAGES if p.startswith("chapters/")]
ELIXIR = re.compile(
    r"https://elixir\.bootlin\.com/linux/(v6\.18|v6\.19)/(C/ident/\w+|source(/[\w./-]+)?)")

pytestmark = pytest.mark.skipif(not (HTML / "index.html").is_file(),
                                reason="no built book: run `make book`")


def page(doc: str) -> str:
    return (HTML / f"{doc}.html").read_text()


class Links(HTMLParser):
    """Every <a href> of a page with its text, and every id."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.ids: set[str] = set()
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "a" and a.get("href") is not None:
            self._href, self._text = str(a["href"]), []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text)))
            self._href = None


@functools.cache
def parsed(path: Path) -> Links:
    p = Links()
    p.feed(path.read_text())
    return p


# -- footer, scripts, search box -----------------------------------------------------------
@pytest.mark.parametrize("doc", PAGES)
def test_every_page_has_version_and_build_date_and_one_search_box_and_no_thebe(doc: str) -> None:
    html = page(doc)
    assert re.search(rf"Splitting Folios {re.escape(book_version())} \(pyfolio [\d.]+\), "
                     r"built \d{4}-\d\d-\d\d; models Linux 6\.18\.", html)
    assert "THEBE" not in html and "thebe" not in html.lower()
    assert html.count('class="btn search-button-field') == 1  # the sidebar's, not the header's


# -- chapters: numbering, links, captions, solutions ----------------------------------------
@pytest.mark.parametrize("doc", CHAPTERS)
def test_chapter_is_numbered_and_its_figures_are_captioned(doc: str) -> None:
    html = page(doc)
    n = int(Path(doc).name[:2])
    assert re.search(rf'<span class="section-number">{n}\.\s*</span>', html), "not numbered"
    captions = re.findall(r'<span class="caption-number">Fig\. ([\d.]+) </span>', html)
    figures = html.count("<figure")
    assert figures and len(captions) == figures, f"{figures} figures, {len(captions)} numbered"
    assert all(c.startswith(f"{n}.") for c in captions), captions
    # every <img> the page ships in its HTML has real alt text, not a file name
    for alt in re.findall(r'<img[^>]*\balt="([^"]*)"', html):
        assert alt.strip() and not re.search(r"\.(png|svg|jpe?g)$|^\.\./", alt), alt
    assert not re.search(r"<img(?![^>]*\balt=)[^>]*>", html), "an <img> without alt"


@pytest.mark.parametrize("doc", CHAPTERS)
def test_chapter_n_in_prose_links_to_chapter_n(doc: str) -> None:
    links = parsed(HTML / f"{doc}.html").links
    for href, text in links:
        m = re.fullmatch(r"[Cc]hapters? (\d+)|(\d+)", text.strip())
        if m and "chapters/" in href or (m and re.match(r"\d\d-", href)):
            num = int(m.group(1) or m.group(2))
            assert re.search(rf"(^|/){num:02d}-[\w-]+\.html", href), (text, href)
    # no "chapter N" left as plain text: every occurrence is inside a link
    text = re.sub(r"<a [^>]*>.*?</a>", "", page(doc), flags=re.S)
    text = re.sub(r"<(script|pre|code)[^>]*>.*?</\1>", "", text, flags=re.S)
    assert not re.search(r"\b[Cc]hapters? \d+\b", re.sub(r"<[^>]+>", "", text)), doc


@pytest.mark.parametrize("doc", CHAPTERS)
def test_solutions_are_labelled_solution(doc: str) -> None:
    html = page(doc)
    for block in re.findall(r"<details[^>]*>.*?</details>", html, flags=re.S):
        if ".solution(" in re.sub(r"<[^>]+>", "", block):
            assert "Show solution" in block and "Show code cell content" not in block


def test_no_entrys_anywhere() -> None:
    for doc in PAGES:
        assert "entrys" not in page(doc), doc


# -- the cross-reference: into the kernel and into pyfolio's source -------------------------
def test_every_kernel_function_in_the_xref_links_to_elixir_at_its_version() -> None:
    from pyfolio.reading.xref import kernel_refs, kernel_version

    links = parsed(HTML / "book" / "kernel-xref.html").links
    elixir = [(href, text) for href, text in links if "elixir.bootlin.com" in href]
    assert all(ELIXIR.fullmatch(href) for href, _ in elixir), \
        [h for h, _ in elixir if not ELIXIR.fullmatch(h)]
    linked = {(href.rsplit("/", 1)[1], href.split("/")[4]) for href, text in elixir
              if "/C/ident/" in href and text.endswith("()")}
    for r in kernel_refs():
        for _, fn in r.kernel:
            assert (fn, kernel_version(r, fn)) in linked, fn


@pytest.mark.parametrize("doc", [*CHAPTERS, "book/kernel-xref"])
def test_source_links_resolve_to_an_anchor_of_a_source_page(doc: str) -> None:
    links = [h for h, _ in parsed(HTML / f"{doc}.html").links if "_modules/" in h]
    if doc == "book/kernel-xref" or "Read the kernel" in page(doc):
        assert links, f"{doc}: no link into pyfolio's source"
    for href in links:
        path, _, anchor = href.partition("#")
        target = (HTML / doc).parent / path
        assert target.is_file(), href
        if anchor:
            assert anchor in parsed(target).ids, href


def test_read_the_kernel_boxes_link_into_the_kernel() -> None:
    for doc in CHAPTERS:
        html = page(doc)
        if 'admonition-title">Read the kernel' not in html:
            continue
        box = html[html.index('admonition-title">Read the kernel'):]
        assert ELIXIR.search(box), doc


# -- search and index ---------------------------------------------------------------------
def _search_index() -> dict:
    text = (HTML / "searchindex.js").read_text()
    return json.loads(text[text.index("(") + 1:text.rindex(")")])


def test_search_for_folio_split_finds_the_pages_of_folio_split_unmapped() -> None:
    idx = _search_index()
    docs = idx["docnames"]
    terms = idx["terms"]

    def pages(word: str) -> set[str]:
        hits = terms.get(word, [])
        return {docs[i] for i in ([hits] if isinstance(hits, int) else hits)}

    with_unmapped = pages("folio_split_unmap") | pages("folio_split_unmapped")
    assert {"chapters/11-no-huge-page-on-the-device", "chapters/12-code-review-lab"} <= \
        with_unmapped
    assert with_unmapped <= pages("folio_split"), with_unmapped - pages("folio_split")


def test_the_index_lists_kernel_functions() -> None:
    html = (HTML / "genindex.html").read_text()
    assert "folio_split_unmapped()" in html and "split_huge_pmd()" in html


# -- the simulator from the site ----------------------------------------------------------
def test_the_site_serves_the_wheel_with_the_package_and_its_data() -> None:
    wheel = HTML / "wheel" / wheel_name()
    assert wheel.is_file()
    names = zipfile.ZipFile(wheel).namelist()
    assert "pyfolio/__init__.py" in names and "pyfolio/mm/huge_memory.py" in names
    assert "pyfolio/kernel_lab/recorded/observations.json" in names
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Requires-Dist: myst-nb" in requires
    assert "jupyter-book" not in requires.split("Provides-Extra: book")[0]


def test_how_to_gives_the_pip_command_for_the_wheel() -> None:
    html = page("book/how-to-use")
    assert re.search(rf'pip install <a class="pyfolio-wheel" href="\.\./wheel/{wheel_name()}">',
                     html)
    assert 'id="run-live"' in html


@pytest.mark.parametrize("doc", CHAPTERS)
def test_downloaded_notebook_installs_the_wheel_first(doc: str) -> None:
    import nbformat

    nb = nbformat.read(HTML / "_sources" / f"{doc}.ipynb", as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "code" and "pyfolio-install" in first.metadata["tags"]
    assert f'WHEEL = "{BOOK_URL}/wheel/{wheel_name()}"' in first.source
    assert 'find_spec("pyfolio") is None' in first.source
    assert sum("pyfolio-install" in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert f'href="../_sources/{doc}.ipynb"' in page(doc)  # offered in the download menu


def test_bibliography_prints_no_latex_keeps_case_and_cites_each_work_distinctly() -> None:
    refs = re.sub(r"<[^>]+>", "", page("book/references"))
    assert "\\texttt" not in refs and "texttt" not in refs
    for kept in ("mm/huge_memory.c", "lib/test_hmm.c", "(HMM)", "THP", "folio_split_unmapped"):
        assert kept in refs, kept
    for lost in ("Mm/huge", "Lib/test", "(hmm)"):
        assert lost not in refs, lost
    cited = re.findall(r'<a class="reference internal" href="references\.html#id\d+"[^>]*>'
                       r"([^<]+)</a>", page("book/intro"))
    assert len(cited) == 4 and len(set(cited)) == 4, cited
