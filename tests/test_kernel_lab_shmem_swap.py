"""The kernel lab's shmem swap scenarios: the recorded runs (6.18.44) agree with the
simulator on every compared step, they show what the research measured (a swap file splits
a shmem THP with no fallback counter, a block device and zram take it whole; swap-in at
the entry's order; mincore says "still in the swap cache"), and live runs where this
machine allows swap (skipped with the reason otherwise)."""

from __future__ import annotations

from typing import Any

import pytest

from pyfolio.kernel_lab import KernelBackend, SimulatorBackend, Unavailable
from pyfolio.kernel_lab.backends import run_lock
from pyfolio.kernel_lab.compare import (
    SHMEM_SWAP_RECORDED,
    compare,
    describe,
    load_recorded,
    run_against,
    scenario_named,
    simulate_all,
    summary,
)
from pyfolio.kernel_lab.shmem_swap_scenarios import SHMEM_SWAP_SCENARIOS
from pyfolio.kernel_lab.swap_area import active_swaps


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return load_recorded(SHMEM_SWAP_RECORDED)


@pytest.fixture(scope="module")
def simulated(recorded: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    solid = {n: d["solidstate"] for n, d in recorded.get("swap_devices", {}).items()}
    return simulate_all(None, SHMEM_SWAP_SCENARIOS, solid)


def test_every_scenario_runs_on_the_simulator(simulated: dict[str, Any]) -> None:
    for name, sc in SHMEM_SWAP_SCENARIOS.items():
        assert [o["status"] for o in simulated[name]] == ["ok"] * len(sc.steps), name
        assert scenario_named(name) is sc
        last = simulated[name][-1]
        if sc.swap is not None:  # the cache cannot be read without swapping pages in
            assert "incore" in last and last["cache"] is None
        else:
            assert "incore" not in last and isinstance(last["cache"], list)


def test_recorded_shmem_swap_observations_agree_with_the_simulator(
        recorded: dict[str, Any], simulated: dict[str, Any]) -> None:
    """100% of the compared steps agree."""
    assert recorded["label"] == "recorded" and recorded["kernel_release"].startswith("6.18")
    assert set(recorded["observations"]) == set(SHMEM_SWAP_SCENARIOS)
    assert recorded["unavailable"] == {}
    diffs = [describe(d) for n in recorded["observations"]
             for d in compare(SHMEM_SWAP_SCENARIOS[n], simulated[n],
                              recorded["observations"][n])]
    assert diffs == []
    counts = summary(simulated, recorded["observations"], SHMEM_SWAP_SCENARIOS)
    steps = sum(len(sc.steps) for sc in SHMEM_SWAP_SCENARIOS.values())
    assert sum(c["agree"] for c in counts.values()) == steps == 174
    assert {d["kind"] for d in recorded["swap_devices"].values()} == {"file", "block", "zram"}


def test_recorded_file_block_and_zram_differ_as_measured(recorded: dict[str, Any]) -> None:
    R = recorded["observations"]
    f, b, z = (R[f"shmem_thp_{k}"][4] for k in ("file", "block", "zram"))
    # the swap file: split inside shmem_writeout(), no thp_swpout_fallback, no swpout_fallback
    assert (f["vmstat"]["thp_split_page"], f["vmstat"]["thp_swpout_fallback"]) == (1, 0)
    assert f["mthp"]["2048kB"]["split"] == 1 and f["mthp"]["2048kB"]["swpout_fallback"] == 0
    assert (b["vmstat"]["thp_swpout"], z["vmstat"]["thp_swpout"]) == (1, 1)
    for rec in (f, b, z):  # the PTEs are cleared: no swap PTEs, smaps Swap per object
        assert rec["proc"]["layout"] == [["none", 512]] and rec["proc"]["swapped"] == 0
        assert rec["proc"]["swap_kb"] == 2048 and rec["proc"]["swap_pss_kb"] == 0
    # mincore: still in the swap cache on the file and the loop device, freed on zram
    assert f["incore"] == b["incore"] == [[1, 512]] and z["incore"] == [[0, 512]]
    fr, br, zr = (R[f"shmem_thp_{k}"][5] for k in ("file", "block", "zram"))
    assert fr["proc"]["layout"] == [["small", 1], ["none", 511]] and fr["swap_used_kb"] == 2044
    assert br["proc"]["layout"] == zr["proc"]["layout"] == [["large", 512]]
    assert br["swap_used_kb"] == zr["swap_used_kb"] == 0  # slots freed at swap-in
    assert zr["mthp"]["2048kB"]["swpin"] == 1 and zr["vmstat"]["pswpin"] == 512
    assert R["shmem_thp_block"][8]["proc"]["swap_kb"] == 2048  # written again
    partial = R["shmem_partial_block"][4]
    assert partial["vmstat"]["thp_split_page"] == 1 and partial["vmstat"]["pswpout"] == 0


# -- on the running kernel -----------------------------------------------------------------
@pytest.mark.parametrize("name", list(SHMEM_SWAP_SCENARIOS))
def test_the_kernel_agrees_with_the_simulator_on_shmem_swap(name: str) -> None:
    sc = SHMEM_SWAP_SCENARIOS[name]
    kb = KernelBackend()
    why = kb.unavailable(sc)
    if why:
        pytest.skip(why)
    with run_lock():
        try:
            ker = run_against(kb, sc, SimulatorBackend().run(sc))
        except Unavailable as e:
            pytest.skip(e.reason)
        assert active_swaps() == []
    area = kb.last_swap_area
    sim = SimulatorBackend(swap_solidstate=area.solidstate if area else None).run(sc)
    assert [describe(d) for d in compare(sc, sim, ker)] == []
