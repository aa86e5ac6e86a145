"""pyfolio's source in the book, and a role that links a pyfolio function to it.

What ``sphinx.ext.viewcode`` does for autodoc'ed objects, for the whole package without an API
reference: every module of ``pyfolio`` becomes a highlighted page ``_modules/pyfolio/...html``
(with an anchor per top-level function, class and method, ``#folio_split``,
``#System.spawn``), and ``_modules/index.html`` lists them.

``{pysrc}`pyfolio.mm.huge_memory.folio_split``` links the name to its source; a name that does
not exist is a build warning (an error in ``make test``).
"""

from __future__ import annotations

import functools
import html
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.pycode import ModuleAnalyzer

OUT = "_modules"
PACKAGE = "pyfolio"


@functools.cache
def _modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    out = {}
    for f in sorted((root / PACKAGE).rglob("*.py")):
        rel = f.relative_to(root).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = f
    return out


@functools.cache
def _tags(path: Path, modname: str) -> dict[str, tuple[str, int, int]]:
    analyzer = ModuleAnalyzer.for_string(path.read_text(), modname, str(path))
    return analyzer.find_tags()


def resolve(root: Path, dotted: str) -> tuple[str, str] | None:
    """(module, object path inside it) for a dotted pyfolio name, or None."""
    mods = _modules(root)
    bits = dotted.split(".")
    for i in range(len(bits), 0, -1):
        mod = ".".join(bits[:i])
        if mod in mods:
            obj = ".".join(bits[i:])
            if not obj or obj in _tags(mods[mod], mod):
                return mod, obj
            return None
    return None


def source_uri(docname: str, mod: str, obj: str) -> str:
    page = posixpath.join(OUT, *mod.split(".")) + ".html"
    rel = "../" * docname.count("/") + page
    return f"{rel}#{obj}" if obj else rel


def pysrc_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
               options: dict[str, Any] | None = None,
               content: list[str] | None = None) -> tuple[list[nodes.Node], list[Any]]:
    env = inliner.document.settings.env
    title, target = text, text
    if text.endswith(">") and "<" in text:
        title, target = text[:text.rindex("<")].strip(), text[text.rindex("<") + 1:-1]
    found = resolve(Path(env.srcdir), target)
    lit = nodes.literal(rawtext, title)
    if found is None:
        msg = inliner.reporter.warning(f"pysrc: no pyfolio source for {target!r}", line=lineno)
        return [lit], [msg]
    ref = nodes.reference(rawtext, "", lit, refuri=source_uri(env.docname, *found),
                          classes=["pyfolio-source"], internal=True)
    return [ref], []


def _page(mod: str, path: Path, shown: str, highlighter: Any, xref: str) -> dict[str, Any]:
    code = path.read_text()
    lines = highlighter.highlight_block(code, "python", linenos=False).splitlines()
    before, after = lines[0].split("<pre>", 1)
    lines[0:1] = [before + "<pre>", after]
    last = len(lines) - 1
    for name, (_, start, end) in _tags(path, mod).items():
        lines[start] = f'<div class="viewcode-block" id="{html.escape(name)}">' + lines[start]
        lines[min(end, last)] += "</div>"
    head = (f"<h1>Source of <code>{html.escape(mod)}</code></h1>"
            f"<p><code>{html.escape(shown)}</code> in the book's simulator. "
            f"<a href='{xref}'>Kernel cross-reference</a> · "
            f"<a href='index.html'>all modules</a></p>")
    return {"title": f"{mod} (source)", "body": head + "\n".join(lines), "parents": []}


def collect_pages(app: Any) -> Iterator[tuple[str, dict[str, Any], str]]:
    if app.builder.format != "html":
        return
    root = Path(app.srcdir)
    mods = _modules(root)
    urito = app.builder.get_relative_uri
    for mod, path in mods.items():
        pagename = posixpath.join(OUT, *mod.split("."))
        xref = urito(pagename, "book/kernel-xref")
        shown = path.relative_to(root).as_posix()
        yield pagename, _page(mod, path, shown, app.builder.highlighter, xref), "page.html"
    items = "".join(
        f"<li><a href='{posixpath.join(*m.split('.'))}.html'><code>{html.escape(m)}</code></a>"
        f"</li>" for m in mods)
    yield posixpath.join(OUT, "index"), {
        "title": "pyfolio: source code",
        "body": f"<h1>pyfolio: source code</h1><ul>{items}</ul>"}, "page.html"


def setup(app: Any) -> None:
    app.add_role("pysrc", pysrc_role)
    app.connect("html-collect-pages", collect_pages)
