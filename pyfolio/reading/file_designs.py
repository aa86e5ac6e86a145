"""The book's exercise: what each split-fallback design needs for an unmapped *file* folio.

Chapter 12 compares two designs for splitting a folio that device migration has already
unmapped: (a) the v7 series' ``unmapped`` flag threaded through ``__folio_split()``, and (b)
the merged ``folio_split_unmapped()``. Both were written for anonymous folios only. Zi Yan
asked in the review what happens when file-backed folios need the same ("are you going to
use unmapped parameter to guard code for file-backed code in ``__folio_split()``?").

**What is the kernel's and what is the book's.** No kernel tree splits an unmapped
page-cache folio this way: device migration moves anonymous memory only (migrate_vma_pages()
refuses a file folio for device-private memory), and the merged folio_split_unmapped()
warns on a folio that is not anonymous. Everything in this module is the book's exercise:

* :data:`CASES` and :func:`split_unmapped_file_folio` -- a caller modelled on
  migrate_vma's (look the folio up, lock it, isolate it from the LRU, drop the lookup
  reference, unmap it, split it, then unlock each piece and put it back on the LRU);
* design (a) **as posted**: the model of v7's ``__folio_split(..., unmapped=True)`` in
  :mod:`pyfolio.mm.huge_memory_split`, run unchanged on a file folio. Its early
  ``if (unmapped) return ret;`` (after the ``fail:`` label, in the v7 tree read for this
  chapter: balbirs-nv/linux mm/huge_memory.c at 130561bb) skips ``shmem_uncharge()`` and
  the ``out_unlock:`` label, so a file folio leaves ``i_mmap_rwsem`` held for read (the
  next ``i_mmap_lock_write()``, an mmap() or munmap() of the file, would wait forever)
  and a shmem file charged for the pages dropped past EOF (until the next
  ``shmem_recalc_inode()``); ``debug_vm`` reports both;
* design (a) **with the book's fix**: :data:`PATCH_A`, a patch to the model's Python, applied
  at run time (:func:`patched_folio_split`) -- the unmapped exit moves below
  ``shmem_uncharge()`` and leaves through ``out_unlock:``, and the counters at ``out:``
  are skipped for every unmapped outcome (:data:`PATCH_A_C` is the same change sketched in
  C against the v7 tree);
* design (b) **with the book's function**: :func:`folio_split_unmapped_file`, a second
  entry point beside ``folio_split_unmapped()`` that runs the page-cache preparation of
  ``__folio_split()`` (pyfolio's ``_file_split_prepare()``; in C that block would have to
  be factored out of ``__folio_split()``, as the November 2025 review did for the freeze)
  and passes the mapping, the XArray state and ``end`` to the shared
  ``__folio_freeze_and_split_unmapped()``, which already takes them.

:func:`shared_path_counts` counts, with ``ast``, the conditions in ``__folio_split()``'s body
under each design (what every splitter's reader holds in mind), and those of a new entry
point; :func:`file_split_scenario` runs a case under a design and reports the result, the
``debug_vm`` violations and the state fingerprint, so that equal states can be checked.
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import random
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyfolio.reading.review import (
    Branch,
    DesignStep,
    StackedEvent,
    body_of,
    branches_in,
    state_digest,
    traced_stacks,
)
from pyfolio.sim.units import PAGE_SIZE, MiB

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace
    from pyfolio.include.linux.mm import Folio
    from pyfolio.mm.debug_vm import Violation
    from pyfolio.system import Process, System

__all__ = ["FILE_DESIGNS", "DESIGN_TITLES", "CASES", "PATCH_A", "PATCH_A_C", "patched_sources",
           "patch_diff", "patched_folio_split", "folio_split_unmapped_file",
           "split_unmapped_file_folio", "SharedPathCount", "shared_path_counts",
           "FileSplitRun", "file_split_scenario", "file_design_steps"]

#: book flag: frames of functions defined here (or by the patch) show in traced stacks
__book__ = True

#: the designs, as this module names them, in the order the book shows them
FILE_DESIGNS = ("unmapped-param", "unmapped-param+fix", "split-unmapped-file")
DESIGN_TITLES = {
    "unmapped-param": "(a) v7 unmapped flag, as posted",
    "unmapped-param+fix": "(a) + the book's fix",
    "split-unmapped-file": "(b) + the book's folio_split_unmapped_file()",
}

#: the scenarios: a page-cache folio of order 9 the caller splits to order 0
CASES: dict[str, str] = {
    "memfd": "a memfd's 2 MiB folio, all of it before EOF",
    "memfd-eof": "a memfd's 2 MiB folio with EOF inside it (the pieces past EOF are dropped)",
    "memfd-mapped": "a memfd's 2 MiB folio mapped by a process (the caller unmaps it first)",
    "ext4-clean": "an ext4 file's 2 MiB folio after fsync() (its buffers can be released)",
    "ext4-dirty": "an ext4 file's dirty 2 MiB folio (its buffers cannot be released: -EBUSY)",
    "memfd-extra-ref": "a memfd's 2 MiB folio someone else holds a reference to (-EAGAIN)",
}

# -- design (a): the book's patch to the model's __folio_split() ---------------------------
#: (function, old text, new text): the book's fix, applied to the model's Python source
PATCH_A: tuple[tuple[str, str, str], ...] = (
    ("__folio_split",
     "    if unmapped and after_freeze:\n"
     "        return ret  # v7: \"if (unmapped) return ret;\" right after the fail: label\n",
     "    if unmapped:  # book: \"if (unmapped) return ret;\" after xas_destroy() at out:\n"
     "        return ret\n"),
    ("_split_mapped_steps",
     "    if unmapped:  # v7: the caller keeps every piece (one reference each, locked)\n"
     "        for h in heads if held else ():\n"
     "            m.mem.extra_refs[int(h)] += held\n"
     "        return ret, True\n"
     "    if dropped[0] and mapping is not None:\n"
     "        from pyfolio.mm.shmem import shmem_uncharge\n"
     "\n"
     "        shmem_uncharge(mapping.host, dropped[0])\n",
     "    if dropped[0] and mapping is not None:\n"
     "        from pyfolio.mm.shmem import shmem_uncharge\n"
     "\n"
     "        shmem_uncharge(mapping.host, dropped[0])\n"
     "    if unmapped:  # book: below shmem_uncharge(), then \"goto out_unlock;\"\n"
     "        for h in heads if held else ():\n"
     "            m.mem.extra_refs[int(h)] += held\n"
     "        if mapping is not None:  # out_unlock:\n"
     "            i_mmap_unlock_read(mapping)\n"
     "        return ret, True\n"),
)

#: the same fix sketched in C against v7's __folio_split() (the book's, never posted)
PATCH_A_C = """\
 fail:
     if (mapping)
         xas_unlock(&xas);
     local_irq_enable();
-    if (unmapped)
-        return ret;
     if (nr_shmem_dropped)
         shmem_uncharge(mapping->host, nr_shmem_dropped);
+    if (unmapped)
+        goto out_unlock;
     if (!ret && is_anon)
         remap_flags = RMP_USE_SHARED_ZEROPAGE;
 ...
 out_unlock:
     ...
     if (mapping)
         i_mmap_unlock_read(mapping);
 out:
     xas_destroy(&xas);
+    if (unmapped)
+        return ret;
     if (order == HPAGE_PMD_ORDER)
         count_vm_event(!ret ? THP_SPLIT_PAGE : THP_SPLIT_PAGE_FAILED);
"""

_PATCHED_MODULE = "pyfolio.mm.huge_memory_split"


def _source(name: str) -> str:
    import pyfolio.mm.huge_memory_split as hms

    return textwrap.dedent(inspect.getsource(getattr(hms, name)))


@functools.cache
def patched_sources() -> tuple[tuple[str, str, str], ...]:
    """(function, the model's source, the patched source) for each function PATCH_A
    touches. ValueError if the model's source no longer contains a patched text (the
    patch must then be rewritten against the model)."""
    out = []
    for name, old, new in PATCH_A:
        src = _source(name)
        if src.count(old) != 1:
            raise ValueError(f"PATCH_A does not apply to {name}(): the model changed")
        out.append((name, src, src.replace(old, new)))
    return tuple(out)


def patch_diff() -> str:
    """PATCH_A as a unified diff of the model's Python (what a reviewer of (a) reads)."""
    lines: list[str] = []
    for name, old, new in patched_sources():
        lines += difflib.unified_diff(old.splitlines(), new.splitlines(),
                                      f"{name}() as modelled (v7)", f"{name}() + book's fix",
                                      lineterm="", n=1)
    return "\n".join(lines)


@functools.cache
def _patched_namespace() -> dict[str, Any]:
    import pyfolio.mm.huge_memory_split as hms

    ns = dict(vars(hms))
    ns["__name__"] = __name__ + ".patched"
    ns["__book__"] = True
    src = "from __future__ import annotations\n" + "\n\n".join(
        new for _, _, new in patched_sources())
    exec(compile(src, "<book's PATCH_A of pyfolio/mm/huge_memory_split.py>", "exec"), ns)  # noqa: S102
    return ns


def patched_folio_split() -> Callable[..., int]:
    """The model's __folio_split() with PATCH_A applied (a new function; the model itself
    is unchanged)."""
    return _patched_namespace()["__folio_split"]


# -- design (b): the book's second entry point ---------------------------------------------
def folio_split_unmapped_file(folio: Folio, new_order: int) -> int:
    """The book's exercise, not kernel code: a uniform split of an unmapped, locked,
    isolated page-cache folio, leaving every piece locked with one reference.

    Beside folio_split_unmapped() (anon only) and built like it: warn unless unmapped,
    locked, large and file-backed; the page-cache steps of __folio_split() (truncated:
    -EBUSY; below the mapping's minimum order: -EINVAL; private data that cannot be
    released: -EBUSY; reserve the XArray nodes; note ``end``); -EAGAIN unless the caller
    holds the only extra reference or if the folio left the page cache; then the shared
    __folio_freeze_and_split_unmapped() with the mapping, the XArray state and ``end``, no
    LRU and no list; shmem_uncharge() for the pieces dropped past EOF. Nothing counted, no
    remap, no i_mmap_rwsem (nothing maps the folio, and its lock keeps faults out).
    """
    from pyfolio.include.linux.mm import (
        VM_WARN_ON_FOLIO,
        folio_expected_ref_count,
        folio_mapped,
        folio_nr_pages,
        folio_ref_count,
        folio_test_anon,
        folio_test_large,
        folio_test_locked,
    )
    from pyfolio.lib.xarray import xas_load
    from pyfolio.mm.huge_memory_split import (
        __folio_freeze_and_split_unmapped,
        _file_split_prepare,
        heads_in_range,
    )
    from pyfolio.mm.shmem import shmem_uncharge
    from pyfolio.sim.errors import EAGAIN

    m = folio.m
    VM_WARN_ON_FOLIO(folio_mapped(folio), folio, "split of a mapped folio")
    VM_WARN_ON_FOLIO(not folio_test_locked(folio), folio, "not locked")
    VM_WARN_ON_FOLIO(not folio_test_large(folio), folio, "not large")
    VM_WARN_ON_FOLIO(folio_test_anon(folio), folio, "anon: use folio_split_unmapped()")
    got = _file_split_prepare(folio, new_order, True)
    if isinstance(got, int):
        return got
    mapping, xas, end = got
    if folio_expected_ref_count(folio) != folio_ref_count(folio) - 1:
        return -EAGAIN
    if xas_load(xas) != folio.pfn:
        return -EAGAIN
    nr, held, dropped = folio_nr_pages(folio), m.mem.extra_refs.pop(folio.pfn, 0), [0]
    ret = __folio_freeze_and_split_unmapped(folio, new_order, folio.pfn, xas, mapping, False,
                                            None, True, end, dropped)
    if dropped[0]:
        shmem_uncharge(mapping.host, dropped[0])
    for h in (heads_in_range(m, folio.pfn, nr) if not ret else [folio.pfn]):
        if held:
            m.mem.extra_refs[int(h)] += held
    return ret


# -- the caller and the scenarios ----------------------------------------------------------
def _splitter(design: str) -> Callable[[Folio, int], int]:
    from pyfolio.mm.huge_memory_split import __split_huge_page_to_list_to_order as split_v7

    if design == "unmapped-param":  # as v7's migrate_vma_split_pages() calls it
        return lambda folio, order: split_v7(folio, None, order, True)
    if design == "unmapped-param+fix":
        split = patched_folio_split()
        return lambda folio, order: split(folio, order, folio.pfn, folio.pfn, None, True, True)
    if design == "split-unmapped-file":
        return folio_split_unmapped_file
    raise ValueError(f"unknown design {design!r}; one of {FILE_DESIGNS}")


def split_unmapped_file_folio(mapping: AddressSpace, index: int, design: str,
                              new_order: int = 0) -> int:
    """The book's caller, modelled on migrate_vma's: look up the folio at ``index``,
    lock it, isolate it from the LRU, drop the lookup reference, unmap it if it is
    mapped (file folios are unmapped outright), split it with ``design``, then unlock
    each piece and put it back on the LRU (a piece the split dropped past EOF is freed
    there). The split's result (0 or -errno)."""
    from pyfolio.include.linux.mm import folio_lock, folio_mapped, folio_nr_pages, folio_unlock
    from pyfolio.mm.filemap import filemap_get_folio
    from pyfolio.mm.huge_memory_split import heads_in_range
    from pyfolio.mm.migrate import folio_isolate_lru, folio_putback_lru, ref_drop
    from pyfolio.mm.rmap import TTU_SPLIT_HUGE_PMD
    from pyfolio.mm.rmap_file import try_to_unmap
    from pyfolio.sim.errors import VmWarning

    split = _splitter(design)
    folio = filemap_get_folio(mapping, index)
    if folio is None:
        raise VmWarning(f"no folio at index {index:#x}")
    m = folio.m
    m.mem.extra_refs[folio.pfn] += 1  # the lookup's reference, held by the caller
    folio_lock(folio)
    if not folio_isolate_lru(folio):
        raise VmWarning("the folio is not on the LRU")
    ref_drop(folio)  # migrate_device_unmap() drops the collect reference once isolated
    if folio_mapped(folio):
        try_to_unmap(folio, TTU_SPLIT_HUGE_PMD)
    nr = folio_nr_pages(folio)
    ret = split(folio, new_order)
    heads = heads_in_range(m, folio.pfn, nr) if not ret else [folio.pfn]
    for h in heads:
        piece = type(folio)(m, int(h))
        folio_unlock(piece)
        folio_putback_lru(piece)
    return ret


@dataclass
class FileSplitRun:
    """One case run under one design: the machine, the process and file, the split's
    result, the page cache before and after ((index, order) pairs), the debug_vm
    violations after it, and the events of the split with their stacks."""

    system: System
    proc: Process
    fd: int
    case: str
    design: str
    ret: int
    before: list[tuple[int, int]]
    after: list[tuple[int, int]]
    violations: list[Violation]
    events: list[StackedEvent]

    @property
    def digest(self) -> str:
        """The state fingerprint (:func:`pyfolio.reading.review.state_digest`)."""
        return state_digest(self.system)


def _setup(case: str, seed: int) -> tuple[System, Process, int, int]:
    """The machine, process, fd and value written for ``case``."""
    from pyfolio.system import System

    if case not in CASES:
        raise ValueError(f"unknown case {case!r}; one of {list(CASES)}")
    rng = random.Random(f"file-split:{case}:{seed}")
    value = rng.randrange(1, 1 << 30)
    m = System(ram="64M", seed=seed)
    m.set_shmem_thp("always")
    p = m.spawn()
    if case.startswith("ext4"):
        fd = p.open(f"/data/f{seed}")
        p.pwrite(fd, 0, 2 * MiB, value)
        if case == "ext4-clean":
            p.fsync(fd)
        return m, p, fd, value
    fd = p.memfd_create(f"case{seed}")
    if case == "memfd-eof":
        p.pwrite(fd, 0, rng.randint(1, 511) * PAGE_SIZE, value)
        return m, p, fd, value
    p.pwrite(fd, 0, 2 * MiB, value)
    if case == "memfd-mapped":
        a = p.mmap(2 * MiB, shared=True, fd=fd)
        p.read(a + rng.randrange(512) * PAGE_SIZE)
    elif case == "memfd-extra-ref":
        from pyfolio.mm.filemap import filemap_get_folio

        folio = filemap_get_folio(p._file(fd).f_mapping, 0)  # a reference kept by "someone"
        assert folio is not None
        folio.m.mem.extra_refs[folio.pfn] += 1
    return m, p, fd, value


def file_split_scenario(design: str, case: str, seed: int = 0) -> FileSplitRun:
    """Build ``case`` (the seed picks the values written and, for "memfd-eof", where EOF
    falls), then split its order-9 folio to order 0 with the book's caller under
    ``design``. The events are traced with their stacks; the violations are
    ``debug_vm.check()``'s after the caller has put every piece back."""
    m, p, fd, _ = _setup(case, seed)
    mapping = p._file(fd).f_mapping
    before = p.page_cache(fd)
    ret, events = traced_stacks(m, lambda: split_unmapped_file_folio(mapping, 0, design))
    return FileSplitRun(m, p, fd, case, design, ret, before, p.page_cache(fd), m.check(),
                        events)


def _from_caller(stack: tuple[str, ...]) -> tuple[str, ...]:
    name = "split_unmapped_file_folio [book]"
    return stack[stack.index(name):] if name in stack else stack


def file_design_steps(*runs: FileSplitRun) -> list[DesignStep]:
    """The events of the split inside the book's caller, one
    :class:`pyfolio.reading.review.DesignStep` each, with every run's stack (runs of
    different designs on the same case), up to the caller's putback of the pieces (the
    same in every design: left out); a run of identical events with identical stacks
    (one per piece dropped past EOF, say) is one step labelled "x n". ValueError if the
    runs' events differ in name or order (design (a) as posted counts a failed split,
    and emits ``__folio_split`` for it; the others do not)."""
    per_run = [[e for e in run.events if "split_unmapped_file_folio [book]" in e.stack
                and "folio_putback_lru" not in e.stack] for run in runs]
    names = [[e.name for e in evs] for evs in per_run]
    if any(n != names[0] for n in names):
        raise ValueError(f"the designs emitted different events: {names}")
    groups: list[tuple[str, tuple[tuple[str, tuple[str, ...]], ...], int]] = []
    for k, name in enumerate(names[0]):
        stacks = tuple((run.design, _from_caller(evs[k].stack))
                       for run, evs in zip(runs, per_run, strict=True))
        if groups and groups[-1][:2] == (name, stacks):
            groups[-1] = (name, stacks, groups[-1][2] + 1)
        else:
            groups.append((name, stacks, 1))
    return [DesignStep(f"step {k + 1} of {len(groups)}: {name}" + (f" x {n}" if n > 1 else ""),
                       name, stacks) for k, (name, stacks, n) in enumerate(groups)]


# -- counting the conditions -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SharedPathCount:
    """Conditions under one design: ``shared`` those in __folio_split()'s body (the
    function and its Python helpers, as :func:`pyfolio.reading.review.body_of` reads it),
    ``on_flag`` those of them testing ``unmapped``; ``added`` how many more than
    __folio_split() without the flag has (the merged function: pyfolio's model carries the
    v7 flag, so it is counted with ``unmapped`` evaluated to False), ``for_files`` how many
    the design's file support adds to its anonymous version; ``own`` the conditions of a
    new entry point (``entry``; "" if none)."""

    design: str
    shared: tuple[Branch, ...]
    on_flag: tuple[Branch, ...]
    added: int
    for_files: int
    entry: str
    own: tuple[Branch, ...]


def _mentions_flag(test: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "unmapped"
               for n in ast.walk(ast.parse(test, mode="eval")))


def _without_flag(node: ast.expr) -> ast.expr:
    """``node`` with ``unmapped`` replaced by False and simplified (``not False`` is True,
    a True operand of ``and`` and a False one of ``or`` dropped, a False ``and`` or a True
    ``or`` is constant)."""
    if isinstance(node, ast.Name) and node.id == "unmapped":
        return ast.Constant(False)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _without_flag(node.operand)
        if isinstance(inner, ast.Constant):
            return ast.Constant(not inner.value)
        return ast.UnaryOp(ast.Not(), inner)
    if isinstance(node, ast.BoolOp):
        neutral = isinstance(node.op, ast.And)  # True is neutral in `and`, False in `or`
        kept = []
        for v in (_without_flag(x) for x in node.values):
            if isinstance(v, ast.Constant) and bool(v.value) == neutral:
                continue
            if isinstance(v, ast.Constant):
                return ast.Constant(not neutral)
            kept.append(v)
        if not kept:
            return ast.Constant(neutral)
        return kept[0] if len(kept) == 1 else ast.BoolOp(node.op, kept)
    return node


def _flagless(bs: list[Branch]) -> tuple[Branch, ...]:
    """The branches left once the flag is gone: a condition that becomes constant goes
    (its code is always or never run), the others lose their ``unmapped`` terms."""
    out = []
    for b in bs:
        test = _without_flag(ast.parse(b.test, mode="eval").body)
        if not isinstance(test, ast.Constant):
            out.append(Branch(b.function, b.line, b.kind, ast.unparse(test)))
    return tuple(out)


def shared_path_counts() -> list[SharedPathCount]:
    """:class:`SharedPathCount` for each of :data:`FILE_DESIGNS`, counted from the source
    (the patched functions' ASTs for the fix, this module's for the new entry point).

    >>> [(c.design, c.added, c.for_files) for c in shared_path_counts()]
    [('unmapped-param', 3, 0), ('unmapped-param+fix', 4, 1), ('split-unmapped-file', 0, 0)]
    """
    from pyfolio.reading.review import find_function

    body = body_of("__folio_split")
    posted = [b for fn in body for b in branches_in(fn.node, fn.name)]
    patched = {name: ast.parse(new).body[0] for name, _, new in patched_sources()}
    fixed = [b for fn in body for b in branches_in(patched.get(fn.name, fn.node), fn.name)]
    merged = _flagless(posted)
    own = find_function("folio_split_unmapped_file")

    def flagged(bs: list[Branch]) -> tuple[Branch, ...]:
        return tuple(b for b in bs if _mentions_flag(b.test))

    return [
        SharedPathCount("unmapped-param", tuple(posted), flagged(posted),
                        len(posted) - len(merged), 0, "", ()),
        SharedPathCount("unmapped-param+fix", tuple(fixed), flagged(fixed),
                        len(fixed) - len(merged), len(fixed) - len(posted), "", ()),
        SharedPathCount("split-unmapped-file", merged, (), 0, 0, own.name,
                        tuple(branches_in(own.node, own.name))),
    ]
