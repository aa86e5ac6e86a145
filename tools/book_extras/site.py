"""The book's look and page furniture: stylesheet and script, footer, search box, buttons.

- ``book/_assets/book.css`` and ``book.js`` on every page (the folder is not the book's
  ``_static/``, whose ``.js`` files Jupyter Book would add a second time).
- The footer says which version of the book and of pyfolio this is, when it was built, and
  which Linux it models (``SOURCE_DATE_EPOCH``, when set, fixes the date).
- One search box: the sidebar's (the header bar's copy is switched off).
- The repository button appears when ``repository.url`` in _config.yml is set.
- A collapsed cell holding an exercise's worked solution (tagged ``solution``, or a hidden cell
  that calls ``.solution()``) is labelled "Show solution", not "Show code cell content".
"""

from __future__ import annotations

import datetime as dt
import html
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from docutils import nodes

ASSETS = Path("book") / "_assets"
DIST = "splitting-folios"


def book_version() -> str:
    try:
        return version(DIST)
    except PackageNotFoundError:  # not installed: read pyproject.toml
        import tomllib

        root = Path(__file__).resolve().parents[2]
        return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def build_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch
            else dt.datetime.now(dt.UTC))
    return when.date().isoformat()


def _footer(extra: str) -> str:
    from pyfolio.reading.xref import KERNEL_VERSION

    line = (f"<p class='pyfolio-build'>Splitting Folios {html.escape(book_version())} "
            f"(pyfolio {html.escape(book_version())}), built {build_date()}; "
            f"models Linux {KERNEL_VERSION.lstrip('v')}.</p>")
    return f"{extra}{line}" if extra else line


def _configure(app: Any, config: Any) -> None:
    opts = config.html_theme_options
    config.html_static_path = [*config.html_static_path, str(Path(app.srcdir) / ASSETS)]
    opts["extra_footer"] = _footer(str(opts.get("extra_footer") or ""))
    # pydata-sphinx-theme puts a search field in the header bar too; the sidebar's is enough
    opts["navbar_persistent"] = []
    if opts.get("repository_url"):
        opts["use_repository_button"] = True


def _is_solution(cell: nodes.Element) -> bool:
    tags = cell.get("cell_metadata", {}).get("tags", [])
    if "solution" in tags:
        return True
    return any(".solution(" in block.astext() for block in cell.findall(nodes.literal_block))


def label_solutions(app: Any, doctree: nodes.document) -> None:
    for cell in doctree.findall(nodes.container):
        if (cell.get("nb_element") == "cell_code" and cell.get("hide_mode") == "all"
                and _is_solution(cell)):
            cell["prompt_show"], cell["prompt_hide"] = "Show solution", "Hide solution"


def _refresh_assets(app: Any, exception: Exception | None) -> None:
    """Copy book.css and book.js again: when no page is out of date Sphinx copies no static
    file, so an edit of the stylesheet alone would never reach the site."""
    if exception is None and app.builder.format == "html":
        import shutil

        for f in (Path(app.srcdir) / ASSETS).glob("book.*"):
            shutil.copy2(f, Path(app.outdir) / "_static" / f.name)


def setup(app: Any) -> None:
    app.connect("config-inited", _configure, priority=200)
    app.connect("build-finished", _refresh_assets)
    app.connect("doctree-read", label_solutions)
    app.add_css_file("book.css")
    app.add_js_file("book.js", defer="defer")
