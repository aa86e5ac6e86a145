"""/proc/PID/pagemap and /proc/PID/smaps: what a process's page tables map, per page and
per VMA; and the RSS lines of /proc/PID/status.

Models: fs/proc/task_mmu.c (v6.18): pagemap_pmd_range(), pte_to_pagemap_entry(),
smaps_pte_range(), smaps_account(), show_smap(), task_mem(), with the bit layouts of
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
    pmd_dirty,
    pmd_leaf,
    pmd_present,
    pte_dirty,
    pte_pfn,
    pte_present,
    pte_young,
    swp_offset,
    swp_type,
    walk,
)
from pyfolio.fs.proc.internal import is_zero_pfn, precise_page_mapcount
from pyfolio.include.linux.mm import (
    Folio,
    folio_is_zone_device,
    folio_nr_pages,
    folio_ref_count,
    folio_test_anon,
    get_mm_counter,
    page_folio,
)
from pyfolio.include.linux.mm_types import (
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    VM,
    MMStruct,
)
from pyfolio.include.linux.swapops import (
    is_device_private_entry,
    is_migration_entry,
    is_pfn_swap_entry,
    is_swap_pte,
    non_swap_entry,
    pte_to_swp_entry,
)
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA
    from pyfolio.sim.machine import Machine

__all__ = ["PagemapEntry", "pagemap", "smaps", "smaps_shmem_swap", "task_mem", "PM_PRESENT",
           "PM_SWAP", "PM_FILE",
           "PM_MMAP_EXCLUSIVE", "PM_SOFT_DIRTY", "PSS_SHIFT", "SMAPS_FIELDS", "MemSizeStats",
           "smaps_account", "smaps_page_accumulate", "smaps_pte_entry", "smaps_pmd_entry"]

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

    @property
    def swap_type(self) -> int:
        """The swap type in bits 0-4 of a swapped record (-1 when not swapped)."""
        return self.raw & ((1 << MAX_SWAPFILES_SHIFT) - 1) if self.swapped else -1

    @property
    def swap_offset(self) -> int:
        """The swap offset in bits 5-54 of a swapped record (-1 when not swapped)."""
        return (self.raw & PM_PFRAME_MASK) >> MAX_SWAPFILES_SHIFT if self.swapped else -1


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
    if pte_present(raw):  # pte_present() / pmd_present(): a PROT_NONE entry too
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


#: fs/proc/task_mmu.c: Pss is summed in fixed point, (bytes << PSS_SHIFT) / mapcount per page
PSS_SHIFT = 12

#: the fields show_smap() prints, in its order (all in kB); KSM, the hugetlb ones and Locked
#: are always 0 here: no KSM, hugetlb or mlock
SMAPS_FIELDS = ("Size", "KernelPageSize", "MMUPageSize", "Rss", "Pss", "Pss_Dirty",
                "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced",
                "Anonymous", "KSM", "LazyFree", "AnonHugePages", "ShmemPmdMapped",
                "FilePmdMapped", "Shared_Hugetlb", "Private_Hugetlb", "Swap", "SwapPss",
                "Locked")


@dataclass(slots=True)
class MemSizeStats:
    """struct mem_size_stats (fs/proc/task_mmu.c): sizes in bytes; the ``pss*`` sums in
    PSS_SHIFT fixed point. Only the fields the simulator can fill."""

    resident: int = 0
    shared_clean: int = 0
    shared_dirty: int = 0
    private_clean: int = 0
    private_dirty: int = 0
    referenced: int = 0
    anonymous: int = 0
    lazyfree: int = 0
    anonymous_thp: int = 0
    shmem_thp: int = 0
    file_thp: int = 0
    pss: int = 0
    pss_anon: int = 0
    pss_dirty: int = 0
    swap: int = 0
    swap_pss: int = 0


def smaps_page_accumulate(mss: MemSizeStats, folio: Folio, size: int, pss: int, dirty: bool,
                          private: bool) -> None:
    """smaps_page_accumulate() - add ``size`` bytes (``pss`` in fixed point) to Pss and to
    one of Shared/Private x Clean/Dirty.

    Models: fs/proc/task_mmu.c:smaps_page_accumulate() (v6.18). Dirty is the entry's dirty
    bit or PG_dirty; there is no VM_LOCKED here, so nothing goes to Locked.
    """
    mss.pss += pss
    if folio_test_anon(folio):
        mss.pss_anon += pss
    if dirty or folio.m.mem.test(folio.pfn, PG.dirty):
        mss.pss_dirty += pss
        if private:
            mss.private_dirty += size
        else:
            mss.shared_dirty += size
    elif private:
        mss.private_clean += size
    else:
        mss.shared_clean += size


def smaps_account(mss: MemSizeStats, m: Machine, pfn: int, compound: bool, young: bool,
                  dirty: bool, present: bool) -> None:
    """smaps_account() - account the page at ``pfn`` (the whole folio if ``compound``).

    Models: fs/proc/task_mmu.c:smaps_account() (v6.18) with CONFIG_PAGE_MAPCOUNT, as on
    the lab's 6.18.44 kernel. Anonymous and Rss take the whole size; LazyFree too when the
    folio is anon, not PG_swapbacked, and neither the entry nor the folio is dirty.
    Refcount 1 (mapped exactly once) or a non-present entry (a migration entry; a
    device-private PTE counts as present) takes the whole size at once, Private if present
    else Shared. Otherwise each page is weighed by its own
    folio_precise_page_mapcount(): Pss ``PAGE_SIZE / mapcount``, Private below 2, so a
    PMD-mapped THP whose page 2 the other process has COW-copied shows 511 shared pages and
    one private one. (With CONFIG_NO_PAGE_MAPCOUNT the kernel uses one average mapcount
    for the folio instead; not modelled.)
    """
    folio = page_folio(m, pfn)
    nr = folio_nr_pages(folio) if compound else 1
    size = nr * PAGE_SIZE
    if folio_test_anon(folio):
        mss.anonymous += size
        if not m.mem.test(folio.pfn, PG.swapbacked) and not dirty \
                and not m.mem.test(folio.pfn, PG.dirty):
            mss.lazyfree += size
    mss.resident += size
    if young or m.mem.test(folio.pfn, PG.referenced):
        mss.referenced += size
    if folio_ref_count(folio) == 1 or not present:
        smaps_page_accumulate(mss, folio, size, size << PSS_SHIFT, dirty, present)
        return
    for page in range(pfn, pfn + nr):
        mapcount = precise_page_mapcount(m, page)
        pss = PAGE_SIZE << PSS_SHIFT
        if mapcount >= 2:
            pss //= mapcount
        smaps_page_accumulate(mss, folio, PAGE_SIZE, pss, dirty, mapcount < 2)


def smaps_pte_entry(mss: MemSizeStats, m: Machine, pte: int) -> None:
    """smaps_pte_entry() - one PTE: a present one (pte_present(): PROT_NONE too) through
    vm_normal_page() (no page for the zero page or a special PTE); a migration or
    device-exclusive entry (not present) or a device-private one ("fake-present") through
    the PFN it holds (is_pfn_swap_entry()).

    Models: fs/proc/task_mmu.c:smaps_pte_entry() (v6.18). A swap entry of a real swap
    area adds a page to Swap and to SwapPss a page divided by swp_swapcount(), the number
    of page tables holding the slot (so half a page each after a fork).
    """
    if pte_present(pte):
        pfn = pte_pfn(pte)
        if pte & _PAGE_SPECIAL or is_zero_pfn(m, pfn):
            return
        smaps_account(mss, m, pfn, False, pte_young(pte), pte_dirty(pte), True)
    elif is_swap_pte(pte) and not non_swap_entry(pte_to_swp_entry(pte)):
        from pyfolio.mm.swapfile import swp_swapcount

        mss.swap += PAGE_SIZE
        mapcount = swp_swapcount(m, pte_to_swp_entry(pte))
        mss.swap_pss += (PAGE_SIZE << PSS_SHIFT) // (mapcount if mapcount >= 2 else 1)
    elif is_pfn_swap_entry(pte):
        smaps_account(mss, m, swp_offset(pte), False, False, False,
                      is_device_private_entry(pte))


def smaps_pmd_entry(mss: MemSizeStats, m: Machine, pmd: int) -> None:
    """smaps_pmd_entry() - one PMD leaf, or a non-present PMD holding a PFN (a migration
    or device-private entry): AnonHugePages for an anon folio, ShmemPmdMapped for a
    swap-backed (shmem) one, nothing for a device folio, FilePmdMapped for any other
    file's; then the whole folio.

    Models: fs/proc/task_mmu.c:smaps_pmd_entry() (v6.18; the device-private PMD as in the
    newest mm tree, where it is not "fake-present" as a PTE is). vm_normal_page_pmd()
    gives no page for the huge zero folio. pmd_young() and pmd_dirty() read the entry's
    bits whether it is present or not, as the kernel does; a swap-format PMD has no A
    bit, and its inverted offset usually sets the SavedDirty bit (bit 58).
    """
    if pmd_present(pmd):  # a PROT_NONE leaf too
        pfn, present = pte_pfn(pmd), True
        if is_zero_pfn(m, pfn):
            return
    elif is_migration_entry(pmd) or is_device_private_entry(pmd):
        pfn, present = swp_offset(pmd), False
    else:
        return
    folio = page_folio(m, pfn)
    if folio_test_anon(folio):
        mss.anonymous_thp += PMD_SIZE
    elif m.mem.test(folio.pfn, PG.swapbacked):
        mss.shmem_thp += PMD_SIZE
    elif not folio_is_zone_device(folio):
        mss.file_thp += PMD_SIZE
    smaps_account(mss, m, pfn, True, pte_young(pmd), pmd_dirty(pmd), present)


def smaps_shmem_swap(vma: VMA) -> int:
    """The shmem part of smap_gather_stats(): bytes of swap of the shmem object ``vma``
    maps: shmem_swap_usage() for a shared or read-only VMA; in a private writable one only
    the swapped pages where the VMA's PTE is none (smaps_pte_hole(): a COW copy hides the
    object's page).

    Models: fs/proc/task_mmu.c:smap_gather_stats() and smaps_pte_hole() (v6.18).
    """
    from pyfolio.mm.shmem import vma_is_shmem
    from pyfolio.mm.shmem_swap import shmem_partial_swap_usage, shmem_swap_usage

    if not vma_is_shmem(vma):
        return 0
    swapped = shmem_swap_usage(vma)
    if not swapped or vma.vm_flags & VM.SHARED or not vma.vm_flags & VM.WRITE:
        return swapped
    assert vma.vm_file is not None
    m, total = vma.vm_mm.m, 0
    for addr in range(vma.vm_start, vma.vm_end, PAGE_SIZE):
        w = walk(m, vma.vm_mm.pgd, addr)
        if not w.raw:
            index = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
            total += shmem_partial_swap_usage(vma.vm_file.f_mapping, index, index + 1)
    return total


def smaps(mm: MMStruct) -> list[dict[str, int]]:
    """/proc/PID/smaps - per VMA, sizes in kB (fs/proc/task_mmu.c:show_smap()).

    Models: fs/proc/task_mmu.c:show_smap() (v6.18): smap_gather_stats() walks the VMA
    (smaps_pte_range(): smaps_pmd_entry() for a PMD leaf or a non-present PMD, else
    smaps_pte_entry() per PTE), then __show_smap() prints :data:`SMAPS_FIELDS` in kB, Pss
    and Pss_Dirty shifted down from fixed point. Each dict also has ``Start`` and ``End``.
    A shmem VMA adds the object's swapped-out pages in its range to ``Swap``
    (:func:`smaps_shmem_swap`), never to SwapPss.
    """
    m, out = mm.m, []
    for vma in mm.vmas:
        mss = MemSizeStats()
        mss.swap += smaps_shmem_swap(vma)
        addr = vma.vm_start
        while addr < vma.vm_end:
            w = walk(m, mm.pgd, addr)
            if w.level in ("pgd", "pud") or (w.level == "pmd" and not w.raw):
                addr = (addr | ((PMD_SIZE if w.level == "pmd" else 1 << 30) - 1)) + 1
                continue
            if w.level == "pmd":  # a leaf or a non-present PMD (walk() stops there)
                smaps_pmd_entry(mss, m, w.raw)
                addr = (addr | (PMD_SIZE - 1)) + 1
                continue
            smaps_pte_entry(mss, m, w.raw)
            addr += PAGE_SIZE
        d = dict.fromkeys(SMAPS_FIELDS, 0)
        d.update(Start=vma.vm_start, End=vma.vm_end, Size=(vma.vm_end - vma.vm_start) >> 10,
                 KernelPageSize=PAGE_SIZE >> 10, MMUPageSize=PAGE_SIZE >> 10,
                 Rss=mss.resident >> 10, Pss=mss.pss >> PSS_SHIFT >> 10,
                 Pss_Dirty=mss.pss_dirty >> PSS_SHIFT >> 10,
                 Shared_Clean=mss.shared_clean >> 10, Shared_Dirty=mss.shared_dirty >> 10,
                 Private_Clean=mss.private_clean >> 10,
                 Private_Dirty=mss.private_dirty >> 10, Referenced=mss.referenced >> 10,
                 Anonymous=mss.anonymous >> 10, LazyFree=mss.lazyfree >> 10,
                 AnonHugePages=mss.anonymous_thp >> 10, ShmemPmdMapped=mss.shmem_thp >> 10,
                 FilePmdMapped=mss.file_thp >> 10, Swap=mss.swap >> 10,
                 SwapPss=mss.swap_pss >> PSS_SHIFT >> 10)
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
