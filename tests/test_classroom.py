"""classroom/: the nbgitpuller link generator and the book's JupyterHub launch button, the
nbgrader assignment notebooks (source, per-student instances), the deployment files."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from pyfolio.exercises import kinds, make
from pyfolio.exercises.assignments import (
    check_shape,
    current_student,
    grade,
    instance,
    solution_for,
    source_notebook,
    write_instances,
    write_source,
)
from pyfolio.exercises.grading import SECRET_ENV, seed_for

ROOT = Path(__file__).resolve().parents[1]
SECRET = "classroom-secret"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


link = _load(ROOT / "classroom" / "nbgitpuller_link.py")
sys.path.insert(0, str(ROOT / "tools"))
import book_extras  # noqa: E402


def test_nbgitpuller_link_clones_into_the_working_copy_and_opens_lab() -> None:
    url = link.nbgitpuller_link("https://hub.example.edu/", "https://git.example.org/b/book",
                                "chapters/07-pmd-to-ptes.md", branch="fall")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "hub.example.edu",
                                                        "/hub/user-redirect/git-pull")
    assert parse_qs(parts.query) == {
        "repo": ["https://git.example.org/b/book"], "branch": ["fall"],
        "targetpath": ["splitting-folios"],
        "urlpath": ["lab/tree/splitting-folios/chapters/07-pmd-to-ptes.md"]}


@pytest.mark.parametrize(("args", "message"), [
    (("hub.example.edu", "https://r", "chapters/a.md"), "hub URL"),
    (("https://h", "git@host:r.git", "chapters/a.md"), "repository URL"),
    (("https://h", "https://r", "/etc/passwd"), "not a path inside"),
    (("https://h", "https://r", "../x.md"), "not a path inside"),
])
def test_nbgitpuller_link_rejects_bad_input(args: tuple[str, str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        link.nbgitpuller_link(*args)
    with pytest.raises(ValueError, match="app 'x'"):
        link.nbgitpuller_link("https://h", "https://r", "a.md", app="x")


def test_cli_prints_one_link_per_chapter(capsys: pytest.CaptureFixture[str]) -> None:
    # _config.yml's repository.url is empty until the book has a public repository: --repo
    repo = "https://git.example.org/b/splitting-folios"
    assert link.main(["--hub", "https://hub.example.edu", "--repo", repo,
                      "chapters/02-page-frames.md", "chapters/03-folios.md"]) == 0
    out = capsys.readouterr().out.splitlines()
    _, branch = link.book_repository()
    assert out == [link.nbgitpuller_link("https://hub.example.edu", repo, p, branch)
                   for p in ("chapters/02-page-frames.md", "chapters/03-folios.md")]


def _theme_context(hub: str) -> tuple[Any, dict[str, Any]]:
    """An app and page context as sphinx-book-theme leaves them after add_launch_buttons."""
    app = SimpleNamespace(config={"html_theme_options": {
        "launch_buttons": {"jupyterhub_url": hub, "notebook_interface": "classic"},
        "repository_url": "https://git.example.org/b/book", "repository_branch": "main",
        "path_to_docs": ""}})
    context = {"sourcename": "chapters/07-pmd-to-ptes.md.txt", "header_buttons": [{
        "type": "group", "label": "launch-buttons", "buttons": [
            {"type": "link", "text": "JupyterHub", "url": "theme's own link"}]}]}
    return app, context


def test_the_launch_button_uses_the_generator_when_a_hub_is_set() -> None:
    app, context = _theme_context("https://hub.example.edu")
    book_extras.hub_launch_link(app, "chapters/07-pmd-to-ptes", "page.html", context, None)
    button = context["header_buttons"][0]["buttons"][0]
    assert button["url"] == link.nbgitpuller_link(
        "https://hub.example.edu", "https://git.example.org/b/book",
        "chapters/07-pmd-to-ptes.md")
    app, context = _theme_context("")
    book_extras.hub_launch_link(app, "chapters/07-pmd-to-ptes", "page.html", context, None)
    assert context["header_buttons"][0]["buttons"][0]["url"] == "theme's own link"


def test_source_notebook_has_nbgrader_cells_for_every_kind() -> None:
    nb = source_notebook(8)
    meta = [c["metadata"].get("nbgrader") for c in nb["cells"]]
    answers = [m["grade_id"] for m in meta if m and m["solution"]]
    grades = [(m["grade_id"], m["points"]) for m in meta if m and m["grade"]]
    assert answers == [f"answer_{k}" for k in kinds(8)]
    assert grades == [(f"grade_{k}", 1) for k in kinds(8)]
    assert all(m["schema_version"] == 3 for m in meta if m)
    text = json.dumps(nb)
    assert text.count("### BEGIN SOLUTION") == text.count("### BEGIN HIDDEN TESTS") == 3
    with pytest.raises(ValueError, match="no exercises for chapter 1"):
        source_notebook(1)


def test_instances_show_each_students_questions_and_never_the_seed(tmp_path: Path) -> None:
    write_source(4, tmp_path)
    assert "code_stub" in (tmp_path / "nbgrader_config.py").read_text()
    with pytest.raises(ValueError, match="run `nbgrader generate_assignment ch04`"):
        write_instances(4, tmp_path, ["ann"], SECRET)
    release = tmp_path / "release" / "ch04" / "ch04.ipynb"
    release.parent.mkdir(parents=True)
    release.write_text(json.dumps(source_notebook(4)))  # what generate_assignment keeps
    paths = write_instances(4, tmp_path, ["Ann", "bob"], SECRET)
    assert [p.parts[-3] for p in paths] == ["ann", "bob"]
    nb = json.loads(paths[0].read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"])
    for k in kinds(4):
        assert make(4, k, seed_for("ann", SECRET)).question() in text
    assert str(seed_for("ann", SECRET)) not in paths[0].read_text()
    with pytest.raises(ValueError, match="no question cells"):
        instance({"cells": []}, "ann", SECRET)


def test_notebook_helpers_find_the_student_and_grade(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYFOLIO_STUDENT", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="cannot tell which student"):
        current_student()
    where = tmp_path / "autograded" / "cat" / "ch02"
    where.mkdir(parents=True)
    monkeypatch.chdir(where)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert current_student() == "cat"
    monkeypatch.setenv(SECRET_ENV, SECRET)
    right = solution_for(2, "merge")
    check_shape(2, "merge", right)
    grade(2, "merge", right)
    with pytest.raises(AssertionError, match="Expected 2 values"):
        check_shape(2, "merge", "1")
    first = right.split(", ")[0]
    with pytest.raises(AssertionError, match=r"^Wrong: head pfn of the merged free block\. "
                                             r"Right: its order\.$"):
        grade(2, "merge", right.replace(first, hex(int(first, 0) + 1), 1))


def test_helm_values_and_deployment_files_are_consistent() -> None:
    values = yaml.safe_load((ROOT / "classroom" / "z2jh-values.yaml").read_text())
    single = values["singleuser"]
    assert single["defaultUrl"] == "/lab"
    guarantee, limit = (single["memory"][k] for k in ("guarantee", "limit"))
    assert guarantee.endswith("M") and limit.endswith(("M", "G"))
    assert values["cull"]["enabled"] is True
    docker = (ROOT / "classroom" / "Dockerfile").read_text()
    assert "[classroom]" in docker and "prepare-workspace.sh" in docker
    assert "jupyterhub" in (ROOT / "pyproject.toml").read_text()
