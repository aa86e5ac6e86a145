"""The kernel cross-reference: which pyfolio function models which kernel function.

Built from the ``Models:`` line of every docstring, so the book's cross-reference page and
the chapters' "Read the kernel" boxes can never drift from the code.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["KernelRef", "kernel_refs", "read_the_kernel", "xref_table"]

_MODELS = re.compile(r"Models:\s*(.+?)(?:\n\s*\n|$)", re.S)
_FILE = re.compile(r"([\w./-]+\.[ch]):")
_FUNC = re.compile(r"\s*(?:,|/|and)?\s*(\w+)\([^)]*\)")


def _parse(text: str) -> tuple[tuple[str, str], ...]:
    """(file, function) pairs: ``mm/memory.c:a(), b() and c()`` names three functions."""
    out: list[tuple[str, str]] = []
    for f in _FILE.finditer(text):
        pos = f.end()
        while (g := _FUNC.match(text, pos)) is not None:
            out.append((f.group(1), g.group(1)))
            pos = g.end()
    return tuple(out)


@dataclass(frozen=True, slots=True)
class KernelRef:
    """One pyfolio function and the kernel function(s) it models."""

    python: str  # "pyfolio.huge_memory.split_huge_pmd"
    kernel: tuple[tuple[str, str], ...]  # (("mm/huge_memory.c", "split_huge_pmd"), ...)
    note: str  # the whole Models: text (version, simplifications)


def _models_text(obj: Any) -> str | None:
    doc = inspect.getdoc(obj) or ""
    found = _MODELS.search(doc)
    return " ".join(found.group(1).split()) if found else None


def _ref(python: str, obj: Any) -> KernelRef | None:
    text = _models_text(obj)
    if text is None:
        return None
    return KernelRef(python, _parse(text), text)


def kernel_refs() -> list[KernelRef]:
    """Every function (or class) in pyfolio whose docstring has a ``Models:`` line."""
    import pyfolio

    out: list[KernelRef] = []
    for info in pkgutil.walk_packages(pyfolio.__path__, "pyfolio."):
        if ".widgets" in info.name or info.name.endswith(("__main__", ".xref")):
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == mod.__name__:
                ref = _ref(f"{mod.__name__}.{name}", obj)
                if ref is not None:
                    out.append(ref)
    return sorted(out, key=lambda r: (r.kernel[0] if r.kernel else ("~", ""), r.python))


def xref_table(refs: Iterable[KernelRef] | None = None) -> str:
    """A Markdown table: kernel file, kernel function, the pyfolio function, the note."""
    rows = ["| kernel file | kernel function | pyfolio | as modelled |", "|---|---|---|---|"]
    for r in refs if refs is not None else kernel_refs():
        for path, fn in dict.fromkeys(r.kernel) or (("", ""),):
            note = r.note.replace("|", "\\|")
            rows.append(f"| `{path}` | `{fn}()` | `{r.python}` | {note} |")
    return "\n".join(rows)


def read_the_kernel(*functions: Callable[..., Any]) -> str:
    """A "Read the kernel" list for a chapter: each function's kernel file and function,
    taken from its ``Models:`` line (Markdown; display it with IPython's Markdown)."""
    lines = []
    for fn in functions:
        ref = _ref(f"{fn.__module__}.{fn.__name__}", fn)
        if ref is None:
            raise ValueError(f"{fn.__module__}.{fn.__name__} has no 'Models:' line")
        where = ", ".join(f"`{p}:{f}()`" for p, f in ref.kernel) or ref.note
        lines.append(f"- {where}, modelled by `{ref.python}`")
    return "\n".join(lines)
