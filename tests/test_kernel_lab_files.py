"""The kernel lab's file scenarios (memfd, MAP_SHARED|MAP_ANONYMOUS, ext4): the simulator
runs each soundly, the observations recorded on Linux 6.18.44 agree with it on every step,
and, where this machine allows, a live run agrees too and restores every setting."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from pyfolio.kernel_lab import KernelBackend, SimulatorBackend, Unavailable, readers
from pyfolio.kernel_lab.backends import run_lock
from pyfolio.kernel_lab.compare import (
    RECORDED_FILES,
    compare,
    load_recorded,
    run_against,
    scenario_named,
    summary,
)
from pyfolio.kernel_lab.file_scenarios import FILE_SCENARIOS, HOLES, cache_record


@pytest.fixture(scope="module")
def simulated() -> dict[str, list[dict[str, Any]]]:
    sb, out = SimulatorBackend(), {}
    for name, sc in FILE_SCENARIOS.items():
        out[name] = sb.run(sc)
        assert sb.system is not None and sb.system.check() == [], name
    return out


def test_every_hole_of_the_issue_has_a_scenario_on_shmem_and_ext4() -> None:
    assert set(HOLES) == {"0", "1", "200", "257", "511", "64k"}
    for kind in ("shmem", "clean"):
        assert {f"{kind}_hole_{h}" for h in HOLES} | {f"{kind}_truncate_261"} <= set(
            FILE_SCENARIOS)
    assert scenario_named("clean_hole_200") is FILE_SCENARIOS["clean_hole_200"]


def test_the_simulator_records_the_page_cache(simulated: dict[str, Any]) -> None:
    last = simulated["shmem_hole_200"][-1]
    assert [c[:2] for c in last["cache"]] == [[0, 7], [128, 6], [192, 3], [201, 0], [202, 1],
                                               [204, 2], [208, 4], [224, 5], [256, 8]]
    assert last["cache"][0][2] == "UPTODATE,DIRTY,SWAPBACKED,THP"
    assert last["vmstat"]["thp_split_page"] == 1 and last["mthp"]["2048kB"]["split"] == 1
    dirty = simulated["dirty_truncate_261"][-1]
    assert dirty["cache"] == [[0, 9, "UPTODATE,DIRTY,THP,PRIVATE"]]
    assert dirty["vmstat"]["thp_split_page_failed"] == 1
    pmd = simulated["memfd_thp_fault"][-1]["proc"]
    assert pmd["shmem_pmd_kb"] == 2048 and pmd["layout"] == [["large", 512]]
    assert cache_record([(0, 9, 0), (600, 0, 0)], 512) == [[0, 9, ""]]


def test_recorded_file_observations_agree_with_the_simulator_on_every_step(
        simulated: dict[str, Any]) -> None:
    rec = load_recorded(RECORDED_FILES)
    assert rec["label"] == "recorded" and rec["kernel_release"].startswith("6.18")
    assert set(rec["observations"]) == set(FILE_SCENARIOS) and not rec["unavailable"]
    assert rec["block_device"] == {"read_ahead_kb": 8192, "max_sectors_kb": 4096}
    assert rec["thp_settings"]["shmem_enabled"] == "never"  # restored after the run
    counts = summary(simulated, rec["observations"])
    assert sum(c["agree"] for c in counts.values()) == sum(
        len(sc.steps) for sc in FILE_SCENARIOS.values())
    assert all(c["differ"] == c["not modelled"] == 0 for c in counts.values())


def test_recorded_facts_of_the_issue() -> None:
    R = load_recorded(RECORDED_FILES)["observations"]
    assert [c[1] for c in R["clean_hole_257"][-1]["cache"]] == [8, 0, 0, 0, 2, 3, 4, 5, 6, 7]
    assert [c[1] for c in R["shmem_truncate_261"][-1]["cache"]] == [8, 2, 0]
    assert R["dirty_hole_64k"][-1]["mthp"]["2048kB"]["split_failed"] == 1
    share = R["memfd_share"]  # the child faults its own PMD: both map every page
    assert share[3]["child"]["layout"] == [["large", 512]]
    assert share[3]["child"]["kpagecount"] == [[2, 512]] and share[3]["vmstat"][
        "thp_file_mapped"] == 1
    assert share[4]["proc"]["layout"] == [["none", 512]]  # munmap of one page: PMD gone
    assert share[4]["child"]["kpagecount"] == [[1, 512]]
    assert R["memfd_mprotect_one"][3]["proc"]["layout"] == [["none", 512]]
    assert R["ext4_fault_hugepage"][-1]["cache"][0][:2] == [1024, 9]


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                    reason="needs Linux and root (PFNs in pagemap, /proc/kpageflags)")
def test_page_cache_reader_sees_a_memfd_without_changing_it() -> None:
    fd = os.memfd_create("reader")
    try:
        os.pwrite(fd, b"x" * 8192, 0)
        got = readers.page_cache_orders(fd, 3 * 4096)
        assert [(i, o) for i, o, _ in got] == [(0, 0), (1, 0)]  # page 2 is a hole
        assert readers.page_cache_orders(fd, 3 * 4096) == got
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", list(FILE_SCENARIOS))
def test_the_kernel_agrees_on_the_file_scenario(name: str, simulated: dict[str, Any]) -> None:
    sc, kb = FILE_SCENARIOS[name], KernelBackend()
    why = kb.unavailable(sc)
    if why:
        pytest.skip(why)
    with run_lock():
        before = readers.thp_settings()
        try:
            ker = run_against(kb, sc, simulated[name], retries=4)
        except Unavailable as e:
            pytest.skip(e.reason)
        assert readers.thp_settings() == before  # shmem_enabled and the sizes restored
    assert compare(sc, simulated[name], ker) == []
