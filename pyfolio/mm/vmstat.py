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
    nr_page_table_pages, nr_swapcached: pages in the swap cache, nr_writeback) and from the
    page caches (nr_file_pages, nr_shmem, nr_shmem_hugepages, nr_file_hugepages,
    nr_shmem_pmdmapped, nr_file_pmdmapped).

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
    d.update(_page_cache_gauges(m))
    d["nr_file_pages"] += swapcached  # add_to_swap_cache() counts NR_FILE_PAGES too
    return d


def _page_cache_gauges(m: Machine) -> dict[str, int]:
    """NR_FILE_PAGES, NR_SHMEM (pages); NR_SHMEM_THPS, NR_FILE_THPS (PMD-sized page-cache
    folios, shown in units of HPAGE_PMD_NR pages); NR_SHMEM_PMDMAPPED, NR_FILE_PMDMAPPED
    (those mapped by at least one PMD): what __filemap_add_folio(),
    shmem_add_to_page_cache(), __folio_split() and the file rmap functions keep."""
    from pyfolio.lib.xarray import xa_entries
    from pyfolio.mm.shmem import shmem_mapping
    from pyfolio.sim.units import HPAGE_PMD_ORDER

    out = dict.fromkeys(("nr_file_pages", "nr_shmem", "nr_shmem_hugepages",
                         "nr_file_hugepages", "nr_shmem_pmdmapped", "nr_file_pmdmapped"), 0)
    for mapping in m.mappings.values():
        kind = "shmem" if shmem_mapping(mapping) else "file"
        out["nr_file_pages"] += mapping.nrpages
        if kind == "shmem":
            out["nr_shmem"] += mapping.nrpages
        for _, order, pfn in xa_entries(mapping.i_pages):
            if order == HPAGE_PMD_ORDER and isinstance(pfn, int):  # not a swap entry
                out[f"nr_{kind}_hugepages"] += 1
                if int(m.mem._entire_mapcount[pfn]) >= 0:
                    out[f"nr_{kind}_pmdmapped"] += 1
    return out


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
