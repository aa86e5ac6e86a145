"""Sphinx extension with the book's own build steps (loaded from _config.yml,
``sphinx.local_extensions``).

- :mod:`.offline`: the widget JavaScript and MathJax served from the book, not a CDN; no
  unused thebe on the pages.
- :mod:`.site`: the stylesheet and script of the book (wrapping, dark mode inside widgets,
  alt text for widget pictures), version and build date in the footer, one search box, the
  repository button when a repository is configured.
- :mod:`.frozen`: widgets on the static page are snapshots: their controls are disabled and a
  line above each says where it runs live.
- :mod:`.download`: the project's wheel on the site, and each chapter's ``.ipynb`` download,
  opening with a cell that installs that wheel where ``pyfolio`` is missing.
- :mod:`.sources`: pyfolio's source as pages of the book (``_modules/...``), and the roles
  ``{pysrc}`` and ``{kernel}`` that link a pyfolio function to its source and a kernel
  function to a versioned public source browser.
- :mod:`.search`: the search index also holds the parts of ``snake_case`` names, so a search
  for ``folio_split`` finds ``folio_split_unmapped``.
- :mod:`.launch`: the JupyterHub launch button (when ``launch_buttons.jupyterhub_url`` is set)
  opens the chapter through classroom/nbgitpuller_link.py.
"""

from __future__ import annotations

from typing import Any

from . import download, frozen, launch, offline, search, site, sources
from .launch import hub_launch_link

__all__ = ["setup", "hub_launch_link"]


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", offline.use_local_copies, priority=100)
    app.connect("config-inited", offline.drop_thebe, priority=100)
    app.connect("html-page-context", offline.dedupe_scripts, priority=900)
    site.setup(app)
    frozen.setup(app)
    download.setup(app)
    sources.setup(app)
    search.setup(app)
    launch.setup(app)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
