"""Views: pure functions from model state or a trace to a matplotlib Figure, a networkx
graph or an HTML animation. Views read the model through public accessors and never
change it.
"""

from .region import RegionCells, region_cells, region_strip

__all__ = ["RegionCells", "region_cells", "region_strip"]
