"""Widgets: thin ipywidgets apps wiring controls to pyfolio operations and views.

Each app is a function returning an ``ipywidgets.VBox`` subclass with a Reset button, errors
shown as a message (never a traceback), and ``.static_figure()`` giving the same picture as
a matplotlib Figure for the static site and the PDF. Callbacks are plain methods, so tests
drive the apps by setting control values and calling ``button.click()``.
"""

from pyfolio.widgets.address_walk import AddressWalker, address_walker
from pyfolio.widgets.buddy_explorer import BuddyExplorer, buddy_explorer
from pyfolio.widgets.device_fault import DeviceFaultExplorer, device_fault_explorer
from pyfolio.widgets.driver_explorer import DriverExplorer, driver_explorer
from pyfolio.widgets.fault_explorer import FaultExplorer, fault_explorer
from pyfolio.widgets.folio_inspector import FolioInspector, folio_inspector
from pyfolio.widgets.page_cache_explorer import PageCacheExplorer, page_cache_explorer
from pyfolio.widgets.pmd_remap import PmdRemapViewer, pmd_remap_frames, pmd_remap_viewer
from pyfolio.widgets.refcount_watcher import (
    RefcountWatcher,
    Scenario,
    fork_cow_scenario,
    refcount_watcher,
)
from pyfolio.widgets.split_explorer import SplitExplorer, split_explorer
from pyfolio.widgets.swap_explorer import SwapExplorer, swap_explorer

__all__ = [
    "split_explorer", "SplitExplorer", "pmd_remap_viewer", "PmdRemapViewer", "pmd_remap_frames",
    "device_fault_explorer", "DeviceFaultExplorer", "refcount_watcher", "RefcountWatcher",
    "Scenario", "fork_cow_scenario", "address_walker", "AddressWalker",
    "buddy_explorer", "BuddyExplorer", "folio_inspector", "FolioInspector",
    "fault_explorer", "FaultExplorer", "swap_explorer", "SwapExplorer",
    "page_cache_explorer", "PageCacheExplorer",
    "driver_explorer", "DriverExplorer",
]
