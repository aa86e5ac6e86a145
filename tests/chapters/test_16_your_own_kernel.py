"""The claims of chapters/16-your-own-kernel.md, checked through the same pyfolio calls
(recorded kernel observations against the simulator; live kernel where available)."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import ROOT, glued
from pyfolio.kernel_lab import SCENARIOS, KernelBackend, Scenario, SimulatorBackend, Step
from pyfolio.kernel_lab.compare import (
    compare,
    load_recorded,
    run_against,
    simulate_all,
    summary,
)
from pyfolio.sim.units import MiB



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
    assert (len(counts), total, agree) == (29, 146, 146)
    assert {n for n, c in counts.items() if c["not modelled"]} == set()
    assert {n for n, c in counts.items() if c["differ"]} == set()


def test_pmd_scenarios_agree_field_for_field(data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rec, sims = data
    R = rec["observations"]
    for name in R:
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


def test_no_scenario_differs(
        data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rec, sims = data
    R = rec["observations"]
    diffs = [d for n in R for d in compare(SCENARIOS[n], sims[n], R[n])]
    assert diffs == []
    cold = sims["cold_10"][3]  # MADV_COLD of 10 pages: the THP is split, as on the kernel
    assert cold["status"] == "ok" and cold["proc"] == R["cold_10"][3]["proc"]
    assert R["collapse"][2]["vmstat"]["thp_collapse_alloc"] == 1
    assert sims["collapse"][2]["status"] == "ok" and compare(
        SCENARIOS["collapse"], sims["collapse"], R["collapse"]) == []
    assert R["mthp_64k"][2]["proc"]["layout"] == [["large", 16]] * 4
    assert sum(1 for k, _ in R["mthp_64k"][4]["proc"]["layout"] if k == "large") == 3


def test_mthp_64k_agrees_step_for_step(data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    rec, sims = data
    ker, sim = rec["observations"]["mthp_64k"], sims["mthp_64k"]
    assert compare(SCENARIOS["mthp_64k"], sim, ker) == []
    assert sim[2]["proc"]["layout"] == [["large", 16]] * 4 and sim[2]["proc"]["thp"] == 64
    assert sim[2]["proc"]["anon_huge_kb"] == 0
    assert sim[3]["proc"]["layout"] == [["large", 4], ["none", 1], ["large", 11]] + [
        ["large", 16]] * 3
    assert sim[4]["proc"]["layout"] == [["small", 4], ["none", 1], ["small", 11]] + [
        ["large", 16]] * 3
    assert all(v == 0 for step in sim for v in step["vmstat"].values())


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


CHAPTER = ROOT / "chapters/16-your-own-kernel.md"


def _layout(layout: list[list[Any]]) -> str:
    return " ".join(f"{k}×{n}" for k, n in layout)


def _quoted(obs: dict[str, Any]) -> dict[str, Any]:
    """The per-scenario values the chapter quotes, read from one set of observations
    (recorded kernel or simulator) exactly as the chapter's glue cells read them."""
    fault, split = obs["mprotect_split"][2], obs["mprotect_split"][3]
    cow = obs["fork_cow"][3]
    half, drop = obs["munmap_half"][3], obs["munmap_half"][4]
    zread, zwrite = obs["huge_zero"][2], obs["huge_zero"][3]
    return {
        "ch16_fault_ahp": fault["proc"]["anon_huge_kb"],
        "ch16_fault_alloc": fault["vmstat"]["thp_fault_alloc"],
        "ch16_split_pmd": split["vmstat"]["thp_split_pmd"],
        "ch16_split_ahp": split["proc"]["anon_huge_kb"],
        "ch16_split_rss": split["proc"]["rss_kb"],
        "ch16_split_thp": split["proc"]["thp"],
        "ch16_nohuge_small": obs["nohugepage"][3]["proc"]["layout"][0][1],
        "ch16_cow_child": _layout(cow["child"]["layout"]),
        "ch16_cow_parent_ahp": cow["proc"]["anon_huge_kb"],
        "ch16_cow_child_ahp": cow["child"]["anon_huge_kb"],
        "ch16_cow_shared": sum(n for c, n in cow["proc"]["kpagecount"] if c == 2),
        "ch16_half_deferred": half["vmstat"]["thp_deferred_split_page"],
        "ch16_half_thp": half["proc"]["thp"],
        "ch16_drop_split": drop["vmstat"]["thp_split_page"],
        "ch16_drop_rss": drop["proc"]["rss_kb"],
        "ch16_dn_rss": obs["dontneed_10"][4]["proc"]["rss_kb"],
        "ch16_dhalf_layout": _layout(obs["dontneed_half"][3]["proc"]["layout"]),
        "ch16_free_split": obs["free_10"][3]["vmstat"]["thp_split_page"],
        "ch16_pin_layout": _layout(obs["pin_blocks_split"][5]["proc"]["layout"]),
        "ch16_pin_split": obs["pin_blocks_split"][7]["vmstat"]["thp_split_page"],
        "ch16_zero_rss": zread["proc"]["rss_kb"],
        "ch16_zero_count": zread["proc"]["kpagecount"][0][0],
        "ch16_zero_write_split": zwrite["vmstat"]["thp_split_pmd"],
        "ch16_cow_pss": cow["proc"]["pss_kb"],
        "ch16_cow_shared_dirty": cow["proc"]["shared_dirty_kb"],
        "ch16_cow_private_dirty": cow["proc"]["private_dirty_kb"],
        "ch16_alone_private": obs["fork_cow"][4]["proc"]["private_dirty_kb"],
        "ch16_free_clean": obs["free_10"][3]["proc"]["private_clean_kb"],
        "ch16_drained_lazy": obs["free_10"][4]["proc"]["lazyfree_kb"],
        "ch16_drained_sb": obs["free_10"][4]["proc"]["swapbacked"],
        "ch16_drained_pglazy": obs["free_10"][4]["vmstat"]["pglazyfree"],
        "ch16_fwhole_lazy": obs["free_whole"][3]["proc"]["lazyfree_kb"],
        "ch16_fwhole_pglazy": obs["free_whole"][3]["vmstat"]["pglazyfree"],
        "ch16_fwrite_lazy": obs["free_whole"][4]["proc"]["lazyfree_kb"],
        "ch16_kept_rss": obs["not_underused"][3]["proc"]["rss_kb"],
        "ch16_under_split": obs["underused"][3]["vmstat"]["thp_underused_split_page"],
        "ch16_under_rss": obs["underused"][3]["proc"]["rss_kb"],
        "ch16_under_layout": _layout(obs["underused"][3]["proc"]["layout"]),
        "ch16_zunder_rss": obs["huge_zero_underused"][4]["proc"]["rss_kb"],
    }


@pytest.mark.xdist_group("16-your-own-kernel")
def test_the_prose_quotes_what_the_simulator_computes(
        data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    g = glued(CHAPTER)
    rec, sims = data
    R = rec["observations"]
    # The recording and the agreement counts, from kernel_lab's summary of the same data.
    counts = summary(sims, R)
    assert (g["ch16_date"], g["ch16_release"], g["ch16_policy"]) == (
        rec["date"], rec["kernel_release"], rec["thp_settings"]["enabled"])
    assert (g["ch16_debugfs"], g["ch16_debugfs_scenario"]) == (
        rec["debugfs_split"], ", ".join(rec["unavailable"]))
    assert (g["ch16_scenarios"], g["ch16_total"]) == (
        len(R), sum(len(SCENARIOS[n].steps) for n in R))
    assert (g["ch16_agree"], g["ch16_not_modelled"], g["ch16_differ"]) == tuple(
        sum(c[k] for c in counts.values()) for k in ("agree", "not modelled", "differ"))

    # Every value quoted from an agreeing scenario is the recorded kernel's and the simulator's.
    kernel, simulated = _quoted(R), _quoted(sims)
    assert {k: g[k] for k in kernel} == kernel == simulated

    # The pin: the kernel counts a failure per shrinker pass, the simulator one.
    failed = "thp_split_page_failed"
    assert g["ch16_pin_failed_kernel"] == R["pin_blocks_split"][5]["vmstat"][failed]
    assert g["ch16_pin_failed_sim"] == sims["pin_blocks_split"][5]["vmstat"][failed]

    # Right after MADV_FREE of 10 pages: the kernel's values, not compared (they depend on
    # when a task drains the CPU's batch; the recording caught them undrained, as the
    # simulator shows them).
    free = R["free_10"][3]["proc"]
    assert (g["ch16_free_lazy"], g["ch16_free_sb"]) == (free["lazyfree_kb"], free["swapbacked"])
    assert (sims["free_10"][3]["proc"]["lazyfree_kb"], sims["free_10"][3]["proc"]["swapbacked"]) \
        == (0, 512)

    # debugfs split: the simulator's prediction only.
    assert g["ch16_dsplit_folios"] == len(sims["debugfs_split"][3]["proc"]["layout"])

    # MADV_COLLAPSE: the kernel's allocation count, which the simulator reproduces.
    alloc = R["collapse"][2]["vmstat"]["thp_collapse_alloc"]
    assert g["ch16_collapse_alloc"] == alloc == sims["collapse"][2]["vmstat"]["thp_collapse_alloc"]

    # mTHP 64 KiB: the recorded values, which the simulator now reproduces.
    mthp, sim = R["mthp_64k"], sims["mthp_64k"]
    assert g["ch16_mthp_folios"] == len(mthp[2]["proc"]["layout"]) == len(
        sim[2]["proc"]["layout"]) == 4
    assert g["ch16_mthp_left"] == sum(1 for k, _ in mthp[4]["proc"]["layout"] if k == "large")
    assert g["ch16_mthp_left"] == sum(1 for k, _ in sim[4]["proc"]["layout"] if k == "large")
    # ... and its per-size stats (hugepages-64kB/stats/), recorded and simulated alike
    for key, step, item, want in (("ch16_mthp_alloc", 2, "anon_fault_alloc", 4),
                                  ("ch16_mthp_deferred", 3, "split_deferred", 1),
                                  ("ch16_mthp_split", 4, "split", 1)):
        assert g[key] == mthp[step]["mthp"]["64kB"][item] == sim[step]["mthp"]["64kB"][item] \
            == want
    assert g["ch16_differ"] == 0
    assert {d.scenario for n in ("collapse", "mthp_64k")
            for d in compare(SCENARIOS[n], sims[n], R[n])} == set()
