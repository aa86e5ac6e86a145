"""Simulator versus kernel: differences, side-by-side tables, the agreement figure, and
observations recorded on a real kernel (shipped as JSON in ``recorded/``).

Vmstat counters and the per-size stats are global: on the kernel a step's delta includes
whatever other processes did meanwhile, so only the counters the scenario explains are
compared (:data:`~pyfolio.kernel_lab.scenarios.MTHP_EXPLAINED` of each of
:data:`~pyfolio.kernel_lab.scenarios.MTHP_SIZES`, as fields ``"<size>/<stat>"``), and a
kernel run that differs only in them is repeated (:func:`run_against`, at most twice).
"""

from __future__ import annotations

import datetime
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pyfolio.kernel_lab.backends import KernelBackend, Observations, SimulatorBackend
from pyfolio.kernel_lab.readers import Unavailable, debugfs_split_status, thp_settings
from pyfolio.kernel_lab.scenarios import FIELDS, FILE_FIELDS, SCENARIOS, Scenario

__all__ = ["Difference", "FIELDS", "FILE_FIELDS", "scenario_named", "compare", "step_agrees",
           "summary", "side_by_side", "agreement_figure", "record", "load_recorded", "RECORDED",
           "SWAP_RECORDED", "RECORDED_FILES", "SHMEM_SWAP_RECORDED", "kernel_observations",
           "run_kernel", "run_against", "simulate_all", "describe"]

#: the data file this module reads by default, and the one of the swap scenarios
RECORDED = Path(__file__).parent / "recorded" / "observations.json"
SWAP_RECORDED = Path(__file__).parent / "recorded" / "swap_observations.json"
#: ... and the observations of the file scenarios (pyfolio.kernel_lab.file_scenarios)
RECORDED_FILES = Path(__file__).parent / "recorded" / "files.json"
#: ... and of the shmem swap scenarios (pyfolio.kernel_lab.shmem_swap_scenarios)
SHMEM_SWAP_RECORDED = Path(__file__).parent / "recorded" / "shmem_swap_observations.json"


@dataclass(frozen=True, slots=True)
class Difference:
    """One field of one step where simulator and kernel disagree."""

    scenario: str
    index: int
    step: str
    field: str
    simulator: object
    kernel: object


def _fields(scenario: Scenario, obs: dict[str, Any]) -> dict[str, object]:
    out: dict[str, object] = {"status": obs["status"]}
    for who in ("proc", "child"):
        view = obs.get(who)
        if view is None:
            out[who] = None
            continue
        for f in scenario.fields:
            out[f"{who}.{f}" if who == "child" else f] = view.get(f, 0 if f in FILE_FIELDS
                                                                  else None)
    for c in scenario.counters:
        out[c] = obs["vmstat"].get(c, 0)
    for size in scenario.sizes:
        stats = obs.get("mthp", {}).get(size, {})
        for item in scenario.mthp_items:
            out[f"{size}/{item}"] = stats.get(item, 0)
    out["rss_anon_kb"] = obs.get("rss_anon_kb")
    if scenario.swap is not None:
        out["swap_used_kb"] = obs.get("swap_used_kb")
    if scenario.backing != "anon":  # RssFile is recorded, not compared: the lab's own
        for f in ("cache", "rss_shmem_kb", "incore"):  # Python touches pages of its
            out[f] = obs.get(f)  # libraries' files: RssFile moves
    return out


def _global(scenario: Scenario, field: str) -> bool:
    """Is ``field`` a global counter (vmstat or a per-size stat), which other processes
    move too?"""
    return field in scenario.counters or field.split("/")[0] in scenario.sizes


def scenario_named(name: str) -> Scenario:
    """The scenario called ``name``: anonymous (SCENARIOS), on a file (FILE_SCENARIOS),
    with swap (SWAP_SCENARIOS) or shmem with swap (SHMEM_SWAP_SCENARIOS)."""
    from pyfolio.kernel_lab.file_scenarios import FILE_SCENARIOS
    from pyfolio.kernel_lab.shmem_swap_scenarios import SHMEM_SWAP_SCENARIOS
    from pyfolio.kernel_lab.swap_scenarios import SWAP_SCENARIOS

    for table in (SCENARIOS, FILE_SCENARIOS, SWAP_SCENARIOS, SHMEM_SWAP_SCENARIOS):
        if name in table:
            return table[name]
    raise KeyError(f"no kernel-lab scenario {name!r}")


def compare(scenario: Scenario, sim: Observations, ker: Observations) -> list[Difference]:
    """Every field where the two backends' records of the same step differ (but the
    fields the step calls ``unsettled``: on the kernel they then depend on timing)."""
    if len(sim) != len(ker):
        raise ValueError(f"{scenario.name}: {len(sim)} simulator steps, {len(ker)} kernel steps")
    out = []
    for i, (s, k) in enumerate(zip(sim, ker, strict=True)):
        fs, fk = _fields(scenario, s), _fields(scenario, k)
        skip = {f for u in scenario.steps[i].unsettled for f in (u, f"child.{u}")}
        for name in dict.fromkeys([*fs, *fk]):
            if name not in skip and fs.get(name) != fk.get(name):
                out.append(Difference(scenario.name, i, s["step"], name, fs.get(name),
                                      fk.get(name)))
    return out


def run_against(kb: KernelBackend, scenario: Scenario, reference: Observations,
                retries: int = 2) -> Observations:
    """Run ``scenario`` on the kernel; while its record differs from ``reference`` only in
    global counters (vmstat, per-size stats), or in fields a step marks as depending on
    when read I/O completed (``Step.io_timing``), run it again, at most ``retries`` times:
    another process may have faulted, split or freed a THP during the run, or slowed the
    disk."""
    def timing(d: Difference) -> bool:
        return d.field.removeprefix("child.") in scenario.steps[d.index].io_timing

    ker = kb.run(scenario)
    for _ in range(retries):
        diffs = compare(scenario, reference, ker)
        if not diffs or not all(_global(scenario, d.field) or timing(d) for d in diffs):
            break
        ker = kb.run(scenario)
    return ker


def step_agrees(diffs: list[Difference], n: int) -> list[bool]:
    """For each of ``n`` steps: no difference recorded for it."""
    bad = {d.index for d in diffs}
    return [i not in bad for i in range(n)]


def summary(sims: dict[str, Observations], kers: dict[str, Observations],
            scenarios: dict[str, Scenario] | None = None) -> dict[str, dict[str, int]]:
    """Per scenario (of ``scenarios``, by default :data:`SCENARIOS`): steps that
    ``agree``, ``differ`` and are ``not modelled``."""
    out = {}
    for name, ker in kers.items():
        sc, sim = (scenarios or {}).get(name) or scenario_named(name), sims[name]
        diffs = compare(sc, sim, ker)
        bad = {d.index for d in diffs}
        nm = {i for i, s in enumerate(sim) if s["status"] == "not modelled"}
        out[name] = {"agree": len(ker) - len(bad), "differ": len(bad - nm),
                     "not modelled": len(nm)}
    return out


def _show(v: object) -> str:
    if isinstance(v, list):
        return " ".join(f"{a}×{b}" for a, b in v) if v else "–"
    return "–" if v is None else str(v)


def side_by_side(scenario: Scenario, sim: Observations, ker: Observations) -> str:
    """A Markdown table: each step, simulator vs kernel, on the main fields."""
    diffs = compare(scenario, sim, ker)
    lines = ["| step | layout (sim / kernel) | AnonHugePages kB | kpagecount | vmstat, stats "
             "(sim / kernel) | agree |", "|---|---|---|---|---|---|"]
    for i, (s, k) in enumerate(zip(sim, ker, strict=True)):
        ok = all(d.index != i for d in diffs)

        def pair(f: str, s: dict[str, Any] = s, k: dict[str, Any] = k) -> str:
            a, b = _show(s["proc"][f]), _show(k["proc"][f])
            if s["child"] or k["child"]:
                a += f"; child {_show((s['child'] or {}).get(f))}"
                b += f"; child {_show((k['child'] or {}).get(f))}"
            return a if a == b else f"{a} / **{b}**"
        moved, kmoved = _moved(scenario, s), _moved(scenario, k)
        vm = ", ".join(f"{c} {v:+d}" for c, v in moved.items()) or "–"
        if kmoved != moved:
            vm += " / **" + (", ".join(f"{c} {v:+d}" for c, v in kmoved.items()) or "–") + "**"
        step = s["step"] + ("" if s["status"] == "ok" else f" (sim: {s['status']})")
        lines.append(f"| {step} | {pair('layout')} | {pair('anon_huge_kb')} | "
                     f"{pair('kpagecount')} | {vm} | {'yes' if ok else 'no'} |")
    return "\n".join(lines)


def _moved(scenario: Scenario, obs: dict[str, Any]) -> dict[str, int]:
    """The compared counters that moved in a step: vmstat names, then ``size/stat``."""
    out = {c: v for c, v in obs["vmstat"].items() if v and c in scenario.counters}
    for size in scenario.sizes:
        stats = obs.get("mthp", {}).get(size, {})
        out.update({f"{size}/{i}": stats[i] for i in scenario.mthp_items if stats.get(i)})
    return out


def describe(d: Difference) -> str:
    """One line for a difference."""
    return (f"{d.scenario} step {d.index} ({d.step}): {d.field} simulator {_show(d.simulator)}"
            f", kernel {_show(d.kernel)}")


def agreement_figure(counts: dict[str, dict[str, int]], title: str) -> Figure:
    """Horizontal bars per scenario: steps that agree, differ, are not modelled."""
    fig = Figure(figsize=(6.6, 0.45 * len(counts) + 1.2), dpi=100, facecolor="white")
    fig.patch.set_alpha(1.0)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = list(counts)
    left = [0] * len(names)
    for key, color in (("agree", "#2ca02c"), ("differ", "#d62728"),
                       ("not modelled", "#bbbbbb")):
        vals = [counts[n][key] for n in names]
        ax.barh(names, vals, left=left, color=color, label=key)
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("scenario steps")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(left) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8,
              frameon=False)
    fig.tight_layout()
    return fig


def simulate_all(names: list[str] | None = None,
                 scenarios: dict[str, Scenario] | None = None,
                 solidstate: dict[str, bool] | None = None) -> dict[str, Observations]:
    """Every scenario (or ``names``) of ``scenarios`` (default :data:`SCENARIOS`; the file
    scenarios are :data:`pyfolio.kernel_lab.file_scenarios.FILE_SCENARIOS`) on the
    simulator; ``solidstate`` says, per swap scenario, whether its area counts as
    non-rotational (as the kernel's did: a recording's ``swap_devices``)."""
    scenarios = scenarios or SCENARIOS
    return {n: SimulatorBackend(swap_solidstate=(solidstate or {}).get(n)).run(scenarios[n])
            for n in (names or list(scenarios))}


def run_kernel(names: list[str] | None = None, kb: KernelBackend | None = None,
               reference: dict[str, Observations] | None = None,
               scenarios: dict[str, Scenario] | None = None,
               devices: dict[str, dict[str, Any]] | None = None, retries: int = 2
               ) -> tuple[dict[str, Observations], dict[str, str]]:
    """Run the scenarios (or ``names``) of ``scenarios`` on this kernel: (observations,
    and for each scenario that cannot run here the reason, e.g. debugfs split refused).
    With ``reference`` (simulator observations), each run goes through
    :func:`run_against` (with ``retries``). ``devices`` collects each swap scenario's area
    (kind, path, solidstate)."""
    kb = kb or KernelBackend()
    scenarios = scenarios or SCENARIOS
    obs: dict[str, Observations] = {}
    missing: dict[str, str] = {}
    for n in names or list(scenarios):
        try:
            obs[n] = (run_against(kb, scenarios[n], reference[n], retries) if reference
                      else kb.run(scenarios[n]))
            if scenarios[n].swap is not None and devices is not None:
                area = kb.last_swap_area
                devices[n] = {"kind": area.kind, "path": area.path,
                              "solidstate": area.solidstate}
        except Unavailable as e:
            missing[n] = e.reason
    return obs, missing


def record(path: Path | None = None, names: list[str] | None = None,
           scenarios: dict[str, Scenario] | None = None) -> dict[str, Any]:
    """Run the scenarios (of ``scenarios``, default :data:`SCENARIOS`) on this kernel
    and write them, labelled as recorded, to ``path`` (default :data:`RECORDED`, or
    :data:`RECORDED_FILES` for the file scenarios); scenarios that cannot run here are
    listed with the reason under ``unavailable``. A run whose record differs from the
    simulator's only in global counters is repeated (:func:`run_against`): those
    differences are other processes' work. Swap scenarios also record their areas
    (``swap_devices``), file scenarios the disk's readahead sizes (``block_device``).
    Raises Unavailable where the kernel backend cannot run at all."""
    from pyfolio.kernel_lab.file_scenarios import FILE_SCENARIOS

    why = KernelBackend().unavailable()
    if why:
        raise Unavailable(why)
    scenarios = scenarios or SCENARIOS
    files = scenarios is FILE_SCENARIOS
    devices: dict[str, dict[str, Any]] = {}
    obs, missing = run_kernel(names, reference=simulate_all(names, scenarios),
                              scenarios=scenarios, devices=devices, retries=4 if files else 2)
    data = {"label": "recorded", "date": datetime.date.today().isoformat(),
            "kernel_release": platform.release(), "machine": platform.machine(),
            "thp_settings": thp_settings(),
            "settings_changed_during_run": {n: dict(scenarios[n].settings)
                                            for n in (names or list(scenarios))
                                            if scenarios[n].settings},
            "note": "vmstat and per-size stat deltas are global counters: they include "
                    "other processes",
            "debugfs_split": debugfs_split_status(),
            "observations": obs, "unavailable": missing}
    if devices:
        data["swap_devices"] = devices
    if files:
        data["block_device"] = _block_device()
    p = path or (RECORDED_FILES if files else RECORDED)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n")
    return data


def _block_device() -> dict[str, object]:
    """The readahead sizes of the disk the file scenarios ran on (the simulator assumes
    read_ahead_kb 8192 and max_sectors_kb 4096, those of the machine the book was
    recorded on: readahead scenarios depend on them)."""
    import os
    import tempfile

    out: dict[str, object] = {}
    try:
        dev = os.stat(tempfile.gettempdir()).st_dev
        sysdir = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
        queue = sysdir / "queue" if (sysdir / "queue").is_dir() else sysdir / ".." / "queue"
        for name in ("read_ahead_kb", "max_sectors_kb"):
            out[name] = int((queue / name).read_text())
    except (OSError, ValueError):
        pass
    return out


def load_recorded(path: Path | None = None) -> dict[str, Any]:
    """The recorded observations (``label``, ``date``, ``kernel_release``,
    ``thp_settings``, ``observations``)."""
    data: dict[str, Any] = json.loads((path or RECORDED).read_text())
    return data


def kernel_observations(live: bool = True, scenarios: dict[str, Scenario] | None = None
                        ) -> tuple[str, dict[str, Observations]]:
    """(source, observations) of ``scenarios`` (default SCENARIOS): a live run when
    ``live`` and the kernel backend is available (scenarios that cannot run here are left
    out), otherwise the recorded data; ``source`` says which."""
    from pyfolio.kernel_lab.file_scenarios import FILE_SCENARIOS

    scenarios = scenarios or SCENARIOS
    kb = KernelBackend()
    why = kb.unavailable() if live else "live run not requested"
    if why is None:
        return f"live, Linux {platform.release()}", run_kernel(kb=kb, scenarios=scenarios)[0]
    rec = load_recorded(RECORDED_FILES if scenarios is FILE_SCENARIOS else RECORDED)
    return (f"recorded on {rec['date']}, Linux {rec['kernel_release']}", rec["observations"])
