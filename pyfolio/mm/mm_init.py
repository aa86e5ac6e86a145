"""Booting the simulated machine: its RAM goes to the buddy allocator.

Models: mm/mm_init.c (v6.18): at boot, memblock_free_all() hands every free range of RAM to
the buddy allocator through __free_pages_core(), in the largest naturally aligned blocks.
Frame 0 stays reserved as the shared zero page (the simulator's choice of PFN).
"""

from __future__ import annotations

from pyfolio.mm.page_alloc import __free_pages
from pyfolio.sim.machine import Machine
from pyfolio.sim.units import MAX_PAGE_ORDER

__all__ = ["boot_machine", "free_pages_range"]


def boot_machine(ram_pages: int, device_pages: int = 0, thp: str = "madvise",
                 seed: int = 0) -> Machine:
    """A :class:`~pyfolio.sim.machine.Machine` with ``ram_pages`` of RAM, every frame but
    the zero page free in the buddy allocator (MmError(EINVAL) for a bad size or policy).

    >>> m = boot_machine(1024)
    >>> m.free_area.nr_free
    1023
    """
    m = Machine(ram_pages, device_pages, thp=thp, seed=seed)
    free_pages_range(m, 1, ram_pages)
    return m


def free_pages_range(m: Machine, start: int, end: int) -> None:
    """Free frames [start, end) as the largest aligned blocks (memblock_free_pages at boot).

    Models: mm/mm_init.c:__free_pages_core() (boot) (v6.18).
    """
    pfn = start
    while pfn < end:
        order = MAX_PAGE_ORDER
        while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end):
            order -= 1
        __free_pages(m, pfn, order)
        pfn += 1 << order
