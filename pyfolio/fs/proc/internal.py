"""Helpers the /proc files share.

Models: fs/proc/internal.h (v6.18): folio_precise_page_mapcount(), which pagemap, smaps and
kpagecount read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import folio_test_large, page_folio
from pyfolio.sim.memmap import PGTY
from pyfolio.sim.units import HPAGE_PMD_NR

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["precise_page_mapcount", "is_zero_pfn"]


def precise_page_mapcount(m: Machine, pfn: int) -> int:
    """folio_precise_page_mapcount() - PTE mappings of the page plus PMD mappings of its folio.

    Models: fs/proc/internal.h:folio_precise_page_mapcount() (v6.18).
    """
    if m.mem.page_type[pfn] != PGTY.none:
        return 0
    folio = page_folio(m, pfn)
    n = int(m.mem._mapcount[pfn]) + 1
    if folio_test_large(folio):
        n += int(m.mem._entire_mapcount[folio.pfn]) + 1
    return n


def is_zero_pfn(m: Machine, pfn: int) -> bool:
    """Whether ``pfn`` is the 4 KiB zero page or a page of the huge zero folio."""
    return pfn == m.zero_pfn or (m.huge_zero_pfn >= 0 and
                                 pfn & ~(HPAGE_PMD_NR - 1) == m.huge_zero_pfn)
