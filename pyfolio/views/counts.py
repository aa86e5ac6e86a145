"""Count panel and count timeline: a folio's reference and map counts, now and over steps.

The panel shows refcount, folio_mapcount, entire mapcount, folio_expected_ref_count() and
pincount as bars, and the per-page mapcounts as a strip (a 16 x 32 grid for a PMD-sized
folio). The timeline gives each count a row of its own over the recorded frames (two counts
with equal values never hide each other), writes every value, rings the values that changed
at a step, and lists the events behind each change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from pyfolio.include.linux.mm import Folio
from pyfolio.views._style import MIN_FONT, PAGE_WIDTH, TITLE_LINE, new_figure, wrap_title
from pyfolio.views.frames import FolioCounts, Snapshot, folio_counts

__all__ = ["count_panel", "count_timeline", "COUNT_NAMES"]

#: the bars of the panel / lines of the timeline, as FolioCounts attributes and labels
COUNT_NAMES = (("refcount", "refcount"), ("mapcount", "folio_mapcount"),
               ("entire_mapcount", "entire mapcount"), ("expected_refcount", "expected refs"),
               ("pincount", "pincount"))
_COLORS = ("#1f4e9c", "#2ca02c", "#8e44ad", "#7f7f7f", "#d62728")


def _counts(x: Folio | FolioCounts | Snapshot) -> FolioCounts | None:
    if isinstance(x, Folio):
        return folio_counts(x)
    if isinstance(x, Snapshot):
        return x.counts
    return x


def count_panel(x: Folio | FolioCounts | Snapshot, *, title: str | None = None) -> Figure:
    """The counts of a folio (or of a recorded frame's folio) as bars plus a mapcount strip."""
    c = _counts(x)
    if c is not None:
        pinned = " maybe DMA-pinned" if c.maybe_dma_pinned else ""
        title = title or f"folio {c.pfn:#x} order {c.order}{pinned}"
    title = wrap_title(title or "")
    extra = TITLE_LINE * title.count("\n")
    fig = new_figure(PAGE_WIDTH, 2.6 + extra)
    ax = fig.add_axes((0.21, 0.15 * 2.6 / (2.6 + extra), 0.36, 0.70 * 2.6 / (2.6 + extra)))
    if c is None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no folio mapped here", ha="center", va="center")
        fig.suptitle(title, fontsize=9)
        return fig
    vals = [getattr(c, k) for k, _ in COUNT_NAMES]
    y = np.arange(len(vals))[::-1]
    ax.barh(y, vals, color=_COLORS)
    ax.set_yticks(y, [lbl for _, lbl in COUNT_NAMES], fontsize=8)
    for yi, v in zip(y, vals, strict=True):
        ax.text(v, yi, f" {v}", va="center", fontsize=8)
    ax.set_xlim(0, max(max(vals), 1) * 1.25)
    ax.tick_params(axis="x", labelsize=MIN_FONT)
    mc = np.array(c.page_mapcounts)
    ax2 = fig.add_axes((0.63, 0.15 * 2.6 / (2.6 + extra), 0.34, 0.70 * 2.6 / (2.6 + extra)))
    cols = 32 if len(mc) >= 32 else len(mc)
    grid = np.full(-(-len(mc) // cols) * cols, np.nan)
    grid[:len(mc)] = mc
    ax2.imshow(grid.reshape(-1, cols), cmap="Greens", vmin=0, vmax=max(2, int(mc.max())),
               interpolation="nearest", aspect="equal")
    ax2.set_xticks([])
    ax2.set_yticks([])
    vals_, n = np.unique(mc, return_counts=True)
    ax2.set_title("per-page mapcount: " + ", ".join(f"{k}x{v}" for v, k in zip(vals_, n,
                                                                                strict=True)),
                  fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def count_timeline(frames: Sequence[Snapshot], *, title: str | None = None) -> Figure:
    """The watched folio's counts over recorded frames: one row per count (so two counts with
    the same values never hide each other), every value written, a ring on each value that
    changed at that step; the steps where any count changed are listed below with the events
    that explain the change."""
    changed = changed_steps(frames)
    notes = [f"{i} {frames[i].label}: " + (", ".join(frames[i].why()[:3]) or
                                             frames[i].error or "(no traced event)")
             for i in changed][:8]
    nrow, row_h, ticks_h = len(COUNT_NAMES), 0.4, 0.72
    notes_h = 0.16 * len(notes) + 0.1
    height = 0.35 + nrow * row_h + ticks_h + notes_h
    fig = new_figure(PAGE_WIDTH, height)
    left, right = 1.25 / PAGE_WIDTH, 0.97
    xs = np.arange(len(frames))
    for r, ((k, lbl), col) in enumerate(zip(COUNT_NAMES, _COLORS, strict=True)):
        bottom = (notes_h + ticks_h + (nrow - 1 - r) * row_h) / height
        ax = fig.add_axes((left, bottom, right - left, 0.8 * row_h / height))
        ys = np.array([getattr(f.counts, k) if f.counts else np.nan for f in frames], float)
        ax.step(xs, ys, where="mid", color=col, lw=1.5)
        moved = [i for i in range(1, len(frames))
                 if not (np.isnan(ys[i]) and np.isnan(ys[i - 1])) and ys[i] != ys[i - 1]]
        ax.plot(xs, ys, "o", ms=3, color=col)
        ax.plot(moved, ys[moved], "o", ms=9, mfc="none", mec=col, mew=1.2)
        finite = ys[~np.isnan(ys)]
        lo, hi = (finite.min(), finite.max()) if len(finite) else (0.0, 1.0)
        span = hi - lo or 1.0
        ax.set_ylim(lo - 0.25 * span, hi + 0.7 * span)
        for i, v in zip(xs, ys, strict=True):
            if not np.isnan(v):
                ax.annotate(f"{int(v)}", (i, v), xytext=(7, 3), textcoords="offset points",
                            fontsize=MIN_FONT, color="black")
        ax.set_xlim(-0.5, len(frames) - 0.5)
        ax.set_yticks([])
        ax.set_ylabel(lbl, rotation=0, ha="right", va="center", fontsize=7.5, color=col)
        ax.set_xticks(xs, [f"{i} {f.label}" for i, f in enumerate(frames)]
                      if r == nrow - 1 else [])
        ax.tick_params(axis="x", labelsize=MIN_FONT, length=2)
        for lab in ax.get_xticklabels():
            lab.set(rotation=20, ha="right")
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.grid(axis="x", color="#dddddd", lw=0.6)
    fig.text(0.01, 0.05 / height, "\n".join(notes), fontsize=MIN_FONT, va="bottom",
             color="#4a3700")
    fig.suptitle(title or "folio counts per step (ring: changed at that step; below: why)",
                 fontsize=9, x=0.01, ha="left", y=1 - 0.05 / height, va="top")
    return fig


def changed_steps(frames: Sequence[Snapshot]) -> list[int]:
    """Indices of frames whose folio counts differ from the previous frame's."""
    def key(f: Snapshot) -> tuple[int, ...] | None:
        return f.counts.key() if f.counts else None

    return [i for i in range(1, len(frames)) if key(frames[i]) != key(frames[i - 1])]
