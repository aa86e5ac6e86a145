"""The kernel lab's swap scenarios: the swap area it makes and always removes, the swap
fields of the record, the recorded observations (100% of the compared steps agree with
the simulator), and live runs where this machine allows swap (skipped with the reason
otherwise)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from pyfolio.fs.proc.task_mmu import PM_PRESENT, PM_SWAP, PagemapEntry
from pyfolio.kernel_lab import KernelBackend, SimulatorBackend, Unavailable
from pyfolio.kernel_lab.backends import run_lock
from pyfolio.kernel_lab.compare import (
    SWAP_RECORDED,
    compare,
    describe,
    load_recorded,
    run_against,
    simulate_all,
    summary,
)
from pyfolio.kernel_lab.scenarios import SWAP_FIELDS, Scenario, Step, swap_runs
from pyfolio.kernel_lab.swap_area import active_swaps, swap_area, swap_header
from pyfolio.kernel_lab.swap_scenarios import SWAP_SCENARIOS, SWAP_SIZE
from pyfolio.sim.units import KiB, MiB


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return load_recorded(SWAP_RECORDED)


@pytest.fixture(scope="module")
def simulated(recorded: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    solid = {n: d["solidstate"] for n, d in recorded.get("swap_devices", {}).items()}
    return simulate_all(None, SWAP_SCENARIOS, solid)


def test_swap_header_is_what_mkswap_writes() -> None:
    """include/linux/swap.h union swap_header: version 1, last_page, no bad pages, the
    signature in the page's last 10 bytes (what read_swap_header() checks)."""
    h = swap_header(16384)
    assert len(h) == 4096 and h[-10:] == b"SWAPSPACE2"
    assert struct.unpack_from("<III", h, 1024) == (1, 16383, 0)


def test_swap_area_refuses_when_swap_is_already_active(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Another active swap area would take the scenario's pages: Unavailable, and nothing
    is made. So is a machine where the lab is not root."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/swaps").write_text(
        "Filename\tType\tSize\tUsed\tPriority\n/dev/zram0 partition 4194300 0 100\n")
    assert active_swaps(tmp_path) == ["/dev/zram0"]
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(Unavailable, match="already active"), swap_area("file", 8 * MiB,
                                                                        tmp_path):
        pass
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(Unavailable, match="needs root"), swap_area("file", 8 * MiB, tmp_path):
        pass


def test_swap_runs_and_fields() -> None:
    recs = [PagemapEntry(PM_SWAP | (o << 5)) for o in (512, 513, 514, 7)] + [
        PagemapEntry(PM_PRESENT | 5)]
    assert swap_runs(recs) == [[0, 512, 3], [3, 7, 1]]
    sc = SWAP_SCENARIOS["swap_thp_block"]
    assert sc.swap == ("block", SWAP_SIZE) and sc.fields[-len(SWAP_FIELDS):] == SWAP_FIELDS
    assert Scenario("x", "x", (Step("mmap", 0, 2 * MiB),)).swap is None


def test_the_simulator_runs_every_swap_scenario(simulated: dict[str, Any]) -> None:
    """Spot checks of the simulated records against the research tables."""
    for name, sc in SWAP_SCENARIOS.items():
        assert len(simulated[name]) == len(sc.steps), name
        assert all(o["status"] == "ok" for o in simulated[name]), name
    block = simulated["swap_thp_block"]
    assert block[4]["proc"]["swap_runs"] == [[0, 512, 512]] and block[4]["swap_used_kb"] == 2048
    assert block[5]["proc"]["layout"] == [["large", 512]]  # the whole folio back
    assert block[5]["proc"]["swapcache"] == 512 and block[-1]["swap_used_kb"] == 0
    file = simulated["swap_thp_file"]
    assert file[4]["proc"]["swap_runs"][:2] == [[0, 1, 1], [1, 512, 1]]
    assert file[4]["vmstat"]["thp_swpout_fallback"] == 1 and file[7]["swap_used_kb"] == 2044
    fork = simulated["swap_fork_zram"][5]  # after fork: swap count 2 in both
    assert fork["proc"]["swap_pss_kb"] == fork["child"]["swap_pss_kb"] == 1024
    zero = simulated["swap_zero_block"][4]
    assert zero["vmstat"]["swpout_zero"] == 512 and zero["vmstat"]["pswpout"] == 0
    assert simulated["pageout_noswap"][3]["vmstat"]["thp_swpout_fallback"] == 1


def test_recorded_swap_observations_agree_with_the_simulator(
        recorded: dict[str, Any], simulated: dict[str, Any]) -> None:
    """The recorded runs (6.18.44, root, swap areas the lab made and removed) agree with
    the simulator on every compared step: 100%."""
    assert recorded["label"] == "recorded" and recorded["kernel_release"].startswith("6.18")
    assert set(recorded["observations"]) | set(recorded["unavailable"]) == set(SWAP_SCENARIOS)
    counts = summary(simulated, recorded["observations"], SWAP_SCENARIOS)
    diffs = [describe(d) for n in recorded["observations"]
             for d in compare(SWAP_SCENARIOS[n], simulated[n], recorded["observations"][n])]
    assert diffs == []
    assert sum(c["agree"] for c in counts.values()) == sum(
        len(SWAP_SCENARIOS[n].steps) for n in recorded["observations"])
    devices = recorded["swap_devices"]
    assert {d["kind"] for d in devices.values()} == {"file", "block", "zram"}
    assert devices["swap_thp_block"]["path"].startswith("/dev/loop")


def test_recorded_file_and_block_swap_differ_as_measured(recorded: dict[str, Any]) -> None:
    """What the running kernel showed for a swap file versus a block device: the THP is
    split to a swap file (thp_swpout_fallback, 512 one-page writes at descending slots
    after the head) and goes whole to the loop device and to zram (thp_swpout, slots
    512-1023); a read fault then maps one page (file), the whole folio from the swap
    cache (block), or reads one page directly (zram)."""
    R = recorded["observations"]
    f, b, z = R["swap_thp_file"][4], R["swap_thp_block"][4], R["swap_thp_zram"][4]
    assert (f["vmstat"]["thp_swpout_fallback"], f["vmstat"]["thp_swpout"]) == (1, 0)
    assert (b["vmstat"]["thp_swpout"], z["vmstat"]["thp_swpout"]) == (1, 1)
    assert f["proc"]["swap_runs"][:3] == [[0, 1, 1], [1, 512, 1], [2, 511, 1]]
    assert b["proc"]["swap_runs"] == z["proc"]["swap_runs"] == [[0, 512, 512]]
    fr, br, zr = (R[f"swap_thp_{k}"][5] for k in ("file", "block", "zram"))
    assert fr["proc"]["layout"] == [["small", 1], ["none", 511]]
    assert br["proc"]["layout"] == [["large", 512]] and br["vmstat"]["pswpin"] == 0
    assert zr["vmstat"]["pswpin"] == 1 and zr["swap_used_kb"] == 2044


# -- on the running kernel -----------------------------------------------------------------
def _swap_kernel_or_skip(sc: Scenario) -> KernelBackend:
    kb = KernelBackend()
    why = kb.unavailable(sc)
    if why:
        pytest.skip(why)
    return kb


@pytest.mark.parametrize("name", list(SWAP_SCENARIOS))
def test_the_kernel_agrees_with_the_simulator_on_swap(name: str) -> None:
    sc = SWAP_SCENARIOS[name]
    kb = _swap_kernel_or_skip(sc)
    with run_lock():
        try:
            ker = run_against(kb, sc, SimulatorBackend().run(sc))
        except Unavailable as e:  # this machine refuses swap, loop devices or zram
            pytest.skip(e.reason)
        assert active_swaps() == []  # the area was switched off
    area = kb.last_swap_area
    sim = SimulatorBackend(swap_solidstate=area.solidstate if area else None).run(sc)
    assert [describe(d) for d in compare(sc, sim, ker)] == []


def test_a_failing_swap_scenario_still_removes_its_area() -> None:
    """A scenario that breaks after swapon (an unknown step in the child) leaves no swap
    on, no loop device attached, no file behind."""
    sc = Scenario("broken", "swapon, then a step the child does not know",
                  (Step("mmap", 0, 64 * KiB), Step("swapon", 0, 8 * MiB, "block"),
                   Step("bogus", 0, 4 * KiB)))
    kb = _swap_kernel_or_skip(sc)
    with run_lock():
        try:
            with pytest.raises(RuntimeError, match="unknown step"):
                kb.run(sc)
        except Unavailable as e:
            pytest.skip(e.reason)
        assert active_swaps() == []
    assert not list(Path("/var/tmp").glob("pyfolio-swap-lab.*"))
    loops = Path("/sys/block").glob("loop*/loop/backing_file")
    assert not [p for p in loops if "pyfolio-swap-lab" in p.read_text()]
