"""The kernel cross-reference: which pyfolio function models which kernel function.

Built from the ``Models:`` line of every docstring, so the book's cross-reference page and
the chapters' "Read the kernel" boxes can never drift from the code. :data:`KERNEL_SOURCES`
is pyfolio's reference list of kernel files (every citation must name one of them);
:func:`uncited` finds functions that present themselves as kernel functions (a docstring
headed ``name() - ...``, a ``__name``, or a public name that some ``Models:`` line cites as a
kernel function, see :func:`kernel_names`) without a ``Models:`` line; :func:`xref_page`
renders the back-matter page, with the chapters whose "Read the kernel" box teaches each
function (found by reading the chapters' ``read_the_kernel(...)`` calls).

Every kernel function links to its definition in a public, versioned source browser
(:func:`kernel_url`: Elixir's identifier search at :data:`KERNEL_VERSION`, or at
:data:`SERIES_VERSION` for what the 2025 device-private THP series added or changed, see
:func:`kernel_version`), and every pyfolio function to its source in the book (the
``{pysrc}`` role of the book's Sphinx extension, ``tools/book_extras/sources.py``).
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["KernelRef", "KERNEL_SOURCES", "kernel_refs", "kernel_names", "read_the_kernel",
           "xref_table", "model_modules", "uncited", "chapters_teaching", "xref_page",
           "KERNEL_VERSION", "SERIES_VERSION", "SERIES_FUNCTIONS", "ELIXIR", "kernel_version",
           "kernel_url", "kernel_link", "file_url"]

#: the Linux release the book models
KERNEL_VERSION = "v6.18"
#: the first release after the device-private THP series and folio_split_unmapped() were
#: merged into the mm tree (November 2025): assumed to be 6.19, not confirmed from a tag
SERIES_VERSION = "v6.19"
#: the public source browser: Elixir, one tree per release tag
ELIXIR = "https://elixir.bootlin.com/linux"
#: kernel functions that the 2025 series (or the November 2025 folio_split_unmapped() patch)
#: added: v6.18 has none of them, so they link to :data:`SERIES_VERSION` whatever the note says
SERIES_FUNCTIONS = frozenset({
    "folio_split_unmapped", "__folio_freeze_and_split_unmapped", "folio_cache_ref_count",
    "migrate_vma_collect_huge_pmd", "migrate_vma_insert_huge_pmd_page",
    "migrate_vma_split_unmapped_folio", "migrate_vma_split_folio", "migrate_vma_split_pages",
    "do_huge_pmd_device_private", "zone_device_private_split_cb", "zone_device_folio_init",
    "dmirror_devmem_folio_split",
})

#: pyfolio's reference list: every kernel file a ``Models:`` line may cite, with what it
#: holds (Linux 6.18 unless the citation says otherwise). A citation of any other file is an
#: error (tests/test_xref.py): add the file here, with one line saying what it is.
KERNEL_SOURCES: dict[str, str] = {
    "arch/x86/include/asm/pgtable.h": "x86 page-table entry accessors",
    "arch/x86/include/asm/pgtable_64.h": "x86-64 swap-entry encoding",
    "arch/x86/include/asm/pgtable-invert.h": "the PFN inversion of PROT_NONE entries (L1TF)",
    "arch/x86/mm/pgprot.c": "protection_map[]: vm_flags to page protection bits",
    "arch/x86/mm/pgtable.c": "x86 pte_mkwrite() and pmd_mkwrite() (shadow-stack aware)",
    "fs/buffer.c": "buffer heads: block_write_end(), try_to_free_buffers()",
    "fs/ext4/extents.c": "ext4_fallocate()",
    "fs/ext4/file.c": "ext4 file operations: read, write, mmap (ext4_file_vm_ops)",
    "fs/ext4/fsync.c": "ext4_sync_file()",
    "fs/ext4/inode.c": "ext4 large folios, writes, releasing buffers, punch hole, truncate",
    "fs/ext4/super.c": "mounting ext4",
    "fs/file_table.c": "fput()",
    "fs/inode.c": "new_inode(), iput() and eviction",
    "fs/namei.c": "unlink()",
    "fs/open.c": "open, close, ftruncate, fallocate",
    "fs/proc/internal.h": "folio_precise_page_mapcount() for pagemap and kpagecount",
    "fs/proc/page.c": "/proc/kpageflags and /proc/kpagecount",
    "fs/proc/task_mmu.c": "/proc/PID/smaps, /proc/PID/pagemap, the RSS lines of status",
    "fs/read_write.c": "pread64 and pwrite64",
    "include/asm-generic/pgalloc.h": "generic page-table page allocation and free",
    "include/linux/fs.h": "struct inode, address_space, file, file_ra_state; i_size_read()",
    "include/linux/highmem.h": "folio_zero_range()",
    "include/linux/hmm.h": "heterogeneous memory management",
    "include/linux/huge_mm.h": "THP split entry points, helpers, per-size (mTHP) stats",
    "include/linux/memremap.h": "ZONE_DEVICE, struct dev_pagemap and its ops",
    "include/linux/migrate.h": "struct migrate_vma, MIGRATE_PFN_* flags",
    "include/linux/mm.h": "folio refcount and mapcount helpers, page-table helpers",
    "include/linux/mm_inline.h": "LRU helpers",
    "include/linux/mm_types.h": "struct page, struct folio, struct vm_area_struct",
    "include/linux/mm_types_task.h": "the MM_* RSS counter indices",
    "include/linux/mmdebug.h": "VM_WARN_ON_FOLIO and friends",
    "include/linux/mmu_notifier.h": "struct mmu_notifier_range, events, interval-notifier inlines",
    "include/linux/mmzone.h": "zones, ZONE_DEVICE, page_pgmap",
    "include/linux/page-flags.h": "page flags and folio tests",
    "include/linux/page_ref.h": "folio_ref_* and the refcount freeze",
    "include/linux/pagemap.h": "folio lock, mapping folio orders, FGP flags",
    "include/linux/pgtable.h": "generic page-table helpers",
    "include/linux/rmap.h": "reverse-map add/remove/dup helpers",
    "include/linux/shmem_fs.h": "struct shmem_sb_info and shmem_inode_info",
    "include/linux/swap.h": "swap entries, struct swap_info_struct, SWP_* flags",
    "include/linux/swapops.h": "migration and device-private entries",
    "include/linux/xarray.h": "XArray inlines: xas_set_order(), xa_empty()",
    "kernel/fork.c": "fork: dup_mm; check_mm's RSS-counter check",
    "lib/test_hmm.c": "the dmirror test driver",
    "lib/test_hmm_uapi.h": "dmirror's ioctl commands and HMM_DMIRROR_PROT_* bytes",
    "lib/xarray.c": "the XArray: multi-index entries, xas_split(), xas_try_split()",
    "mm/fadvise.c": "posix_fadvise()",
    "mm/filemap.c": "the page cache: add, remove, read, write, faults, fault-around",
    "mm/gup.c": "get/pin_user_pages",
    "mm/hmm.c": "hmm_range_fault",
    "mm/huge_memory.c": "THP faults, PMD split, folio split, deferred split",
    "mm/internal.h": "mm-internal helpers",
    "mm/khugepaged.c": "MADV_COLLAPSE: collapse of small pages into a THP",
    "mm/madvise.c": "madvise",
    "mm/memfd.c": "memfd_create()",
    "mm/memory.c": "page faults, zap, copy of page tables",
    "mm/memremap.c": "memremap_pages, device page free",
    "mm/migrate.c": "folio migration, migration entries",
    "mm/migrate_device.c": "migrate_vma_setup/pages/finalize",
    "mm/mm_init.c": "memmap initialisation",
    "mm/mmap.c": "mmap",
    "mm/mmu_notifier.c": "MMU notifiers: secondary MMUs hear of page-table changes",
    "mm/mprotect.c": "mprotect",
    "mm/page-writeback.c": "folio_mark_dirty(), folio_clear_dirty_for_io()",
    "mm/mremap.c": "mremap: moving page tables between addresses",
    "mm/page_alloc.c": "the buddy allocator",
    "mm/mincore.c": "mincore(): which pages are resident (page cache, swap cache)",
    "mm/pagewalk.c": "page-table walks",
    "mm/pgtable-generic.c": "PMD deposit/withdraw",
    "mm/pt_reclaim.c": "freeing PTE tables MADV_DONTNEED emptied (CONFIG_PT_RECLAIM)",
    "mm/readahead.c": "readahead: sync/async windows and the folio orders they read",
    "mm/rmap.c": "reverse map, try_to_migrate",
    "mm/shmem.c": "tmpfs and shared memory: huge policies, faults, truncation, swap",
    "mm/swap.c": "LRU add, rotate, (de)activate; folio_put",
    "mm/swap.h": "swap-internal helpers: vm_swap_full(), swap_zeromap_batch(), clusters",
    "mm/swap_state.c": "the swap cache and swap readahead",
    "mm/swapfile.c": "swap areas: swapon/swapoff, clusters and slots, swap counts",
    "mm/page_io.c": "swap writes and reads, the zeromap",
    "mm/truncate.c": "truncating the page cache, truncate_inode_partial_folio()",
    "mm/util.c": "folio_mapcount helpers",
    "mm/vma.c": "VMA split and merge",
    "mm/vma_init.c": "vm_area_dup(): a VMA copied for a split, a fork, a move",
    "mm/vmscan.c": "reclaim: shrink_folio_list(), reclaim_pages(), the LRU scan",
    "mm/vmstat.c": "/proc/vmstat",
}
#: pyfolio packages that are not the model: views, widgets, exercises, the kernel lab
_NOT_MODEL = (".views", ".widgets", ".exercises", ".kernel_lab", "__main__", ".xref")
_KERNEL_HEAD = re.compile(r"^(\w+)\(\) - ")

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

    python: str  # "pyfolio.mm.huge_memory.split_huge_pmd"
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
        for name, obj in _own(mod):
            ref = _ref(f"{mod.__name__}.{name}", obj)
            if ref is not None:
                out.append(ref)
    return sorted(out, key=lambda r: (r.kernel[0] if r.kernel else ("~", ""), r.python))


def _own(mod: ModuleType) -> list[tuple[str, Any]]:
    """The functions and classes defined in ``mod`` (not imported into it), each under
    its own name (an alias such as ``pmd_pfn = pte_pfn`` is the same function)."""
    return [(name, obj) for name, obj in vars(mod).items()
            if (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == mod.__name__ and obj.__name__ == name]


def model_modules() -> list[ModuleType]:
    """pyfolio's model modules (layer 1-2: everything but views, widgets, exercises, lab)."""
    import pyfolio

    return [importlib.import_module(info.name)
            for info in pkgutil.walk_packages(pyfolio.__path__, "pyfolio.")
            if not any(part in info.name for part in _NOT_MODEL)]


@functools.cache
def kernel_names() -> frozenset[str]:
    """The kernel function names xref knows: every function a ``Models:`` line cites."""
    return frozenset(fn for r in kernel_refs() for _, fn in r.kernel)


def uncited(mod: ModuleType, names: Iterable[str] | None = None) -> list[str]:
    """Functions of ``mod`` that present themselves as kernel functions but have no
    ``Models:`` line: a docstring headed ``name() - summary.``, a ``__name``, or a public
    function named after a kernel function (one in ``names``, by default
    :func:`kernel_names`). Private ``_helpers`` and classes are not judged by their name."""
    known = kernel_names() if names is None else frozenset(names)
    out = []
    for name, obj in _own(mod):
        doc = inspect.getdoc(obj) or ""
        func = inspect.isfunction(obj)
        kernelish = (bool(_KERNEL_HEAD.match(doc))
                     or (func and name.startswith("__") and not name.endswith("__"))
                     or (func and not name.startswith("_") and name in known))
        if kernelish and _models_text(obj) is None:
            out.append(f"{mod.__name__}.{name}")
    return out


_SERIES_WORDS = re.compile(r"merged|mm tree|linux-mm|\bthe (?:2025 )?series\b")


def _version_phrase(note: str, fn: str) -> str:
    """The parenthesised text right after ``fn(...)`` in a ``Models:`` note (else after the
    note's last cited function): where the citation says which version it read."""
    pos = -1
    for m in re.finditer(rf"\b{re.escape(fn)}\([^)]*\)", note):
        pos = m.end()
        break
    if pos < 0:
        return ""
    depth, start = 0, None
    for i in range(pos, len(note)):
        ch = note[i]
        if ch == "(":
            depth += 1
            start = i + 1 if start is None else start
        elif ch == ")" and depth:
            depth -= 1
            if depth == 0:
                return note[start:i]
        elif depth == 0 and not ch.isspace():
            break
    return ""


def kernel_version(ref: KernelRef, fn: str) -> str:
    """The release tag whose source shows ``fn`` as ``ref`` models it: :data:`SERIES_VERSION`
    for a function the series added (:data:`SERIES_FUNCTIONS`) or whose citation reads the
    merged series or the mm tree, else :data:`KERNEL_VERSION` (a citation of the v7 series'
    ``unmapped`` flag, never merged, stays at v6.18).

    >>> merged = KernelRef("p.f", (("mm/x.c", "f"),), "mm/x.c:f() (v6.18; as in the merged series)")
    >>> v7 = KernelRef("p.f", (("mm/x.c", "f"),), "mm/x.c:f() (v6.18; the v7 series adds a flag)")
    >>> kernel_version(merged, "f"), kernel_version(v7, "f")
    ('v6.19', 'v6.18')
    """
    if fn in SERIES_FUNCTIONS:
        return SERIES_VERSION
    phrase = _version_phrase(ref.note, fn) or _version_phrase(ref.note, ref.kernel[-1][1])
    if _SERIES_WORDS.search(phrase) and "never merged" not in phrase:
        return SERIES_VERSION
    return KERNEL_VERSION


def kernel_url(fn: str, version: str = KERNEL_VERSION) -> str:
    """Elixir's page for identifier ``fn`` at release ``version`` (its definition first, then
    every use).

    >>> kernel_url("folio_split")
    'https://elixir.bootlin.com/linux/v6.18/C/ident/folio_split'
    """
    if not re.fullmatch(r"\w+", fn):
        raise ValueError(f"{fn!r} is not a C identifier")
    return f"{ELIXIR}/{version}/C/ident/{fn}"


def file_url(path: str, version: str = KERNEL_VERSION) -> str:
    """Elixir's page for kernel source file ``path`` at release ``version``."""
    return f"{ELIXIR}/{version}/source/{path}"


def kernel_link(ref: KernelRef, path: str, fn: str, *, with_file: bool = True) -> str:
    """A Markdown link ``[`path:fn()`](url)`` to ``fn`` at the version ``ref`` models."""
    text = f"{path}:{fn}()" if with_file else f"{fn}()"
    return f"[`{text}`]({kernel_url(fn, kernel_version(ref, fn))})"


def xref_table(refs: Iterable[KernelRef] | None = None) -> str:
    """A Markdown table: kernel file, kernel function, the pyfolio function, the note."""
    rows = ["| kernel file | kernel function | pyfolio | as modelled |", "|---|---|---|---|"]
    for r in refs if refs is not None else kernel_refs():
        for path, fn in dict.fromkeys(r.kernel) or (("", ""),):
            note = r.note.replace("|", "\\|")
            rows.append(f"| `{path}` | `{fn}()` | `{r.python}` | {note} |")
    return "\n".join(rows)


def _pysrc(python: str, short: bool = False) -> str:
    """The ``{pysrc}`` role for a pyfolio name (the book links it to its source)."""
    if not short:
        return f"{{pysrc}}`{python}`"
    mod, name = python.rsplit(".", 1)
    return f"{{pysrc}}`{mod.rsplit('.', 1)[1]}.{name} <{python}>`"


def _index(names: Iterable[str]) -> str:
    """A MyST ``{index}`` directive with one entry per kernel function (the book's index)."""
    entries = ", ".join(dict.fromkeys(f"{n}()" for n in names))
    return f"```{{index}} {entries}\n```"


def read_the_kernel(*functions: Callable[..., Any]) -> str:
    """A "Read the kernel" list for a chapter: each function's kernel file and function,
    taken from its ``Models:`` line, linked to the source at the version modelled, and the
    pyfolio function linked to its source in the book (MyST Markdown, with an ``{index}``
    entry per kernel function; glue it with ``format: myst``)."""
    lines, names = [], []
    for fn in functions:
        ref = _ref(f"{fn.__module__}.{fn.__name__}", fn)
        if ref is None:
            raise ValueError(f"{fn.__module__}.{fn.__name__} has no 'Models:' line")
        links = []
        for p, f in ref.kernel:
            v = kernel_version(ref, f)
            links.append(kernel_link(ref, p, f) + ("" if v == KERNEL_VERSION else f" ({v})"))
            names.append(f)
        where = ", ".join(links) or ref.note
        lines.append(f"- {where}, modelled by {_pysrc(ref.python)}")
    return "\n".join(lines) + "\n\n" + _index(names)


# -- the back-matter page -------------------------------------------------------------------
def _root(root: Path | None) -> Path:
    """The book's root: ``root``, or the nearest directory upwards holding _toc.yml."""
    if root is not None:
        return root
    for d in (Path.cwd(), *Path.cwd().parents):
        if (d / "_toc.yml").exists():
            return d
    raise FileNotFoundError("no _toc.yml in the working directory or above it")


def _toc_chapters(root: Path) -> list[str]:
    """The chapters (``chapters/NN-name``) _toc.yml lists, in order."""
    return re.findall(r"^\s*-\s*file:\s*(chapters/\S+)\s*$", (root / "_toc.yml").read_text(),
                      re.M)


def _taught(text: str) -> list[str]:
    """The function names passed to ``read_the_kernel(...)`` in a chapter's code cells."""
    names: list[str] = []
    for cell in re.findall(r"```\{code-cell\}[^\n]*\n(.*?)```", text, re.S):
        body = "\n".join(line for line in cell.splitlines() if not line.startswith(":"))
        try:
            tree = ast.parse(body)
        except SyntaxError:
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "read_the_kernel":
                names += [a.id if isinstance(a, ast.Name) else a.attr for a in n.args
                          if isinstance(a, (ast.Name, ast.Attribute))]
    return names


def chapters_teaching(root: Path | None = None) -> dict[str, list[str]]:
    """pyfolio function name -> the chapters (``chapters/NN-name``, in TOC order) whose
    "Read the kernel" box lists it."""
    base = _root(root)
    out: dict[str, list[str]] = {}
    for chapter in _toc_chapters(base):
        path = base / f"{chapter}.md"
        for name in _taught(path.read_text()) if path.exists() else []:
            out.setdefault(name, [])
            if chapter not in out[name]:
                out[name].append(chapter)
    return out


def _note_tail(ref: KernelRef) -> str:
    """The ``Models:`` note without its leading citation (the version and what is left out)."""
    text = ref.note
    f = _FILE.match(text)
    if f is None:
        return text
    pos = f.end()
    while (g := _FUNC.match(text, pos)) is not None:
        pos = g.end()
    tail = text[pos:].strip()
    tail = tail[1:].strip() if tail[:1] in (",", ";", ":", ".") else tail
    bare = re.fullmatch(r"\(([^()]*)\)\.?", tail)  # only "(v6.18)."
    return (bare.group(1) if bare else tail) or "–"


def xref_page(root: Path | None = None, refs: Iterable[KernelRef] | None = None) -> str:
    """The cross-reference as MyST Markdown: per kernel file (linked to its source), a table
    with one row per kernel function (linked to its definition at the version modelled), the
    pyfolio function (linked to its source in the book), the chapters that teach it and the
    rest of the ``Models:`` note; then one ``{index}`` entry per kernel function."""
    teaching = chapters_teaching(root)
    by_file: dict[str, list[tuple[KernelRef, str]]] = {}
    for r in refs if refs is not None else kernel_refs():
        for path, fn in dict.fromkeys(r.kernel):
            by_file.setdefault(path, []).append((r, fn))
    out = []
    for path in sorted(by_file):
        rows = sorted(by_file[path], key=lambda rf: (rf[1].lstrip("_"), rf[0].python))
        what = KERNEL_SOURCES.get(path, "")
        out += [f"```{{rubric}} {path}", "```", "",
                f"[`{path}`]({file_url(path)}){': ' + what if what else ''}.", "",
                "```{list-table}", ":header-rows: 1", ":widths: 28 30 8 34",
                ":class: pyfolio-xref", "",
                "* - kernel function", "  - pyfolio", "  - ch.", "  - as modelled"]
        for r, fn in rows:
            name = r.python.rsplit(".", 1)[1]
            links = ", ".join(f"{{doc}}`{int(c.split('/')[1][:2])} </{c}>`"
                              for c in teaching.get(name, [])) or "–"
            v = kernel_version(r, fn)
            kernel = kernel_link(r, path, fn, with_file=False) + (
                "" if v == KERNEL_VERSION else f" ({v})")
            out += [f"* - {kernel}", f"  - {_pysrc(r.python, short=True)}", f"  - {links}",
                    f"  - {_note_tail(r)}"]
        out += ["```", ""]
    names = sorted({fn for rows in by_file.values() for _, fn in rows})
    return "\n".join(out) + "\n" + _index(names)
