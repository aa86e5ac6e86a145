"""Reading the simulator as a reviewer reads a patch: branches on a flag, call stacks, state.

Chapter 12 compares the two designs of the device-migration split fallback (the v7
``unmapped`` parameter threaded through ``__folio_split()``, and the merged
``folio_split_unmapped()``). Nothing here is typed in by hand: the branch counts come from
pyfolio's own source (``ast``), looked up by function *name* across pyfolio's model
modules (so they follow a function if it moves to another module); the call stacks come
from running a scenario and noting, at every trace event, which kernel-modelled functions
were on the Python stack; the state comparison is :func:`pyfolio.mm.debug_vm.snapshot`.

>>> fn = find_function("folio_split_unmapped")
>>> fn.module
'pyfolio.mm.huge_memory_split'
>>> [b.kind for b in branches(fn, "unmapped")]
[]
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import pkgutil
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from pyfolio.mm.debug_vm import snapshot
from pyfolio.sim.units import PAGE_SIZE, MiB

if TYPE_CHECKING:
    from pyfolio.device import MigrationResults
    from pyfolio.sim.trace import Event
    from pyfolio.system import Process, System

__all__ = [
    "FunctionSource", "Branch", "ReaderLoad", "StackedEvent", "FallbackRun", "DESIGNS",
    "ENTRY", "find_function", "branches", "branches_in", "flag_forwards", "body_of",
    "reader_load", "functions_with_param", "call_args", "traced_stacks", "state_digest",
    "fallback_scenario", "split_events", "DesignStep", "design_steps",
]

#: the two designs, as System(split_design=...) names them, in the order the book shows them
DESIGNS = ("unmapped-param", "split-unmapped-folio")
#: the function migrate_vma_split_unmapped_folio() hands the folio to, per design
ENTRY = {"unmapped-param": "__folio_split", "split-unmapped-folio": "folio_split_unmapped"}
#: pyfolio packages that are not the model (layers 3-6): never searched for kernel functions
_NOT_MODEL = (".views", ".widgets", ".exercises", ".kernel_lab", "__main__")
_BRANCH_NODES = (ast.If, ast.IfExp, ast.While)


@dataclass(frozen=True, slots=True)
class FunctionSource:
    """One module-level function of pyfolio, parsed: ``node`` is its ``ast.FunctionDef``."""

    module: str
    name: str
    node: ast.FunctionDef
    path: str

    @property
    def params(self) -> tuple[str, ...]:
        a = self.node.args
        return tuple(x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs))


@dataclass(frozen=True, slots=True)
class Branch:
    """A decision point: ``kind`` is "if", "elif", "ternary", "while" or "comprehension";
    ``test`` the condition's source; ``line`` its line in ``function``'s module."""

    function: str
    line: int
    kind: str
    test: str


@dataclass(frozen=True, slots=True)
class ReaderLoad:
    """What a reader of ``entry`` holds in mind: the functions read (``entry`` and the
    Python helpers that are its body), every branch in them, those on ``flag``, and the
    calls that pass ``flag`` on to another function."""

    entry: str
    flag: str
    functions: tuple[str, ...]
    branches: tuple[Branch, ...]
    on_flag: tuple[Branch, ...]
    forwards: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StackedEvent:
    """A trace event and the kernel-modelled functions on the stack when it was emitted
    (outermost first; the emitting function last)."""

    event: Event
    stack: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.event.name


@dataclass
class FallbackRun:
    """One run of the fallback scenario: the machine, the process, the range, the
    per-page results and the events of the migration with their stacks."""

    system: System
    proc: Process
    addr: int
    length: int
    results: MigrationResults
    events: list[StackedEvent]
    design: str


# -- finding functions in pyfolio's source ------------------------------------------------
@functools.cache
def _model_modules() -> tuple[tuple[str, str], ...]:
    """(module name, source path) of every pyfolio model module."""
    import pyfolio

    out = []
    for info in pkgutil.walk_packages(pyfolio.__path__, "pyfolio."):
        if any(part in info.name for part in _NOT_MODEL) or info.name == __name__:
            continue
        spec = importlib.util.find_spec(info.name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            out.append((info.name, spec.origin))
    return tuple(out)


@functools.cache
def _parsed(path: str) -> ast.Module:
    return ast.parse(Path(path).read_text(), filename=path)


def _defs(module: str, path: str) -> Iterator[FunctionSource]:
    for node in _parsed(path).body:
        if isinstance(node, ast.FunctionDef):
            yield FunctionSource(module, node.name, node, path)


def find_function(name: str, prefer: str | None = None) -> FunctionSource:
    """The module-level function ``name`` in pyfolio's model modules (``prefer``: the
    module to look in first, for private helpers that share a name). KeyError if none."""
    found = [f for mod, path in _model_modules() for f in _defs(mod, path) if f.name == name]
    if not found:
        raise KeyError(f"no module-level function {name!r} in pyfolio's model modules")
    return next((f for f in found if f.module == prefer), found[0])


def _mentions(node: ast.AST, flag: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == flag for n in ast.walk(node))


def branches_in(node: ast.AST, function: str = "", flag: str | None = None) -> list[Branch]:
    """Every decision point under ``node`` (nested functions excluded), or only those whose
    condition mentions the name ``flag``.

    >>> src = "def f(a, u):\\n    if u:\\n        return 1\\n    elif a:\\n        pass\\n" \\
    ...       "    return [x for x in a if not u] if a else 0\\n"
    >>> [(b.kind, b.test) for b in branches_in(ast.parse(src).body[0], "f", "u")]
    [('if', 'u'), ('comprehension', 'not u')]
    """
    out: list[Branch] = []
    elifs = {id(n.orelse[0]) for n in ast.walk(node) if isinstance(n, ast.If)
             and len(n.orelse) == 1 and isinstance(n.orelse[0], ast.If)}
    for n in ast.walk(node):
        if n is not node and isinstance(n, (ast.FunctionDef, ast.Lambda)):
            continue
        tests: list[tuple[str, ast.expr]] = []
        if isinstance(n, _BRANCH_NODES):
            kind = {ast.If: "elif" if id(n) in elifs else "if", ast.IfExp: "ternary",
                    ast.While: "while"}[type(n)]
            tests.append((kind, n.test))
        elif isinstance(n, ast.comprehension):
            tests.extend(("comprehension", t) for t in n.ifs)
        out.extend(Branch(function, t.lineno, kind, ast.unparse(t)) for kind, t in tests
                   if flag is None or _mentions(t, flag))
    return sorted(out, key=lambda b: (b.line, b.kind))


def branches(fn: FunctionSource, flag: str | None = None) -> list[Branch]:
    """The decision points of one function (see :func:`branches_in`)."""
    return branches_in(fn.node, fn.name, flag)


def flag_forwards(fn: FunctionSource, flag: str) -> list[str]:
    """Calls in ``fn`` that pass an expression mentioning ``flag`` to another function
    (the flag threaded on), as source text."""
    return [ast.unparse(n) for n in ast.walk(fn.node) if isinstance(n, ast.Call)
            and any(_mentions(a, flag) for a in (*n.args, *(k.value for k in n.keywords)))]


def _callees(fn: FunctionSource) -> list[str]:
    names = []
    for n in ast.walk(fn.node):
        if isinstance(n, ast.Call):
            f = n.func
            names.append(f.id if isinstance(f, ast.Name) else
                         f.attr if isinstance(f, ast.Attribute) else "")
    return list(dict.fromkeys(x for x in names if x))


def body_of(name: str) -> list[FunctionSource]:
    """``name`` and, transitively, the Python-only helpers it calls (``_x``, not ``__x``:
    pieces of its body moved out to keep functions short), in reading order."""
    seen: dict[str, FunctionSource] = {}
    todo = [find_function(name)]
    while todo:
        fn = todo.pop(0)
        if fn.name in seen:
            continue
        seen[fn.name] = fn
        for callee in _callees(fn):
            if callee.startswith("_") and not callee.startswith("__") and callee not in seen:
                try:
                    todo.append(find_function(callee, prefer=fn.module))
                except KeyError:
                    pass
    return list(seen.values())


def reader_load(entry: str, flag: str) -> ReaderLoad:
    """What a reader of ``entry`` must hold in mind, and how much of it is about ``flag``.

    >>> load = reader_load("folio_split_unmapped", "unmapped")
    >>> load.functions[0], load.on_flag, load.forwards
    ('folio_split_unmapped', (), ())
    """
    body = body_of(entry)
    all_b = tuple(b for fn in body for b in branches(fn))
    return ReaderLoad(entry, flag, tuple(fn.name for fn in body), all_b,
                      tuple(b for b in all_b if _mentions(ast.parse(b.test, mode="eval"), flag)),
                      tuple(c for fn in body for c in flag_forwards(fn, flag)))


def _annotation(fn: FunctionSource, param: str) -> str | None:
    """The source of ``param``'s type annotation in ``fn`` (None if unannotated)."""
    a = fn.node.args
    for x in (*a.posonlyargs, *a.args, *a.kwonlyargs):
        if x.arg == param:
            return ast.unparse(x.annotation) if x.annotation is not None else None
    return None


def functions_with_param(param: str, annotation: str | None = None) -> list[str]:
    """Every model function with a parameter named ``param`` (where a flag is threaded);
    with ``annotation``, only those whose parameter has that type (``"bool"`` for a flag,
    leaving out an unrelated ``unmapped: int`` count elsewhere)."""
    return [f"{f.module}.{f.name}" for mod, path in _model_modules() for f in _defs(mod, path)
            if param in f.params and (annotation is None or _annotation(f, param) == annotation)]


def call_args(caller: str, callee: str) -> list[tuple[str, str]]:
    """(parameter, argument source) pairs of the first call of ``callee`` in ``caller``,
    matched to ``callee``'s parameter names by position and keyword."""
    params = find_function(callee).params
    for n in ast.walk(find_function(caller).node):
        if isinstance(n, ast.Call) and callee in (getattr(n.func, "id", None),
                                                  getattr(n.func, "attr", None)):
            pos = [(p, ast.unparse(a)) for p, a in zip(params, n.args, strict=False)]
            return pos + [(k.arg or "**", ast.unparse(k.value)) for k in n.keywords]
    raise KeyError(f"{caller}() does not call {callee}()")


# -- running: stacks at each event, state --------------------------------------------------
@functools.cache
def _kernel_functions() -> frozenset[tuple[str, str]]:
    """(module, function) of every pyfolio function that models a kernel function."""
    from pyfolio.reading.xref import kernel_refs

    return frozenset(tuple(r.python.rsplit(".", 1)) for r in kernel_refs())  # type: ignore[misc]


def _stack(frame: FrameType | None) -> tuple[str, ...]:
    """The kernel-modelled functions on the stack from ``frame`` out (outermost first),
    and the book's exercise functions (modules flagged ``__book__``, not ``_helpers``),
    named "name [book]"."""
    kernel = _kernel_functions()
    names = []
    while frame is not None:
        mod, name = frame.f_globals.get("__name__", ""), frame.f_code.co_name
        if (mod, name) in kernel:
            names.append(name)
        elif frame.f_globals.get("__book__") and name.isidentifier() and (
                not name.startswith("_") or name.startswith("__")):
            names.append(f"{name} [book]")
        frame = frame.f_back
    return tuple(reversed(names))


def traced_stacks(m: System, action: Callable[[], Any]) -> tuple[Any, list[StackedEvent]]:
    """Run ``action()`` on ``m`` and return its result and every event it emitted, each
    with the kernel-modelled functions on the stack at that moment (the trace itself is
    unchanged: the same events are recorded as without this). The batched paths are off
    meanwhile (``System.batch``): they leave the same events, but the stacks shown are
    those of the per-page model the chapters teach."""
    trace = m.trace
    batch, m.batch = m.batch, False
    mark = trace.mark()
    stacks: list[tuple[str, ...]] = []
    emit = trace.emit

    def recording_emit(name: str, changes: dict[str, Any] | None = None,
                       **args: Any) -> Event | None:
        ev = emit(name, changes, **args)
        if ev is not None:
            stacks.append(_stack(sys._getframe(1)))
        return ev

    trace.emit = recording_emit  # type: ignore[method-assign]
    try:
        result = action()
    finally:
        del trace.emit
        m.batch = batch
    events = trace.since(mark)
    return result, [StackedEvent(e, s) for e, s in zip(events, stacks, strict=True)]


def state_digest(m: System) -> str:
    """A short fingerprint of :func:`pyfolio.mm.debug_vm.snapshot` (equal states, equal
    digests): what a reader compares at a glance."""
    return hashlib.sha256(repr(snapshot(m.machine)).encode()).hexdigest()[:12]


def split_events(run: FallbackRun) -> list[StackedEvent]:
    """The events emitted inside migrate_vma_split_unmapped_folio() (the fallback)."""
    return [e for e in run.events if "migrate_vma_split_unmapped_folio" in e.stack]


def fallback_scenario(design: str, seed: int = 0, *, thps: int | None = None,
                      small_pages: int | None = None, large_pages: bool = False) -> FallbackRun:
    """A process writes ``thps`` THPs (and ``small_pages`` 4 KiB pages after them, in a
    MADV_NOHUGEPAGE range), then migrates the whole range to a device without large pages
    (``large_pages=False``), so every THP takes the split fallback of ``design``. The seed
    picks what ``None`` leaves open and the values written. With ``large_pages=True`` the
    THPs move whole and no fallback runs (the control experiment)."""
    from pyfolio.system import System

    rng = random.Random(f"fallback:{seed}")
    thps = rng.randint(1, 3) if thps is None else thps
    small_pages = rng.choice([0, 0, 3, 17]) if small_pages is None else small_pages
    m = System(ram="64M", thp="madvise", seed=seed, split_design=design)
    dev = m.add_device("dmirror0", memory="32M", large_pages=large_pages)
    p = m.spawn()
    length = thps * 2 * MiB + small_pages * PAGE_SIZE
    a = p.mmap((thps + 1) * 2 * MiB)  # a multiple of 2 MiB: placed 2 MiB aligned
    p.madvise(a, thps * 2 * MiB, "hugepage")
    if small_pages:
        p.madvise(a + thps * 2 * MiB, small_pages * PAGE_SIZE, "nohugepage")
    p.touch(a, length)
    for _ in range(rng.randint(0, 4)):
        p.write(a + rng.randrange(length // PAGE_SIZE) * PAGE_SIZE, rng.randrange(1, 1 << 30))
    results, events = traced_stacks(m, lambda: dev.migrate_to_device(p, a, length))
    return FallbackRun(m, p, a, length, results, events, design)


@dataclass(frozen=True, slots=True)
class DesignStep:
    """One step of the fallback seen in both designs: the event (the same in both) and,
    per design, the kernel-modelled call stack from migrate_vma_split_unmapped_folio()
    down to the function that emitted it."""

    label: str
    event: str
    stacks: tuple[tuple[str, tuple[str, ...]], ...]  # ((design, stack), ...)

    def stack(self, design: str) -> tuple[str, ...]:
        return dict(self.stacks)[design]


def _from_fallback(stack: tuple[str, ...]) -> tuple[str, ...]:
    i = stack.index("migrate_vma_split_unmapped_folio")
    return stack[i:]


def design_steps(*runs: FallbackRun, thp: int = 0) -> list[DesignStep]:
    """The events of the ``thp``-th fallback split, one :class:`DesignStep` each, with the
    stacks of every run (runs of different designs on the same scenario). ValueError if
    the runs' events differ in name or order: the designs must do the same work."""
    per_run = []
    for run in runs:
        evs = split_events(run)
        starts = [i for i, e in enumerate(evs) if e.name == "split_huge_pmd"]
        if thp >= len(starts):
            raise ValueError(f"run of {run.design} has {len(starts)} fallback split(s), "
                             f"not {thp + 1}")
        end = starts[thp + 1] if thp + 1 < len(starts) else len(evs)
        per_run.append(evs[starts[thp]:end])
    names = [[e.name for e in evs] for evs in per_run]
    if any(n != names[0] for n in names):
        raise ValueError(f"the designs emitted different events: {names}")
    return [DesignStep(f"step {k + 1} of {len(names[0])}: {name}", name,
                       tuple((run.design, _from_fallback(evs[k].stack))
                             for run, evs in zip(runs, per_run, strict=True)))
            for k, name in enumerate(names[0])]
