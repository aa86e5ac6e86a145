"""Backends that run a :class:`~pyfolio.kernel_lab.scenarios.Scenario`: the simulator
(:class:`SimulatorBackend`) or the running kernel (:class:`KernelBackend`, in a child
process it starts). Both return one observation record per step::

    {"step": label, "status": "ok" | "error: EINVAL" | "not modelled",
     "proc": {...}, "child": {...} | None, "vmstat": {counter: delta},
     "mthp": {size: {stat: delta}}, "rss_anon_kb": delta}
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyfolio import System
from pyfolio.kernel_lab import readers
from pyfolio.kernel_lab.readers import Unavailable
from pyfolio.kernel_lab.scenarios import (
    COUNTERS,
    Scenario,
    Step,
    mremap_args,
    mthp_delta,
    observe,
    observe_swap,
    vmstat_delta,
)
from pyfolio.sim.errors import MmError
from pyfolio.sim.units import PAGE_SIZE

__all__ = ["SimulatorBackend", "KernelBackend", "Observations", "thp_settings_set", "run_lock"]

Observations = list[dict[str, Any]]


class SimulatorBackend:
    """Runs scenarios on a fresh pyfolio :class:`~pyfolio.System` each time, with the
    scenario's THP ``settings`` (the global and per-size ``enabled``) applied first.

    ``drop_caches`` runs the deferred split shrinker once (``System.drop_caches()``),
    ``lru_add_drain`` drains the lazyfree batch (``System.lru_add_drain()``);
    ``pin``/``unpin`` use ``Process.pin``/``unpin``; ``split`` splits each large folio met
    in the range as debugfs split_huge_pages does (``System.split()``; a failed split is
    skipped, as the kernel does).
    ``madvise`` runs any advice in :data:`pyfolio.mm.madvise.ADVICE` (MADV_COLLAPSE and
    MADV_COLD included); other advice is recorded as ``"not modelled"`` and changes nothing.
    """

    name = "simulator"

    def __init__(self, ram: str = "128M", thp: str = "madvise", seed: int = 0,
                 swap_solidstate: bool | None = None) -> None:
        self.ram, self.thp, self.seed = ram, thp, seed
        #: whether a ``swapon`` area counts as non-rotational (None: as the kind is here)
        self.swap_solidstate = swap_solidstate
        self.system: System | None = None  # the System of the last run, for checks

    def unavailable(self) -> str | None:
        return None

    def run(self, scenario: Scenario) -> Observations:
        m = self.system = System(ram=self.ram, thp=self.thp, seed=self.seed)
        _apply_settings(m, scenario.settings)
        p = m.spawn()
        state: dict[str, Any] = {"base": 0, "child": None, "pins": [], "fd": None,
                                 "backing": scenario.backing}
        out: Observations = []
        state["solidstate"] = self.swap_solidstate
        swap = scenario.swap is not None
        sizes = scenario.sizes
        for s in scenario.steps:
            before, mthp_before = m.vmstat(), {z: m.mthp_stats(z) for z in sizes}
            rss_before = p.status()
            status = self._do(m, p, state, s)
            after, mthp_after = m.vmstat(), {z: m.mthp_stats(z) for z in sizes}
            child, rss = state["child"], p.status()
            rec: dict[str, Any] = {"step": s.label, "status": status,
                                   "proc": self._look(m, p, state["base"], scenario.length,
                                                      swap) if state["base"] else None,
                                   "child": self._look(m, child, state["base"],
                                                       scenario.length, swap)
                                   if child else None,
                                   "vmstat": vmstat_delta(before, after, COUNTERS),
                                   "mthp": mthp_delta(mthp_before, mthp_after),
                                   "rss_anon_kb": rss["RssAnon"] - rss_before["RssAnon"]}
            if swap:
                rec["swap_used_kb"] = int(m.swaps()[0]["Used"]) if m.swaps() else 0  # type: ignore[call-overload]
            if scenario.backing != "anon":
                rec.update(_file_record(m, p, state, scenario.length if swap else 0),
                           rss_file_kb=rss["RssFile"]
                           - rss_before["RssFile"], rss_shmem_kb=rss["RssShmem"]
                           - rss_before["RssShmem"])
            out.append(rec)
        return out

    @staticmethod
    def _do(m: System, p: Any, state: dict[str, Any], s: Step) -> str:
        from pyfolio.mm.madvise import ADVICE

        a = state["base"] + s.off
        try:
            if s.op in _FILE_OPS or (s.op == "mmap" and state["backing"] != "anon"):
                _do_file(p, state, s)
            elif s.op == "mmap":
                state["base"] = p.mmap(s.length)
            elif s.op == "write":
                p.touch(a, s.length)
            elif s.op == "read":
                for i in range(s.length // PAGE_SIZE):
                    p.read(a + i * PAGE_SIZE)
            elif s.op == "madvise":
                if s.arg not in ADVICE:
                    return "not modelled"
                p.madvise(a, s.length, s.arg)
            elif s.op == "mprotect":
                p.mprotect(a, s.length, s.arg)
            elif s.op == "mremap":
                new_len, flags, dst = mremap_args(s)
                p.mremap(a, s.length, new_len, maymove="maymove" in flags,
                         new_addr=state["base"] + dst if dst is not None else None,
                         dontunmap="dontunmap" in flags)
            elif s.op == "munmap":
                p.munmap(a, s.length)
            elif s.op == "fork_and_write_in_child":
                state["child"] = p.fork()
                state["child"].write(a, 0x77)
            elif s.op == "child_exit":
                state["child"].exit()
                state["child"] = None
            elif s.op == "drop_caches":
                m.drop_caches()
            elif s.op == "lru_add_drain":
                m.lru_add_drain()
            elif s.op == "pin":
                p.pin(a, s.length)
                state["pins"].append((a, s.length))
            elif s.op == "unpin":
                for pa, plen in state["pins"]:
                    p.unpin(pa, plen)
                state["pins"] = []
            elif s.op == "split":
                _debugfs_split(m, p, a, s.length, int(s.arg or 0))
            elif s.op == "swapon":
                m.swapon(s.length, s.arg, solidstate=state.get("solidstate"))
            elif s.op == "swapoff":
                m.swapoff()
            elif s.op == "fork":
                state["child"] = p.fork()
            elif s.op == "child_read":
                for i in range(s.length // PAGE_SIZE):
                    state["child"].read(a + i * PAGE_SIZE)
            elif s.op == "zero":
                p.touch(a, s.length, value=0)
            else:
                raise ValueError(f"unknown step {s.op!r}")
        except MmError as e:
            return f"error: {e.errname}"
        return "ok"

    @staticmethod
    def _look(m: System, p: Any, base: int, length: int, swap: bool = False
              ) -> dict[str, object]:
        n = length // PAGE_SIZE
        entries = p.pagemap(base, n)
        pfns = sorted({e.pfn for e in entries if e.present})
        flags = dict(zip(pfns, m.kpageflags(pfns), strict=True))
        counts = dict(zip(pfns, m.kpagecount(pfns), strict=True))
        vmas = p.smaps()
        out = observe(entries, flags, counts, vmas, base, base + length)
        if swap:
            out.update(observe_swap(entries, flags, vmas, base, base + length))
        return out


def _apply_settings(m: System, settings: tuple[tuple[str, str], ...]) -> None:
    """Write the scenario's THP sysfs ``settings`` to the simulator: ``enabled`` (the
    global policy), ``hugepages-<size>/enabled`` (``System.set_mthp()``),
    ``khugepaged/max_ptes_none`` (``System.set_max_ptes_none()``), ``shmem_enabled`` and
    ``hugepages-<size>/shmem_enabled`` (``System.set_shmem_thp()``)."""
    for name, value in settings:
        if name == "enabled":
            m.thp = value
        elif name == "shmem_enabled":
            m.set_shmem_thp(value)
        elif name.startswith("hugepages-") and name.endswith("/enabled"):
            m.set_mthp(name.removeprefix("hugepages-").removesuffix("/enabled"), value)
        elif name == "khugepaged/max_ptes_none":
            m.set_max_ptes_none(int(value))
        elif name == "khugepaged/scan_sleep_millisecs":
            pass  # the simulator's khugepaged runs only when a step calls it
        elif name.startswith("hugepages-") and name.endswith("/shmem_enabled"):
            m.set_shmem_thp(value, name.removeprefix("hugepages-").removesuffix(
                "/shmem_enabled"))
        else:
            raise ValueError(f"THP setting {name!r} is not modelled by the simulator")


#: the steps on the scenario's file (the simulator's side)
_FILE_OPS = ("create", "pwrite", "pread", "fsync", "evict", "punch", "ftruncate",
             "fork_and_read_in_child")
#: where the simulator maps a file scenario's region (2 MiB aligned, as the kernel
#: backend's reservation is)
FILE_BASE = 0x7E00_0000_0000


def _do_file(p: Any, state: dict[str, Any], s: Step) -> None:
    """A step of a file scenario on the simulator (see
    :mod:`pyfolio.kernel_lab.file_scenarios`)."""
    from pyfolio.fs.read_write import ksys_pread64

    fd, a = state["fd"], state["base"] + s.off
    if s.op == "create":
        if state["backing"] == "memfd":
            state["fd"] = fd = p.memfd_create("lab")
        elif state["backing"] == "ext4":
            state["fd"] = fd = p.open("/lab/file")
        if s.length and fd is not None:
            p.ftruncate(fd, s.length)
    elif s.op == "mmap":
        shared, prot = s.arg.startswith("shared"), "r" if s.arg.endswith(",r") else "rw"
        state["base"] = p.mmap(s.length, prot, shared=shared, fd=fd, offset=s.off,
                               addr=FILE_BASE)
    elif s.op == "pwrite":
        p.pwrite(fd, s.off, s.length, 0x5A)
    elif s.op == "pread":
        chunk = int(s.arg or s.length)
        for pos in range(s.off, s.off + s.length, chunk):
            ksys_pread64(p.files[fd], pos, min(chunk, s.off + s.length - pos))
    elif s.op == "fsync":
        p.fsync(fd)
    elif s.op == "evict":
        p.fsync(fd)
        p.fadvise(fd, 0, 0, "dontneed")
    elif s.op == "punch":
        p.fallocate(fd, "punch_hole", s.off, s.length)
    elif s.op == "ftruncate":
        p.ftruncate(fd, s.length)
    elif s.op == "fork_and_read_in_child":
        state["child"] = p.fork()
        for i in range(s.length // PAGE_SIZE):
            state["child"].read(a + i * PAGE_SIZE)


def _file_record(m: System, p: Any, state: dict[str, Any], swap_length: int = 0
                 ) -> dict[str, object]:
    """The page cache of the scenario's file (:func:`~pyfolio.kernel_lab.file_scenarios.
    cache_record`: each folio's head kpageflags), as the kernel backend reads it through
    the file descriptor (None for MAP_SHARED|MAP_ANONYMOUS, which has none). In a swap
    scenario (``swap_length``: the region's length) the kernel backend cannot read the
    cache without faulting swapped-out pages back in, so both record ``incore`` instead:
    mincore() of the mapped region, run-length encoded."""
    from pyfolio.kernel_lab.file_scenarios import cache_record
    from pyfolio.kernel_lab.scenarios import rle
    from pyfolio.lib.xarray import xa_entries

    if swap_length:
        return {"cache": None, "incore": rle(p.mincore(state["base"], swap_length))
                if state["base"] else None}
    if state["fd"] is None:
        return {"cache": None}
    file = p.files[state["fd"]]
    entries = [(i, o, e) for i, o, e in xa_entries(file.f_mapping.i_pages)
               if isinstance(e, int)]  # not a swapped-out page's value entry
    flags = m.kpageflags([pfn for _, _, pfn in entries])
    folios = [(index, order, f) for (index, order, _), f in zip(entries, flags, strict=True)]
    return {"cache": cache_record(folios, -(-file.f_inode.i_size // PAGE_SIZE))}


def _debugfs_split(m: System, p: Any, addr: int, length: int, new_order: int) -> None:
    """split_huge_pages_pid() on the simulator: every large folio of order above
    ``new_order`` met walking [addr, addr + length) page by page is split with
    ``System.split()``; failures are skipped (the kernel's write still succeeds)."""
    for va in range(addr, addr + length, PAGE_SIZE):
        f = p.folio_at(va)
        if f is not None and f.order > new_order:
            with contextlib.suppress(MmError):
                m.split(f.pfn, new_order)


THP_DIR = Path("/sys/kernel/mm/transparent_hugepage")
#: held while a scenario runs on the kernel, so two lab runs (a test and a chapter, say)
#: neither restore each other's settings wrongly nor see each other in vmstat deltas
LOCK = Path(tempfile.gettempdir()) / "pyfolio-kernel-lab.lock"


@contextlib.contextmanager
def thp_settings_set(settings: tuple[tuple[str, str], ...],
                     base: Path = THP_DIR) -> Iterator[None]:
    """Write THP sysfs ``settings`` ((file, value) pairs under ``base``) for the duration
    of the block and restore each file's previous value afterwards, whatever happens.
    Raises Unavailable when a file is missing or the kernel refuses the value."""
    saved: list[tuple[Path, str]] = []
    try:
        for name, value in settings:
            path = base / name
            try:
                old = readers._setting(path.read_text())
                path.write_text(value)
            except OSError as e:
                raise Unavailable(f"unavailable: cannot set {path} to {value!r}: "
                                  f"{e.strerror}") from None
            saved.append((path, str(old)))
        yield
    finally:
        for path, old in reversed(saved):
            path.write_text(old)


_held = [0]  # how deep this process holds LOCK


@contextlib.contextmanager
def run_lock() -> Iterator[None]:
    """Hold :data:`LOCK` (flock, exclusive) for the block: one kernel lab run at a time on
    this machine, so no run sees another's THP settings or vmstat events. Re-entrant
    within a process (a test may hold it around a run to read settings before and after)."""
    if _held[0]:
        _held[0] += 1
        try:
            yield
        finally:
            _held[0] -= 1
        return
    import fcntl

    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _held[0] = 1
        try:
            yield
        finally:
            _held[0] = 0


class KernelBackend:
    """Runs scenarios on the running kernel, in a child Python process it starts.

    The child maps its own region, applies the steps through libc (ctypes), reads its
    own pagemap/kpageflags/kpagecount/smaps (and its forked child's) and sends the
    observations back over a pipe as JSON. Needs Linux, root (PFNs and /proc/kpage*),
    and THP not ``never``; :meth:`unavailable` says which is missing. ``root`` is where
    /proc and /sys are (tests point it at a fake tree).
    """

    name = "kernel"

    def __init__(self, python: str = sys.executable, timeout: float = 60.0,
                 root: str | Path = "/") -> None:
        self.python, self.timeout, self.root = python, timeout, Path(root)

    def unavailable(self, scenario: Scenario | None = None) -> str | None:
        """None when the kernel backend can run (``scenario``) here, else the reason not.
        A scenario with a ``split`` step also needs debugfs split_huge_pages."""
        if not sys.platform.startswith("linux"):
            return f"unavailable: not Linux (sys.platform is {sys.platform!r})"
        if os.geteuid() != 0:
            return "unavailable: PFNs read as 0 in pagemap: needs CAP_SYS_ADMIN (root)"
        bad = [v for v in readers.availability(self.root).values() if v != "ok"]
        if scenario is not None and any(s.op == "split" for s in scenario.steps):
            debugfs = readers.debugfs_split_status(self.root)
            bad += [] if debugfs == "ok" else [debugfs]
        if scenario is not None and scenario.backing == "ext4":
            kind = readers.fs_type(tempfile.gettempdir(), self.root)
            if kind != "ext4":
                bad.append(f"unavailable: {tempfile.gettempdir()} is on {kind or 'an unknown'}"
                           " file system, not ext4")
        return "; ".join(bad) if bad else None

    def run(self, scenario: Scenario) -> Observations:
        """Run ``scenario`` in a child process. Its ``settings`` (THP sysfs files) are
        written first and restored afterwards, even on failure. A swap scenario's area is
        made first and taken down afterwards, whatever happens (swap_area()), all under
        the kernel-lab lock; ``last_swap_area`` then says what it was."""
        why = self.unavailable(scenario)
        if why:
            raise Unavailable(why)
        with run_lock(), thp_settings_set(scenario.settings,
                                          self.root / THP_DIR.relative_to(THP_DIR.anchor)):
            if scenario.swap is None:
                return self._run_child(scenario)
            from pyfolio.kernel_lab.swap_area import swap_area

            kind, size = scenario.swap
            with swap_area(kind, size, self.root) as area:
                self.last_swap_area = area
                return self._run_child(scenario, {"path": area.path, "kind": kind})

    last_swap_area: Any = None

    def _run_child(self, scenario: Scenario, swap: dict[str, str] | None = None
                   ) -> Observations:
        spec = {"steps": [dataclasses.asdict(s) for s in scenario.steps],
                "counters": list(COUNTERS), "root": str(self.root), "swap": swap,
                "backing": scenario.backing, "sizes": list(scenario.sizes)}
        env = dict(os.environ)
        top = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = top + os.pathsep + env.get("PYTHONPATH", "")
        done = subprocess.run([self.python, "-m", "pyfolio.kernel_lab._child"],
                              input=json.dumps(spec), capture_output=True, text=True,
                              timeout=self.timeout, env=env, check=False)
        if done.returncode:
            raise RuntimeError(f"kernel lab child failed ({done.returncode}): {done.stderr}")
        got = json.loads(done.stdout)
        if "unavailable" in got:
            raise Unavailable(got["unavailable"])
        return list(got["observations"])
