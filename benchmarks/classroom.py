"""`make bench-classroom`: N students at once on a local JupyterHub (default 10).

Each student's own server runs chapter 7 (the PMD -> PTE chapter, with its widgets) in their
own kernel, all at the same time, then moves the chapter's remap-viewer slider ACTIONS times
(a widget action: the model step and the redraw, timed from the request to the kernel's
reply, through the hub's proxy, while the other students are still working). Reported:

- per-student memory: PSS (/proc/PID/smaps_rollup) of the student's server and kernel after
  the run, and of the hub and its proxy (shared by the class); the peak RSS (VmHWM) of a
  student's two processes, for the memory limit;
- widget-action latency under that load: median and p95;
- CPU seconds per student for the chapter run;
- the projection for 100 students: memory, and cores for a class running the chapter
  within PROJECTION_WINDOW seconds (classroom/z2jh-values.yaml is sized from these figures).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "classroom"))

from localhub import LocalHub, missing  # noqa: E402

from pyfolio.exercises.hub import HubClient  # noqa: E402

CHAPTER = ROOT / "chapters" / "07-pmd-to-ptes.md"
ACTION = "viewer.step.value = (viewer.step.value + 1) % len(viewer.frames)"
ACTIONS = 20
PROJECTION_STUDENTS = 100
PROJECTION_WINDOW = 600  # seconds: the whole class runs the chapter within ten minutes
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _procs() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, cmdline, JUPYTERHUB_USER) for every process we can read."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        user = next((e[16:].decode() for e in env if e.startswith(b"JUPYTERHUB_USER=")), "")
        out[int(d.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd, user)
    return out


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _peak_rss_kib(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _student_pids(procs: dict[int, tuple[int, str, str]], user: str) -> tuple[int, list[int]]:
    """(the student's server, its kernels)."""
    server = next(p for p, (_, cmd, u) in procs.items()
                  if u == user and "jupyterhub-singleuser" in cmd)
    kernels = [p for p, (pp, cmd, _) in procs.items() if pp == server and "ipykernel" in cmd]
    return server, kernels


def _chapter_notebook() -> dict[str, Any]:
    import jupytext
    import nbformat

    nb = jupytext.read(CHAPTER)
    return json.loads(nbformat.writes(nb))


def student(client: HubClient, user: str, nb: dict[str, Any]) -> dict[str, Any]:
    """Run the chapter in the student's own kernel, then ACTIONS widget actions."""
    path = f"chapters/{CHAPTER.stem}.ipynb"
    client.put_notebook(user, path, nb)
    kernel = client.start_kernel(user, path)
    codes = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    t0 = time.perf_counter()
    runs = client.execute(user, kernel, codes)
    chapter_s = time.perf_counter() - t0
    errors = [r.error for r in runs if r.error]
    actions = [r.seconds for r in client.execute(user, kernel, [ACTION] * ACTIONS)]
    return {"user": user, "kernel": kernel, "chapter_s": chapter_s, "errors": errors,
            "actions": actions}


def run(n: int) -> dict[str, Any]:
    nb = _chapter_notebook()
    users = [f"student{i}" for i in range(1, n + 1)]
    with LocalHub() as hub:
        client = HubClient(hub.url, hub.token, timeout=600)
        client.create_users(users)
        t = time.perf_counter()
        client.start_servers(users, wait=900)
        spawn_s = time.perf_counter() - t
        procs = _procs()
        cpu0 = {u: sum(_cpu_s(p) for p in [_student_pids(procs, u)[0]]) for u in users}
        t = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(lambda u: student(client, u, nb), users))
        wall_s = time.perf_counter() - t
        procs = _procs()
        mem, cpu, peak = [], [], []
        for r in results:
            server, kernels = _student_pids(procs, r["user"])
            mem.append((_pss_kib(server), sum(_pss_kib(k) for k in kernels)))
            peak.append(_peak_rss_kib(server) + sum(_peak_rss_kib(k) for k in kernels))
            cpu.append(_cpu_s(server) - cpu0[r["user"]] + sum(_cpu_s(k) for k in kernels))
        hub_pids = [p for p, (_, cmd, u) in procs.items() if not u and (
            str(hub.dir) in cmd or "configurable-http-proxy" in cmd)]
        shared_kib = sum(_pss_kib(p) for p in hub_pids)
        client.stop_servers(users)
    lat = sorted(a for r in results for a in r["actions"])
    per_student_kib = statistics.mean(s + k for s, k in mem)
    cpu_s = statistics.mean(cpu)
    return {
        "students": n, "cores": os.cpu_count(), "spawn_s": spawn_s, "wall_s": wall_s,
        "errors": sorted({e for r in results for e in r["errors"]}),
        "server_pss_mib": statistics.mean(s for s, _ in mem) / 1024,
        "kernel_pss_mib": statistics.mean(k for _, k in mem) / 1024,
        "student_pss_mib": per_student_kib / 1024,
        "student_pss_max_mib": max(s + k for s, k in mem) / 1024,
        "hub_proxy_pss_mib": shared_kib / 1024,
        "student_peak_rss_max_mib": max(peak) / 1024,
        "chapter_s_median": statistics.median(r["chapter_s"] for r in results),
        "cpu_s_per_student": cpu_s,
        "action_ms_median": statistics.median(lat) * 1000,
        "action_ms_p95": lat[max(0, round(0.95 * len(lat)) - 1)] * 1000,
        "actions": len(lat),
        "projection_mem_gib": (PROJECTION_STUDENTS * per_student_kib + shared_kib) / 2**20,
        "projection_cores": PROJECTION_STUDENTS * cpu_s / PROJECTION_WINDOW,
    }


def report(r: dict[str, Any]) -> str:
    return "\n".join([
        f"classroom bench: {r['students']} students at once on a local JupyterHub "
        f"({r['cores']} cores), chapter 7 each",
        f"  servers spawned in {r['spawn_s']:.1f} s; the chapters ran in {r['wall_s']:.1f} s "
        f"(median per student {r['chapter_s_median']:.1f} s)"
        + (f"; ERRORS: {r['errors']}" if r["errors"] else ""),
        f"  memory per student (PSS): server {r['server_pss_mib']:.0f} MiB + kernel "
        f"{r['kernel_pss_mib']:.0f} MiB = {r['student_pss_mib']:.0f} MiB (max "
        f"{r['student_pss_max_mib']:.0f}); hub + proxy {r['hub_proxy_pss_mib']:.0f} MiB; "
        f"peak RSS of a student's server + kernel at most "
        f"{r['student_peak_rss_max_mib']:.0f} MiB",
        f"  CPU per student for the chapter: {r['cpu_s_per_student']:.1f} s",
        f"  widget action (remap viewer step) under load: median "
        f"{r['action_ms_median']:.0f} ms, p95 {r['action_ms_p95']:.0f} ms ({r['actions']} "
        f"actions)",
        f"  projection for {PROJECTION_STUDENTS} students: {r['projection_mem_gib']:.1f} GiB "
        f"of memory; {r['projection_cores']:.1f} cores to run the chapter within "
        f"{PROJECTION_WINDOW // 60} minutes",
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--students", type=int, default=10)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    why = missing()
    if why:
        print(f"classroom bench skipped: {why}")
        return 0
    r = run(args.students)
    print(report(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")
    return 1 if r["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
