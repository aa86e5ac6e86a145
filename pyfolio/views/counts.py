"""Count panel and count timeline: a folio's reference and map counts, now and over steps.

The panel shows refcount, folio_mapcount, entire mapcount, folio_expected_ref_count() and
pincount as bars, and the per-page mapcounts as a strip (a 16 x 32 grid for a PMD-sized
folio). The timeline plots the same numbers over recorded frames and marks each step where
they changed with the events that changed them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from pyfolio.include.linux.mm import Folio
from pyfolio.views._style import new_figure
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
    fig = new_figure(7.5, 2.6)
    ax = fig.add_axes((0.20, 0.15, 0.38, 0.70))
    if c is None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no folio mapped here", ha="center", va="center")
        fig.suptitle(title or "", fontsize=9)
        return fig
    vals = [getattr(c, k) for k, _ in COUNT_NAMES]
    y = np.arange(len(vals))[::-1]
    ax.barh(y, vals, color=_COLORS)
    ax.set_yticks(y, [lbl for _, lbl in COUNT_NAMES], fontsize=8)
    for yi, v in zip(y, vals, strict=True):
        ax.text(v, yi, f" {v}", va="center", fontsize=8)
    ax.set_xlim(0, max(max(vals), 1) * 1.25)
    ax.tick_params(axis="x", labelsize=7)
    mc = np.array(c.page_mapcounts)
    ax2 = fig.add_axes((0.63, 0.15, 0.34, 0.70))
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
    pinned = " maybe DMA-pinned" if c.maybe_dma_pinned else ""
    fig.suptitle(title or f"folio {c.pfn:#x} order {c.order}{pinned}", fontsize=9)
    return fig


def count_timeline(frames: Sequence[Snapshot], *, title: str | None = None) -> Figure:
    """The watched folio's counts over recorded frames (symlog scale, so 1 and 512 both
    read); steps where they changed are shaded and listed below with the events that
    explain the change."""
    changed = changed_steps(frames)
    notes = [f"{i} {frames[i].label}: " + (", ".join(frames[i].why()[:3]) or
                                             frames[i].error or "(no traced event)")
             for i in changed][:8]
    fig = new_figure(9.0, 3.0 + 0.16 * len(notes))
    bottom = (0.35 + 0.16 * len(notes)) / (3.0 + 0.16 * len(notes))
    ax = fig.add_axes((0.07, bottom, 0.70, 0.88 - bottom))
    xs = np.arange(len(frames))
    for (k, lbl), col in zip(COUNT_NAMES, _COLORS, strict=True):
        ys = [getattr(f.counts, k) if f.counts else np.nan for f in frames]
        ax.step(xs, ys, where="mid", color=col, label=lbl, marker="o", ms=3, alpha=0.85)
    for i in changed:
        ax.axvspan(i - 0.5, i + 0.5, color="#fff2b3", zorder=0)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xticks(xs, [f"{i} {f.label}" for i, f in enumerate(frames)], fontsize=7,
                  rotation=15, ha="right")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlim(-0.5, len(frames) - 0.5)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.text(0.07, 0.02, "\n".join(notes), fontsize=7, va="bottom", color="#5a4300")
    fig.suptitle(title or "folio counts per step (shaded: changed)", fontsize=9)
    return fig


def changed_steps(frames: Sequence[Snapshot]) -> list[int]:
    """Indices of frames whose folio counts differ from the previous frame's."""
    def key(f: Snapshot) -> tuple[int, ...] | None:
        return f.counts.key() if f.counts else None

    return [i for i in range(1, len(frames)) if key(frames[i]) != key(frames[i - 1])]
