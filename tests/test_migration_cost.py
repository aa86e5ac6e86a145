"""pyfolio.views.migration_cost: src/dst decoding and tables, step frames, the cost model and
its figures (white, unregistered, and no change to the machine they read)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from pyfolio import MiB, System
from pyfolio.mm.debug_vm import snapshot as machine_snapshot
from pyfolio.mm.migrate_device import MIGRATE_VMA_SELECT, MigrateVma, migrate_pfn, migrate_vma_setup
from pyfolio.sim.errors import MmError
from pyfolio.views import render
from pyfolio.views.migration_cost import (
    cost_sweep,
    cost_view,
    draw_costs,
    draw_step,
    migration_cost,
    migration_frames,
    mpfn_str,
    mpfn_table,
)


def _white_corner(fig: object) -> bool:
    px = render(fig)  # type: ignore[arg-type]
    return bool((px[0, 0] == 255).all())


def test_mpfn_str_decodes_pfn_and_flags() -> None:
    assert mpfn_str(0) == "0"
    assert mpfn_str(0x2) == "MIGRATE"
    assert mpfn_str(0x2 | 0x10) == "MIGRATE|COMPOUND"
    assert mpfn_str(migrate_pfn(0x200) | 0x2 | 0x8 | 0x10) == \
        "PFN 0x200, VALID|MIGRATE|WRITE|COMPOUND"


def test_mpfn_table_rows_gap_and_escaped_pipes() -> None:
    src = [migrate_pfn(5) | 0x2 | 0x8, 0, 0, 0x2]
    dst = [migrate_pfn(9) | 0x8, 0, 0, migrate_pfn(10)]
    lines = mpfn_table({"src": src, "dst": dst}, [0, 3], start=0x1000).splitlines()
    assert lines[0] == "| i | address | src | dst |"
    assert lines[2] == r"| 0 | 0x1000 | PFN 0x5, VALID\|MIGRATE\|WRITE | PFN 0x9, VALID\|WRITE |"
    assert lines[3].startswith("| … |")
    assert lines[4] == "| 3 | 0x4000 | MIGRATE | PFN 0xa, VALID |"


def test_migration_frames_label_each_step_and_draw() -> None:
    m = System(ram="64M", seed=0)
    dev = m.add_device("dmirror0", memory="4M")
    p, a = m.spawn_with_thp()
    args = MigrateVma(p.vma_at(a), a, a + 2 * MiB, pgmap_owner=dev.driver,
                      flags=MIGRATE_VMA_SELECT.SYSTEM | MIGRATE_VMA_SELECT.COMPOUND)
    frames = migration_frames(m, p, a, args, [("setup", partial(migrate_vma_setup, args))])
    assert [f.label.split(":")[0] for f in frames] == ["start", "setup"]
    assert frames[0].label == "start: PMD huge; src[0] -; dst[0] -"
    assert "PMD migration; src[0] PFN 0x" in frames[1].label and "COMPOUND" in frames[1].label
    assert frames[1].cells is not None and frames[1].cells.states() == ["migration"] * 512
    before = machine_snapshot(m.machine)
    fig = draw_step(frames[1])
    assert machine_snapshot(m.machine) == before and _white_corner(fig)


def test_migration_cost_counts_and_caches() -> None:
    there, back = migration_cost(2 * MiB, "thp")
    assert (there.pmd_writes, there.tlb_flushes, there.pages_copied) == (2, 1, 512)
    assert (back.pmd_writes, back.tlb_flushes) == (2, 0)
    assert migration_cost(2 * MiB, "thp")[0] is there  # cached: same machine, same answer
    small = migration_cost(64 * 1024, "4k")[0]         # 4 KiB pages: any multiple of 4 KiB
    assert (small.pte_writes, small.tlb_flushes, small.pages_copied) == (32, 17, 16)


def test_migration_cost_errors() -> None:
    for size, backing in ((3 * MiB, "thp"), (0, "4k"), (2 * MiB, "huge")):
        with pytest.raises(MmError) as e:
            migration_cost(size, backing)
        assert e.value.errname == "EINVAL"
    with pytest.raises(MmError):
        cost_view(2, "huge")
    with pytest.raises(ValueError, match="at least one"):
        draw_costs([])


def test_cost_figures_are_white_and_labelled() -> None:
    rows = cost_sweep([2 * MiB], ("thp",))
    assert [r.direction for r in rows] == ["to device", "to system"]
    fig = draw_costs(rows, highlight=rows[0])
    assert [ax.get_title() for ax in fig.axes] == [
        "page-table entries written", "TLB flushes", "pages copied"]
    assert "device with 2 MiB pages" in fig.get_suptitle() and _white_corner(fig)
    view = cost_view(2, "thp")
    heights = [int(round(b.get_height())) for b in view.axes[1].patches]
    assert heights == [513, 0, 1, 0]      # TLB flushes: 4k to/back, THP to/back
    assert "chosen: THP" in view.get_suptitle() and _white_corner(view)
    assert np.isclose(view.get_facecolor()[3], 1.0)


def test_cost_explorer_redraws_on_a_choice() -> None:
    from pyfolio.widgets.migration_cost import cost_explorer

    w = cost_explorer(sizes=[2, 4], size=2, backing="thp")
    first = w.image.value
    assert first[:4] == b"\x89PNG" and "2 MiB of THPs" in w.message.text
    w.backing.value = "4k"
    assert w.image.value != first and "2 MiB of 4 KiB pages" in w.message.text
    assert w.static_figure().get_suptitle().endswith("(chosen: 4 KiB pages)")
