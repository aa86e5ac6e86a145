"""/proc/vmstat: the event counters and a few gauges.

Models: mm/vmstat.c (v6.18): vmstat_show() over the counters the simulator keeps
(:data:`pyfolio.sim.machine.VMSTAT_COUNTERS`, named as in vmstat_text[]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import Folio, folio_test_anon, folio_test_large
from pyfolio.sim.memmap import PG

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["vmstat"]


def vmstat(m: Machine) -> dict[str, int]:
    """/proc/vmstat - the event counters plus a few gauges computed from the memmap
    (nr_free_pages, nr_anon_pages, nr_anon_transparent_hugepages: PMD-mapped THPs only,
    nr_page_table_pages, nr_swapcached: pages in the swap cache, nr_writeback).

    Models: mm/vmstat.c:vmstat_show() (v6.18)."""
    mem = m.mem
    heads = [Folio(m, int(p)) for p in (mem.flags & PG.head).nonzero()[0]]
    thps = sum(1 for f in heads if int(mem._entire_mapcount[f.pfn]) >= 0
               and f.pfn != m.huge_zero_pfn and folio_test_anon(f))
    d = dict(m.vmstat)
    sc = (mem.flags & PG.swapcache).nonzero()[0]
    swapcached = int(sum(1 << int(mem.order[p]) if mem.flags[p] & PG.head else 1 for p in sc))
    d.update(nr_free_pages=m.free_area.nr_free, nr_anon_transparent_hugepages=thps,
             nr_page_table_pages=len(m.pgtables), nr_anon_pages=_nr_anon_pages(m),
             nr_swapcached=swapcached, nr_writeback=sum(
                 Folio(m, p).nr_pages for p in m.swap_writeback))
    return d


def _nr_anon_pages(m: Machine) -> int:
    """NR_ANON_MAPPED: pages of anon folios that are mapped at least once."""
    mem = m.mem
    n = 0
    anon = (mem.mapping & 1) == 1
    for pfn in anon.nonzero()[0]:
        folio = Folio(m, int(pfn))
        if folio_test_large(folio):
            if int(mem._entire_mapcount[folio.pfn]) >= 0:
                n += folio.nr_pages
            else:
                n += int((mem._mapcount[folio.pfn: folio.pfn + folio.nr_pages] >= 0).sum())
        elif mem._mapcount[pfn] >= 0:
            n += 1
    return n
