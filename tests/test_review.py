"""pyfolio.reading.review: branch counting from source, stacks at events, the fallback scenario;
pyfolio.views.design_steps and pyfolio.widgets.design_review."""

from __future__ import annotations

import ast

import pytest

from pyfolio.reading.review import (
    DESIGNS,
    body_of,
    branches_in,
    call_args,
    design_steps,
    fallback_scenario,
    find_function,
    flag_forwards,
    reader_load,
    traced_stacks,
)
from pyfolio.sim.units import MiB
from pyfolio.system import System
from pyfolio.views.design_steps import draw_design_step

SRC = '''
def f(a, u, xs):
    if u:
        return 1
    elif a and not u:
        pass
    while u and a:
        a -= 1
    y = 2 if u else 3
    g(a, flag=not u)
    return [x for x in xs if x and u] + [x for x in xs if x]

def g(a, flag):
    if a:
        pass
'''


def test_branches_in_counts_every_kind_and_filters_by_flag() -> None:
    f = ast.parse(SRC).body[0]
    every = branches_in(f, "f")
    assert [b.kind for b in every] == ["if", "elif", "while", "ternary", "comprehension",
                                       "comprehension"]
    on_u = branches_in(f, "f", "u")
    assert [(b.kind, b.test) for b in on_u] == [("if", "u"), ("elif", "a and (not u)"),
                                                ("while", "u and a"), ("ternary", "u"),
                                                ("comprehension", "x and u")]
    assert branches_in(ast.parse(SRC).body[1], "g", "u") == []


def test_find_function_looks_up_by_name_across_modules() -> None:
    fn = find_function("migrate_vma_split_unmapped_folio")
    assert fn.module == "pyfolio.mm.migrate_device" and "folio" in fn.params
    with pytest.raises(KeyError, match="no module-level function 'no_such_fn'"):
        find_function("no_such_fn")
    with pytest.raises(KeyError, match="does not call"):
        call_args("folio_split_unmapped", "remap_page")


def test_body_of_follows_private_helpers_only() -> None:
    names = [f.name for f in body_of("__folio_split")]
    assert names[0] == "__folio_split"
    assert all(n.startswith("_") and not n.startswith("__") for n in names[1:])
    assert "__folio_freeze_and_split_unmapped" not in names


def test_flag_forwards_lists_calls_passing_the_flag() -> None:
    fwd = flag_forwards(find_function("__folio_split"), "unmapped")
    assert fwd and all("unmapped" in c for c in fwd)
    assert reader_load("folio_split_unmapped", "unmapped").forwards == ()


def test_traced_stacks_records_the_same_events_as_an_untraced_run() -> None:
    def scenario(trace: bool) -> list[str]:
        m = System(ram="16M", thp="madvise", seed=0)
        p = m.spawn()
        a = p.mmap(4 * MiB)
        p.madvise(a, 2 * MiB, "hugepage")
        mark = m.trace.mark()
        if trace:
            _, events = traced_stacks(m, lambda: p.touch(a, 2 * MiB))
            assert events and all(e.stack for e in events if e.name ==
                                  "do_huge_pmd_anonymous_page")
            assert "emit" not in vars(m.trace)  # the wrapper is gone
        else:
            p.touch(a, 2 * MiB)
        return [str(e) for e in m.trace.since(mark)]
    assert scenario(True) == scenario(False)


def test_design_steps_refuses_runs_without_a_fallback() -> None:
    whole = fallback_scenario(DESIGNS[1], 0, thps=1, small_pages=0, large_pages=True)
    with pytest.raises(ValueError, match="0 fallback split"):
        design_steps(whole)


def test_draw_design_step_is_white_and_marks_design_only_functions() -> None:
    runs = [fallback_scenario(d, 0, thps=1, small_pages=0) for d in DESIGNS]
    step = design_steps(*runs)[1]
    fig = draw_design_step(step)
    assert fig.get_facecolor()[:3] == (1.0, 1.0, 1.0) and len(fig.axes) == 2
    bold = [t.get_text() for ax in fig.axes for t in ax.texts if t.get_weight() == "bold"]
    assert "folio_split_unmapped()" in bold and "__folio_split()" in bold
    assert "__folio_freeze_and_split_unmapped()" not in bold
    assert len(draw_design_step(step, [DESIGNS[0]]).axes) == 1


def test_design_review_widget_headless() -> None:
    from pyfolio.widgets.design_review import design_review

    w = design_review(seed=0, thps=1)
    first = w.image.value
    assert first and "same as split-unmapped-folio" in w.table.value
    w.design.value = DESIGNS[1]
    assert "folio_split_unmapped()" in w.table.value and w.image.value != first
    w.step.value = w.step.max
    w.both.value = True
    assert len(w.static_figure().axes) == 2
    w.reset_button.click()
    assert w.step.value == 2
