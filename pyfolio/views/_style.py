"""Shared look of every view: page width and type sizes, order and state colours, an opaque
white figure, and the check that a figure's text is legible on the page.

Every figure is created by :func:`new_figure` (fixed size, white opaque background, not
registered with pyplot, so a notebook shows it exactly once when displayed). Figures are
drawn for the book's main column: at most :data:`PAGE_WIDTH` inches wide at 100 dpi, text
at least :data:`MIN_FONT` points, so that :func:`min_text_px` (the smallest text as the page
shows it) is at least :data:`MIN_TEXT_PX`.

One colour per folio order (:data:`ORDER_COLORS`) is used by every view that colours folios
(the folio strip, the region strip, the players): neighbouring orders, which a split
produces side by side, differ in hue.
"""

from __future__ import annotations

import io

from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = ["STATE_COLORS", "STATE_LABELS", "STATES", "ORDER_COLORS", "order_color",
           "ink_on", "new_figure", "WHITE", "PAGE_WIDTH", "PAGE_WIDTH_PX", "MIN_FONT",
           "MIN_TEXT_PX", "min_text_px", "figure_px", "wrap_title", "TITLE_LINE"]

#: inches one more line of a 9-pt title takes
TITLE_LINE = 0.17

WHITE = (1.0, 1.0, 1.0)
#: the widest figure, in inches at 100 dpi, that the page shows at its own size
PAGE_WIDTH = 6.6
#: the book's main column at a 1280-pixel-wide window
PAGE_WIDTH_PX = 688
#: the smallest font size a view uses (points): 7 pt is 9.7 px at 100 dpi
MIN_FONT = 7.0
#: the smallest rendered text size the book accepts (pixels)
MIN_TEXT_PX = 9.0

#: page states a region view distinguishes, in legend order
STATES = ("pmd", "pte", "zero", "migration", "device_private", "device_exclusive", "none",
          "novma", "swap")
STATE_LABELS = {
    "pmd": "PMD-mapped", "pte": "PTE-mapped", "zero": "zero page",
    "migration": "migration entry", "device_private": "device-private",
    "device_exclusive": "device-exclusive", "none": "not present", "novma": "no VMA",
    "swap": "swap entry",
}
STATE_COLORS = {
    "pmd": to_rgb("#1f4e9c"), "pte": to_rgb("#7fa7e0"), "zero": to_rgb("#f2e394"),
    "migration": to_rgb("#f08c1c"), "device_private": to_rgb("#8e44ad"),
    "device_exclusive": to_rgb("#006d77"), "none": WHITE, "novma": to_rgb("#d9d9d9"),
    "swap": to_rgb("#c0392b"),
}
#: one colour per folio order 0..10; none is a state colour above or a free-frame grey, and
#: neighbouring orders differ in hue (a buddy-style split leaves orders 8, 7, 6, 5, 4 side by side)
ORDER_COLORS = tuple(to_rgb(c) for c in (
    "#9fb7a0",  # 0 sage
    "#c49c94",  # 1 tan
    "#e377c2",  # 2 pink
    "#8c564b",  # 3 brown
    "#17becf",  # 4 cyan
    "#d62728",  # 5 red
    "#2ca02c",  # 6 green
    "#aec7e8",  # 7 light blue
    "#bcbd22",  # 8 olive
    "#1f4e9c",  # 9 dark blue (a PMD-sized THP)
    "#f7b6d2",  # 10 light pink
))


def order_color(order: int) -> tuple[float, float, float]:
    """The colour of a folio of ``order`` (0..10) in every view."""
    return ORDER_COLORS[min(max(order, 0), len(ORDER_COLORS) - 1)]


def ink_on(color: tuple[float, ...]) -> str:
    """Black or white, whichever reads better on ``color`` (by relative luminance)."""
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(float(c)) for c in color[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.18 else "white"


def wrap_title(text: str, width: float = PAGE_WIDTH, fontsize: float = 9.0) -> str:
    """``text`` broken into lines that fit ``width`` inches at ``fontsize`` (a title wider
    than its figure would widen the saved image, and the page would shrink all of it).

    >>> wrap_title("PMD for 0x7effffe00000 after migration: " + "x" * 80).count("\\n")
    1
    """
    import textwrap

    per_line = max(20, int(width * 72 / (fontsize * 0.6)))
    return "\n".join(line for part in text.split("\n")
                     for line in (textwrap.wrap(part, per_line) or [""]))


def new_figure(width: float, height: float) -> Figure:
    """A fixed-size figure with an opaque white background (savefig keeps it white)."""
    fig = Figure(figsize=(width, height), dpi=100, facecolor="white")
    fig.patch.set_facecolor("white")
    fig.patch.set_alpha(1.0)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return fig


def figure_px(fig: Figure) -> tuple[int, int]:
    """The size in pixels of the PNG a notebook shows for ``fig`` (saved at its dpi with
    ``bbox_inches="tight"``, as the inline backend does)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight", facecolor="white")
    w, h = Image.open(buf).size
    return int(w), int(h)


def _drawn_texts(fig: Figure) -> list[Text]:
    """The non-empty, visible text artists of ``fig`` that get drawn (tick labels only of
    axes that show their axis)."""
    out: list[Text] = list(fig.texts)
    for leg in fig.legends:
        out += [*leg.get_texts(), leg.get_title()]
    for ax in fig.axes:
        out += [*ax.texts, ax.title, ax._left_title, ax._right_title]  # type: ignore[attr-defined]
        legend = ax.get_legend()
        if legend is not None:
            out += [*legend.get_texts(), legend.get_title()]
        for table in ax.tables:
            out += [cell.get_text() for cell in table.get_celld().values()]
        if ax.axison:
            for axis in (ax.xaxis, ax.yaxis):
                out.append(axis.label)
                out += [t for t in axis.get_ticklabels(which="both") if t.get_visible()]
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None:
        out.append(suptitle)
    return [t for t in out if t.get_visible() and t.get_text().strip()]


def min_text_px(fig: Figure, column_px: int = PAGE_WIDTH_PX) -> float:
    """The smallest text of ``fig`` in pixels as the book's page shows it: font size at the
    figure's dpi, scaled down when the image is wider than the column."""
    width, _ = figure_px(fig)
    scale = min(1.0, column_px / width)
    sizes = [float(t.get_fontsize()) for t in _drawn_texts(fig)]
    return min(sizes) * fig.dpi / 72 * scale if sizes else float("inf")
