"""The claims of chapters/12-code-review-lab.md, checked through the same pyfolio calls."""

from __future__ import annotations

import pytest

from conftest import ROOT, glued
from pyfolio.mm.debug_vm import snapshot
from pyfolio.reading.review import (
    DESIGNS,
    ENTRY,
    call_args,
    design_steps,
    fallback_scenario,
    functions_with_param,
    reader_load,
    split_events,
)

A, B = DESIGNS


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_both_designs_leave_identical_machine_state(seed: int) -> None:
    run_a, run_b = fallback_scenario(A, seed), fallback_scenario(B, seed)
    assert split_events(run_a) and split_events(run_b)  # the fallback really ran
    assert snapshot(run_a.system.machine) == snapshot(run_b.system.machine)
    assert [r.migrated for r in run_a.results] == [r.migrated for r in run_b.results]
    assert all(r.migrated for r in run_a.results)
    assert run_a.system.check() == run_b.system.check() == []


def test_the_state_comparison_can_fail() -> None:
    """Control: a device with large pages moves the THP whole, a different state."""
    split = fallback_scenario(B, 0, thps=1, small_pages=0)
    whole = fallback_scenario(B, 0, thps=1, small_pages=0, large_pages=True)
    assert not split_events(whole)
    assert snapshot(split.system.machine) != snapshot(whole.system.machine)
    assert whole.proc.lookup(whole.addr).level == "pmd"
    assert split.proc.lookup(split.addr).level == "pte"


def test_same_events_different_stacks() -> None:
    run_a = fallback_scenario(A, 0, thps=2, small_pages=17)
    run_b = fallback_scenario(B, 0, thps=2, small_pages=17)
    assert [e.name for e in run_a.events] == [e.name for e in run_b.events]
    steps = design_steps(run_a, run_b)
    assert [s.event for s in steps] == ["split_huge_pmd", "folio_ref_freeze",
                                        "__split_unmapped_folio", "folio_ref_unfreeze",
                                        "migrate_vma_split_unmapped_folio"]
    freeze = steps[1]
    assert freeze.stack(A)[:4] == ("migrate_vma_split_unmapped_folio",
                                   "__split_huge_page_to_list_to_order", "__folio_split",
                                   "__folio_freeze_and_split_unmapped")
    assert freeze.stack(B)[:3] == ("migrate_vma_split_unmapped_folio", "folio_split_unmapped",
                                   "__folio_freeze_and_split_unmapped")
    assert steps[0].stack(A) == steps[0].stack(B)
    assert design_steps(run_a, run_b, thp=1)[1].stack(B) == freeze.stack(B)
    last_a, last_b = split_events(run_a)[-1].event, split_events(run_b)[-1].event
    assert last_a.name == last_b.name == "migrate_vma_split_unmapped_folio"
    assert last_a.arg("design") != last_b.arg("design")  # the only difference in the trace
    differ = [(x.event, y.event) for x, y in zip(run_a.events, run_b.events, strict=True)
              if str(x.event) != str(y.event)]
    assert len(differ) == 2 and all(x.name == "migrate_vma_split_unmapped_folio"
                                    for x, _ in differ)
    assert run_a.system.trace.costs == run_b.system.trace.costs


def test_branch_counts_flag_path_versus_separate_entry() -> None:
    load_a, load_b = reader_load(ENTRY[A], "unmapped"), reader_load(ENTRY[B], "unmapped")
    assert load_a.functions[0] == "__folio_split" and load_b.functions[0] == "folio_split_unmapped"
    assert len(load_a.on_flag) >= 1 and all("unmapped" in b.test for b in load_a.on_flag)
    assert load_b.on_flag == () and load_b.forwards == ()
    assert len(load_a.branches) > len(load_a.on_flag)
    assert set(load_a.on_flag) <= set(load_a.branches)
    threaded = functions_with_param("unmapped", annotation="bool")
    assert any(n.endswith(".__folio_split") for n in threaded)
    assert not any(n.endswith(".folio_split_unmapped") for n in threaded)


def test_separate_entry_passes_no_page_cache_state() -> None:
    args = dict(call_args("folio_split_unmapped", "__folio_freeze_and_split_unmapped"))
    assert (args["xas"], args["mapping"], args["do_lru"], args["list_"]) == \
        ("None", "None", "False", "None")


CHAPTER = ROOT / "chapters/12-code-review-lab.md"


@pytest.mark.xdist_group("12-code-review-lab")
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    g = glued(CHAPTER)
    run_a = fallback_scenario(A, seed=0, thps=2, small_pages=17)
    run_b = fallback_scenario(B, seed=0, thps=2, small_pages=17)
    snap_a = snapshot(run_a.system.machine)
    assert g["ch12_moved"] == sum(r.migrated for r in run_a.results)
    assert g["ch12_pages"] == len(run_a.results)
    assert g["ch12_fields"] == len(snap_a)
    assert g["ch12_splits"] == len([e for e in split_events(run_a)
                                    if e.name == "split_huge_pmd"])
    unfreeze = next(e for e in split_events(run_a) if e.name == "folio_ref_unfreeze")
    assert g["ch12_nfolios"] == unfreeze.event.change("folios")

    # Over more seeds: how many leave equal states.
    equal = [snapshot(fallback_scenario(A, s).system.machine)
             == snapshot(fallback_scenario(B, s).system.machine) for s in range(1, 6)]
    assert (g["ch12_nseeds"], g["ch12_nequal"]) == (len(equal), sum(equal))

    # The trace: events, those that differ, and the costs.
    differ = [x for x, y in zip(run_a.events, run_b.events, strict=True)
              if str(x.event) != str(y.event)]
    assert (g["ch12_nevents"], g["ch12_ndiffer"]) == (len(run_a.events), len(differ))
    costs = run_a.system.trace.costs
    assert (g["ch12_tlb"], g["ch12_ptew"]) == (costs["tlb_flushes"], costs["pte_writes"])

    # The call stacks at the freeze.
    steps = design_steps(run_a, run_b)
    freeze = next(s for s in steps if s.event == "folio_ref_freeze")
    only_a = [f for f in freeze.stack(A) if f not in freeze.stack(B)]
    only_b = [f for f in freeze.stack(B) if f not in freeze.stack(A)]
    assert g["ch12_nsteps"] == len(steps)
    assert g["ch12_only_a"] == " and ".join(f"{f}()" for f in only_a)
    assert g["ch12_only_b"] == " and ".join(f"{f}()" for f in only_b)
    assert (g["ch12_depth_a"], g["ch12_depth_b"]) == (len(freeze.stack(A)), len(freeze.stack(B)))

    # The reviewer's count.
    load_a, load_b = reader_load(ENTRY[A], "unmapped"), reader_load(ENTRY[B], "unmapped")
    assert (g["ch12_a_branches"], g["ch12_a_flag"], g["ch12_a_fwd"], g["ch12_a_rest"]) == (
        len(load_a.branches), len(load_a.on_flag), len(load_a.forwards),
        len(load_a.branches) - len(load_a.on_flag))
    assert (g["ch12_b_branches"], g["ch12_b_flag"]) == (len(load_b.branches), len(load_b.on_flag))
    assert g["ch12_threaded"] == len(functions_with_param("unmapped", annotation="bool")) == 4

    # What file-backed folios would need.
    args = dict(call_args("folio_split_unmapped", "__folio_freeze_and_split_unmapped"))
    assert g["ch12_file_args"] == ", ".join(f"{k}={args[k]}" for k in ("xas", "mapping", "do_lru"))
    assert g["ch12_anon_guard"] == next(b.test for b in load_a.on_flag if "is_anon" in b.test)

    # The book's exercise on unmapped file-backed folios.
    from pyfolio.reading.file_designs import CASES, FILE_DESIGNS, file_split_scenario, \
        shared_path_counts

    runs = {(c, d): file_split_scenario(d, c, seed=0) for c in CASES for d in FILE_DESIGNS}
    ok = [c for c in CASES if runs[c, FILE_DESIGNS[2]].ret == 0]
    assert (g["ch12_file_cases"], g["ch12_file_ok"]) == (len(CASES), len(ok))
    assert g["ch12_file_leaks"] == len(ok) == sum(
        "i_mmap" in {v.kind for v in runs[c, FILE_DESIGNS[0]].violations} for c in ok)
    counts = {c.design: c for c in shared_path_counts()}
    assert g["ch12_fix_added"] == counts["unmapped-param+fix"].for_files == 1
    assert g["ch12_a_added"] == counts["unmapped-param"].added
    assert g["ch12_fix_total"] == counts["unmapped-param+fix"].added
    assert g["ch12_b_own"] == len(counts["split-unmapped-file"].own)
    for c in CASES:  # "the same state in all cases"
        assert snapshot(runs[c, FILE_DESIGNS[1]].system.machine) == \
            snapshot(runs[c, FILE_DESIGNS[2]].system.machine)
    failed = [c for c in CASES if runs[c, FILE_DESIGNS[2]].ret]
    assert failed and all(runs[c, FILE_DESIGNS[0]].system.machine.vmstat[
        "thp_split_page_failed"] == 1 for c in failed)
