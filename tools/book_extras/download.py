"""The simulator from the site: the project's wheel, and notebooks that install it.

- The build puts the project's wheel at ``wheel/<name>.whl`` in the site (built with pip from a
  clean copy of ``pyproject.toml``, ``README.md`` and ``pyfolio/``; rebuilt only when those
  change).
- ``{pip-install}`` (a directive, used on the how-to page) prints the one command that installs
  it, with the wheel's address; ``book.js`` turns it into the full address of the page the
  reader is on.
- Each notebook page offers its executed ``.ipynb`` in the download menu (sphinx-book-theme only
  does so when a launch button is configured). The download opens with a cell that installs
  the wheel where ``pyfolio`` is missing. Its address is ``html.baseurl`` + ``wheel/...`` when
  _config.yml sets a base URL; otherwise the file holds :data:`BOOK_URL`, which ``book.js``
  replaces with the site's address when the reader downloads it from the page.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive

from .site import DIST, book_version

WHEEL_DIR = "wheel"
#: the placeholder for the site's address in a notebook downloaded without a base URL
BOOK_URL = "@BOOK_URL@"
#: what the wheel is built from (relative to the book's root)
WHEEL_SOURCES = ("pyproject.toml", "README.md", "pyfolio")
SETUP_TAG = "pyfolio-install"


def wheel_name() -> str:
    return f"{DIST.replace('-', '_')}-{book_version()}-py3-none-any.whl"


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for name in WHEEL_SOURCES:
        p = root / name
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(f.relative_to(root).as_posix().encode())
                h.update(f.read_bytes())
    return h.hexdigest()


def build_wheel(root: Path, dest: Path) -> Path:
    """The project's wheel in ``dest`` (built unless one from the same sources is there)."""
    target, stamp = dest / wheel_name(), dest / ".sources.sha256"
    digest = _digest(root)
    if target.is_file() and stamp.is_file() and stamp.read_text() == digest:
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in WHEEL_SOURCES:
            p = root / name
            if p.is_dir():
                shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(p, src / name)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                        "--no-build-isolation", "--wheel-dir", tmp, str(src)],
                       check=True, capture_output=True, text=True)
        for old in dest.glob("*.whl"):
            old.unlink()
        shutil.copy2(Path(tmp) / wheel_name(), target)
    stamp.write_text(digest)
    return target


def _on_builder_inited(app: Any) -> None:
    if app.builder.format != "html":
        return
    try:
        build_wheel(Path(app.srcdir), Path(app.outdir) / WHEEL_DIR)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"building the wheel for the site failed:\n{exc.stderr}") from None


def wheel_url(app: Any) -> str:
    """The wheel's address as a downloaded notebook should use it."""
    base = str(getattr(app.config, "html_baseurl", "") or "").rstrip("/")
    return f"{base or BOOK_URL}/{WHEEL_DIR}/{wheel_name()}"


def install_cell_source(url: str) -> str:
    return f'''\
# Setup for a notebook downloaded from the book: install the pyfolio simulator where this
# Python lacks it (the book's own build and `make lab` have it, and skip this cell).
import importlib
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("pyfolio") is None:
    WHEEL = "{url}"
    if not WHEEL.startswith(("http://", "https://")):
        raise RuntimeError("this notebook does not know the book's address: download it with "
                           "the download button of the book's page, or install the wheel with "
                           "the command on the book's 'How to use this book' page")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", WHEEL])
    importlib.invalidate_caches()
'''


def with_install_cell(nb: Any, url: str) -> Any:
    """``nb`` with the install cell first (tagged ``pyfolio-install``, never twice)."""
    import nbformat

    cells = [c for c in nb.cells if SETUP_TAG not in c.get("metadata", {}).get("tags", [])]
    cell = nbformat.v4.new_code_cell(install_cell_source(url))
    cell.metadata["tags"] = [SETUP_TAG, "remove-cell"]
    nb.cells = [cell, *cells]
    return nb


def offer_ipynb_download(
    app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    """Write the executed notebook of a MyST page, install cell first, next to its source,
    for the download menu."""
    import nbformat

    if not str(context.get("sourcename", "")).endswith((".md", ".md.txt")):
        return
    executed = Path(app.outdir).parent / "jupyter_execute" / f"{pagename}.ipynb"
    if not executed.is_file():
        return  # not a notebook page
    target = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    nb = with_install_cell(nbformat.read(executed, as_version=4), wheel_url(app))
    nbformat.write(nb, target)
    context["ipynb_source"] = f"{pagename}.ipynb"


class PipInstall(Directive):
    """``{pip-install}``: the command that installs the wheel from this site."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        env = self.state.document.settings.env
        depth = env.docname.count("/")
        rel = "../" * depth + f"{WHEEL_DIR}/{wheel_name()}"
        html = (f'<div class="highlight-shell notranslate pyfolio-pip"><div class="highlight">'
                f'<pre>pip install <a class="pyfolio-wheel" href="{rel}">{rel}</a></pre>'
                f'</div></div>')
        latex = f"\\begin{{verbatim}}\npip install {rel}\n\\end{{verbatim}}"
        return [nodes.raw("", html, format="html"), nodes.raw("", latex, format="latex")]


def setup(app: Any) -> None:
    app.connect("builder-inited", _on_builder_inited)
    # before sphinx-book-theme builds the header buttons (priority 501)
    app.connect("html-page-context", offer_ipynb_download, priority=500)
    app.add_directive("pip-install", PipInstall)
