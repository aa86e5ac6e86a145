"""/proc/PID/pagemap and /proc/PID/smaps: what a process's page tables map, per page and
per VMA; and the RSS lines of /proc/PID/status.

Models: fs/proc/task_mmu.c (v6.18): pagemap_pmd_range(), pte_to_pagemap_entry(),
smaps_pte_range(), show_smap(), task_mem(), with the bit layouts of
Documentation/admin-guide/mm/pagemap.rst, so the same scenario can be read from the
simulator and from a running kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_SOFT_DIRTY,
    _PAGE_SPECIAL,
    _PAGE_SWP_SOFT_DIRTY,
    _PAGE_SWP_UFFD_WP,
    _PAGE_UFFD_WP,
    pmd_leaf,
    pte_dirty,
    pte_pfn,
    swp_offset,
    swp_type,
    walk,
)
from pyfolio.fs.proc.internal import is_zero_pfn, precise_page_mapcount
from pyfolio.include.linux.mm import folio_test_anon, get_mm_counter, page_folio
from pyfolio.include.linux.mm_types import (
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    VM,
    MMStruct,
)
from pyfolio.include.linux.swapops import is_device_private_entry, is_migration_entry
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["PagemapEntry", "pagemap", "smaps", "task_mem", "PM_PRESENT", "PM_SWAP", "PM_FILE",
           "PM_MMAP_EXCLUSIVE", "PM_SOFT_DIRTY"]

PM_PFRAME_MASK = (1 << 55) - 1
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56
PM_UFFD_WP = 1 << 57
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63
MAX_SWAPFILES_SHIFT = 5


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
                if not (raw & _PAGE_PRESENT and raw & _PAGE_SPECIAL) and not is_zero_pfn(m, pfn):
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


def task_mem(mm: MMStruct) -> dict[str, int]:
    """task_mem() - the RSS lines of /proc/PID/status, in kB: VmRSS (anon + file + shmem),
    RssAnon, RssFile, RssShmem (MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES) and VmSwap
    (MM_SWAPENTS), each ``pages << (PAGE_SHIFT - 10)``.

    Models: fs/proc/task_mmu.c:task_mem() (v6.18; the kernel reads the per-CPU counters,
    get_mm_counter_sum() in the newest tree; the simulator's are exact). The other lines
    (VmPeak, VmSize, VmHWM, VmData, VmPTE, ...) are not modelled.

    >>> from pyfolio import System, MiB
    >>> m = System(ram="16M"); p, a = m.spawn_with_thp()
    >>> task_mem(p.mm)
    {'VmRSS': 2048, 'RssAnon': 2048, 'RssFile': 0, 'RssShmem': 0, 'VmSwap': 0}
    """
    kb = PAGE_SHIFT - 10
    anon, file = get_mm_counter(mm, MM_ANONPAGES), get_mm_counter(mm, MM_FILEPAGES)
    shmem, swap = get_mm_counter(mm, MM_SHMEMPAGES), get_mm_counter(mm, MM_SWAPENTS)
    return {"VmRSS": (anon + file + shmem) << kb, "RssAnon": anon << kb,
            "RssFile": file << kb, "RssShmem": shmem << kb, "VmSwap": swap << kb}
