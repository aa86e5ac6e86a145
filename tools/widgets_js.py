"""Sphinx extension: serve the ipywidgets JavaScript from the book itself, not from a CDN.

myst-nb puts two <script> tags on every page that holds widget state: RequireJS and
@jupyter-widgets/html-manager's ``embed-amd.js``, both from public CDNs by default, so an offline
reader sees "Loading widget..." forever. ``tools/fetch_widgets_js.sh`` (run by ``make book``)
unpacks local copies from the npm registry into ``book/_widgets_js/widgets/`` (gitignored). When
they are there, this extension adds ``book/_widgets_js`` to ``html_static_path`` (so the files land
in ``_build/html/_static/widgets/``) and points ``nb_ipywidgets_js`` at them. When they are not,
the CDN defaults stay and a message says so.

The folder is deliberately not the book's ``_static/``: Jupyter Book 1 adds every ``.js`` found in
``_static/`` to every page, and the widgets would then be rendered twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WIDGETS_DIR = Path("book") / "_widgets_js"
FILES = ("widgets/require.js", "widgets/embed-amd.js")


def _use_local_copies(app: Any, config: Any) -> None:
    root = Path(app.srcdir) / WIDGETS_DIR
    if not all((root / name).is_file() for name in FILES):
        print(
            f"widgets_js: {root}/widgets/ is incomplete; widget JavaScript will load from the CDN "
            "(run tools/fetch_widgets_js.sh, or `make book`, to serve it locally)"
        )
        return
    config.html_static_path = [*config.html_static_path, str(root)]
    config.nb_ipywidgets_js = {
        "widgets/require.js": {},
        # embed-amd.js bundles @jupyter-widgets/base and controls; the CDN attribute is only
        # consulted for third-party widget modules, which this book does not use.
        "widgets/embed-amd.js": {"data-jupyter-widgets-cdn": "_static/widgets/"},
    }


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _use_local_copies, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
