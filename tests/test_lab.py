"""The live path: every chapter opened, run and used in a real JupyterLab, as a student would.

A JupyterLab server (the project's `lab` extra, which `make pytest` installs) is started on
127.0.0.1 on a free port with a random token, on a working copy of the chapters made by
tools/lab.py in a temporary folder, with its settings, workspaces and runtime files in that
folder too; it is stopped at the end. Headless Chromium (Debian's, at /usr/bin/chromium; the test
is skipped, with the reason, without it) then, for every chapter:

- opens it by double-clicking it in the file browser, and runs it with Run -> Run All Cells;
- asserts no error output, and no raw MyST (``{glue``, ``{term}``, ``:::{``) in the rendered text;
- asserts no exercise's solution is visible until its "Show solution" is pressed, then that it is;
- operates every widget (a click, a slider move, a toggle) and asserts that its picture or text
  changed, measuring the time from the input event to the changed DOM;
- types a bad value into each typed input and asserts the message;

and at the end asserts that ``git status`` is what it was before. The latencies are written to
``.pytest_cache/lab-latency.json`` (``{"run": ..., "actions": {name: summary}}``, every xdist
worker's samples of one run together; the p95 target, 300 ms, is reported, not asserted).
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS

from conftest import ROOT

CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]-*.md"))
LATENCY_FILE = ROOT / ".pytest_cache" / "lab-latency.json"
RUN_TIMEOUT_S = 420  # Run All of one chapter on a loaded 2-core machine
RAW_MYST = ("{glue", "{term}", ":::{", "{doc}", "{eval}", "{abbr}")
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("jupyterlab")]

_spec = importlib.util.spec_from_file_location("lab", ROOT / "tools" / "lab.py")
assert _spec and _spec.loader
lab: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lab)


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def git_before() -> str:
    """``git status`` before the lab starts (a developer's tree need not be clean)."""
    return _git_status()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory,
               git_before: str) -> Iterator[tuple[str, Path]]:
    """(URL with token, working-copy folder) of the JupyterLab server of this test session."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    if importlib.util.find_spec("jupyterlab") is None or \
            importlib.util.find_spec("jupyterlab_myst") is None:
        pytest.fail("jupyterlab / jupyterlab-myst missing: `make pytest` installs the lab extra")
    home = tmp_path_factory.mktemp("jupyterlab")
    work = home / "lab"
    lab.sync(work)
    dirs = {name: home / name for name in ("config", "runtime", "settings", "workspaces")}
    for d in dirs.values():
        d.mkdir()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(dirs["config"]),
               JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
               JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
               JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
               JUPYTER_PATH=str(Path(sys.prefix) / "share" / "jupyter"),
               IPYTHONDIR=str(home / "ipython"), PYFOLIO_GRADED="")
    port, token = _free_port(), secrets.token_hex(16)
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--notebook-dir={work}",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}",
                                       timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(home / 'server.log').read_text()}")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/lab?token={token}", work
    finally:
        proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def page(lab_server: tuple[str, Path]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    url, _ = lab_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                     headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = context.new_page()
        pg.set_default_timeout(120_000)
        pg.goto(url, wait_until="load")
        pg.wait_for_selector(".jp-DirListing-item", timeout=180_000)
        pg.wait_for_function("() => window.jupyterapp !== undefined")
        yield pg
        browser.close()


@pytest.fixture(scope="session")
def latencies() -> Iterator[dict[str, list[float]]]:
    """Samples (ms) per action; at the end merged into LATENCY_FILE with those of the other
    xdist workers of the same run (each worker that runs chapters has a JupyterLab of its own)."""
    out: dict[str, list[float]] = {}
    yield out
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    LATENCY_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LATENCY_FILE.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            earlier = json.loads(LATENCY_FILE.read_text())
        except (OSError, ValueError):
            earlier = {}
        samples = {k: list(v) for k, v in out.items()}
        if run and earlier.get("run") == run:
            for k, v in earlier.get("actions", {}).items():
                samples.setdefault(k, []).extend(v["samples_ms"])
        summary = {k: {"n": len(v), "median_ms": round(statistics.median(v), 1),
                       "p95_ms": round(_p95(v), 1), "samples_ms": [round(x, 1) for x in v]}
                   for k, v in sorted(samples.items()) if v}
        LATENCY_FILE.write_text(json.dumps({"run": run, "actions": summary}, indent=1))


def _p95(xs: list[float]) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(0.95 * len(ys)))]


# -- in-page helpers ---------------------------------------------------------------------------

PANEL = "window.jupyterapp.shell.currentWidget"

#: Resolves to the ms from the next input event on ``root`` to the last change of its pictures
#: or HTML text, once nothing has changed for QUIET_MS (the whole redraw, not its first
#: message); -1 if nothing changed in 30 s. Changes before the input (a previous action's late
#: messages) do not count. Slider readouts change in the browser alone, so only images, HTML
#: widgets and output widgets (what the kernel redraws) count.
QUIET_MS = 200
WATCH_JS = """(root, quiet) => {
  const sig = () => [...root.querySelectorAll('img')].map(i => i.src).join(',') + '|' +
    [...root.querySelectorAll('.widget-html-content, .widget-output')]
      .map(h => h.innerHTML).join('|');
  let cur = sig(), t0 = null, last = null;
  const start = () => { if (t0 === null) t0 = performance.now(); };
  for (const ev of ['pointerdown', 'mousedown', 'keydown', 'input', 'change'])
    root.addEventListener(ev, start, true);
  window.__lab_changed = new Promise((resolve) => {
    const obs = new MutationObserver(() => {
      const s = sig();
      if (s === cur) return;
      cur = s;
      if (t0 !== null) last = performance.now();
    });
    obs.observe(root, {subtree: true, childList: true, attributes: true, characterData: true});
    const began = performance.now();
    const poll = setInterval(() => {
      const now = performance.now();
      if (last !== null && now - last > quiet) {
        clearInterval(poll); obs.disconnect(); resolve(last - t0);
      } else if (now - began > 30000) {
        clearInterval(poll); obs.disconnect(); resolve(-1);
      }
    }, 20);
  });
}"""

RUN_STATE_JS = f"""() => {{
  const p = {PANEL};
  if (!p || !p.content || !p.sessionContext.session) return 'no-panel';
  const cells = Array.from(p.content.model.cells);
  const err = cells.some(c => c.type === 'code' &&
                         c.outputs.toJSON().some(o => o.output_type === 'error'));
  if (err) return 'error';
  const kernel = p.sessionContext.session.kernel;
  const pending = cells.filter(c => c.type === 'code' && c.executionCount === null).length;
  return (kernel && kernel.status === 'idle' && pending === 0) ? 'done' : 'running:' + pending;
}}"""


def _run_all(pg: Any) -> None:
    pg.get_by_role("menuitem", name="Run", exact=True).click()
    pg.locator(".lm-Menu-item:has-text('Run All Cells')").first.click()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    idle_since = None
    while time.monotonic() < deadline:
        state = pg.evaluate(RUN_STATE_JS)
        if state == "error":
            return
        if state == "done":  # idle twice, 1 s apart: the markdown cells' {eval} requests too
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 1.0:
                return
        else:
            idle_since = None
        pg.wait_for_timeout(250)
    raise AssertionError(f"Run All did not finish in {RUN_TIMEOUT_S} s: {state}")


def _error_outputs(pg: Any) -> list[str]:
    return list(pg.evaluate(f"""() => Array.from({PANEL}.content.model.cells)
      .flatMap(c => c.type === 'code' ? c.outputs.toJSON() : [])
      .filter(o => o.output_type === 'error' || (o.output_type === 'stream' &&
                   o.name === 'stderr' && /Error|Traceback/.test(o.text)))
      .map(o => o.output_type === 'error' ? o.ename + ': ' + o.evalue : o.text)"""))


def _close(pg: Any, base: str) -> None:
    """Save the notebook (into the temporary working copy), close its tab, and shut its kernel
    down through the server's REST API (``sessionContext.shutdown()`` in the page was seen to
    hang once under load; the API call has a timeout)."""
    pg.evaluate(f"""async () => {{
      const p = {PANEL};
      await Promise.race([p.context.save(), new Promise(r => setTimeout(r, 20000))]);
      p.dispose();
    }}""")
    url, token = base.split("/lab?token=")
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/sessions", headers=headers),
                                timeout=30) as r:
        sessions = json.load(r)
    for sess in sessions:
        req = urllib.request.Request(f"{url}/api/sessions/{sess['id']}", method="DELETE",
                                     headers=headers)
        urllib.request.urlopen(req, timeout=60).close()


def _change(pg: Any, root: Any, act: Any, what: str, latencies: dict[str, list[float]]) -> float:
    """Do ``act()`` on a widget and wait until its picture or text changed; return ms."""
    root.evaluate(WATCH_JS, QUIET_MS)
    act()
    ms = float(pg.evaluate("() => window.__lab_changed"))
    assert ms >= 0, f"{what}: nothing in the widget changed"
    latencies.setdefault(what, []).append(ms)
    return ms


def _slide(pg: Any, root: Any, index: int = 0, key: str = "ArrowRight") -> Any:
    def act() -> None:
        handle = root.locator(".noUi-handle").nth(index)
        handle.focus()
        pg.keyboard.press(key)
    return act


def _click(root: Any, text: str, exact: bool = True) -> Any:
    return lambda: root.get_by_role("button", name=text, exact=exact).first.click()


def _text_of(root: Any) -> str:
    return str(root.inner_text())


# -- what each chapter's widgets are -------------------------------------------------------------

def _widget_roots(pg: Any) -> list[Any]:
    """The top-level widget views in the notebook's outputs, in order."""
    outs = pg.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
    roots = []
    for i in range(outs.count()):
        o = outs.nth(i)
        if o.locator(":scope > .jupyter-widgets, :scope .lm-Widget.jupyter-widgets").count():
            roots.append(o)
    return roots


def _exercise_answers(work: Path, name: str) -> dict[str, str]:
    """variable -> worked solution of each seeded exercise the chapter makes."""
    from pyfolio.exercises import make

    nb = json.loads((work / f"{name}.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    seed = re.search(r"^SEED = (\d+)", code, re.M)
    out = {}
    for var, ch, kind in re.findall(r'^(\w+) = make\((\d+), "([\w-]+)", SEED\)', code, re.M):
        assert seed, name
        out[var] = make(int(ch), kind, int(seed.group(1))).solution()
    return out


def _operate_exercise(pg: Any, root: Any, lat: dict[str, list[float]], full: bool) -> None:
    """A bad value and Enter, then Show solution; ``full``: also Check and Hide solution."""
    box = root.locator("input[type='text']").first
    box.fill(" ".join(["abc"] * 12))  # a bad value: more parts than any exercise has
    _change(pg, root, lambda: box.press("Enter"), "exercise: Enter checks", lat)
    assert re.search(r"Expected \d+ values \(.*\), got 12\.", _text_of(root)), _text_of(root)
    if full:
        box.fill("0x1")
        _change(pg, root, _click(root, "Check"), "exercise: Check", lat)
        assert re.search(r"Wrong|Right|got 1\.", _text_of(root))
    assert "Answer:" not in _text_of(root)
    _change(pg, root, _click(root, "Show solution"), "exercise: Show solution", lat)
    assert "Answer:" in _text_of(root)
    if full:
        _change(pg, root, _click(root, "Hide solution"), "exercise: Hide solution", lat)
        assert "Answer:" not in _text_of(root)


def _bad_number(pg: Any, root: Any, lat: dict[str, list[float]], what: str,
                index: int = 0) -> None:
    box = root.locator("input[type='text']").nth(index)
    box.fill("abc")
    _change(pg, root, lambda: box.press("Enter"), f"{what}: bad value", lat)
    assert "'abc' is not" in _text_of(root), _text_of(root)


def _operate(pg: Any, name: str, roots: list[Any], lat: dict[str, list[float]]) -> None:
    """Operate each non-exercise widget of a chapter (see the module doc)."""
    ch = name[:2]
    for root in roots:
        kind = root.inner_text()
        if ch == "01":
            _change(pg, root, _slide(pg, root), "ch01 page slider", lat)
        elif ch == "02":
            _change(pg, root, _click(root, "Reset"), "ch02 buddy: reset", lat)
            _change(pg, root, _click(root, "Allocate"), "ch02 buddy: allocate", lat)
        elif ch == "03":
            _change(pg, root, _slide(pg, root), "ch03 folio inspector: pfn slider", lat)
            _bad_number(pg, root, lat, "ch03 folio inspector pfn box")
        elif ch == "04":
            _change(pg, root, _slide(pg, root), "ch04 address walker: slider", lat)
            _bad_number(pg, root, lat, "ch04 address walker box")
        elif ch == "05":
            _change(pg, root, _click(root, "Reset"), "ch05 fault explorer: reset", lat)
            _change(pg, root, _click(root, "Run"), "ch05 fault explorer: run", lat)
        elif ch == "06":
            _change(pg, root, _click(root, "Back"), "ch06 refcount watcher: back", lat)
            _change(pg, root, _click(root, "Step"), "ch06 refcount watcher: step", lat)
        elif ch == "07":
            for _ in range(4):
                _change(pg, root, _slide(pg, root), "ch07 remap viewer: step", lat)
            _change(pg, root, _click(root, "Run"), "ch07 remap viewer: run", lat)
        elif ch == "08":
            for _ in range(3):
                _change(pg, root, _click(root, "Split"), "ch08 split explorer: split", lat)
                _change(pg, root, _click(root, "Reset"), "ch08 split explorer: reset", lat)
            _change(pg, root, _slide(pg, root, 1), "ch08 split explorer: at page", lat)
            _bad_number(pg, root, lat, "ch08 pin page box")
        elif ch in ("09", "11"):
            for _ in range(2):
                _change(pg, root, _click(root, "Migrate to device"),
                        f"ch{ch} device fault explorer: migrate", lat)
                _change(pg, root, _click(root, "Reset"), f"ch{ch} device fault: reset", lat)
            _change(pg, root, _click(root, "CPU read"), f"ch{ch} device fault: read", lat)
        elif ch == "10":
            for i in range(4):
                _change(pg, root, _click(root, "4 KiB pages" if i % 2 == 0 else "THP"),
                        "ch10 cost explorer: backing toggle", lat)
            for key in ("ArrowRight", "ArrowLeft"):
                _change(pg, root, _slide(pg, root, 0, key), "ch10 cost explorer: size", lat)
        elif ch == "12":
            _change(pg, root, _slide(pg, root), "ch12 design review: step", lat)
            other = root.locator(".widget-toggle-button:not(.mod-active)").first
            _change(pg, root, other.click, "ch12 design review: design", lat)
        elif ch == "13":
            _change(pg, root, _click(root, "Apply"), "ch13 page-cache explorer: apply", lat)
            _change(pg, root, _click(root, "Reset"), "ch13 page-cache explorer: reset", lat)
            _bad_number(pg, root, lat, "ch13 page-cache explorer page box")
        elif ch == "14":
            for _ in range(2):
                _change(pg, root, _click(root, "MADV_PAGEOUT 2 MiB"),
                        "ch14 swap explorer: pageout", lat)
                _change(pg, root, _click(root, "Read page"), "ch14 swap explorer: read", lat)
                _change(pg, root, _click(root, "Reset"), "ch14 swap explorer: reset", lat)
            _bad_number(pg, root, lat, "ch14 swap explorer page box")
        elif ch == "15":
            for button in ("Device read", "Make exclusive", "CPU read", "Snapshot", "Reset"):
                _change(pg, root, _click(root, button), f"ch15 driver explorer: {button}", lat)
        elif ch == "16":
            select = root.locator("select").first
            options = select.locator("option").all_inner_texts()
            _change(pg, root, lambda s=select, o=options[-1]: s.select_option(o),
                    "ch16 scenario", lat)
        else:
            raise AssertionError(f"{name}: no operation defined for widget {kind[:80]!r}")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_in_jupyterlab(chapter: Path, page: Any, lab_server: tuple[str, Path],
                               latencies: dict[str, list[float]], git_before: str) -> None:
    pg, (base, work) = page, lab_server
    name = chapter.stem
    pg.locator(".jp-DirListing-item", has_text=f"{name}.ipynb").first.dblclick()
    pg.wait_for_function(f"() => {PANEL} && {PANEL}.context && "
                         f"{PANEL}.context.path === '{name}.ipynb' && "
                         f"{PANEL}.content.widgets.length")
    pg.wait_for_function(f"() => {PANEL}.sessionContext.session && "
                         f"{PANEL}.sessionContext.session.kernel")
    t0 = time.monotonic()
    _run_all(pg)
    latencies.setdefault(f"Run All (s): {name}", []).append((time.monotonic() - t0) * 1000)
    try:
        assert not _error_outputs(pg), f"{name}: error output: {_error_outputs(pg)}"
        notebook = pg.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
        # jupyterlab-myst renders a Markdown cell into .myst (JupyterLab's own renderer: into
        # .jp-RenderedMarkdown); the prose must be there, or the checks below check nothing
        prose = "\n".join(notebook.locator(
            ".jp-MarkdownCell .myst, .jp-MarkdownCell .jp-RenderedMarkdown").all_inner_texts())
        title = chapter.read_text().split("\n# ", 1)[1].split("\n", 1)[0]
        assert title in prose and len(prose) > 2000, f"{name}: the prose is not rendered"
        shown = [raw for raw in RAW_MYST if raw in prose]
        assert not shown, f"{name}: raw MyST in the rendered text: {shown}"
        assert "glued[" not in prose, f"{name}: a {{eval}} number was not filled in"
        text = notebook.inner_text()
        for var, solution in _exercise_answers(work, name).items():
            leaked = [line for line in solution.splitlines() if len(line) > 12 and line in text]
            assert not leaked, f"{name}: solution of {var} visible before Show solution: {leaked}"
        assert "Answer: " not in text, f"{name}: a worked answer is visible before Show solution"
        roots = _widget_roots(pg)
        exercises = [r for r in roots if r.get_by_role("button", name="Check").count()]
        others = [r for r in roots if r not in exercises]
        assert exercises or name.startswith("01"), f"{name}: no exercise widgets rendered"
        for i, root in enumerate(exercises):
            _operate_exercise(pg, root, latencies, full=i == 0)
        _operate(pg, name, others, latencies)
        shots = os.environ.get("PYFOLIO_LAB_SHOTS")
        if shots:
            pg.screenshot(path=f"{shots}/{name}.png", full_page=False)
        assert not _error_outputs(pg), f"{name}: error output after use: {_error_outputs(pg)}"
    finally:
        _close(pg, base)
    assert _git_status() == git_before, f"{name}: the lab changed the repository"
