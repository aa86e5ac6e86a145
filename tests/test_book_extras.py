"""The book's Sphinx extension (tools/book_extras), piece by piece, without a build."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from book_extras import download, frozen, search, site  # noqa: E402


def test_search_indexes_every_run_of_a_names_parts() -> None:
    assert search.parts("folio_split_unmapped") == [
        "folio_split_unmapped", "folio", "folio_split", "split", "split_unmapped", "unmapped"]
    assert search.parts("__free_pages") == ["__free_pages", "free", "free_pages", "pages"]
    assert search.parts("folio") == ["folio"]
    words = search.SearchEnglishParts({}).split("calls folio_split_unmapped() here")
    assert "folio_split" in words and "calls" in words


def test_frozen_state_disables_every_control_and_nothing_else() -> None:
    state = {"version_major": 2, "state": {
        "a": {"model_name": "IntSliderModel", "state": {"value": 4, "disabled": False}},
        "b": {"model_name": "ButtonModel", "state": {"description": "Run", "disabled": False}},
        "c": {"model_name": "HTMLModel", "state": {"value": "<b>x</b></script>"}},
        "d": {"model_name": "ImageModel", "state": {"value": "..."}}}}
    body, n = frozen.freeze_state(json.dumps(state))
    out = json.loads(body)["state"]
    assert n == 2 and out["a"]["state"] == {"value": 4, "disabled": True}
    assert out["b"]["state"]["disabled"] and "disabled" not in out["c"]["state"]
    assert "</script>" not in body  # still safe inside a <script> tag


def test_repository_button_only_when_a_repository_is_configured(tmp_path: Path) -> None:
    for url, shown in (("", False), ("https://example.org/owner/splitting-folios", True)):
        config = SimpleNamespace(html_static_path=[], html_theme_options={"repository_url": url})
        site._configure(SimpleNamespace(srcdir=str(tmp_path)), config)
        opts = config.html_theme_options
        assert bool(opts.get("use_repository_button")) is shown
        assert opts["navbar_persistent"] == []  # one search box: the sidebar's
        assert "built " in opts["extra_footer"] and "models Linux 6.18" in opts["extra_footer"]


def test_build_date_follows_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01
    assert site.build_date() == "2026-01-01"


def test_install_cell_installs_only_where_pyfolio_is_missing_and_knows_the_address() -> None:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import pyfolio")])
    nb = download.with_install_cell(nb, "https://book.example/wheel/x.whl")
    nb = download.with_install_cell(nb, "https://book.example/wheel/x.whl")  # never twice
    assert len(nb.cells) == 2 and nb.cells[0].metadata["tags"] == ["pyfolio-install",
                                                                    "remove-cell"]
    src = nb.cells[0].source
    compile(src, "install", "exec")
    assert 'WHEEL = "https://book.example/wheel/x.whl"' in src
    nbformat.validate(nb)
    # without a base URL the placeholder stays, and the cell refuses to guess
    assert download.wheel_url(SimpleNamespace(config=SimpleNamespace(html_baseurl=""))) \
        == f"{download.BOOK_URL}/wheel/{download.wheel_name()}"
    unresolved = download.install_cell_source(download.BOOK_URL + "/wheel/x.whl")
    code = unresolved.replace('importlib.util.find_spec("pyfolio") is None', "True")
    with pytest.raises(RuntimeError, match="does not know the book's address"):
        exec(compile(code, "install", "exec"), {})


def test_the_wheel_is_built_from_a_clean_copy_and_reused(tmp_path: Path) -> None:
    wheel = download.build_wheel(ROOT, tmp_path)
    assert wheel.name == download.wheel_name()
    names = zipfile.ZipFile(wheel).namelist()
    assert "pyfolio/system.py" in names and not any("__pycache__" in n for n in names)
    assert not (ROOT / "build").exists()  # nothing left in the checkout
    mtime = wheel.stat().st_mtime_ns
    assert download.build_wheel(ROOT, tmp_path).stat().st_mtime_ns == mtime  # unchanged


def test_source_role_resolves_names_and_refuses_unknown_ones() -> None:
    from book_extras import sources

    assert sources.resolve(ROOT, "pyfolio.mm.huge_memory.split_huge_pmd") == (
        "pyfolio.mm.huge_memory", "split_huge_pmd")
    assert sources.resolve(ROOT, "pyfolio.system.System.spawn") == ("pyfolio.system",
                                                                    "System.spawn")
    assert sources.resolve(ROOT, "pyfolio.mm.huge_memory.no_such_function") is None
    assert sources.source_uri("chapters/08-x", "pyfolio.mm.rmap", "rmap_walk") == \
        "../_modules/pyfolio/mm/rmap.html#rmap_walk"

