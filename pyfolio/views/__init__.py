"""Views: pure functions from model state or a trace to a matplotlib Figure, a networkx
graph or an HTML animation. Views read the model through public accessors and never
change it. Every figure has a fixed size and an opaque white background, and is not
registered with pyplot (display it, or save it; closing is optional).

- :func:`region_strip` - a process's address range, by folio and state
- :func:`folio_strip` - physical frames, by folio order, with heads and free frames
- :func:`pagetable_graph` / :func:`draw_pagetable` - the walk of one address
- :func:`entry_bits` - one 64-bit entry as bit fields (:func:`entry_key`: its key as text)
- :func:`count_panel` / :func:`count_timeline` - a folio's counts now and over steps
- :func:`rmap_graph` / :func:`draw_rmap` - who maps a folio
- :func:`record` / :class:`Snapshot` - frames over a scenario; :func:`record_events` -
  frames inside one operation, at named trace events
- :func:`animate` / :func:`before_after` - a JavaScript player and a still for print
- :func:`draw_step` - one recorded frame: its region and/or frames, with its counts
- :func:`swap_cells` / :func:`draw_swap_map` - the slots of a swap area, by what holds them;
  :func:`record_swap` / :func:`draw_swap_frame` - a swap scenario step by step
- :func:`page_cache_strip` / :func:`draw_page_cache` - a file's page cache by folio order;
  :func:`record_page_cache` - its pictures over a sequence of operations
"""

from pyfolio.views.animate import animate, before_after, render, stack
from pyfolio.views.counts import changed_steps, count_panel, count_timeline
from pyfolio.views.entry import entry_bits, entry_fields, entry_key
from pyfolio.views.folio_strip import FrameCells, draw_frames, folio_strip, frame_cells
from pyfolio.views.frames import (
    FolioCounts,
    Snapshot,
    Step,
    folio_counts,
    record,
    record_events,
    snapshot,
)
from pyfolio.views.page_cache import draw_page_cache, page_cache_strip, record_page_cache
from pyfolio.views.pagetable import address_fields, draw_pagetable, pagetable_graph
from pyfolio.views.region import RegionCells, draw_cells, region_cells, region_strip
from pyfolio.views.rmap import draw_rmap, rmap_graph
from pyfolio.views.step_view import counts_line, draw_step
from pyfolio.views.swap_map import (
    SwapCells,
    SwapFrame,
    draw_swap_frame,
    draw_swap_map,
    record_swap,
    swap_cells,
)

__all__ = [
    "region_strip", "region_cells", "draw_cells", "RegionCells",
    "folio_strip", "frame_cells", "draw_frames", "FrameCells",
    "pagetable_graph", "draw_pagetable", "address_fields",
    "entry_bits", "entry_fields", "entry_key",
    "count_panel", "count_timeline", "changed_steps",
    "rmap_graph", "draw_rmap",
    "Snapshot", "FolioCounts", "Step", "record", "record_events", "snapshot", "folio_counts",
    "animate", "before_after", "render", "stack", "draw_step", "counts_line",
    "swap_cells", "draw_swap_map", "SwapCells", "SwapFrame", "record_swap",
    "draw_swap_frame",
    "page_cache_strip", "draw_page_cache", "record_page_cache",
]
