"""The package's layout: each kernel model sits at its kernel file's path, and imports run one
way between layers (book side -> facade -> kernel models -> simulator machinery).

A module whose docstring says ``Models: <kernel file>`` lives at that file's path under
``pyfolio/`` (mm/huge_memory.c -> pyfolio/mm/huge_memory.py; a continuation of a large file is
named after it: pyfolio/mm/huge_memory_split.py; arch/x86/include/asm/pgtable.h may sit in
pyfolio/arch/x86/), or says why not in a ``Place:`` line. Imports written under
``if TYPE_CHECKING:`` are annotations only (they never run) and are not counted.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "pyfolio"
KERNEL_FILE = re.compile(r"\b((?:arch|mm|include|fs|kernel|lib)/[\w/.-]+\.[ch])\b")

#: layer of each top-level part of the package; an import may only go to the same or a
#: lower layer
LAYERS = {"sim": 0, "mm": 1, "include": 1, "arch": 1, "fs": 1, "kernel": 1, "lib": 1,
          "system": 2, "device": 2, "__init__": 2,
          "views": 3, "widgets": 3, "exercises": 3, "kernel_lab": 3, "reading": 3}
KERNEL_PARTS = {"mm", "include", "arch", "fs", "kernel", "lib"}


def modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def dotted(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(name: str) -> str:
    """The top-level part of pyfolio a dotted module name belongs to."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def models_files(doc: str) -> list[str]:
    """The kernel files named in the docstring's ``Models:`` paragraph."""
    m = re.search(r"^Models:(.*?)(?:\n\s*\n|\Z)", doc, re.M | re.S)
    return KERNEL_FILE.findall(m.group(1)) if m else []


def lives_at(module: Path, kernel_file: str) -> bool:
    """Whether ``module`` sits where ``kernel_file`` is (or in a folder above it, for
    arch headers), named after it or as its continuation (``<stem>_<part>``)."""
    mdir = module.parent.relative_to(PKG).as_posix()
    kdir, kname = kernel_file.rsplit("/", 1)
    kstem = kname.rsplit(".", 1)[0].replace("-", "_")
    in_dir = kdir == mdir or kdir.startswith(mdir + "/")
    return in_dir and (module.stem == kstem or module.stem.startswith(kstem + "_"))


def is_submodule(package: str, name: str) -> bool:
    """Whether ``from package import name`` imports a module (not a name in it)."""
    folder = PKG.parent.joinpath(*package.split("."))
    return (folder / name).is_dir() or (folder / f"{name}.py").is_file()


def runtime_imports(tree: ast.Module, here: str) -> list[tuple[int, str]]:
    """(line, dotted target) for every import that runs (not under TYPE_CHECKING)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            out += [(node.lineno, f"{base}.{a.name}" if is_submodule(base, a.name) else base)
                    for a in node.names]
    return [(line, t) for line, t in out if t == "pyfolio" or t.startswith("pyfolio.")]


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PKG).as_posix())
def test_a_kernel_model_lives_at_its_kernel_file(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    files = models_files(doc)
    part = part_of(dotted(path))
    if part in KERNEL_PARTS and path.name != "__init__.py":
        assert files, f"{path.name}: a kernel model says which kernel file it models (Models:)"
    if not files or re.search(r"^Place: \S.*", doc, re.M):
        return
    assert any(lives_at(path, f) for f in files), (
        f"{path.relative_to(PKG)} models {files} but does not live at any of their paths: "
        "move it, or say why in a 'Place:' line")


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(PKG).as_posix())
def test_no_import_runs_up_a_layer(path: Path) -> None:
    here = dotted(path) + (".__init__" if path.name == "__init__.py" else "")
    mine = LAYERS[part_of(dotted(path))]
    bad = []
    for line, target in runtime_imports(ast.parse(path.read_text()), here):
        theirs = LAYERS.get(part_of(target))
        if theirs is None:
            bad.append(f"line {line}: {target} is in no layer (add its folder to LAYERS)")
        elif theirs > mine:
            bad.append(f"line {line}: {target} (layer {theirs}) from layer {mine}")
        elif part_of(dotted(path)) == "views" and part_of(target) in ("widgets", "exercises"):
            bad.append(f"line {line}: a view imports {target} (views sit below widgets)")
    assert not bad, f"{path.relative_to(PKG)} imports up a layer:\n" + "\n".join(bad)


def test_the_facade_imports_in_one_direction() -> None:
    """system imports device; device names Process only in annotations."""
    tree = ast.parse((PKG / "device.py").read_text())
    assert not [t for _, t in runtime_imports(tree, "pyfolio.device")
                if t.startswith("pyfolio.system") or t == "pyfolio.System"]


def test_the_layer_check_catches_an_upward_import() -> None:
    """The checks above can fail: an import of the facade from a kernel model is found,
    one under TYPE_CHECKING is not, and a misplaced model is reported."""
    up = ast.parse("from pyfolio.system import System\n")
    guarded = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                        "    from pyfolio.system import System\n")
    assert runtime_imports(up, "pyfolio.mm.memory") == [(1, "pyfolio.system")]
    assert runtime_imports(ast.parse("from pyfolio import System\n"), "x") == [(1, "pyfolio")]
    assert runtime_imports(guarded, "pyfolio.mm.memory") == []
    assert lives_at(PKG / "mm" / "huge_memory_split.py", "mm/huge_memory.c")
    assert lives_at(PKG / "arch" / "x86" / "pgtable.py", "arch/x86/include/asm/pgtable.h")
    assert not lives_at(PKG / "mm" / "memory.py", "mm/huge_memory.c")
    assert not lives_at(PKG / "sim" / "memmap.py", "include/linux/mm_types.h")
