"""Every figure the book shows is legible at the page's width, and has no blank band.

A figure is shown as the PNG the notebook saved (its dpi, ``bbox_inches="tight"``), scaled
down when wider than the main column (688 px at a 1280-px window). Its smallest text, as the
page shows it, must be at least 9 px (:func:`pyfolio.views._style.min_text_px`), and no run of
white rows inside it (between its title and its last drawing) may be taller than 45 px: the
blank band the old memory maps left under their titles.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import partial

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pyfolio import KiB, MiB, System  # noqa: E402
from pyfolio.views._style import (  # noqa: E402
    MIN_TEXT_PX,
    ORDER_COLORS,
    PAGE_WIDTH_PX,
    STATE_COLORS,
    figure_px,
    min_text_px,
)

MAX_BAND_PX = 45


def blank_band_px(fig: Figure) -> int:
    """The tallest run of all-white rows between the first and the last non-white row of
    the PNG the page shows."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight", facecolor="white")
    img = np.asarray(Image.open(buf).convert("L"))
    inked = np.flatnonzero((img < 245).any(axis=1))
    if len(inked) < 2:
        return 0
    gaps = np.diff(inked) - 1
    return int(gaps.max())


def _thp() -> tuple[System, object, int]:
    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp(4 * MiB)
    return m, p, a


def _region_after_mprotect() -> Figure:
    from pyfolio.views import region_strip

    m, p, a = _thp()
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    return region_strip(p, a, 4 * MiB)


def _split(order: int = 4) -> tuple[System, object, int, int]:
    from pyfolio.mm.huge_memory_split import split_mapped_folio

    m, p, a = _thp()
    head = p.folio_at(a).pfn
    split_mapped_folio(m.machine, head, order, uniform=False, at=300)
    return m, p, a, head


def _region_after_split() -> Figure:
    from pyfolio.views import region_strip

    m, p, a, _ = _split()
    return region_strip(p, a, 4 * MiB)


def _frames_after_split() -> Figure:
    from pyfolio.views import folio_strip

    m, p, a, head = _split()
    return folio_strip(m, range(head, head + 512))


def _big_region(length: int) -> Figure:
    from pyfolio.views import region_strip

    m = System(ram="1G", thp="always", seed=0)
    p = m.spawn()
    a = p.mmap(length)
    p.touch(a, min(length, 8 * MiB))
    return region_strip(p, a, length)


def _buddy_64() -> Figure:
    from pyfolio.mm.page_alloc import alloc_pages
    from pyfolio.views import folio_strip

    m = System(ram="16M", seed=0)
    alloc_pages(m.machine, 0), alloc_pages(m.machine, 1)
    return folio_strip(m, range(0, 64))


def _entries() -> list[tuple[str, Callable[[], Figure]]]:
    from pyfolio.arch.x86.pgtable import pfn_pte
    from pyfolio.include.linux.swapops import make_writable_migration_entry
    from pyfolio.views import entry_bits

    def pmd() -> Figure:
        m, p, a = _thp()
        return entry_bits(p.lookup(a))

    return [("entry_pte", lambda: entry_bits(pfn_pte(0x42, 0x867))),
            ("entry_pmd_leaf", pmd),
            ("entry_migration", lambda: entry_bits(make_writable_migration_entry(0x1234)))]


def _timeline() -> Figure:
    from pyfolio.widgets import fork_cow_scenario, refcount_watcher

    w = refcount_watcher(partial(fork_cow_scenario, pin_before_fork=False))
    w.run()
    return w.static_figure()


def _counts() -> Figure:
    from pyfolio.views import count_panel

    m, p, a = _thp()
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    return count_panel(p.folio_at(a))


def _walk() -> Figure:
    from pyfolio.views import draw_pagetable

    m, p, a = _thp()
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    return draw_pagetable(p, a + 8 * KiB)


def _rmap() -> Figure:
    from pyfolio.views import draw_rmap

    m, p, a = _thp()
    p.fork()
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    return draw_rmap(p.folio_at(a))


def _step() -> Figure:
    from pyfolio.views import draw_step, record

    m, p, a = _thp()
    head = p.folio_at(a).pfn
    frames = record(m, [("mprotect", lambda: p.mprotect(a + 4 * KiB, 4 * KiB, "r"))],
                    proc=p, addr=a, pfn=head, pfns=range(head, head + 512))
    return draw_step(frames[1])


def _design_step() -> Figure:
    from pyfolio.reading.review import DESIGNS, design_steps, fallback_scenario
    from pyfolio.views.design_steps import draw_design_step

    runs = [fallback_scenario(d) for d in DESIGNS]
    return draw_design_step(design_steps(*runs)[2])


def _file_review() -> Figure:
    from pyfolio.widgets.design_review import file_design_review
    review = file_design_review("memfd-eof", seed=0)
    review.all.value = True  # three designs: two columns, then a row below
    review.step.value = 3
    return review.static_figure()


def _page_cache() -> Figure:
    from pyfolio.exercises.ch13_large_folios_in_the_page_cache import thp_file
    from pyfolio.views import page_cache_strip
    m, p, fd = thp_file("shmem")
    p.fallocate(fd, "punch_hole", 800 * KiB, 4 * KiB)
    p.ftruncate(fd, 261 * 4 * KiB)
    return page_cache_strip(p, fd)


def _agreement() -> Figure:
    from pyfolio.kernel_lab.compare import agreement_figure

    return agreement_figure({"thp-fault": {"agree": 5, "differ": 0, "not modelled": 1},
                             "fork-cow": {"agree": 7, "differ": 1, "not modelled": 0}},
                            "simulator and kernel, step by step")


def _swap() -> list[tuple[str, Callable[[], Figure]]]:
    from pyfolio.views import draw_swap_frame, draw_swap_map, record_swap, swap_cells

    def paged_out() -> tuple[System, object, int]:
        m = System(ram="64M", seed=0)
        m.swapon("64M", "block")
        p, a = m.spawn_with_thp()
        p.madvise(a, 2 * MiB, "pageout")
        return m, p, a

    def frame() -> Figure:
        m = System(ram="64M", seed=0)
        m.swapon("64M", "block")
        p, a = m.spawn_with_thp()
        frames = record_swap(m, p, a, [("MADV_PAGEOUT",
                                        lambda: p.madvise(a, 2 * MiB, "pageout"))])
        return draw_swap_frame(frames[-1])

    return [("swap_map", lambda: draw_swap_map(swap_cells(paged_out()[0].swap_area))),
            ("swap_frame", frame)]


def _costs() -> list[tuple[str, Callable[[], Figure]]]:
    from pyfolio.views.migration_cost import cost_sweep, cost_view, draw_costs

    return [("cost_view", lambda: cost_view(2, "thp")),
            ("draw_costs", lambda: draw_costs(cost_sweep(["2M", "4M"])))]


def _widgets() -> list[tuple[str, Callable[[], Figure]]]:
    import pyfolio.widgets as w
    from pyfolio.widgets.design_review import design_review
    from pyfolio.widgets.migration_cost import cost_explorer

    def walker() -> Figure:
        m, p, a = _thp()
        return w.address_walker(p, a, 4 * MiB).static_figure()

    return [("buddy_explorer", lambda: w.buddy_explorer().static_figure()),
            ("folio_inspector", lambda: w.folio_inspector().static_figure()),
            ("fault_explorer", lambda: w.fault_explorer().static_figure()),
            ("split_explorer", lambda: w.split_explorer().static_figure()),
            ("pmd_remap_viewer", lambda: w.pmd_remap_viewer().static_figure()),
            ("device_fault_explorer", lambda: w.device_fault_explorer().static_figure()),
            ("driver_explorer", lambda: w.driver_explorer().static_figure()),
            ("design_review", lambda: design_review().static_figure()),
            ("cost_explorer", lambda: cost_explorer().static_figure()),
            ("swap_explorer", lambda: w.swap_explorer().static_figure()),
            ("page_cache_explorer", lambda: w.page_cache_explorer().static_figure()),
            ("file_design_review", _file_review),
            ("address_walker", walker)]


FIGURES: list[tuple[str, Callable[[], Figure]]] = [
    ("region_after_mprotect", _region_after_mprotect),
    ("region_after_split", _region_after_split),
    ("region_16MiB", lambda: _big_region(16 * MiB)),
    ("region_aggregated", lambda: _big_region(64 * MiB)),
    ("frames_after_split", _frames_after_split),
    ("frames_buddy_64", _buddy_64),
    *_entries(),
    ("count_panel", _counts),
    ("count_timeline", _timeline),
    ("pagetable", _walk),
    ("rmap", _rmap),
    ("draw_step", _step),
    ("design_step", _design_step),
    ("page_cache_strip", _page_cache),
    ("agreement", _agreement),
    *_costs(),
    *_swap(),
    *_widgets(),
]


@pytest.mark.parametrize("make", [f for _, f in FIGURES], ids=[n for n, _ in FIGURES])
def test_figure_fits_the_page_and_its_text_is_legible(make: Callable[[], Figure]) -> None:
    fig = make()
    width, _ = figure_px(fig)
    assert width <= PAGE_WIDTH_PX, f"{width} px wide: the page would shrink it"
    assert min_text_px(fig) >= MIN_TEXT_PX
    assert blank_band_px(fig) <= MAX_BAND_PX


def test_min_text_px_sees_small_text_and_scaling() -> None:
    from pyfolio.views._style import new_figure

    small = new_figure(4, 1)
    small.text(0.1, 0.5, "tiny", fontsize=5)
    assert min_text_px(small) == pytest.approx(5 * 100 / 72)
    wide = new_figure(13.76, 1)  # twice the column: shown at half size
    wide.text(0.1, 0.5, "x", fontsize=10)
    wide.text(0.9, 0.5, "y", fontsize=10)
    assert min_text_px(wide) == pytest.approx(10 * 100 / 72 * 688 / figure_px(wide)[0])


def test_one_colour_per_order_and_no_state_colour_among_them() -> None:
    """Orders 0..10 all differ, neighbouring orders clearly (a split puts them side by side),
    and no order takes the colour of a page state a region strip shows."""
    from matplotlib.colors import rgb_to_hsv

    assert len(set(ORDER_COLORS)) == 11
    states = {STATE_COLORS[s] for s in ("zero", "migration", "device_private", "none", "novma")}
    assert not states & set(ORDER_COLORS)
    for a, b in zip(ORDER_COLORS, ORDER_COLORS[1:], strict=False):
        hue = abs(rgb_to_hsv(a)[0] - rgb_to_hsv(b)[0])
        dist = np.abs(np.array(a) - np.array(b)).sum()
        assert dist > 0.35 or min(hue, 1 - hue) > 0.1, (a, b)


def test_folio_strip_and_region_strip_use_the_same_order_colours() -> None:
    from pyfolio.views import frame_cells, region_cells
    from pyfolio.views.folio_strip import legend_entries
    from pyfolio.views.region import _page_colors

    m, p, a, head = _split()
    for col, label in legend_entries(frame_cells(m.machine, range(head, head + 512))):
        assert col == ORDER_COLORS[int(label.split()[1])], label
    cells = region_cells(p, a, 2 * MiB)
    rgb, folios = _page_colors(cells)
    assert sorted(set(folios.values())) == [4, 5, 6, 7, 8]
    assert all(tuple(rgb[i]) == ORDER_COLORS[int(cells.order[i])] for i in range(512))


LONG = ("PMD for 0x7effffe00000 after migration: PMD device_private pfn=0x4400 "
        "[write soft_dirty] raw=0xe7ffffffff7fe002")


@pytest.mark.parametrize("make", [
    lambda: __import__("pyfolio.views", fromlist=["entry_bits"]).entry_bits(
        0xe7ffffffff7fe002, "pmd", title=LONG),
    lambda: __import__("pyfolio.views", fromlist=["count_panel"]).count_panel(
        _thp()[1].folio_at(_thp()[2]), title=LONG),
    lambda: __import__("pyfolio.views", fromlist=["region_strip"]).region_strip(
        *_thp()[1:], 2 * MiB, title=LONG),
], ids=["entry_bits", "count_panel", "region_strip"])
def test_a_long_title_wraps_instead_of_widening_the_figure(make: Callable[[], Figure]) -> None:
    fig = make()
    assert figure_px(fig)[0] <= PAGE_WIDTH_PX and min_text_px(fig) >= MIN_TEXT_PX
    assert "\n" in fig.get_suptitle()


def test_player_captions_wrap_inside_the_picture() -> None:
    """A long step label is wrapped: the caption band's right edge stays white."""
    import base64
    import re

    from PIL import Image

    from pyfolio.views import animate, draw_step, record

    m, p, a = _thp()
    frames = record(m, [(LONG, lambda: None)], proc=p, addr=a)
    html = animate(frames, draw_step).data.replace("\\\n", "")  # JS line continuations
    png = base64.b64decode(re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)[1])
    img = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    band = img[:40]  # the caption's lines
    assert (band < 200).any() and (band[:, -6:] > 245).all()
