"""Migration cost explorer: pick a region size and a backing, see what migrating it costs.

The view is :func:`pyfolio.views.migration_cost.cost_view` (both backings side by side, the
chosen one solid); the numbers come from the simulator's cost counters, measured on a fresh
machine per choice (cached). ``static_figure()`` is the same view for print.

The explorer has only ``len(sizes) * 2`` pictures, and drawing one (three log-scale panels)
takes 150-400 ms, so it draws them all when it is made and a click only swaps the PNG: the
backing toggle and the size slider answer in milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.views.migration_cost import BACKINGS, cost_view
from pyfolio.widgets._common import App, Message, png

__all__ = ["CostExplorer", "cost_explorer", "cost_png"]


class CostExplorer(App):
    """The migration cost explorer app (see :func:`cost_explorer`)."""

    def __init__(self, sizes: Sequence[int] = (2, 4, 8), size: int = 2,
                 backing: str = "thp") -> None:
        self.size = widgets.SelectionSlider(options=list(sizes), value=size,
                                            description="region MiB")
        self.backing = widgets.ToggleButtons(options=[("4 KiB pages", "4k"), ("THP", "thp")],
                                             value=backing, description="backing")
        self.message = Message()
        self.image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.size.observe(lambda _: self.redraw(), "value")
        self.backing.observe(lambda _: self.redraw(), "value")
        super().__init__([widgets.HBox([self.size, self.backing]), self.message, self.image])
        for mib in sizes:  # every picture now, so that no click waits for one
            for b in BACKINGS:
                cost_png(mib, b)
        self.redraw()

    def static_figure(self) -> Figure:
        """The cost view for the current choice (the picture the widget shows)."""
        return cost_view(self.size.value, self.backing.value)

    def redraw(self) -> None:
        self.image.value = cost_png(self.size.value, self.backing.value)
        self.message.ok(f"{self.size.value} MiB of "
                        f"{'THPs' if self.backing.value == 'thp' else '4 KiB pages'} "
                        "migrated to the device and back")


@lru_cache(maxsize=64)
def cost_png(size_mib: int, backing: str) -> bytes:
    """The explorer's picture for one choice, as PNG (drawn once per process)."""
    return png(cost_view(size_mib, backing))


def cost_explorer(sizes: Sequence[int] = (2, 4, 8), size: int = 2,
                  backing: str = "thp") -> CostExplorer:
    """A widget: a region size (MiB) and a backing ("4k" or "thp"); shows the page-table
    entries written, TLB flushes and pages copied to migrate the region to a dmirror device
    and back, for both backings. ``.static_figure()`` gives the same view for print."""
    return CostExplorer(sizes, size, backing)
