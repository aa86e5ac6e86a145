"""The JupyterHub launch button opens a chapter through classroom/nbgitpuller_link.py.

When ``launch_buttons.jupyterhub_url`` (and the repository URL) is set, the theme's launch
button gets an nbgitpuller link: JupyterLab, the repository cloned into the student's
``~/splitting-folios`` working copy (the theme's own link has no target folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _nbgitpuller() -> Any:
    """classroom/nbgitpuller_link.py, loaded by path (the classroom folder is no package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "classroom" / "nbgitpuller_link.py"
    spec = importlib.util.spec_from_file_location("nbgitpuller_link", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hub_launch_link(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                    doctree: Any) -> None:
    """Point the theme's JupyterHub launch button at our nbgitpuller link (runs after the
    theme's add_launch_buttons, priority 501)."""
    theme = app.config["html_theme_options"]
    hub = theme.get("launch_buttons", {}).get("jupyterhub_url", "").strip()
    repo = theme.get("repository_url", "")
    if not hub or not repo:
        return
    groups = [b for b in context.get("header_buttons", [])
              if b.get("label") == "launch-buttons"]
    src = str(context.get("sourcename", "")).removesuffix(".txt")
    path = f"{theme.get('path_to_docs', '').strip('/')}/{pagename}{Path(src).suffix}".lstrip("/")
    link = _nbgitpuller().nbgitpuller_link(hub, repo, path, theme.get("repository_branch")
                                            or "main")
    for group in groups:
        for button in group.get("buttons", []):
            if button.get("text") == "JupyterHub":
                button["url"] = link


def setup(app: Any) -> None:
    app.connect("html-page-context", hub_launch_link, priority=600)
