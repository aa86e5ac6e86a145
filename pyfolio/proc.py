"""What /proc shows: pagemap, smaps, kpageflags, kpagecount, vmstat, for the simulator.

Models: fs/proc/task_mmu.c (pagemap_pmd_range(), pte_to_pagemap_entry(),
smaps_pte_range()), fs/proc/page.c (stable_page_flags(), kpagecount_read()) and
mm/vmstat.c (v6.18), with the bit layouts of Documentation/admin-guide/mm/pagemap.rst,
so the same scenario can be read from the simulator and from a running kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .folio import Folio, folio_test_anon, folio_test_large, page_folio
from .memmap import PG, PGTY, ZONE_DEVICE
from .mm_types import VM, MMStruct
from .pgtable import (
    _PAGE_PRESENT,
    _PAGE_SOFT_DIRTY,
    _PAGE_SPECIAL,
    _PAGE_SWP_SOFT_DIRTY,
    _PAGE_SWP_UFFD_WP,
    _PAGE_UFFD_WP,
    is_device_private_entry,
    is_migration_entry,
    pmd_leaf,
    pte_dirty,
    pte_pfn,
    swp_offset,
    swp_type,
    walk,
)
from .units import HPAGE_PMD_NR, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["PagemapEntry", "pagemap", "smaps", "KPF", "kpageflags", "kpagecount", "vmstat",
           "PM_PRESENT", "PM_SWAP", "PM_FILE", "PM_MMAP_EXCLUSIVE", "PM_SOFT_DIRTY"]

PM_PFRAME_MASK = (1 << 55) - 1
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56
PM_UFFD_WP = 1 << 57
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63
MAX_SWAPFILES_SHIFT = 5

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


@dataclass(frozen=True, slots=True)
class PagemapEntry:
    """One 64-bit /proc/PID/pagemap record, decoded."""

    raw: int

    @property
    def present(self) -> bool:
        return bool(self.raw & PM_PRESENT)

    @property
    def swapped(self) -> bool:
        return bool(self.raw & PM_SWAP)

    @property
    def pfn(self) -> int:
        return self.raw & PM_PFRAME_MASK if self.present else 0

    @property
    def exclusive(self) -> bool:
        return bool(self.raw & PM_MMAP_EXCLUSIVE)

    @property
    def soft_dirty(self) -> bool:
        return bool(self.raw & PM_SOFT_DIRTY)

    @property
    def file_shared(self) -> bool:
        return bool(self.raw & PM_FILE)


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


def _is_zero(m: Machine, pfn: int) -> bool:
    return pfn == m.zero_pfn or (m.huge_zero_pfn >= 0 and
                                 pfn & ~(HPAGE_PMD_NR - 1) == m.huge_zero_pfn)


def _pagemap_one(m: Machine, mm: MMStruct, addr: int) -> int:
    """One record: pagemap_pte_hole(), pte_to_pagemap_entry() or the PMD branch of
    pagemap_pmd_range(), by what the walk finds at ``addr``."""
    vma = mm.find_vma(addr)
    if vma is None:
        return 0  # pagemap_pte_hole() outside any VMA: an empty record
    flags = PM_SOFT_DIRTY if vma.vm_flags & VM.SOFTDIRTY else 0
    w = walk(m, mm.pgd, addr)
    raw = w.raw
    if raw == 0 or w.level not in ("pte", "pmd") or (w.level == "pmd" and raw & _PAGE_PRESENT
                                                      and not pmd_leaf(raw)):
        return flags  # pagemap_pte_hole() or pte_none(): only the VMA's soft-dirty
    idx = (addr & (PMD_SIZE - 1)) >> PAGE_SHIFT if w.level == "pmd" else 0
    if raw & _PAGE_PRESENT:
        return flags | _pagemap_present(m, raw, w.level == "pmd", idx)
    return flags | _pagemap_swap(m, raw, idx)


def _pagemap_present(m: Machine, raw: int, pmd: bool, idx: int) -> int:
    """A present PTE or PMD leaf; ``idx`` is the page's index under the PMD.

    The PTE path takes its page from vm_normal_page() (none for the zero page and special
    PTEs); the PMD path from pmd_page() (also for the huge zero folio, which is not anon:
    PM_FILE). Exclusive is folio_precise_page_mapcount() == 1 (CONFIG_PAGE_MAPCOUNT) of
    that page: for a PMD, of its first page for all 512 records (6.18 passes ``page``,
    not ``page + idx``, to __folio_page_mapped_exclusively()).
    """
    pfn = pte_pfn(raw)
    flags = PM_PRESENT | (pfn + idx)
    if raw & _PAGE_SOFT_DIRTY:
        flags |= PM_SOFT_DIRTY
    if raw & _PAGE_UFFD_WP:
        flags |= PM_UFFD_WP
    if not pmd and (raw & _PAGE_SPECIAL or pfn == m.zero_pfn):
        return flags  # vm_normal_page() gives no page
    if not folio_test_anon(page_folio(m, pfn)):
        flags |= PM_FILE
    if precise_page_mapcount(m, pfn) == 1:
        flags |= PM_MMAP_EXCLUSIVE
    return flags


def _pagemap_swap(m: Machine, raw: int, idx: int) -> int:
    """A swap-format PTE or PMD: type and offset in the frame bits, the offset of a PMD
    entry advanced by the page index; never PM_MMAP_EXCLUSIVE (only with PM_PRESENT since
    v6.10, da7f31ed0f4d)."""
    t, off = swp_type(raw), swp_offset(raw)
    flags = PM_SWAP | ((t | ((off + idx) << MAX_SWAPFILES_SHIFT)) & PM_PFRAME_MASK)
    if raw & _PAGE_SWP_SOFT_DIRTY:
        flags |= PM_SOFT_DIRTY
    if raw & _PAGE_SWP_UFFD_WP:
        flags |= PM_UFFD_WP
    if (is_migration_entry(raw) or is_device_private_entry(raw)) and not folio_test_anon(
            page_folio(m, off)):
        flags |= PM_FILE
    return flags


def pagemap(mm: MMStruct, addr: int, n: int) -> list[PagemapEntry]:
    """/proc/PID/pagemap - ``n`` records from ``addr`` (fs/proc/task_mmu.c:pagemap_read()).

    Models: fs/proc/task_mmu.c:pagemap_read() (v6.18).

    Present: PFN in bits 0-54 (the simulator reads as root), exclusive (bit 56) when the
    page is mapped exactly once. Migration and device-private entries read as swapped
    (bit 62) with the swap type and offset (the PFN; page by page under a PMD) in the
    frame bits, never exclusive. Soft-dirty (bit 55) when the entry is or the VMA has
    VM_SOFTDIRTY, which every new mapping has: with CONFIG_MEM_SOFT_DIRTY=y every record
    in a VMA shows it until clear_refs. (A kernel built without it, like the lab's
    6.18.44 firecracker kernel, never shows bit 55.) No VMA: an all-zero record.
    """
    return [PagemapEntry(_pagemap_one(mm.m, mm, addr + i * PAGE_SIZE)) for i in range(n)]


def smaps(mm: MMStruct) -> list[dict[str, int]]:
    """/proc/PID/smaps - per VMA, sizes in kB (fs/proc/task_mmu.c:show_smap()).

    Models: fs/proc/task_mmu.c:show_smap() (v6.18).

    ``Rss`` counts mapped pages except the zero pages (vm_normal_page() gives none), and
    device-private pages (smaps_pte_entry() finds their page through the swap entry);
    ``AnonHugePages`` counts PMD-mapped THPs only; Shared/Private split by mapcount.
    """
    m, out = mm.m, []
    for vma in mm.vmas:
        d = dict.fromkeys(("Size", "Rss", "Pss", "Shared_Clean", "Shared_Dirty",
                           "Private_Clean", "Private_Dirty", "Referenced", "Anonymous",
                           "AnonHugePages"), 0)
        d["Start"], d["End"] = vma.vm_start, vma.vm_end
        d["Size"] = (vma.vm_end - vma.vm_start) // 1024
        pss = 0.0
        addr = vma.vm_start
        while addr < vma.vm_end:
            w = walk(m, mm.pgd, addr)
            step = PMD_SIZE if w.level == "pmd" and (pmd_leaf(w.raw) or (
                w.raw and not w.raw & _PAGE_PRESENT)) else PAGE_SIZE
            if w.level in ("pgd", "pud") or (w.level == "pmd" and not w.raw):
                addr = (addr | ((PMD_SIZE if w.level == "pmd" else 1 << 30) - 1)) + 1
                continue
            raw = w.raw
            if raw and (raw & _PAGE_PRESENT or is_device_private_entry(raw)):
                pfn = pte_pfn(raw) if raw & _PAGE_PRESENT else swp_offset(raw)
                if not (raw & _PAGE_PRESENT and raw & _PAGE_SPECIAL) and not _is_zero(m, pfn):
                    kb = step // 1024
                    mapcount = max(1, precise_page_mapcount(m, pfn))
                    head = page_folio(m, pfn).pfn
                    # smaps_pte_entry(): pte_dirty() (D or SavedDirty) of a present entry
                    dirty = bool(raw & _PAGE_PRESENT) and pte_dirty(raw) \
                        or m.mem.test(head, PG.dirty)
                    key = ("Shared_" if mapcount > 1 else "Private_")
                    key += "Dirty" if dirty else "Clean"
                    d["Rss"] += kb
                    d[key] += kb
                    d["Anonymous"] += kb
                    d["Referenced"] += kb if raw & 0x20 else 0
                    pss += kb / mapcount
                    if step == PMD_SIZE and raw & _PAGE_PRESENT:
                        d["AnonHugePages"] += kb
            addr += step
        d["Pss"] = int(pss)
        out.append(d)
    return out


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
                 "swapcache", "unevictable", "reserved", "writeback", "mlocked"):
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
    if _is_zero(m, pfn):
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
    online page there).
    """
    return [_kpageflags_one(m, int(p)) for p in pfns]


def kpagecount(m: Machine, pfns: list[int] | range) -> list[int]:
    """/proc/kpagecount - folio_precise_page_mapcount() per PFN (fs/proc/page.c).

    Models: fs/proc/page.c:kpagecount_read() (v6.18). ZONE_DEVICE frames read as 0, as
    in kpageflags.
    """
    return [precise_page_mapcount(m, int(p)) if 0 <= int(p) < m.mem.nr
            and int(m.mem.zone[int(p)]) != ZONE_DEVICE else 0 for p in pfns]


def vmstat(m: Machine) -> dict[str, int]:
    """/proc/vmstat - the event counters plus a few gauges computed from the memmap
    (nr_free_pages, nr_anon_pages, nr_anon_transparent_hugepages: PMD-mapped THPs only,
    nr_page_table_pages).

    Models: mm/vmstat.c:vmstat_show() (v6.18)."""
    mem = m.mem
    heads = [Folio(m, int(p)) for p in (mem.flags & PG.head).nonzero()[0]]
    thps = sum(1 for f in heads if int(mem._entire_mapcount[f.pfn]) >= 0
               and f.pfn != m.huge_zero_pfn and folio_test_anon(f))
    d = dict(m.vmstat)
    d.update(nr_free_pages=m.free_area.nr_free, nr_anon_transparent_hugepages=thps,
             nr_page_table_pages=len(m.pgtables), nr_anon_pages=_nr_anon_pages(m))
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
