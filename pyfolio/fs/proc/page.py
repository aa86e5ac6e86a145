"""/proc/kpageflags and /proc/kpagecount: what the kernel tells about each page frame.

Models: fs/proc/page.c (v6.18): stable_page_flags(), kpageflags_read(), kpagecount_read(),
with the bit layout of Documentation/admin-guide/mm/pagemap.rst.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.fs.proc.internal import is_zero_pfn, precise_page_mapcount
from pyfolio.include.linux.mm import folio_test_anon, folio_test_large, page_folio
from pyfolio.sim.memmap import PG, PGTY, ZONE_DEVICE

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["KPF", "kpageflags", "kpagecount"]

#: /proc/kpageflags bits: the stable ones (include/uapi/linux/kernel-page-flags.h) and the
#: kernel-hacking ones (include/linux/kernel-page-flags.h, 32-42). There is no
#: anon-exclusive bit: PG_anon_exclusive is an alias of PG_owner_2, which
#: stable_page_flags() copies from the *folio's* flags as KPF_OWNER_2, so a tail page
#: shows its head's bit (per-page exclusivity is not visible in /proc; pagemap's bit 56,
#: PM_MMAP_EXCLUSIVE, is "mapped exactly once", another thing).
KPF = {"LOCKED": 0, "ERROR": 1, "REFERENCED": 2, "UPTODATE": 3, "DIRTY": 4, "LRU": 5,
       "ACTIVE": 6, "SLAB": 7, "WRITEBACK": 8, "RECLAIM": 9, "BUDDY": 10, "MMAP": 11,
       "ANON": 12, "SWAPCACHE": 13, "SWAPBACKED": 14, "COMPOUND_HEAD": 15,
       "COMPOUND_TAIL": 16, "HUGE": 17, "UNEVICTABLE": 18, "HWPOISON": 19, "NOPAGE": 20,
       "KSM": 21, "THP": 22, "OFFLINE": 23, "ZERO_PAGE": 24, "IDLE": 25, "PGTABLE": 26,
       "RESERVED": 32, "MLOCKED": 33, "OWNER_2": 34, "PRIVATE": 35, "PRIVATE_2": 36,
       "OWNER_PRIVATE": 37, "ARCH": 38, "UNCACHED": 39, "SOFTDIRTY": 40, "ARCH_2": 41,
       "ARCH_3": 42}


def _kpageflags_one(m: Machine, pfn: int) -> int:
    if not 0 <= pfn < m.mem.nr:
        return 1 << KPF["NOPAGE"]
    mem = m.mem
    if int(mem.zone[pfn]) == ZONE_DEVICE:
        return 0  # kpage_read(): pfn_to_online_page() is NULL for ZONE_DEVICE memory
    if mem.page_type[pfn] == PGTY.buddy:
        return 1 << KPF["BUDDY"]
    if mem.page_type[pfn] == PGTY.table:
        return 1 << KPF["PGTABLE"]
    if int(mem.compound_head[pfn]) == -1 and not mem._refcount[pfn] and not mem.test(
            pfn, PG.reserved):
        return 0  # a free tail of a buddy block: no flags
    folio = page_folio(m, pfn)
    f = int(mem.flags[folio.pfn])
    u = 0
    for name in ("locked", "referenced", "uptodate", "dirty", "lru", "active", "swapbacked",
                 "swapcache", "unevictable", "reserved", "writeback", "mlocked", "reclaim",
                 "private"):
        if f & PG[name]:
            u |= 1 << KPF[name.upper()]
    if folio_test_anon(folio):
        u |= 1 << KPF["ANON"]
    if folio.mapcount > 0:
        u |= 1 << KPF["MMAP"]
    if f & PG.anon_exclusive:  # PG_owner_2 of the folio, as stable_page_flags() copies it
        u |= 1 << KPF["OWNER_2"]
    if folio_test_large(folio):
        u |= 1 << KPF["COMPOUND_HEAD" if pfn == folio.pfn else "COMPOUND_TAIL"]
    if is_zero_pfn(m, pfn):
        u |= 1 << KPF["ZERO_PAGE"]
        if pfn != m.zero_pfn:
            u |= 1 << KPF["THP"]
    elif folio_test_large(folio):
        u |= 1 << KPF["THP"]
    return u


def kpageflags(m: Machine, pfns: list[int] | range) -> list[int]:
    """/proc/kpageflags - KPF_* bits per PFN (fs/proc/page.c:stable_page_flags()).

    Models: fs/proc/page.c:kpageflags_read() (v6.18).

    Large anon folios of any order show THP; every page of the huge zero folio shows THP
    and ZERO_PAGE (not RESERVED; the 4 KiB zero page shows ZERO_PAGE and RESERVED); free
    pages show BUDDY on the first page of each free block; every page of a folio whose
    head is PageAnonExclusive shows OWNER_2 (PG_anon_exclusive is PG_owner_2, copied from
    the folio's flags). ZONE_DEVICE frames read as 0 (pfn_to_online_page() finds no
    online page there). A page-cache folio shows PRIVATE while the file system has
    buffers on it (ext4), and OWNER_2 for PG_mappedtodisk (the same bit as
    PG_anon_exclusive): ext4 readahead sets it on folios whose blocks are all on disk.
    """
    return [_kpageflags_one(m, int(p)) for p in pfns]


def kpagecount(m: Machine, pfns: list[int] | range) -> list[int]:
    """/proc/kpagecount - folio_precise_page_mapcount() per PFN (fs/proc/page.c).

    Models: fs/proc/page.c:kpagecount_read() (v6.18). ZONE_DEVICE frames read as 0, as
    in kpageflags.
    """
    return [precise_page_mapcount(m, int(p)) if 0 <= int(p) < m.mem.nr
            and int(m.mem.zone[int(p)]) != ZONE_DEVICE else 0 for p in pfns]
