"""Readers of the running kernel's memory interfaces, shaped like the simulator's views.

Each reader takes a ``root`` (default ``/``) so tests can point it at fake /proc and /sys
trees; each raises :class:`Unavailable` with a reason a reader can act on when the
interface cannot be read (not Linux, not root, file missing, THP compiled out).
Nothing here writes to /proc or /sys, with one exception: :func:`debugfs_split_status`
writes ``"<own pid>,0x0,0x0"`` to /sys/kernel/debug/split_huge_pages to probe it (an empty
address range of this process, so nothing is split); when debugfs is not mounted and the
caller is root, it repeats that write inside a private mount namespace where it mounts
debugfs (``unshare``), which ends with the probe.

The bit layouts are those of the simulator (:mod:`pyfolio.fs.proc.task_mmu`), which follows
Documentation/admin-guide/mm/pagemap.rst; the kernel side is fs/proc/task_mmu.c
(pagemap_read(), show_smap()), fs/proc/page.c (kpageflags_read(), kpagecount_read())
and mm/vmstat.c (vmstat_show()); /proc/PID/status is fs/proc/task_mmu.c:task_mem() and the
per-size stats mm/huge_memory.c (sum_mthp_stat()).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from pyfolio.fs.proc.task_mmu import PagemapEntry
from pyfolio.sim.units import PAGE_SIZE

__all__ = ["Unavailable", "mincore", "pagemap", "require_pfns", "kpageflags", "kpagecount", "smaps",
           "smaps_all", "vmstat", "status", "mthp_stats", "thp_settings", "thp_policy",
           "availability", "debugfs_split_status", "folio_extent", "page_cache_orders",
           "fs_type"]

_VMA_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) ")
_KB_FIELD = re.compile(r"^(\w+):\s+(\d+) kB$")


class Unavailable(Exception):
    """A kernel interface cannot be read here; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _path(root: str | Path, rel: str) -> Path:
    if str(root) == "/" and not sys.platform.startswith("linux"):
        raise Unavailable(f"unavailable: not Linux (sys.platform is {sys.platform!r})")
    return Path(root) / rel


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn the OSError of reading ``path`` into :class:`Unavailable` saying why."""
    try:
        yield
    except FileNotFoundError:
        raise Unavailable(f"unavailable: {path} does not exist") from None
    except PermissionError:
        raise Unavailable(f"unavailable: {path} is not readable (needs root)") from None
    except OSError as e:
        raise Unavailable(f"unavailable: reading {path}: {e.strerror}") from None


def _read_bytes(path: Path, offset: int, n: int) -> bytes:
    with _readable(path), open(path, "rb", buffering=0) as f:
        f.seek(offset)
        return f.read(n)


def _read_text(path: Path) -> str:
    with _readable(path):
        return path.read_text()


def _u64s(data: bytes, n: int, what: str) -> list[int]:
    if len(data) < 8 * n:
        raise Unavailable(f"unavailable: {what} returned {len(data)} bytes, wanted {8 * n}")
    return list(struct.unpack(f"<{n}Q", data[: 8 * n]))


def pagemap(pid: int | str, addr: int, n: int, root: str | Path = "/") -> list[PagemapEntry]:
    """``n`` records of /proc/PID/pagemap from virtual address ``addr`` (one per page).

    Same shape as :meth:`pyfolio.Process.pagemap`. Without CAP_SYS_ADMIN the kernel
    reports PFN 0 for present pages: check with :func:`require_pfns`.
    """
    data = _read_bytes(_path(root, f"proc/{pid}/pagemap"), addr // PAGE_SIZE * 8, 8 * n)
    return [PagemapEntry(r) for r in _u64s(data, n, f"/proc/{pid}/pagemap")]


def require_pfns(entries: list[PagemapEntry]) -> None:
    """Raise Unavailable when present pages all read PFN 0 (the reader lacks
    CAP_SYS_ADMIN: fs/proc/task_mmu.c:pagemap_open() hides PFNs)."""
    present = [e for e in entries if e.present]
    if present and all(e.pfn == 0 for e in present):
        raise Unavailable("unavailable: PFNs read as 0 in pagemap: needs CAP_SYS_ADMIN (root)")


def _per_pfn(name: str, pfns: list[int], root: str | Path) -> list[int]:
    """Read 8-byte records of /proc/<name> for each PFN, one read per contiguous run."""
    path = _path(root, f"proc/{name}")
    out: list[int] = []
    i = 0
    while i < len(pfns):
        j = i + 1
        while j < len(pfns) and pfns[j] == pfns[j - 1] + 1:
            j += 1
        out += _u64s(_read_bytes(path, pfns[i] * 8, 8 * (j - i)), j - i, f"/proc/{name}")
        i = j
    return out


def kpageflags(pfns: list[int] | range, root: str | Path = "/") -> list[int]:
    """/proc/kpageflags: the KPF_* bits of each PFN (as :data:`pyfolio.fs.proc.page.KPF`)."""
    return _per_pfn("kpageflags", [int(p) for p in pfns], root)


def kpagecount(pfns: list[int] | range, root: str | Path = "/") -> list[int]:
    """/proc/kpagecount: how many times each PFN is mapped."""
    return _per_pfn("kpagecount", [int(p) for p in pfns], root)


def smaps_all(pid: int | str, root: str | Path = "/") -> list[dict[str, int]]:
    """Every VMA of /proc/PID/smaps: ``Start``, ``End`` and the kB fields (Rss, Anonymous,
    AnonHugePages, ...), like :func:`pyfolio.fs.proc.task_mmu.smaps`."""
    out: list[dict[str, int]] = []
    for line in _read_text(_path(root, f"proc/{pid}/smaps")).splitlines():
        if h := _VMA_HEADER.match(line):
            out.append({"Start": int(h.group(1), 16), "End": int(h.group(2), 16)})
        elif (f := _KB_FIELD.match(line)) and out:
            out[-1][f.group(1)] = int(f.group(2))
    return out


def smaps(pid: int | str, addr: int, root: str | Path = "/") -> dict[str, int]:
    """The smaps fields (kB) of the VMA of process ``pid`` containing ``addr``."""
    for vma in smaps_all(pid, root):
        if vma["Start"] <= addr < vma["End"]:
            return vma
    raise Unavailable(f"unavailable: no VMA of process {pid} contains {addr:#x}")


def vmstat(root: str | Path = "/") -> dict[str, int]:
    """/proc/vmstat: every counter (thp_*, pgmigrate_*, nr_anon_transparent_hugepages...).

    Counters are global: deltas include what other processes did meanwhile."""
    out: dict[str, int] = {}
    for line in _read_text(_path(root, "proc/vmstat")).splitlines():
        name, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[name] = int(value)
    return out


def status(pid: int | str, root: str | Path = "/") -> dict[str, int]:
    """The kB lines of /proc/PID/status (VmRSS, RssAnon, RssFile, RssShmem, VmSwap, ...),
    like :func:`pyfolio.fs.proc.task_mmu.task_mem`."""
    out: dict[str, int] = {}
    for line in _read_text(_path(root, f"proc/{pid}/status")).splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith(" kB") and value.split()[0].isdigit():
            out[name] = int(value.split()[0])
    return out


def mthp_stats(sizes: tuple[str, ...], root: str | Path = "/") -> dict[str, dict[str, int]]:
    """``hugepages-<size>/stats/*`` for each of ``sizes`` ("2048kB", ...): every file the
    directory has (a kernel that lacks one, or the directory, just leaves it out; the
    running 6.18.44 kernel's local ``anon_fault_declined`` is read like the rest).

    Counters are global: deltas include what other processes did meanwhile."""
    base = _path(root, "sys/kernel/mm/transparent_hugepage")
    out: dict[str, dict[str, int]] = {}
    for size in sizes:
        d = base / f"hugepages-{size}" / "stats"
        out[size] = {f.name: int(f.read_text()) for f in sorted(d.glob("*"))} \
            if d.is_dir() else {}
    return out


def _setting(text: str) -> str | int:
    """``always [madvise] never`` -> ``madvise``; ``1`` -> 1."""
    text = text.strip()
    if b := re.search(r"\[([^\]]+)\]", text):
        return b.group(1)
    return int(text) if text.lstrip("-").isdigit() else text


def thp_settings(root: str | Path = "/") -> dict[str, str | int]:
    """/sys/kernel/mm/transparent_hugepage: enabled, defrag, use_zero_page,
    shrink_underused, khugepaged/max_ptes_none, shmem_enabled and each
    ``hugepages-<size>kB`` enabled and shmem_enabled (mTHP; the 8kB size has only
    shmem_enabled). Missing optional files are left out; a missing directory is
    Unavailable."""
    base = _path(root, "sys/kernel/mm/transparent_hugepage")
    if not base.is_dir():
        raise Unavailable(f"unavailable: {base} does not exist (kernel without THP)")
    out: dict[str, str | int] = {}
    for name in ("enabled", "defrag", "use_zero_page", "shrink_underused",
                 "khugepaged/max_ptes_none", "hpage_pmd_size"):
        if (base / name).is_file():
            out[name] = _setting(_read_text(base / name))
    if (base / "shmem_enabled").is_file():
        out["shmem_enabled"] = _setting(_read_text(base / "shmem_enabled"))
    sizes = sorted(base.glob("hugepages-*kB"), key=lambda p: int(p.name[10:-2]))
    for d in sizes:
        for knob in ("enabled", "shmem_enabled"):
            if (d / knob).is_file():
                out[f"{d.name}/{knob}"] = _setting(_read_text(d / knob))
    return out


def thp_policy(settings: dict[str, str | int]) -> str:
    """The effective policy for PMD-sized THPs: the 2048 kB per-size setting unless it
    says ``inherit``, else the top-level ``enabled``."""
    top = str(settings.get("enabled", "never"))
    pmd = str(settings.get("hugepages-2048kB/enabled", "inherit"))
    return top if pmd == "inherit" else pmd


def availability(root: str | Path = "/") -> dict[str, str]:
    """Each interface the lab needs -> ``"ok"`` or the reason it is unavailable."""
    out: dict[str, str] = {}

    def probe(name: str, fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
            out[name] = "ok"
        except Unavailable as e:
            out[name] = e.reason

    probe("pagemap", lambda: pagemap("self", 0, 1, root))
    probe("kpageflags", lambda: kpageflags([0], root))
    probe("kpagecount", lambda: kpagecount([0], root))
    probe("smaps", lambda: smaps_all("self", root))
    probe("vmstat", lambda: vmstat(root))
    probe("thp_settings", lambda: thp_settings(root))
    if out["thp_settings"] == "ok" and thp_policy(thp_settings(root)) == "never":
        out["thp_settings"] = "unavailable: THP is set to never (enabled=never)"
    probe("pfns", lambda: _pfns_visible(root))
    return out


def _pfns_visible(root: str | Path) -> None:
    """fs/proc/task_mmu.c:pagemap_open() hides PFNs from readers without CAP_SYS_ADMIN."""
    _path(root, "proc")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise Unavailable("unavailable: PFNs read as 0 in pagemap: needs CAP_SYS_ADMIN (root)")


def debugfs_split_status(root: str | Path = "/") -> str:
    """Whether debugfs ``split_huge_pages`` can be used: ``"ok"`` or the reason not.

    Probes with a harmless write (this process, an empty address range: nothing is
    split). The lab never mounts debugfs itself; on a locked-down kernel the write is
    refused with EPERM even as root."""
    path = _path(root, "sys/kernel/debug/split_huge_pages")
    if not path.exists():
        why = f"unavailable: {path} does not exist (debugfs not mounted)"
        return why + (_private_debugfs_probe() if str(root) == "/" else "")
    try:
        _write(path, f"{os.getpid()},0x0,0x0\n")
    except PermissionError:
        return f"unavailable: writing {path} is refused (EPERM: kernel lockdown or not root)"
    except OSError as e:
        return f"unavailable: writing {path}: {e.strerror}"
    return "ok"


def _write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _private_debugfs_probe() -> str:
    """When debugfs is not mounted: mount it in a private mount namespace that ends with
    the probe (``unshare --mount --propagation private``; nothing changes outside it) and
    try the same harmless write there. Returns a note to append to the reason."""
    if not shutil.which("unshare") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return ""
    script = ('mount -t debugfs debugfs /sys/kernel/debug || exit 3; '
              'echo "$$,0x0,0x0" > /sys/kernel/debug/split_huge_pages')
    try:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               script], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if done.returncode == 0:
        return "; mounted privately it accepts writes: mount debugfs to use it"
    if "not permitted" in done.stderr:
        return "; mounted privately, writing it is refused (EPERM: kernel lockdown)"
    return ""


# -- the page cache of a file ---------------------------------------------------------------
_HEAD, _TAIL = 1 << 15, 1 << 16  # KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL


def folio_extent(pfn: int, root: str | Path = "/", limit: int = 1024) -> tuple[int, int]:
    """(head PFN, pages) of the folio holding ``pfn``, from /proc/kpageflags alone: back to
    the COMPOUND_HEAD, forward over the COMPOUND_TAILs (at most ``limit`` pages)."""
    flags = kpageflags([pfn], root)[0]
    if not flags & (_HEAD | _TAIL):
        return pfn, 1
    head = pfn
    if flags & _TAIL:
        lo = max(0, pfn - limit)
        before = kpageflags(range(lo, pfn), root)
        for i in range(len(before) - 1, -1, -1):
            if before[i] & _HEAD:
                head = lo + i
                break
    after = kpageflags(range(head + 1, head + limit), root)
    n = 1
    for f in after:
        if not f & _TAIL or f & _HEAD:
            break
        n += 1
    return head, n


def mincore(addr: int, length: int) -> list[int]:
    """mincore(2) of [addr, addr + length) of this process: 1 per resident page (mapped,
    in the page cache, or, for shmem, still in the swap cache), else 0. Touches nothing."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    npages = (length + PAGE_SIZE - 1) // PAGE_SIZE
    vec = ctypes.create_string_buffer(npages)
    if libc.mincore(addr, length, vec):
        raise OSError(ctypes.get_errno(), "mincore failed")
    return [b & 1 for b in vec.raw[:npages]]


def page_cache_orders(fd: int, size: int, root: str | Path = "/"
                      ) -> list[tuple[int, int, int]]:
    """The page cache of the open file ``fd`` (``size`` bytes), without changing it: each
    folio as (first index, order, kpageflags of its head page), in index order.

    How (the method of tools/mm/page-types.c ``-f``, issue 17's research): mincore() says
    which pages are cached; the file is mapped PROT_READ|MAP_SHARED at an address one page
    past a 2 MiB boundary (so no PMD can map it) with MADV_RANDOM (no readahead), and only
    cached pages are touched: a read fault on a cached, uptodate page only maps what is
    there (filemap_map_pages()). pagemap gives each page's PFN; kpageflags the folio's
    whole extent (a folio reaching past EOF still shows its order). The mapping is removed
    before the flags are read, so they are the unmapped state (no MMAP)."""
    import ctypes
    import mmap as _mmap

    npages = (size + PAGE_SIZE - 1) // PAGE_SIZE
    if not npages:
        return []
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    pmd, length = 2 << 20, npages * PAGE_SIZE
    reserve = libc.mmap(None, length + 2 * pmd, 0,  # PROT_NONE
                        _mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS | 0x4000, -1, 0)
    if reserve in (None, ctypes.c_void_p(-1).value):
        raise Unavailable("unavailable: cannot reserve address space to read the page cache")
    addr = ((reserve + pmd - 1) & ~(pmd - 1)) + PAGE_SIZE
    try:
        got = libc.mmap(addr, length, _mmap.PROT_READ, _mmap.MAP_SHARED | 0x10, fd, 0)
        if got != addr:
            raise Unavailable("unavailable: cannot map the file to read its page cache")
        libc.madvise(addr, length, 1)  # MADV_RANDOM
        vec = ctypes.create_string_buffer(npages)
        libc.mincore(addr, length, vec)
        for i, b in enumerate(vec.raw[:npages]):
            if b & 1:
                ctypes.c_char.from_address(addr + i * PAGE_SIZE).value  # noqa: B018
        entries = pagemap("self", addr, npages, root)
    finally:
        libc.munmap(reserve, length + 2 * pmd)
    out: list[tuple[int, int, int]] = []
    i = 0
    while i < npages:
        e = entries[i]
        if not e.present:
            i += 1
            continue
        head, nr = folio_extent(e.pfn, root)
        first = i - (e.pfn - head)
        out.append((first, nr.bit_length() - 1, kpageflags([head], root)[0]))
        i = max(first + nr, i + 1)
    return out


def fs_type(path: str | Path, root: str | Path = "/") -> str:
    """The file system type of the mount holding ``path`` (/proc/self/mountinfo)."""
    best, kind = "", ""
    target = str(Path(path).resolve())
    for line in _read_text(_path(root, "proc/self/mountinfo")).splitlines():
        parts = line.split(" - ")
        if len(parts) != 2:
            continue
        mnt = parts[0].split()[4]
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
            best, kind = mnt, parts[1].split()[0]
    return kind
