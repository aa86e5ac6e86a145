"""Widgets on the static page are snapshots, and say so.

A widget's Python callbacks never run on a static page, yet the saved widget state renders
controls that move: a slider slid, a dropdown changed and a button pressed would change nothing
they control, and the page would contradict itself. So:

- every control in a page's saved widget state (each model with a ``disabled`` trait: sliders,
  text boxes, dropdowns, toggles, buttons) is saved disabled, so it renders greyed out and does
  not move;
- above each widget a line says that this is a snapshot and where the widget runs live (the
  lab, and the launch button where ``launch_buttons`` has a hub or binder configured), linking
  the how-to page.

Only the HTML page changes: the notebook, the ``.ipynb`` download and the lab keep live widgets.
"""

from __future__ import annotations

import json
from typing import Any

from docutils import nodes
from sphinx import addnodes

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: the label, in book/how-to-use.md, of the section on running a chapter live
LIVE_LABEL = "run-live"


def freeze_state(body: str) -> tuple[str, int]:
    """The saved widget state ``body`` (JSON) with every control disabled, and how many."""
    state = json.loads(body)
    n = 0
    for model in state.get("state", {}).values():
        traits = model.get("state", {})
        if "disabled" in traits:
            traits["disabled"] = True
            n += 1
    return json.dumps(state).replace("</script>", r"<\/script>"), n


def _note(launch: bool) -> nodes.Element:
    ref = addnodes.pending_xref("", nodes.inline("", "how to run a chapter live"),
                                refdomain="std", reftype="ref", reftarget=LIVE_LABEL,
                                refexplicit=True, refwarn=True)
    where = ("in JupyterLab (the launch button at the top of this page, or ``make lab``)"
             if launch else "in JupyterLab")
    para = nodes.paragraph("", "")
    para += nodes.strong("", "Snapshot. ")
    para += nodes.Text("This widget's controls are frozen on this page: it was saved as the "
                       "code above left it. It runs live " + where.replace("``", "") + "; see ")
    para += ref
    para += nodes.Text(".")
    return nodes.container("", para, classes=["pyfolio-frozen"])


def _on_doctree_read(app: Any, doctree: nodes.document) -> None:
    docname = app.env.docname
    meta = getattr(app.env, "nb_metadata", {}).get(docname, {})
    entry = meta.get("js_files", {}).get("ipywidgets_state")
    if entry is not None:
        uri, kwargs = entry
        kwargs["body"], _ = freeze_state(kwargs["body"])
    launch_cfg = app.config.html_theme_options.get("launch_buttons", {}) or {}
    launch = bool(launch_cfg.get("jupyterhub_url") or launch_cfg.get("binderhub_url"))
    for node in list(doctree.findall(nodes.container)):
        if node.get("mime_type") == WIDGET_VIEW:
            node.insert(0, _note(launch))


def setup(app: Any) -> None:
    app.connect("doctree-read", _on_doctree_read)
