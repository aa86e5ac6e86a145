"""Shared look of every view: state colours, folio colours, an opaque white figure.

Every figure is created by :func:`new_figure` (fixed size, white opaque background, not
registered with pyplot, so a notebook shows it exactly once when displayed).
"""

from __future__ import annotations

from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

__all__ = ["STATE_COLORS", "STATE_LABELS", "STATES", "ORDER0_COLOR", "folio_color",
           "new_figure", "WHITE"]

WHITE = (1.0, 1.0, 1.0)

#: page states a region view distinguishes, in legend order
STATES = ("pmd", "pte", "zero", "migration", "device_private", "none", "novma")
STATE_LABELS = {
    "pmd": "PMD-mapped", "pte": "PTE-mapped", "zero": "zero page",
    "migration": "migration entry", "device_private": "device-private",
    "none": "not present", "novma": "no VMA",
}
STATE_COLORS = {
    "pmd": to_rgb("#1f4e9c"), "pte": to_rgb("#7fa7e0"), "zero": to_rgb("#f2e394"),
    "migration": to_rgb("#f08c1c"), "device_private": to_rgb("#8e44ad"),
    "none": WHITE, "novma": to_rgb("#d9d9d9"),
}
#: all order-0 folios share one colour; large folios get a distinct colour each
ORDER0_COLOR = to_rgb("#9fb7a0")
_LARGE_PALETTE = [to_rgb(c) for c in (
    "#1f77b4", "#2ca02c", "#d62728", "#17becf", "#bcbd22", "#e377c2", "#8c564b",
    "#393b79", "#637939", "#843c39", "#7b4173", "#3182bd")]


def folio_color(k: int, order: int) -> tuple[float, float, float]:
    """The colour of the ``k``-th distinct folio (in order of appearance) of ``order``."""
    if order == 0:
        return ORDER0_COLOR
    return _LARGE_PALETTE[k % len(_LARGE_PALETTE)]


def new_figure(width: float, height: float) -> Figure:
    """A fixed-size figure with an opaque white background (savefig keeps it white)."""
    fig = Figure(figsize=(width, height), dpi=100, facecolor="white")
    fig.patch.set_facecolor("white")
    fig.patch.set_alpha(1.0)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return fig
