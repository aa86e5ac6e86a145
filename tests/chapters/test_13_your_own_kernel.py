"""The claims of chapters/13-your-own-kernel.md, checked through the same pyfolio calls
(recorded kernel observations against the simulator; live kernel where available)."""

from __future__ import annotations

from typing import Any

import pytest

from pyfolio.kernel_lab import SCENARIOS, KernelBackend, Scenario, SimulatorBackend, Step
from pyfolio.kernel_lab.compare import (
    compare,
    load_recorded,
    run_against,
    simulate_all,
    summary,
)
from pyfolio.units import MiB

DIFFERING = {"collapse", "cold_10", "mthp_64k"}


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, Any], dict[str, Any]]:
    return load_recorded(), simulate_all()


def test_recorded_label_and_step_totals(data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rec, sims = data
    assert rec["label"] == "recorded" and rec["kernel_release"].startswith("6.18")
    assert rec["thp_settings"]["enabled"] == "madvise"
    assert "EPERM" in rec["debugfs_split"]  # the recording machine's kernel is locked down
    assert set(rec["unavailable"]) == {"debugfs_split"}
    counts = summary(sims, rec["observations"])
    total = sum(len(SCENARIOS[n].steps) for n in rec["observations"])
    agree = sum(c["agree"] for c in counts.values())
    assert (len(counts), total, agree) == (13, 59, 54)
    assert {n for n, c in counts.items() if c["not modelled"]} == {"collapse", "cold_10"}
    assert {n for n, c in counts.items() if c["differ"]} == {"mthp_64k"}


def test_pmd_scenarios_agree_field_for_field(data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rec, sims = data
    R = rec["observations"]
    for name in set(R) - DIFFERING:
        assert compare(SCENARIOS[name], sims[name], R[name]) == [], name
    split = R["mprotect_split"][3]
    assert split["proc"]["layout"] == [["large", 512]] and split["proc"]["anon_huge_kb"] == 0
    cow = R["fork_cow"][3]
    assert cow["child"]["layout"] == [["large", 2], ["small", 1], ["large", 509]]
    assert (cow["proc"]["anon_huge_kb"], cow["child"]["anon_huge_kb"]) == (2048, 0)
    assert R["munmap_half"][4]["proc"]["layout"] == [["small", 256], ["none", 256]]
    assert R["free_10"][3]["vmstat"]["thp_split_page"] == 1
    assert R["huge_zero"][2]["proc"]["layout"] == [["huge_zero", 512]]
    assert R["dontneed_half"][3]["proc"]["layout"] == [["large", 256], ["none", 256]]
    assert R["dontneed_half"][4]["proc"]["layout"] == [["small", 256], ["none", 256]]


def test_a_pin_blocks_the_shrinker_until_unpinned(
        data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rec, sims = data
    ker, sim = rec["observations"]["pin_blocks_split"], sims["pin_blocks_split"]
    assert ker[5]["proc"]["layout"] == sim[5]["proc"]["layout"] == [["large", 256], ["none", 256]]
    failed = ker[5]["vmstat"]["thp_split_page_failed"], sim[5]["vmstat"]["thp_split_page_failed"]
    assert failed[0] >= failed[1] == 1  # the kernel counts one failure per shrinker pass
    assert ker[7]["vmstat"]["thp_split_page"] == sim[7]["vmstat"]["thp_split_page"] == 1
    assert ker[7]["proc"]["layout"] == [["small", 256], ["none", 256]]


def test_debugfs_split_prediction(data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    split = data[1]["debugfs_split"][3]
    assert split["proc"]["layout"] == [["large", 16]] * 32
    assert split["vmstat"]["thp_split_pmd"] == split["vmstat"]["thp_split_page"] == 1


def test_differences_are_the_unmodelled_features(
        data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rec, sims = data
    R = rec["observations"]
    diffs = [d for n in R for d in compare(SCENARIOS[n], sims[n], R[n])]
    assert {d.scenario for d in diffs} == DIFFERING
    assert R["collapse"][2]["vmstat"]["thp_collapse_alloc"] == 1
    assert R["mthp_64k"][2]["proc"]["layout"] == [["large", 16]] * 4
    assert sum(1 for k, _ in R["mthp_64k"][4]["proc"]["layout"] if k == "large") == 3


def test_exercise_dontneed_of_a_whole_thp_does_not_split() -> None:
    whole = Scenario("dontneed_all", "MADV_DONTNEED of the whole THP", (
        Step("mmap", 0, 2 * MiB), Step("madvise", 0, 2 * MiB, "hugepage"),
        Step("write", 0, 2 * MiB), Step("madvise", 0, 2 * MiB, "dontneed")))
    sb = SimulatorBackend()
    mine = sb.run(whole)
    assert mine[-1]["proc"]["layout"] == [["none", 512]]
    assert mine[-1]["vmstat"]["thp_split_pmd"] == mine[-1]["vmstat"]["thp_split_page"] == 0
    assert sb.system is not None and sb.system.check() == []
    kb = KernelBackend()
    if kb.unavailable() is None:
        assert compare(whole, mine, run_against(kb, whole, mine)) == []
