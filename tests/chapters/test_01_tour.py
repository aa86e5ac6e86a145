"""The claims of chapters/01-tour.md, checked through the same pyfolio calls."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import ROOT, glued
from pyfolio import KiB, MiB, System, folio_mapcount, folio_ref_count

CHAPTER = ROOT / "chapters/01-tour.md"


def _thp_faulted() -> tuple[System, Any, int]:
    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp(4 * MiB)
    return m, p, a


def test_thp_fault_maps_one_order9_folio_with_one_pmd() -> None:
    m, p, a = _thp_faulted()
    f = p.folio_at(a)
    assert p.lookup(a).level == "pmd"
    assert (f.order, f.nr_pages) == (9, 512)
    assert m.vmstat()["thp_fault_alloc"] == 1
    assert folio_ref_count(f) == 1
    assert folio_mapcount(f) == 1
    assert m.check() == []


def test_every_page_of_the_range_is_in_the_same_folio() -> None:
    m, p, a = _thp_faulted()
    head = p.folio_at(a).pfn
    assert all(p.folio_at(a + i * 4 * KiB).pfn == head for i in range(0, 512, 37))


def test_mprotect_of_one_page_splits_the_pmd_not_the_folio() -> None:
    m, p, a = _thp_faulted()
    f = p.folio_at(a)
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    assert p.lookup(a).level == "pte"
    assert m.vmstat()["thp_split_pmd"] == 1
    f2 = p.folio_at(a)
    assert (f2.pfn, f2.order) == (f.pfn, 9)
    assert folio_mapcount(f2) == 512
    assert m.check() == []


def test_region_strip_draws_each_2mib_block_as_a_16_by_32_grid_of_pages() -> None:
    import numpy as np

    from pyfolio.views import region_cells, region_strip

    m, p, a = _thp_faulted()
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    fig = region_strip(p, a, 4 * MiB)
    img = fig.axes[0].images[0].get_array()
    assert img.shape[:2] == (16, 2 * 32 + 1)  # two blocks, one blank column apart
    labels = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "PTE table" in labels and "PMD none" in labels
    c = region_cells(p, a, 4 * MiB)
    assert c.pmd_kind == ("table", "none")
    assert list(np.flatnonzero(c.readonly)) == [1]
    assert set(c.states()[512:]) == {"none"}


@pytest.mark.notebook
@pytest.mark.xdist_group("01-tour")  # the chapter's stem: same worker as its notebook test
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    import numpy as np

    from pyfolio.views import region_cells, region_strip

    g = glued(CHAPTER)
    m, p, a = _thp_faulted()
    f = p.folio_at(a)
    assert (g["tour_order"], g["tour_nr_pages"]) == (f.order, f.nr_pages)
    assert (g["tour_refcount"], g["tour_mapcount"]) == (folio_ref_count(f), folio_mapcount(f))
    assert g["tour_fault_alloc"] == m.vmstat()["thp_fault_alloc"]
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    f2 = p.folio_at(a)
    assert g["tour_split_pmd"] == m.vmstat()["thp_split_pmd"]
    assert (g["tour_order_after"], g["tour_mapcount_after"]) == (f2.order, folio_mapcount(f2))
    cells = region_cells(p, a, 4 * MiB)
    rows, width = region_strip(p, a, 4 * MiB).axes[0].images[0].get_array().shape[:2]
    blocks = len(cells.pmd_kind)
    assert g["tour_blocks"] == blocks
    assert (g["tour_rows"], g["tour_cols"]) == (rows, (width - (blocks - 1)) // blocks)
    assert g["tour_cells"] == g["tour_rows"] * g["tour_cols"] == f.nr_pages
    assert g["tour_ro_page"] == int(np.flatnonzero(cells.readonly)[0])
