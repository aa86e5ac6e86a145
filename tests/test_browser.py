"""Open every built page in headless Chromium and check what a reader would see.

Needs the built book (``make book``; ``make test`` builds it first) and Debian's chromium at
/usr/bin/chromium (``apt-get install chromium``); without chromium the test is skipped. Playwright
drives it (no ``playwright install``: the browser is the system one).

Per page of the TOC: no console errors, no request to anything but the local server, every <img>
loaded, every widget rendered (not the "Loading widget..." placeholder). Per chapter, also: as many
output areas, and as many output images, as the chapter has when executed (MyST-NB can drop
outputs silently when text notebooks meet cached execution).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from conftest import ROOT, executed_chapter, toc_files

HTML = ROOT / "_build" / "html"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # nothing but the local server resolves: an off-site request fails at once (and is
    # still reported by the "request" event below) instead of being routed through Python
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]
PAGES = toc_files()
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
HIDDEN_OUTPUT_TAGS = {"remove-cell", "remove-output"}
#: the saved state of one widget view in a cell output (what the html-manager renders)
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_VIEW = f"script[type='{WIDGET_MIME}']"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The built book served by ``python -m http.server`` in its own process.

    Not a thread of this worker: while a page loads, nothing this worker does (the GIL, a
    fork by the kernel lab) can hold up a request.
    """
    if not (HTML / "index.html").is_file():
        pytest.fail(f"{HTML} has no built book: run `make book` (`make test` builds it first)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(HTML)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"http.server on port {port} did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def visible_outputs(nb: Any) -> tuple[int, int]:
    """(code cells with output a reader should see, image outputs among them).

    Glue-only outputs are hidden by myst-nb, and so are cells tagged remove-cell/remove-output.
    """
    cells = images = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or HIDDEN_OUTPUT_TAGS & set(cell.metadata.get("tags", [])):
            continue
        shown = [o for o in cell.get("outputs", []) if "scrapbook" not in o.get("metadata", {})]
        cells += bool(shown)
        # a widget app also carries its static figure as image/png, which only print shows
        images += sum("image/png" in o.get("data", {}) and WIDGET_MIME not in o.get("data", {})
                      for o in shown)
    return cells, images


QUIET_TIMEOUT_S = 60


def wait_until_quiet(page: Any, pending: dict[Any, float], quiet_s: float = 0.5) -> list[str]:
    """Wait until no request has been open for ``quiet_s`` (Playwright's "networkidle").

    Returns the URLs still open after QUIET_TIMEOUT_S, or [] once the network is quiet.
    """
    deadline = time.monotonic() + QUIET_TIMEOUT_S
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        if pending:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return []
        page.wait_for_timeout(100)  # lets Playwright deliver the request events
    return [r.url for r in pending]


@pytest.mark.browser
@pytest.mark.parametrize(
    "doc",
    # a chapter's page runs on the worker that executes that chapter (see conftest.py)
    [pytest.param(d, id=d, marks=pytest.mark.xdist_group(Path(d).name)) for d in PAGES],
)
def test_page(doc: str, server: str, browser: Any) -> None:
    page_path = HTML / f"{doc}.html"
    assert page_path.is_file(), f"{page_path} was not built: run `make book`"

    for attempt in (1, 2):
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        offsite: list[str] = []
        pending: dict[Any, float] = {}

        def on_console(msg: Any, errors: list[str] = errors) -> None:
            # Chromium asks for /favicon.ico by itself; the book has none and needs none.
            if msg.type == "error" and not msg.location.get("url", "").endswith("/favicon.ico"):
                errors.append(f"{msg.text} ({msg.location.get('url')})")

        def on_request(r: Any, offsite: list[str] = offsite,
                       pending: dict[Any, float] = pending) -> None:
            pending[r] = time.monotonic()
            local = urlparse(r.url).hostname in LOCAL_HOSTS
            if not (local or r.url.startswith(("data:", "blob:"))):
                offsite.append(r.url)

        page.on("console", on_console)
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        page.on("request", on_request)
        page.on("requestfinished", lambda r, pending=pending: pending.pop(r, None))
        page.on("requestfailed", lambda r, pending=pending: pending.pop(r, None))
        page.set_default_timeout(120_000)  # a loaded 2-core CI machine: slow, not broken
        url = f"{server}/{page_path.relative_to(HTML).as_posix()}"
        page.goto(url, wait_until="load")
        stalled = wait_until_quiet(page, pending)
        if not stalled:
            break
        # A local request that never ends is the test server's trouble (seen twice in CI under
        # load), not the page's: say so, and load the page once more in a fresh context.
        print(f"{doc}: attempt {attempt}: requests still open after {QUIET_TIMEOUT_S} s: {stalled}")
        context.close()
    assert not stalled, f"{doc}: requests that never finished (twice): {stalled}"

    # Widgets: each view (one <script> of saved state) must render next to its script; wait
    # until the html-manager has rendered them all (or 60 s, then report how many did not).
    n_widget_outputs = page.locator(f".cell_output {WIDGET_VIEW}").count()
    unrendered_js = (f"Array.from(document.querySelectorAll(\".cell_output {WIDGET_VIEW}\"))"
                     ".filter(s => !s.parentElement.querySelector('.jupyter-widgets')).length")
    if n_widget_outputs:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            page.wait_for_function(f"{unrendered_js} === 0", timeout=60_000)
        except PlaywrightTimeout:
            pass  # the assertion below names the count
    n_rendered = page.locator(".cell_output .jupyter-widgets").count()
    unrendered = page.evaluate(unrendered_js)
    n_placeholders = page.get_by_text("Loading widget...").count()
    broken_imgs = page.evaluate(
        "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.getAttribute('src'))"
    )
    # a Markdown table a cell displays must render as a table, not as "| a | b |" text
    raw_tables = page.evaluate(
        "Array.from(document.querySelectorAll('.cell_output p'))"
        ".filter(p => p.textContent.trim().startsWith('|')).length"
    )
    html_outputs = page.locator(".cell .cell_output").count()
    # an animation player (pyfolio.views.animate) shows its frames through one <img> of its own,
    # and a widget app (pyfolio.widgets) draws its figure in an Image widget (img.widget-image,
    # rendered from the saved widget state): neither is an image/png output
    html_images = page.locator(
        ".cell .cell_output img:not([id^='_anim_img']):not(.widget-image)").count()
    context.close()

    name = doc
    assert not offsite, f"{name}: requests left localhost: {offsite}"
    assert not errors, f"{name}: console errors: {errors}"
    assert not broken_imgs, f"{name}: images that did not load: {broken_imgs}"
    assert raw_tables == 0, f"{name}: {raw_tables} Markdown tables printed as text"
    assert n_placeholders == 0, f"{name}: {n_placeholders} widgets still say 'Loading widget...'"
    if n_widget_outputs:
        assert n_rendered > 0, f"{name}: widget outputs present but nothing rendered"
    assert unrendered == 0, f"{name}: {unrendered} of {n_widget_outputs} widget views not rendered"
    if not doc.startswith("chapters/"):
        return
    cells, images = visible_outputs(executed_chapter(ROOT / f"{doc}.md"))
    assert html_outputs == cells, (
        f"{name}: {cells} cells produce output when executed, "
        f"but the built page has {html_outputs} output areas (stale or lost cached outputs?)"
    )
    assert html_images == images, (
        f"{name}: executing gives {images} images, the built page shows {html_images}"
    )
