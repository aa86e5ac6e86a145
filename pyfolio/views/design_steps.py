"""The two split-fallback designs, one step at a time: the call stack behind each event.

:func:`draw_design_step` draws a :class:`pyfolio.reading.review.DesignStep` as one column per
design: the kernel-modelled functions on the stack, from migrate_vma_split_unmapped_folio()
down to the one that emitted the event. Functions only one design passes through are
filled orange; functions both share are blue; a function of the book's exercise (not in
any kernel tree, :mod:`pyfolio.reading.file_designs`) is drawn with a dashed edge and
marked "[book]". Feed it to :func:`pyfolio.views.animate` to step through a whole split.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from pyfolio.reading.file_designs import DESIGN_TITLES
from pyfolio.reading.review import DesignStep
from pyfolio.views._style import PAGE_WIDTH, TITLE_LINE, new_figure, wrap_title

__all__ = ["draw_design_step", "ONLY_HERE", "SHARED"]

ONLY_HERE = "#f7c58f"
SHARED = "#dbe6f5"
_TITLES = {"unmapped-param": "unmapped-param: v7 patch 11/16 (Oct 2025)",
           "split-unmapped-folio": "split-unmapped-folio: merged (Nov 2025)"}
_FILE_TITLES = {**_TITLES, **DESIGN_TITLES}


def draw_design_step(step: DesignStep, designs: Sequence[str] | None = None, *,
                     title: str | None = None) -> Figure:
    """One column per design (all of ``step``'s by default), two to a row: the call stack
    of the event. Column titles name the anonymous designs by their patch, or (when any
    function of the book's exercise is on a stack) the file-backed designs of the exercise."""
    names = list(designs) if designs is not None else [d for d, _ in step.stacks]
    ncols = min(len(names), 2)
    grid = [names[i:i + ncols] for i in range(0, len(names), ncols)]
    depth_of = [max([len(step.stack(d)) for d in row] + [3]) for row in grid]
    gap = 0.35  # inches above a second row of panels, for their titles
    width = PAGE_WIDTH / 2 * ncols
    title = wrap_title(title if title is not None else step.label, width, 9.5)
    top = 0.6 + TITLE_LINE * title.count("\n")
    heights = [0.36 * (n + 1.2) for n in depth_of]
    height = top + 0.15 + sum(heights) + gap * (len(grid) - 1)
    fig = new_figure(width, height)
    book = any(f.endswith(" [book]") for _, s in step.stacks for f in s)
    titles = _FILE_TITLES if book else _TITLES
    others = {d: {f for e, s in step.stacks if e != d for f in s} for d, _ in step.stacks}
    for k, design in enumerate(names):
        r, c = divmod(k, ncols)
        rows = depth_of[r]
        top_edge = height - top - sum(heights[:r]) - gap * r
        ax = fig.add_axes((c / ncols + 0.01, (top_edge - heights[r]) / height,
                           1 / ncols - 0.02, heights[r] / height))
        ax.set_xlim(0, 1)
        ax.set_ylim(-rows - 0.9, 0.6)
        ax.set_axis_off()
        ax.set_title(titles.get(design, design), fontsize=8, loc="left")
        for depth, fn in enumerate(step.stack(design)):
            only = len(step.stacks) > 1 and fn not in others[design]
            ours = fn.endswith(" [book]")
            x = 0.02 + 0.05 * depth
            ax.add_patch(FancyBboxPatch((x, -depth - 0.4), 0.96 - x, 0.8,
                                        boxstyle="round,pad=0.0,rounding_size=0.08",
                                        facecolor=ONLY_HERE if only else SHARED,
                                        edgecolor="#555555", linewidth=0.9 if ours else 0.6,
                                        linestyle="--" if ours else "-"))
            label = f"{fn.removesuffix(' [book]')}()" + ("  [book]" if ours else "")
            ax.text(x + 0.02, -depth, label, va="center", fontsize=7.5,
                    family="monospace", weight="bold" if only else "normal")
        ax.text(0.02, -rows - 0.4, f"emits: {step.event}", fontsize=8, style="italic")
    fig.suptitle(title, x=0.01, y=1 - 0.05 / height,
                 va="top", ha="left", fontsize=9.5)
    return fig
