"""pyfolio.kernel_lab: readers on fake /proc and /sys trees, fallbacks, the observation
record, both backends, the comparison, and the recorded data."""

from __future__ import annotations

import copy
import errno
import os
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from pyfolio.fs.proc.page import KPF
from pyfolio.fs.proc.task_mmu import (
    PM_MMAP_EXCLUSIVE,
    PM_PRESENT,
    PM_SOFT_DIRTY,
    PM_SWAP,
    PagemapEntry,
)
from pyfolio.kernel_lab import (
    SCENARIOS,
    KernelBackend,
    SimulatorBackend,
    Unavailable,
    _child,
    availability,
    kpagecount,
    kpageflags,
    pagemap,
    readers,
    smaps,
    thp_settings,
    vmstat,
)
from pyfolio.kernel_lab.backends import run_lock, thp_settings_set
from pyfolio.kernel_lab.compare import (
    compare,
    load_recorded,
    run_against,
    side_by_side,
    step_agrees,
    summary,
)
from pyfolio.kernel_lab.readers import debugfs_split_status, require_pfns, smaps_all, thp_policy
from pyfolio.kernel_lab.scenarios import LAZYFREE_TIMING, SMAPS_KB, Step, layout_of, rle
from pyfolio.sim.units import KiB, MiB

HEAD, TAIL = 1 << KPF["COMPOUND_HEAD"], 1 << KPF["COMPOUND_TAIL"]
THP, ZERO = 1 << KPF["THP"], 1 << KPF["ZERO_PAGE"]
SWAPBACKED = 1 << KPF["SWAPBACKED"]
#: the smaps-derived fields of an observation, all 0 (a region with nothing in it)
NO_SMAPS = dict.fromkeys(SMAPS_KB, 0)


def _u64(*vals: int) -> bytes:
    return struct.pack(f"<{len(vals)}Q", *vals)


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A /proc and /sys tree with known bytes: pid 42 maps 3 pages at 0x7000_0000."""
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    base_index = 0x7000_0000 // 4096
    records = [PM_PRESENT | PM_MMAP_EXCLUSIVE | PM_SOFT_DIRTY | 0x1200, PM_PRESENT | 0x1201,
               PM_SWAP | (7 << 5) | 1, 0]
    (proc / "42" / "pagemap").write_bytes(b"\0" * 8 * base_index + _u64(*records))
    flags = [0] * 0x1300
    flags[0x1200], flags[0x1201], flags[0x1210] = HEAD | THP | SWAPBACKED, TAIL | THP, ZERO
    (proc / "kpageflags").write_bytes(_u64(*flags))
    counts = [0] * 0x1300
    counts[0x1200], counts[0x1201], counts[0x1210] = 1, 2, 0
    (proc / "kpagecount").write_bytes(_u64(*counts))
    (proc / "42" / "smaps").write_text(
        "70000000-70200000 rw-p 00000000 00:00 0 \nSize:               2048 kB\n"
        "Rss:                2048 kB\nPss:                1536 kB\n"
        "Shared_Dirty:       1024 kB\nPrivate_Dirty:      1024 kB\n"
        "Anonymous:          2048 kB\nLazyFree:              8 kB\n"
        "AnonHugePages:      2048 kB\nVmFlags: rd wr mr mw me ac hg\n"
        "70200000-70201000 r--p 00000000 00:00 0 \nRss:                   4 kB\n")
    (proc / "vmstat").write_text("nr_free_pages 1000\nthp_fault_alloc 7\nthp_split_pmd 3\n"
                                 "pgmigrate_success 12\nthp_migration_split 1\n")
    (proc / "42" / "status").write_text("Name:\tpython3\nVmRSS:\t    2152 kB\n"
                                        "RssAnon:\t    2104 kB\nRssFile:\t      48 kB\n"
                                        "RssShmem:\t       0 kB\nVmSwap:\t       0 kB\n"
                                        "Threads:\t1\n")
    (proc / "self").symlink_to("42")
    (proc / "sys/vm").mkdir(parents=True)
    (proc / "sys/vm/drop_caches").write_text("")
    thp = tmp_path / "sys/kernel/mm/transparent_hugepage"
    (thp / "hugepages-64kB").mkdir(parents=True)
    (thp / "hugepages-2048kB").mkdir()
    (thp / "enabled").write_text("always [madvise] never\n")
    (thp / "defrag").write_text("always defer defer+madvise [madvise] never\n")
    (thp / "use_zero_page").write_text("1\n")
    (thp / "hugepages-64kB" / "enabled").write_text("always inherit madvise [never]\n")
    (thp / "hugepages-2048kB" / "stats").mkdir()
    for name, value in (("anon_fault_alloc", 5), ("split", 2), ("nr_anon", 3)):
        (thp / "hugepages-2048kB" / "stats" / name).write_text(f"{value}\n")
    (thp / "hugepages-2048kB" / "enabled").write_text("always [inherit] madvise never\n")
    return tmp_path


# -- readers on known byte layouts -------------------------------------------------------
def test_pagemap_decodes_the_documented_bits(fake_root: Path) -> None:
    e = pagemap(42, 0x7000_0000, 4, root=fake_root)
    assert [x.present for x in e] == [True, True, False, False]
    assert [x.pfn for x in e] == [0x1200, 0x1201, 0, 0]
    assert (e[0].exclusive, e[0].soft_dirty, e[1].exclusive, e[1].soft_dirty) == (
        True, True, False, False)
    assert e[2].swapped and not e[3].swapped and e[3].raw == 0


def test_kpageflags_and_kpagecount_read_runs_and_gaps(fake_root: Path) -> None:
    assert kpageflags([0x1200, 0x1201, 0x1210], root=fake_root) == [
        HEAD | THP | SWAPBACKED, TAIL | THP, ZERO]
    assert kpagecount([0x1201, 0x1200, 0x1210], root=fake_root) == [2, 1, 0]


def test_status_and_per_size_stats_parse(fake_root: Path) -> None:
    assert readers.status(42, root=fake_root) == {"VmRSS": 2152, "RssAnon": 2104,
                                                  "RssFile": 48, "RssShmem": 0, "VmSwap": 0}
    assert readers.mthp_stats(("2048kB", "64kB", "8kB"), root=fake_root) == {
        "2048kB": {"anon_fault_alloc": 5, "nr_anon": 3, "split": 2}, "64kB": {}, "8kB": {}}
    with pytest.raises(Unavailable, match="does not exist"):
        readers.status(7, root=fake_root)


def test_smaps_vmstat_and_thp_settings_parse(fake_root: Path) -> None:
    v = smaps(42, 0x7010_0000, root=fake_root)
    assert (v["Start"], v["End"], v["Rss"], v["AnonHugePages"]) == (
        0x7000_0000, 0x7020_0000, 2048, 2048)
    assert [x["Rss"] for x in smaps_all(42, root=fake_root)] == [2048, 4]
    with pytest.raises(Unavailable, match="no VMA"):
        smaps(42, 0x1000, root=fake_root)
    assert vmstat(root=fake_root) == {"nr_free_pages": 1000, "thp_fault_alloc": 7,
                                      "thp_split_pmd": 3, "pgmigrate_success": 12,
                                      "thp_migration_split": 1}
    s = thp_settings(root=fake_root)
    assert s == {"enabled": "madvise", "defrag": "madvise", "use_zero_page": 1,
                 "hugepages-64kB/enabled": "never", "hugepages-2048kB/enabled": "inherit"}
    assert thp_policy(s) == "madvise"


# -- fallbacks ------------------------------------------------------------------------------
def test_missing_files_and_short_reads_say_why(tmp_path: Path, fake_root: Path) -> None:
    with pytest.raises(Unavailable, match="does not exist"):
        kpageflags([1], root=tmp_path / "nowhere")
    with pytest.raises(Unavailable, match="kernel without THP"):
        thp_settings(root=tmp_path / "nowhere")
    with pytest.raises(Unavailable, match="returned 0 bytes"):
        kpageflags([0x5000], root=fake_root)


def test_pfns_hidden_without_cap_sys_admin() -> None:
    hidden = [PagemapEntry(PM_PRESENT), PagemapEntry(0)]
    with pytest.raises(Unavailable, match="needs CAP_SYS_ADMIN"):
        require_pfns(hidden)
    require_pfns([PagemapEntry(PM_PRESENT | 5), PagemapEntry(0)])  # visible PFNs pass


@pytest.fixture
def linux_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend to be root on Linux, so that only the fake tree decides what is available."""
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(os, "geteuid", lambda: 0)


def test_the_fake_tree_is_fully_available(fake_root: Path, linux_root: None) -> None:
    assert set(availability(root=fake_root).values()) == {"ok"}
    assert KernelBackend(root=fake_root).unavailable() is None


def test_thp_never_is_reported(fake_root: Path, linux_root: None) -> None:
    thp = fake_root / "sys/kernel/mm/transparent_hugepage"
    (thp / "enabled").write_text("always madvise [never]\n")
    assert availability(root=fake_root)["thp_settings"] == (
        "unavailable: THP is set to never (enabled=never)")
    assert KernelBackend(root=fake_root).unavailable() == (
        "unavailable: THP is set to never (enabled=never)")


def test_no_kpageflags_is_reported(fake_root: Path, linux_root: None) -> None:
    (fake_root / "proc/kpageflags").unlink()
    got = availability(root=fake_root)
    assert got["kpageflags"] == f"unavailable: {fake_root}/proc/kpageflags does not exist"
    assert {k for k, v in got.items() if v != "ok"} == {"kpageflags"}
    assert KernelBackend(root=fake_root).unavailable() == got["kpageflags"]


def test_unreadable_kpageflags_says_root_is_needed(fake_root: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kw: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(readers, "open", refuse, raising=False)
    with pytest.raises(Unavailable, match=r"kpageflags is not readable \(needs root\)"):
        kpageflags([0x1200], root=fake_root)


def test_not_linux_and_not_root(monkeypatch: pytest.MonkeyPatch, fake_root: Path) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(Unavailable, match="not Linux"):
        vmstat()
    assert set(availability().values()) == {"unavailable: not Linux (sys.platform is 'darwin')"}
    assert "not Linux" in (KernelBackend().unavailable() or "")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    got = availability(root=fake_root)
    assert {k for k, v in got.items() if v != "ok"} == {"pfns"}
    assert got["pfns"] == "unavailable: PFNs read as 0 in pagemap: needs CAP_SYS_ADMIN (root)"
    assert "needs CAP_SYS_ADMIN" in (KernelBackend().unavailable() or "")
    with pytest.raises(Unavailable, match="needs CAP_SYS_ADMIN"):
        KernelBackend().run(SCENARIOS["thp_fault"])


def test_setting_is_restored_even_on_failure(fake_root: Path) -> None:
    base = fake_root / "sys/kernel/mm/transparent_hugepage"
    with pytest.raises(RuntimeError), thp_settings_set(
            (("hugepages-64kB/enabled", "madvise"),), base=base):
        assert (base / "hugepages-64kB/enabled").read_text() == "madvise"
        raise RuntimeError("scenario failed")
    assert (base / "hugepages-64kB/enabled").read_text() == "never"
    with pytest.raises(Unavailable, match="cannot set"):
        with thp_settings_set((("hugepages-8kB/enabled", "always"),), base=base):
            pass


@pytest.mark.parametrize("fails", [False, True])
def test_kernel_backend_restores_the_mthp_setting(fake_root: Path, linux_root: None,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  fails: bool) -> None:
    kb = KernelBackend(root=fake_root)
    seen = []

    def child(sc: Any) -> list[dict[str, Any]]:
        seen.append(thp_settings(root=fake_root)["hugepages-64kB/enabled"])
        if fails:
            raise RuntimeError("the child died")
        return []

    monkeypatch.setattr(kb, "_run_child", child)
    if fails:
        with pytest.raises(RuntimeError):
            kb.run(SCENARIOS["mthp_64k"])
    else:
        assert kb.run(SCENARIOS["mthp_64k"]) == []
    assert seen == ["madvise"]  # set for the run
    assert thp_settings(root=fake_root)["hugepages-64kB/enabled"] == "never"  # restored
    assert thp_settings(root=fake_root)["enabled"] == "madvise"  # nothing else written


# -- the child's steps on a fake tree ---------------------------------------------------------
@pytest.fixture
def fake_run(fake_root: Path) -> _child._Run:
    """A child run over the fake tree's 4 pages at 0x7000_0000 (nothing mapped for real)."""
    run = _child._Run(["thp_fault_alloc", "thp_split_pmd"], root=fake_root)
    run.base, run.length = 0x7000_0000, 4 * 4096
    (fake_root / "sys/kernel/debug").mkdir(parents=True)
    (fake_root / "sys/kernel/debug/split_huge_pages").write_text("")
    return run


def test_split_step_writes_debugfs_and_records_the_fake_region(fake_root: Path,
                                                              fake_run: _child._Run) -> None:
    rec = fake_run.step(Step("split", 0, 2 * MiB, "4"))
    assert (fake_root / "sys/kernel/debug/split_huge_pages").read_text() == (
        f"{os.getpid()},0x70000000,0x70200000,4")
    assert rec == {"step": "debugfs split(+0 KiB, 2048 KiB, order 4)", "status": "ok",
                   "proc": {"layout": [["large", 2], ["none", 2]], "thp": 2,
                            "kpagecount": [[1, 1], [2, 1]], "swapbacked": 1,
                            **NO_SMAPS, "rss_kb": 2048, "anon_huge_kb": 2048, "pss_kb": 1536,
                            "shared_dirty_kb": 1024, "private_dirty_kb": 1024,
                            "lazyfree_kb": 8},
                   "child": None, "vmstat": {"thp_fault_alloc": 0, "thp_split_pmd": 0},
                   "mthp": {"2048kB": {"anon_fault_alloc": 0, "nr_anon": 0, "split": 0},
                            "64kB": {}},
                   "rss_anon_kb": 0}


def test_lru_add_drain_step_is_madv_cold_of_an_untouched_page_of_its_own(
        fake_run: _child._Run) -> None:
    assert fake_run.step(Step("lru_add_drain"))["status"] == "ok"
    scratch = fake_run.scratch
    assert scratch and scratch % (2 * MiB) == 0  # between guards: merges with nothing
    assert fake_run.step(Step("lru_add_drain"))["status"] == "ok" and fake_run.scratch == scratch


def test_max_ptes_none_is_set_for_the_run_and_restored(fake_root: Path) -> None:
    base = fake_root / "sys/kernel/mm/transparent_hugepage"
    (base / "khugepaged").mkdir()
    (base / "khugepaged/max_ptes_none").write_text("511\n")
    with pytest.raises(RuntimeError), thp_settings_set(
            SCENARIOS["underused"].settings, base=base):
        assert (base / "khugepaged/max_ptes_none").read_text() == "256"
        raise RuntimeError("scenario failed")
    assert (base / "khugepaged/max_ptes_none").read_text() == "511"
    assert thp_settings(root=fake_root)["khugepaged/max_ptes_none"] == 511


def test_drop_caches_step_writes_2(fake_root: Path, fake_run: _child._Run) -> None:
    assert fake_run.step(Step("drop_caches"))["status"] == "ok"
    assert (fake_root / "proc/sys/vm/drop_caches").read_text() == "2"


def test_a_refused_split_is_recorded_as_eperm(fake_run: _child._Run,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, text: str) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(Path, "write_text", refuse)
    assert fake_run.step(Step("split", 0, 2 * MiB))["status"] == "error: EPERM"


def test_pin_registers_an_io_uring_buffer_and_unpin_releases_it(
        fake_run: _child._Run, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = os.open(os.devnull, os.O_RDONLY)
    calls: list[tuple[int, tuple[Any, ...]]] = []

    def syscall(nr: int, *args: Any) -> int:
        calls.append((nr, args))
        return ring if nr == _child.SYS_IO_URING_SETUP else 0

    monkeypatch.setattr(_child._libc, "syscall", syscall)
    assert fake_run.step(Step("pin", 8 * KiB, 4 * KiB))["status"] == "ok"
    (setup, _), (reg, (fd, op, iov, n)) = calls
    assert (setup, reg, fd, op, n) == (425, 427, ring, _child.IORING_REGISTER_BUFFERS, 1)
    assert (iov._obj.iov_base, iov._obj.iov_len) == (0x7000_2000, 4096)
    assert fake_run.rings == [ring]
    assert fake_run.step(Step("unpin"))["status"] == "ok"
    assert calls[-1] == (427, (ring, _child.IORING_UNREGISTER_BUFFERS, None, 0))
    assert fake_run.rings == []
    with pytest.raises(OSError):
        os.fstat(ring)  # the ring is closed


def test_pin_without_io_uring_is_unavailable(fake_run: _child._Run,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def syscall(nr: int, *args: Any) -> int:
        import ctypes

        ctypes.set_errno(errno.EPERM)
        return -1

    monkeypatch.setattr(_child._libc, "syscall", syscall)
    with pytest.raises(Unavailable, match=r"pin needs io_uring: io_uring_setup failed \(EPERM\)"):
        fake_run.step(Step("pin", 0, 4 * KiB))
    assert fake_run.rings == []


# -- the observation record -----------------------------------------------------------------
def test_layout_separates_folios_by_head_tail_and_contiguity() -> None:
    pm = [PagemapEntry(PM_PRESENT | p) if p else PagemapEntry(0)
          for p in (100, 101, 102, 0, 500, 103, 7, 8, 9)]
    flags = {100: HEAD | THP, 101: TAIL | THP, 102: TAIL | THP, 103: TAIL | THP, 500: 0,
             7: ZERO | THP | HEAD, 8: ZERO | THP | TAIL, 9: 0}
    assert layout_of(pm, flags) == [["large", 3], ["none", 1], ["small", 1], ["large", 1],
                                    ["huge_zero", 2], ["small", 1]]
    assert rle([2, 2, 1, 2]) == [[2, 2], [1, 1], [2, 1]]


# -- backends and the comparison ------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated() -> dict[str, list[dict[str, Any]]]:
    """Every scenario on the simulator, checked for invariant violations after each run."""
    sb, out = SimulatorBackend(), {}
    for name, sc in SCENARIOS.items():
        out[name] = sb.run(sc)
        assert sb.system is not None and sb.system.check() == [], name
    return out


def test_simulator_backend_runs_every_scenario(simulated: dict[str, Any]) -> None:
    for name, sc in SCENARIOS.items():
        assert len(simulated[name]) == len(sc.steps), name
    fault = simulated["thp_fault"][-1]
    thp = {"layout": [["large", 512]], "thp": 512, "kpagecount": [[1, 512]], "swapbacked": 512,
           **NO_SMAPS, "rss_kb": 2048, "anon_huge_kb": 2048, "pss_kb": 2048,
           "pss_dirty_kb": 2048, "private_dirty_kb": 2048}
    assert fault["proc"] == thp
    assert fault["vmstat"]["thp_fault_alloc"] == 1 and fault["vmstat"]["thp_split_pmd"] == 0
    cow = simulated["fork_cow"][3]
    assert cow["child"]["layout"] == [["large", 2], ["small", 1], ["large", 509]]
    assert cow["child"]["anon_huge_kb"] == 0 and cow["proc"]["anon_huge_kb"] == 2048
    collapse = simulated["collapse"][2]
    assert collapse["status"] == "ok" and collapse["vmstat"]["thp_collapse_alloc"] == 1
    assert collapse["proc"] == thp
    cold = simulated["cold_10"][3]  # MADV_COLD on 10 pages: the PMD and the folio split
    assert cold["status"] == "ok" and cold["proc"]["layout"] == [["small", 512]]
    assert (cold["vmstat"]["thp_split_pmd"], cold["vmstat"]["thp_split_page"]) == (1, 1)
    mthp = simulated["mthp_64k"]  # hugepages-64kB/enabled=madvise applied by the backend
    assert mthp[2]["proc"] == {"layout": [["large", 16]] * 4, "thp": 64,
                               "kpagecount": [[1, 64]], "swapbacked": 64, **NO_SMAPS,
                               "rss_kb": 256, "pss_kb": 256, "pss_dirty_kb": 256,
                               "private_dirty_kb": 256}
    assert mthp[4]["proc"]["layout"][:3] == [["small", 4], ["none", 1], ["small", 11]]


def test_comparison_finds_a_planted_difference() -> None:
    sc = SCENARIOS["mprotect_split"]
    sim = SimulatorBackend().run(sc)
    ker = copy.deepcopy(sim)
    ker[3]["proc"]["anon_huge_kb"] = 2048
    ker[3]["vmstat"]["thp_split_pmd"] = 0
    ker[3]["vmstat"]["thp_zero_page_alloc"] = 5  # not explained by the scenario: ignored
    diffs = compare(sc, sim, ker)
    assert [(d.index, d.field, d.simulator, d.kernel) for d in diffs] == [
        (3, "anon_huge_kb", 0, 2048), (3, "thp_split_pmd", 1, 0)]
    assert step_agrees(diffs, 4) == [True, True, True, False]
    assert "| no |" in side_by_side(sc, sim, ker)


def test_an_unsettled_field_is_not_compared_at_that_step_only() -> None:
    """free_10: right after MADV_FREE the kernel's LazyFree, KPF_SWAPBACKED and pglazyfree
    depend on when some task drains the CPU's batch; after the lru_add_drain step they do
    not, and are compared."""
    sc = SCENARIOS["free_10"]
    assert sc.steps[3].unsettled == LAZYFREE_TIMING and sc.steps[4].op == "lru_add_drain"
    sim = SimulatorBackend().run(sc)
    ker = copy.deepcopy(sim)
    ker[3]["proc"].update(lazyfree_kb=40, swapbacked=502)  # drained early by another task
    ker[3]["vmstat"]["pglazyfree"] = 10
    assert compare(sc, sim, ker) == []
    ker[4]["proc"]["lazyfree_kb"] = 0
    assert [(d.index, d.field) for d in compare(sc, sim, ker)] == [(4, "lazyfree_kb")]


def test_simulator_runs_the_smaps_and_lazyfree_scenarios(simulated: dict[str, Any]) -> None:
    """The values the kernel showed (issue 13's measurements, and the recording)."""
    for name in ("fork_cow", "fork_cow_head"):
        step = simulated[name][3]
        for who in ("proc", "child"):
            v = step[who]
            assert (v["pss_kb"], v["shared_dirty_kb"], v["private_dirty_kb"]) == (1026, 2044, 4)
        assert simulated[name][4]["proc"]["private_dirty_kb"] == 2048  # the child exited
    free, drained = simulated["free_10"][3:5]
    assert (free["proc"]["lazyfree_kb"], free["proc"]["swapbacked"]) == (0, 512)
    assert (drained["proc"]["lazyfree_kb"], drained["proc"]["swapbacked"]) == (40, 502)
    assert drained["vmstat"]["pglazyfree"] == 10 and free["proc"]["private_clean_kb"] == 40
    whole, written = simulated["free_whole"][3:5]
    assert (whole["proc"]["lazyfree_kb"], whole["vmstat"]["pglazyfree"]) == (2048, 512)
    assert (written["proc"]["lazyfree_kb"], written["proc"]["private_dirty_kb"]) == (0, 2048)
    kept, split = simulated["not_underused"][3], simulated["underused"][3]
    assert kept["proc"]["rss_kb"] == 2048 and not any(kept["vmstat"].values())
    assert split["proc"]["layout"] == [["small", 10], ["zero", 502]]
    assert split["vmstat"]["thp_underused_split_page"] == 1 and split["proc"]["rss_kb"] == 40
    zero = simulated["huge_zero_underused"][4]
    assert zero["vmstat"]["thp_underused_split_page"] == 1 and zero["proc"]["rss_kb"] == 4


def test_simulator_pin_blocks_the_shrinker_and_debugfs_split(simulated: dict[str, Any]) -> None:
    pin = simulated["pin_blocks_split"]
    assert [o["step"] for o in pin[3:]] == ["pin(+0 KiB, 4 KiB)", "munmap(+1024 KiB, 1024 KiB)",
                                           "drop_caches", "unpin", "drop_caches"]
    held, freed = pin[5], pin[7]
    assert held["proc"]["layout"] == [["large", 256], ["none", 256]]
    assert (held["vmstat"]["thp_split_page_failed"], held["vmstat"]["thp_split_page"]) == (1, 0)
    assert freed["proc"]["layout"] == [["small", 256], ["none", 256]]
    assert (freed["vmstat"]["thp_split_page_failed"], freed["vmstat"]["thp_split_page"]) == (0, 1)
    split = simulated["debugfs_split"][3]
    assert split["proc"]["layout"] == [["large", 16]] * 32 and split["proc"]["anon_huge_kb"] == 0
    assert split["vmstat"]["thp_split_pmd"] == split["vmstat"]["thp_split_page"] == 1


def test_recorded_data_is_labelled_and_matches_the_simulator_where_modelled(
        simulated: dict[str, Any]) -> None:
    rec = load_recorded()
    assert rec["label"] == "recorded" and rec["kernel_release"].startswith("6.18")
    assert rec["date"] >= "2026-11-25"
    assert set(rec["observations"]) | set(rec["unavailable"]) == set(SCENARIOS)
    assert set(rec["unavailable"]) == {"debugfs_split"}
    assert "refused (EPERM" in rec["unavailable"]["debugfs_split"]
    counts = summary(simulated, rec["observations"])
    differing = {n for n, c in counts.items() if c["agree"] != len(SCENARIOS[n].steps)}
    assert differing == set()  # MADV_COLD, MADV_COLLAPSE and mTHP sizes are all modelled
    assert all(c["not modelled"] == 0 for c in counts.values())


def _moved(obs: dict[str, Any]) -> dict[str, int]:
    """The per-size stats that moved in a step, as ``size/stat``, and the RssAnon delta."""
    out = {f"{z}/{k}": v for z, st in obs["mthp"].items() for k, v in st.items() if v
           and k != "anon_fault_declined"}  # the running kernel's local, non-upstream stat
    return {**out, "RssAnon": obs["rss_anon_kb"]} if obs["rss_anon_kb"] else out


def test_recorded_per_size_stats_and_rss_are_the_kernel_counting_sites() -> None:
    """The per-size stats and RssAnon deltas recorded on 6.18.44, step by step, are what
    the counting sites predict (and what the research notes measured with a C program):
    map_anon_folio_pmd() / do_anonymous_page() count anon_fault_alloc and nr_anon;
    deferred_split_folio(, true) split_deferred and nr_anon_partially_mapped;
    __folio_split() split, __split_unmapped_folio() nr_anon; zaps take the pages out of
    MM_ANONPAGES; splits and mprotect leave it alone."""
    R = load_recorded()["observations"]
    big, small = "2048kB", "64kB"
    assert _moved(R["thp_fault"][2]) == {f"{big}/anon_fault_alloc": 1, f"{big}/nr_anon": 1,
                                         "RssAnon": 2048}
    assert _moved(R["mprotect_split"][3]) == {}  # a PMD split moves no stat, no RSS
    assert _moved(R["munmap_half"][3]) == {f"{big}/split_deferred": 1,
                                           f"{big}/nr_anon_partially_mapped": 1,
                                           "RssAnon": -1024}
    assert _moved(R["munmap_half"][4]) == {f"{big}/split": 1, f"{big}/nr_anon": -1,
                                           f"{big}/nr_anon_partially_mapped": -1}
    assert _moved(R["dontneed_10"][3])["RssAnon"] == -40
    assert _moved(R["free_10"][3]) == {f"{big}/split": 1, f"{big}/nr_anon": -1}
    # a fully PTE-mapped THP split by MADV_FREE passes through "partially mapped" while
    # try_to_migrate() replaces its PTEs: split_deferred +1, nr_anon_partially_mapped nets 0
    assert _moved(R["free_pte_mapped"][4]) == {f"{big}/split": 1, f"{big}/split_deferred": 1,
                                               f"{big}/nr_anon": -1}
    assert _moved(R["fork_cow"][3]) == {}  # the parent's RssAnon: COW in the child only
    assert _moved(R["huge_zero"][2]) == {}  # the huge zero page counts in no RSS counter
    assert _moved(R["collapse"][2]) == {f"{big}/nr_anon": 1}  # no anon_fault_alloc
    assert _moved(R["mthp_64k"][2]) == {f"{small}/anon_fault_alloc": 4, f"{small}/nr_anon": 4,
                                        "RssAnon": 256}
    assert _moved(R["mthp_64k"][3]) == {f"{small}/split_deferred": 1,
                                        f"{small}/nr_anon_partially_mapped": 1, "RssAnon": -4}
    assert _moved(R["mthp_64k"][4]) == {f"{small}/split": 1, f"{small}/nr_anon": -1,
                                        f"{small}/nr_anon_partially_mapped": -1}
    assert _moved(R["mthp_64k_free"][3]) == {f"{small}/split": 1,
                                             f"{small}/split_deferred": 1,
                                             f"{small}/nr_anon": -1}
    assert _moved(R["mthp_64k_free"][4]) == {f"{small}/nr_anon": -3, "RssAnon": -256}


def test_recorded_mremap_and_prot_none_are_the_measured_tables() -> None:
    """The mremap and PROT_NONE steps recorded on 6.18.44 show what the research notes
    measured (device_api §M1, §M2): a PMD moved whole or split, folios kept, RSS unchanged
    by moves and protection changes, numa_huge_pte_updates for each whole-PMD mprotect."""
    R = load_recorded()["observations"]

    def moved(obs: dict[str, Any]) -> dict[str, int]:
        return {k: v for k, v in obs["vmstat"].items() if v and k != "thp_zero_page_alloc"}

    move = R["mremap_move"][3]
    assert move["proc"]["layout"] == [["none", 1024], ["large", 512], ["none", 512]]
    assert (move["proc"]["anon_huge_kb"], moved(move), move["rss_anon_kb"]) == (2048, {}, 0)
    mis = R["mremap_misaligned"][3]
    assert mis["proc"]["layout"] == [["none", 1025], ["large", 512], ["none", 511]]
    assert (mis["proc"]["anon_huge_kb"], mis["proc"]["rss_kb"]) == (0, 2048)
    assert moved(mis) == {"thp_split_pmd": 1} and moved(R["mremap_misaligned"][4]) == {}
    shrink, drop = R["mremap_shrink"][3], R["mremap_shrink"][4]
    assert moved(shrink) == {"thp_split_pmd": 1, "thp_deferred_split_page": 1}
    assert shrink["rss_anon_kb"] == -1024 and moved(drop) == {"thp_split_page": 1}
    assert drop["proc"]["layout"] == [["small", 256], ["none", 768]]
    grow = R["mremap_grow"]
    assert grow[4]["status"] == "error: ENOMEM" and grow[6]["status"] == "ok"
    assert moved(grow[7]) == {"thp_fault_alloc": 1} and grow[7]["rss_anon_kb"] == 2048
    one = R["mremap_one_page"]
    assert moved(one[3]) == {"thp_split_pmd": 1} and one[3]["rss_anon_kb"] == 0
    assert moved(one[4]) == {"thp_deferred_split_page": 1} and moved(one[5]) == {
        "thp_split_page": 1}
    assert one[5]["proc"]["layout"] == [["none", 768], ["small", 1], ["none", 255]]
    keep = R["mremap_dontunmap"]
    assert keep[4]["proc"]["layout"][0] == ["huge_zero", 512] and keep[4]["rss_anon_kb"] == 0
    two = R["mremap_two_vmas"][6]
    assert two["proc"]["layout"] == [["none", 1536], ["large", 512], ["none", 512],
                                     ["large", 512]] and moved(two) == {}
    none, back = R["prot_none_thp"][3], R["prot_none_thp"][4]
    for obs in (none, back):
        assert obs["proc"]["layout"] == [["large", 512]] and obs["proc"]["anon_huge_kb"] == 2048
        assert moved(obs) == {"numa_huge_pte_updates": 1} and obs["rss_anon_kb"] == 0
    page = R["prot_none_page"][3]
    assert moved(page) == {"thp_split_pmd": 1} and page["proc"]["anon_huge_kb"] == 0


# -- on the running kernel (skipped with the reason where it cannot run) ---------------------


def _on_kernel(name: str, reference: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``name`` on this kernel (or skip, saying why), once more if only the global
    vmstat counters differ from ``reference``."""
    sc, kb = SCENARIOS[name], KernelBackend()
    why = kb.unavailable(sc)
    if why:
        pytest.skip(why)
    return run_against(kb, sc, reference)


def _settings_now() -> dict[str, str | int] | None:
    try:
        return thp_settings()
    except Unavailable:
        return None


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_kernel_agrees_with_the_simulator(name: str, simulated: dict[str, Any]) -> None:
    sc = SCENARIOS[name]
    with run_lock():  # no other lab run may change a setting meanwhile
        before = _settings_now()
        ker = _on_kernel(name, simulated[name])
        assert thp_settings() == before  # a setting the run changed (mTHP) is restored
    assert compare(sc, simulated[name], ker) == []


def test_debugfs_split_probe_reports_missing_and_usable(fake_root: Path) -> None:
    assert "debugfs not mounted" in debugfs_split_status(root=fake_root)
    f = fake_root / "sys/kernel/debug/split_huge_pages"
    f.parent.mkdir(parents=True)
    f.write_text("")
    assert debugfs_split_status(root=fake_root) == "ok"
    assert f.read_text() == f"{os.getpid()},0x0,0x0\n"  # an empty range: splits nothing
