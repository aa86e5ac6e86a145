"""nbgitpuller links: one click opens a chapter on the class's JupyterHub.

The link logs the student in, clones (first time) or merges (later) the book's repository
into ``~/TARGET`` of their own server with nbgitpuller, and opens the chapter in JupyterLab.
The clone is the student's working copy: their edits stay in it, and a later pull merges
the book's changes without overwriting them (nbgitpuller's merge rules).

    python classroom/nbgitpuller_link.py --hub https://hub.example.edu chapters/07-pmd-to-ptes.md

The book's JupyterHub launch button uses :func:`nbgitpuller_link` when ``_config.yml`` sets
``launch_buttons.jupyterhub_url`` (tools/book_extras/launch.py rewrites the theme's link with it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlencode, urlsplit

__all__ = ["nbgitpuller_link", "book_repository", "TARGET"]

ROOT = Path(__file__).resolve().parents[1]
#: the folder of the student's home the repository is cloned into
TARGET = "splitting-folios"
_APPS = {"lab": "lab/tree", "classic": "tree"}


def nbgitpuller_link(hub_url: str, repo: str, path: str, branch: str = "main",
                     target: str = TARGET, app: str = "lab") -> str:
    """The ``/hub/user-redirect/git-pull`` link that opens ``path`` (relative to the
    repository) of ``repo`` at ``branch`` on ``hub_url``.

    >>> nbgitpuller_link("https://hub.example.edu/", "https://git.example.org/b/book",
    ...                  "chapters/07-pmd-to-ptes.md")  # doctest: +NORMALIZE_WHITESPACE
    'https://hub.example.edu/hub/user-redirect/git-pull?repo=https%3A//git.example.org/b/book&branch=main&targetpath=splitting-folios&urlpath=lab/tree/splitting-folios/chapters/07-pmd-to-ptes.md'
    """
    if app not in _APPS:
        raise ValueError(f"app {app!r} is not one of {', '.join(_APPS)}")
    for name, url in (("hub", hub_url), ("repository", repo)):
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise ValueError(f"the {name} URL {url!r} is not an http(s) URL")
    if not path or path.startswith("/") or ".." in Path(path).parts:
        raise ValueError(f"path {path!r} is not a path inside the repository")
    if not target or "/" in target or target in (".", ".."):
        raise ValueError(f"target folder {target!r} is not a folder name")
    query = urlencode({"repo": repo, "branch": branch, "targetpath": target,
                       "urlpath": f"{_APPS[app]}/{target}/{path}"}, safe="/")
    return f"{hub_url.rstrip('/')}/hub/user-redirect/git-pull?{query}"


def book_repository(config: Path = ROOT / "_config.yml") -> tuple[str, str]:
    """(repository URL, branch) from the book's ``_config.yml``."""
    import yaml

    repo = yaml.safe_load(config.read_text()).get("repository", {})
    return str(repo.get("url", "")), str(repo.get("branch", "main"))


def main(argv: list[str] | None = None) -> int:
    url, branch = book_repository()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", nargs="+", help="chapters to link, e.g. chapters/07-pmd-to-ptes.md")
    ap.add_argument("--hub", required=True, help="the hub's address, e.g. https://hub.uni.edu")
    ap.add_argument("--repo", default=url, help=f"the book's git repository (default {url})")
    ap.add_argument("--branch", default=branch, help=f"default {branch}")
    ap.add_argument("--app", default="lab", choices=sorted(_APPS))
    args = ap.parse_args(argv)
    try:
        for p in args.path:
            print(nbgitpuller_link(args.hub, args.repo, p, args.branch, app=args.app))
    except ValueError as e:
        ap.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
