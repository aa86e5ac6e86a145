"""One recorded frame as one figure, for step-through players of any scenario.

:func:`draw_step` shows whatever the :class:`~pyfolio.views.frames.Snapshot` watched: the
region (page tables, :func:`draw_cells`) above the physical frames (memmap,
:func:`draw_frames`), each titled with the watched folio's counts. Use it as the ``draw``
of :func:`animate`: ``animate(frames, draw_step)``.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from pyfolio.views._style import new_figure
from pyfolio.views.animate import stack
from pyfolio.views.folio_strip import draw_frames
from pyfolio.views.frames import Snapshot
from pyfolio.views.region import draw_cells

__all__ = ["draw_step", "counts_line"]


def counts_line(f: Snapshot) -> str:
    """The watched folio's counts in one line ("" if no folio is watched)."""
    c = f.counts
    if c is None:
        return "no folio"
    return (f"folio {c.pfn:#x}: order {c.order}, refcount {c.refcount}, mapcount "
            f"{c.mapcount}, entire mapcount {c.entire_mapcount}, pincount {c.pincount}")


def draw_step(f: Snapshot) -> Figure:
    """The frame's region (page tables) and/or frames (memmap); the first is titled with
    the watched folio's counts (or the step's error)."""
    extra = f"\nerror: {f.error}" if f.error else (f"\n{counts_line(f)}" if f.counts else "")
    figs = []
    if f.cells is not None:
        figs.append(draw_cells(f.cells, title=f"page tables after {f.label}{extra}"))
        extra = ""
    if f.frames is not None:  # under a region, whose key already names the orders
        figs.append(draw_frames(f.frames, title=f"memmap after {f.label}{extra}",
                                legend=f.cells is None))
    if not figs:
        fig = new_figure(6.0, 0.6)
        fig.text(0.01, 0.5, f"{f.label}{extra}", va="center", fontsize=8)
        return fig
    return figs[0] if len(figs) == 1 else stack(*figs)
