"""Reverse mapping of anonymous folios: anon_vma, mapcount accounting, rmap walks.

Models: mm/rmap.c (v6.18) with CONFIG_PAGE_MAPCOUNT: __folio_add_rmap(),
__folio_remove_rmap(), folio_add_new_anon_rmap(), folio_try_dup_anon_rmap_*(),
anon_vma_prepare(), anon_vma_fork(), rmap_walk_anon(), and try_to_migrate() (mappings
to migration entries). The rmap functions never touch ``_refcount``: callers pair each
added mapping with a folio_get() and each removed one with a folio_put(), as the kernel
does (try_to_migrate() is such a caller).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pyfolio.arch.x86.pgtable import (
    _PAGE_DIRTY_BITS,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SOFT_DIRTY,
    _PAGE_SPECIAL,
    _PAGE_SWP_SOFT_DIRTY,
    _PAGE_SWP_UFFD_WP,
    _PAGE_UFFD_WP,
    PTE_PFN_MASK,
    SWP_OFFSET_SHIFT,
    SWP_TYPE_BITS,
    decode_entry,
    pmd_leaf,
    pte_index,
    pte_pfn,
    pte_present,
    swp_offset,
    walk,
)
from pyfolio.include.linux.huge_mm import MTHP_STAT, mod_mthp_stat
from pyfolio.include.linux.mm import (
    VM_WARN_ON_FOLIO,
    Folio,
    folio_lock,
    folio_maybe_dma_pinned,
    folio_nr_pages,
    folio_order,
    folio_ref_sub,
    folio_test_anon,
    folio_test_large,
    page_folio,
)
from pyfolio.include.linux.mm_types import VMA, AnonVma, MMStruct
from pyfolio.include.linux.swapops import (
    SwpType,
    is_device_exclusive_entry,
    is_device_private_entry,
    is_migration_entry,
)
from pyfolio.mm.mmu_notifier import MMU_NOTIFY, invalidate_secondary_mmus
from pyfolio.sim.memmap import ENTIRELY_MAPPED, FOLIO_MAPPING_ANON, PG
from pyfolio.sim.units import HPAGE_PMD_NR, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = [
    "RMAP_EXCLUSIVE", "RMAP_NONE", "anon_vma_prepare", "anon_vma_fork", "anon_vma_clone",
    "unlink_anon_vmas", "folio_anon_vma", "__folio_set_anon", "folio_add_new_anon_rmap",
    "__folio_add_rmap",
    "folio_add_anon_rmap_ptes", "folio_add_anon_rmap_pte", "folio_add_anon_rmap_pmd",
    "folio_remove_rmap_ptes", "folio_remove_rmap_pte", "folio_remove_rmap_pmd",
    "folio_try_dup_anon_rmap_ptes", "folio_try_dup_anon_rmap_pmd", "folio_move_anon_rmap",
    "__folio_try_share_anon_rmap", "folio_try_share_anon_rmap_pte",
    "folio_try_share_anon_rmap_pmd", "Mapping", "rmap_walk",
    "folio_mms", "TTU_SPLIT_HUGE_PMD", "TTU_RMAP_LOCKED", "anon_vma_ranges", "pmd_chunks",
    "pte_table_of", "swp_entries", "try_to_migrate", "make_device_exclusive",
]

RMAP_NONE = 0
RMAP_EXCLUSIVE = 1


def anon_vma_prepare(vma: VMA) -> AnonVma:
    """anon_vma_prepare() - give a VMA its anon_vma at its first anonymous fault.

    Models: mm/rmap.c:__anon_vma_prepare() (v6.18); simplification: never merges with a
    neighbour's anon_vma (find_mergeable_anon_vma()).
    """
    if vma.anon_vma is not None:
        return vma.anon_vma
    m = vma.vm_mm.m
    av = AnonVma(m.next_anon_vma_id)
    av.root = av
    m.next_anon_vma_id += 1
    m.anon_vmas[av.id] = av
    vma.anon_vma = av
    vma.anon_vma_chain.append(av)
    av.vmas.add(vma)
    return av


def anon_vma_clone(dst: VMA, src: VMA) -> None:
    """anon_vma_clone() - chain ``dst`` to every anon_vma ``src`` is chained to.

    Models: mm/rmap.c:anon_vma_clone() (v6.18).
    """
    dst.anon_vma = src.anon_vma
    dst.anon_vma_chain = list(src.anon_vma_chain)
    for av in dst.anon_vma_chain:
        av.vmas.add(dst)


def anon_vma_fork(vma: VMA, pvma: VMA) -> None:
    """anon_vma_fork() - a child VMA reaches the parent's anon_vmas plus a new one of its own.

    Models: mm/rmap.c:anon_vma_fork() (v6.18): folios the parent faulted stay findable
    from the child (their ->mapping is a parent anon_vma); the child's own new folios use
    its new anon_vma, whose root is the parent's root.
    """
    anon_vma_clone(vma, pvma)
    if pvma.anon_vma is None:
        return
    m = vma.vm_mm.m
    av = AnonVma(m.next_anon_vma_id, root=pvma.anon_vma.root, parent=pvma.anon_vma)
    m.next_anon_vma_id += 1
    m.anon_vmas[av.id] = av
    vma.anon_vma = av
    vma.anon_vma_chain.append(av)
    av.vmas.add(vma)


def unlink_anon_vmas(vma: VMA) -> None:
    """unlink_anon_vmas() - drop the VMA's chains; an anon_vma nobody reaches is freed.

    Models: mm/rmap.c:unlink_anon_vmas() (v6.18).

    As in the kernel, folios do not keep an anon_vma alive: once no VMA reaches it, no
    folio pointing at it can still be mapped (folio_anon_vma() then finds nothing).
    """
    m = vma.vm_mm.m
    for av in vma.anon_vma_chain:
        av.vmas.discard(vma)
        if not av.vmas:
            m.anon_vmas.pop(av.id, None)
    vma.anon_vma_chain = []
    vma.anon_vma = None


def folio_anon_vma(folio: Folio) -> AnonVma | None:
    """folio_anon_vma() - the anon_vma folio->mapping points at (None if not anon).

    Models: mm/util.c:folio_anon_vma() (v6.18).
    """
    mapping = int(folio.m.mem.mapping[folio.pfn])
    if not mapping & FOLIO_MAPPING_ANON:
        return None
    return folio.m.anon_vmas.get(mapping >> 1)


def __folio_set_anon(folio: Folio, vma: VMA, address: int, exclusive: bool) -> None:
    """__folio_set_anon() - point folio->mapping at the VMA's anon_vma, set folio->index.

    Models: mm/rmap.c:__folio_set_anon() (v6.18): a folio not exclusive to this VMA is
    given the root anon_vma so that every process sharing it can find it.
    """
    av = vma.anon_vma
    VM_WARN_ON_FOLIO(av is None, folio, "no anon_vma")
    assert av is not None
    if not exclusive and av.root is not None:
        av = av.root
    folio.m.mem.mapping[folio.pfn] = (av.id << 1) | FOLIO_MAPPING_ANON
    folio.m.mem.index[folio.pfn] = vma.linear_page_index(address)


def folio_add_new_anon_rmap(folio: Folio, vma: VMA, address: int, flags: int) -> None:
    """folio_add_new_anon_rmap() - the first mapping of a freshly allocated anon folio.

    Models: mm/rmap.c:folio_add_new_anon_rmap() (v6.18): a small folio gets _mapcount 0; a
    PMD-mappable folio is mapped by one PMD (_entire_mapcount 0, large mapcount 1,
    _nr_pages_mapped = ENTIRELY_MAPPED, exclusive bit on the head page); other large folios
    are mapped by PTEs on every page. PG_swapbacked is set (__folio_set_swapbacked()),
    and a large folio counts in its size's ``nr_anon`` (mod_mthp_stat(order,
    MTHP_STAT_NR_ANON, 1)).
    """
    mem, pfn, nr = folio.m.mem, folio.pfn, folio_nr_pages(folio)
    exclusive = bool(flags & RMAP_EXCLUSIVE)
    __folio_set_anon(folio, vma, address, exclusive)
    mem.set(pfn, PG.swapbacked | PG.uptodate)
    if not folio_test_large(folio):
        mem._mapcount[pfn] = 0
        if exclusive:
            mem.set(pfn, PG.anon_exclusive)
    elif nr != HPAGE_PMD_NR:
        mem._mapcount[pfn: pfn + nr] = 0
        if exclusive:
            mem.set(slice(pfn, pfn + nr), PG.anon_exclusive)
        mem._large_mapcount[pfn] = nr - 1
        mem._nr_pages_mapped[pfn] = nr
    else:
        mem._entire_mapcount[pfn] = 0
        mem._large_mapcount[pfn] = 0
        mem._nr_pages_mapped[pfn] = ENTIRELY_MAPPED
        if exclusive:
            mem.set(pfn, PG.anon_exclusive)
    mod_mthp_stat(folio.m, folio_order(folio), MTHP_STAT.MTHP_STAT_NR_ANON, 1)


def __folio_add_rmap(folio: Folio, page: int, nr_pages: int, level: str) -> None:
    """__folio_add_rmap() - count new mappings of a folio, anon or file alike.

    Models: mm/rmap.c:__folio_add_rmap() (v6.18): RMAP_LEVEL_PTE raises each page's
    _mapcount, adds the pages going from unmapped to mapped to _nr_pages_mapped and
    ``nr_pages`` to a large folio's _large_mapcount; RMAP_LEVEL_PMD raises
    _entire_mapcount and _large_mapcount by one, the first PMD mapping adding
    ENTIRELY_MAPPED.
    """
    mem = folio.m.mem
    if level == "pmd":
        mem._entire_mapcount[folio.pfn] += 1
        if mem._entire_mapcount[folio.pfn] == 0:
            mem._nr_pages_mapped[folio.pfn] += ENTIRELY_MAPPED
        mem._large_mapcount[folio.pfn] += 1
        return
    s = slice(page, page + nr_pages)
    mem._mapcount[s] += 1
    if folio_test_large(folio):
        first = int(np.count_nonzero(mem._mapcount[s] == 0))
        mem._nr_pages_mapped[folio.pfn] += first
        mem._large_mapcount[folio.pfn] += nr_pages


def folio_add_anon_rmap_ptes(folio: Folio, page: int, nr_pages: int, vma: VMA, address: int,
                             flags: int) -> None:
    """folio_add_anon_rmap_ptes() - add PTE mappings of pages [page, page + nr_pages).

    Models: mm/rmap.c:folio_add_anon_rmap_ptes() (v6.18): __folio_add_rmap() at the PTE
    level; with RMAP_EXCLUSIVE each page is marked exclusive.
    """
    __folio_add_rmap(folio, page, nr_pages, "pte")
    if flags & RMAP_EXCLUSIVE:
        folio.m.mem.set(slice(page, page + nr_pages), PG.anon_exclusive)


def folio_add_anon_rmap_pte(folio: Folio, page: int, vma: VMA, address: int, flags: int) -> None:
    """folio_add_anon_rmap_pte() - add one PTE mapping of one page.

    Models: include/linux/rmap.h:folio_add_anon_rmap_pte() (v6.18).
    """
    folio_add_anon_rmap_ptes(folio, page, 1, vma, address, flags)


def folio_add_anon_rmap_pmd(folio: Folio, page: int, vma: VMA, address: int, flags: int) -> None:
    """folio_add_anon_rmap_pmd() - add one PMD mapping of a whole PMD-sized folio.

    Models: mm/rmap.c:folio_add_anon_rmap_pmd() (v6.18): __folio_add_rmap() at the PMD
    level; with RMAP_EXCLUSIVE only the head page is marked exclusive.
    """
    __folio_add_rmap(folio, page, HPAGE_PMD_NR, "pmd")
    if flags & RMAP_EXCLUSIVE:
        folio.m.mem.set(folio.pfn, PG.anon_exclusive)


def folio_remove_rmap_ptes(folio: Folio, page: int, nr_pages: int, vma: VMA) -> None:
    """folio_remove_rmap_ptes() - remove PTE mappings of pages [page, page + nr_pages).

    Models: mm/rmap.c:__folio_remove_rmap(RMAP_LEVEL_PTE) (v6.18). When some pages of an
    anon large folio become unmapped while others stay mapped, the folio is queued for
    deferred split (deferred_split_folio(folio, true)).
    """
    mem = folio.m.mem
    if not folio_test_large(folio):
        mem._mapcount[page] -= 1
        return
    s = slice(page, page + nr_pages)
    mem._mapcount[s] -= 1
    mem._large_mapcount[folio.pfn] -= nr_pages
    last = int(np.count_nonzero(mem._mapcount[s] == -1))
    nr = 0
    if last:
        mem._nr_pages_mapped[folio.pfn] -= last
        if mem._nr_pages_mapped[folio.pfn] < ENTIRELY_MAPPED:
            nr = last
    _queue_partially_mapped(folio, bool(nr) and int(mem._nr_pages_mapped[folio.pfn]) != 0)


def folio_remove_rmap_pte(folio: Folio, page: int, vma: VMA) -> None:
    """folio_remove_rmap_pte() - remove one PTE mapping of one page.

    Models: include/linux/rmap.h:folio_remove_rmap_pte() (v6.18).
    """
    folio_remove_rmap_ptes(folio, page, 1, vma)


def folio_remove_rmap_pmd(folio: Folio, page: int, vma: VMA) -> None:
    """folio_remove_rmap_pmd() - remove one PMD mapping of a whole folio.

    Models: mm/rmap.c:__folio_remove_rmap(RMAP_LEVEL_PMD) (v6.18): when the last PMD
    mapping goes while some pages are still PTE-mapped, the folio is partially mapped and
    queued for deferred split.
    """
    mem = folio.m.mem
    mem._large_mapcount[folio.pfn] -= 1
    mem._entire_mapcount[folio.pfn] -= 1
    nr = nr_pmdmapped = 0
    if mem._entire_mapcount[folio.pfn] == -1:
        mem._nr_pages_mapped[folio.pfn] -= ENTIRELY_MAPPED
        left = int(mem._nr_pages_mapped[folio.pfn])
        nr_pmdmapped = folio_nr_pages(folio)
        nr = max(nr_pmdmapped - left, 0)
    _queue_partially_mapped(folio, bool(nr) and nr < nr_pmdmapped)


def _queue_partially_mapped(folio: Folio, partially_mapped: bool) -> None:
    """The end of __folio_remove_rmap(): an anon large folio that is now partially mapped
    is queued for deferred split, unless it already is or is device-private ("Device
    private folios do not support deferred splitting and shrinker based scanning", the
    device-THP series, merged for 6.19)."""
    if not partially_mapped:
        return
    from pyfolio.mm.huge_memory import deferred_split_folio
    from pyfolio.mm.memremap import folio_is_device_private

    if (folio_test_anon(folio)
            and not folio.m.mem.test(folio.pfn, PG.partially_mapped)
            and not folio_is_device_private(folio)):
        deferred_split_folio(folio, True)


def folio_try_dup_anon_rmap_ptes(folio: Folio, page: int, nr_pages: int,
                                 src_vma: VMA) -> bool:
    """folio_try_dup_anon_rmap_ptes() - fork: share PTE-mapped pages with the child.

    Models: include/linux/rmap.h:__folio_try_dup_anon_rmap() (v6.18): if an exclusive page
    of the folio may be DMA-pinned the child must get a copy (returns False: -EBUSY in the
    kernel); otherwise the pages lose PG_anon_exclusive and each _mapcount rises.
    """
    mem = folio.m.mem
    s = slice(page, page + nr_pages)
    excl = bool(np.any(mem.flags[s] & np.uint32(PG.anon_exclusive)))
    if excl and folio_maybe_dma_pinned(folio):
        return False
    mem.clear(s, PG.anon_exclusive)
    mem._mapcount[s] += 1
    if folio_test_large(folio):
        mem._large_mapcount[folio.pfn] += nr_pages
    return True


def folio_try_dup_anon_rmap_pmd(folio: Folio, page: int, src_vma: VMA) -> bool:
    """folio_try_dup_anon_rmap_pmd() - fork: share a PMD-mapped folio (False if pinned).

    Models: include/linux/rmap.h:folio_try_dup_anon_rmap_pmd() (v6.18).
    """
    mem = folio.m.mem
    if mem.test(folio.pfn, PG.anon_exclusive) and folio_maybe_dma_pinned(folio):
        return False
    mem.clear(folio.pfn, PG.anon_exclusive)
    mem._entire_mapcount[folio.pfn] += 1
    mem._large_mapcount[folio.pfn] += 1
    return True


def __folio_try_share_anon_rmap(folio: Folio, page: int, nr_pages: int, level: str) -> bool:
    """__folio_try_share_anon_rmap() - clear ``page``'s PG_anon_exclusive (only that page)
    before a migration entry replaces its mapping; False (-EBUSY) if maybe pinned.

    Models: include/linux/rmap.h:__folio_try_share_anon_rmap() (v6.18), level "pte"/"pmd".
    """
    if folio_maybe_dma_pinned(folio):
        return False
    folio.m.mem.clear(page, PG.anon_exclusive)
    return True


def folio_try_share_anon_rmap_pte(folio: Folio, page: int) -> bool:
    """folio_try_share_anon_rmap_pte() - share one PTE-mapped exclusive page, or False.

    Models: include/linux/rmap.h:folio_try_share_anon_rmap_pte() (v6.18).
    """
    return __folio_try_share_anon_rmap(folio, page, 1, "pte")


def folio_try_share_anon_rmap_pmd(folio: Folio, page: int) -> bool:
    """folio_try_share_anon_rmap_pmd() - as folio_try_share_anon_rmap_pte(), for a PMD mapping.

    Models: include/linux/rmap.h:folio_try_share_anon_rmap_pmd() (v6.18).
    """
    return __folio_try_share_anon_rmap(folio, page, HPAGE_PMD_NR, "pmd")


def folio_move_anon_rmap(folio: Folio, vma: VMA) -> None:
    """folio_move_anon_rmap() - an exclusively owned folio now belongs to this VMA's anon_vma.

    Models: mm/rmap.c:folio_move_anon_rmap() (v6.18).
    """
    assert vma.anon_vma is not None
    folio.m.mem.mapping[folio.pfn] = (vma.anon_vma.id << 1) | FOLIO_MAPPING_ANON


@dataclass(frozen=True, slots=True)
class Mapping:
    """One page-table entry that maps (part of) a folio: which mm, VMA, address, level."""

    mm: MMStruct
    vma: VMA
    address: int
    level: str  # "pmd" or "pte"
    kind: str  # "huge", "page", "device_private", "migration"
    pfn: int


def rmap_walk(folio: Folio, *, migration: bool = False) -> list[Mapping]:
    """rmap_walk() - every page-table entry mapping the folio, found from its anon_vma
    (anon folios) or its file's ``i_mmap`` (page-cache folios).

    Models: mm/rmap.c:rmap_walk_anon() and rmap_walk_file() with page_vma_mapped_walk()
    (v6.18): for each VMA the folio's anon_vma reaches, or each VMA mapping its file,
    compute where each page would be mapped (vma_address()) and look at the entry there.
    With ``migration`` the walk also reports migration entries pointing at the folio (as
    remove_migration_ptes() looks for them).
    """
    av = folio_anon_vma(folio)
    if av is not None:
        vmas: set[VMA] = av.vmas
    else:
        from pyfolio.include.linux.pagemap import folio_mapping

        mapping = folio_mapping(folio)
        if mapping is None:
            return []
        vmas = mapping.i_mmap
    m, out = folio.m, []
    first, nr = int(folio.m.mem.index[folio.pfn]), folio_nr_pages(folio)
    end_pfn = folio.pfn + nr
    for vma in sorted(vmas, key=lambda v: (v.vm_mm.id, v.vm_start)):
        mm = vma.vm_mm
        lo = max(vma.vm_start, vma.address_of(first))
        hi = min(vma.vm_end, vma.address_of(first + nr))
        addr = lo
        while addr < hi:
            w = walk(m, mm.pgd, addr)
            raw = w.raw
            if w.level == "pmd" and pmd_leaf(raw):
                if folio.pfn <= pte_pfn(raw) < end_pfn:
                    haddr = addr & ~(PMD_SIZE - 1)
                    out.append(Mapping(mm, vma, haddr, "pmd", "huge", pte_pfn(raw)))
                addr = (addr | (PMD_SIZE - 1)) + 1
                continue
            swp = is_migration_entry(raw) or is_device_private_entry(raw)
            if w.level == "pmd" and raw and swp:
                pfn = swp_offset(raw)
                if folio.pfn <= pfn < end_pfn and (migration or is_device_private_entry(raw)):
                    kind = decode_entry(raw, "pmd").kind
                    out.append(Mapping(mm, vma, addr & ~(PMD_SIZE - 1), "pmd", kind, pfn))
                addr = (addr | (PMD_SIZE - 1)) + 1
                continue
            if w.level == "pte" and raw:
                if pte_present(raw):
                    pfn = pte_pfn(raw)
                    kind = "page"
                elif is_device_private_entry(raw) or is_device_exclusive_entry(raw) or (
                        migration and is_migration_entry(raw)):
                    pfn = swp_offset(raw)
                    kind = decode_entry(raw).kind
                else:
                    pfn = -1
                    kind = ""
                if folio.pfn <= pfn < end_pfn and page_folio(m, pfn).pfn == folio.pfn:
                    out.append(Mapping(mm, vma, addr, "pte", kind, pfn))
            addr += PAGE_SIZE
    return out


def folio_mms(folio: Folio) -> set[int]:
    """The ids of the mms that map the folio (what CONFIG_MM_ID's _mm_id[] tracks)."""
    return {mp.mm.id for mp in rmap_walk(folio)}


# -- try_to_migrate -------------------------------------------------------------------------
#: include/linux/rmap.h enum ttu_flags (the two the split uses).
TTU_SPLIT_HUGE_PMD = 0x4
TTU_RMAP_LOCKED = 0x80
#: Linux 6.18.0 stopped try_to_migrate()'s rmap walk after the first PMD it split
#: (commit 60fbb14396d5), so a PMD-mapped THP shared by two processes failed to split
#: with -EAGAIN; fixed by 939080834fef (in 6.18.y stable, March 2026). False models the
#: fix; set True to reproduce 6.18.0.
TRY_TO_MIGRATE_STOPS_AFTER_PMD_SPLIT = False
_U64 = np.uint64
_TYPE_SHIFT = _U64(59)


def anon_vma_ranges(m: Machine, head: int, nr: int) -> Iterator[tuple[VMA, int, int]]:
    """rmap_walk_anon(): each VMA the anon_vma of the folio at ``head`` reaches, with the
    address range where pages [head, head + nr) would be mapped (vma_address())."""
    av = folio_anon_vma(Folio(m, head))
    if av is None:
        return
    first = int(m.mem.index[head])
    for vma in sorted(av.vmas, key=lambda v: (v.vm_mm.id, v.vm_start)):
        lo = max(vma.vm_start, vma.address_of(first))
        hi = min(vma.vm_end, vma.address_of(first + nr))
        if lo < hi:
            yield vma, lo, hi


def pmd_chunks(vma: VMA, lo: int, hi: int) -> Iterator[tuple[int, int, tuple[int, int]]]:
    """The PMD slots covering [lo, hi): (addr, end of this PMD's part, slot)."""
    from pyfolio.mm.memory import pmd_slot

    addr = lo
    while addr < hi:
        nxt = min((addr | (PMD_SIZE - 1)) + 1, hi)
        slot = pmd_slot(vma.vm_mm, addr)
        if slot is not None:
            yield addr, nxt, slot
        addr = nxt


def pte_table_of(m: Machine, slot: tuple[int, int]) -> int | None:
    """The PTE table a PMD entry points to (None for an empty, leaf or swap-format PMD)."""
    raw = int(m.pgtables[slot[0]][slot[1]])
    return pte_pfn(raw) if raw & _PAGE_PRESENT and not raw & _PAGE_PSE else None


def swp_entries(types: np.ndarray, pfns: np.ndarray) -> np.ndarray:
    """__swp_entry() over arrays: swap-format entries of ``types`` for ``pfns``."""
    return (((~pfns.astype(_U64)) << _U64(SWP_OFFSET_SHIFT)) >> _U64(SWP_TYPE_BITS)) \
        | (types.astype(_U64) << _TYPE_SHIFT)


def _pmd_maps(raw: int, head: int, end: int) -> bool:
    """Does a PMD entry map the folio [head, end): a leaf or a device-private PMD?"""
    if pmd_leaf(raw):
        return head <= pte_pfn(raw) < end
    return is_device_private_entry(raw) and head <= swp_offset(raw) < end


def try_to_migrate(folio: Folio, flags: int) -> bool:
    """try_to_migrate() - replace every mapping of the folio with a migration entry.

    Models: mm/rmap.c:try_to_migrate() and try_to_migrate_one() (v6.18 with the 6.18.y
    fix 939080834fef, see TRY_TO_MIGRATE_STOPS_AFTER_PMD_SPLIT; device-private entries
    as in the merged series). A PMD mapping (present or device-private) is split with
    freeze (split_huge_pmd_address(vma, addr, True)) under TTU_SPLIT_HUGE_PMD, and the
    walk goes on in that VMA; without it the PMD becomes a PMD migration entry
    (set_pmd_migration_entry(); a maybe-pinned exclusive folio stops the walk). Each PTE
    becomes a writable migration entry if it was writable, else readable-exclusive if the
    page was PG_anon_exclusive, else readable, keeping soft-dirty and uffd-wp; a dirty
    PTE dirties the folio; the exclusive page must be shared first
    (folio_try_share_anon_rmap_pte()), which fails for a maybe-pinned folio: that PTE
    is left as it was and the walk stops (returns False). A device-private entry becomes
    a migration entry the same way, writable if it was. Each entry removed drops its
    rmap (folio_remove_rmap_pte(), one PTE at a time as the kernel does) and reference.
    Each VMA's range is invalidated for secondary MMUs first (MMU_NOTIFY_CLEAR).
    The young and dirty bits x86-64 keeps in a migration entry are kept beside it
    (``m.migration_ad``).
    """
    m, end_pfn = folio.m, folio.pfn + folio_nr_pages(folio)
    for vma, lo, hi in list(anon_vma_ranges(m, folio.pfn, folio_nr_pages(folio))):
        # try_to_migrate_one(): MMU_NOTIFY_CLEAR over the folio's range in this VMA
        invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_CLEAR, vma.vm_mm, lo, hi)
        split_pmd = bool(flags & TTU_SPLIT_HUGE_PMD)
        for addr, nxt, slot in pmd_chunks(vma, lo, hi):
            raw = int(m.pgtables[slot[0]][slot[1]])
            if _pmd_maps(raw, folio.pfn, end_pfn):
                if not split_pmd:
                    from pyfolio.mm.migrate import set_pmd_migration_entry

                    if set_pmd_migration_entry(vma, slot, folio.pfn):
                        return False
                    continue
                from pyfolio.mm.huge_memory import split_huge_pmd_address

                split_huge_pmd_address(vma, addr, True)
                if TRY_TO_MIGRATE_STOPS_AFTER_PMD_SPLIT:
                    return False
                split_pmd = False  # flags &= ~TTU_SPLIT_HUGE_PMD; restart the walk
            table = pte_table_of(m, slot)
            if table is not None and not _migrate_ptes(folio, vma, table, pte_index(addr),
                                                       (nxt - addr) >> PAGE_SHIFT):
                return False
    return True


def _migrate_ptes(folio: Folio, vma: VMA, table: int, i0: int, n: int) -> bool:
    """try_to_migrate_one() for the entries [i0, i0 + n) of one PTE table that map the
    folio (present or device-private), vectorised; False where the walk stops."""
    m, tbl = folio.m, folio.m.pgtables[table]
    ents = tbl[i0: i0 + n]
    present = (ents & _U64(_PAGE_PRESENT | _PAGE_PROTNONE)) != 0  # pte_present()
    protnone = present & ((ents & _U64(_PAGE_PRESENT)) == 0)  # PFN stored inverted
    typ = ents >> _TYPE_SHIFT
    device = ~present & ((typ == _U64(SwpType.SWP_DEVICE_WRITE))  # PFN swap entries that map
                         | (typ == _U64(SwpType.SWP_DEVICE_READ))  # the folio: device-private,
                         | (typ == _U64(SwpType.SWP_DEVICE_EXCLUSIVE))) & (ents != 0)
    if not (present.any() or device.any()):  # e.g. a PMD just split with freeze
        return True
    pfns = np.where(device, ((~ents) << _U64(SWP_TYPE_BITS)) >> _U64(SWP_OFFSET_SHIFT),
                    (np.where(protnone, ~ents, ents) & _U64(PTE_PFN_MASK)) >> _U64(PAGE_SHIFT))
    hit = ((present & ((ents & _U64(_PAGE_SPECIAL)) == 0)) | device) \
        & (pfns >= _U64(folio.pfn)) & (pfns < _U64(folio.pfn + folio_nr_pages(folio)))
    idx = np.flatnonzero(hit)
    if not len(idx):
        return True
    mem, pfn, raw, dev = m.mem, pfns[idx].astype(np.int64), ents[idx], device[idx]
    excl = (mem.flags[pfn] & np.uint32(PG.anon_exclusive)) != 0
    excl &= folio_test_anon(folio)
    ok = not (excl.any() and folio_maybe_dma_pinned(folio))
    if not ok:  # folio_try_share_anon_rmap_pte() fails at the first exclusive page
        k = int(np.argmax(excl))
        idx, pfn, raw, dev, excl = idx[:k], pfn[:k], raw[:k], dev[:k], excl[:k]
        if not k:
            return False
    mem.clear(pfn[excl], PG.anon_exclusive)
    if ((raw & _U64(_PAGE_DIRTY_BITS)) != 0)[~dev].any():  # pte_dirty(): folio_mark_dirty()
        mem.set(folio.pfn, PG.dirty)
    write = np.where(dev, typ[idx] == _U64(SwpType.SWP_DEVICE_WRITE),
                     (raw & _U64(_PAGE_RW)) != 0)
    soft = np.where(dev, raw & _U64(_PAGE_SWP_SOFT_DIRTY), raw & _U64(_PAGE_SOFT_DIRTY)) != 0
    types = np.where(write, SwpType.SWP_MIGRATION_WRITE,
                     np.where(excl, SwpType.SWP_MIGRATION_READ_EXCLUSIVE,
                              SwpType.SWP_MIGRATION_READ))
    swp = swp_entries(types, pfn) | np.where(soft, _U64(_PAGE_SWP_SOFT_DIRTY), _U64(0)) \
        | np.where(~dev & ((raw & _U64(_PAGE_UFFD_WP)) != 0), _U64(_PAGE_SWP_UFFD_WP), _U64(0))
    tbl[i0 + idx] = swp
    _keep_young_dirty(m, table, i0 + idx, raw, dev)
    m.trace.cost("pte_writes", len(idx))
    _remove_rmap_ptes_one_by_one(folio, pfn, vma)
    folio_ref_sub(folio, len(idx))  # folio_put() per PTE; the caller holds a reference
    m.trace.cost("tlb_flushes")
    return ok


def _keep_young_dirty(m: Machine, table: int, idx: np.ndarray, raw: np.ndarray,
                      dev: np.ndarray) -> None:
    """x86-64 keeps a present PTE's young and dirty bits in its migration entry
    (make_migration_entry_young()/_dirty(), SWP_MIG_YOUNG_BIT, SWP_MIG_DIRTY_BIT above the
    PFN in the offset); the simulator keeps them beside the entry, in
    ``m.migration_ad[(table, index)]`` (1 young, 2 dirty), for remove_migration_pte()."""
    young = (raw & _U64(0x20)) != 0
    dirty = (raw & _U64(_PAGE_DIRTY_BITS)) != 0
    for k in np.flatnonzero(~dev):
        m.migration_ad[(table, int(idx[k]))] = int(young[k]) | (2 * int(dirty[k]))


def _remove_rmap_ptes_one_by_one(folio: Folio, pfn: np.ndarray, vma: VMA) -> None:
    """folio_remove_rmap_pte() for each (distinct) page in ``pfn``, in order, with the same
    result as one call per page (mapcounts and the deferred-split decision): the first
    page to lose its last mapping is removed on its own, the runs before and after it in
    batches of contiguous pages."""
    mem = folio.m.mem
    gone = np.flatnonzero(mem._mapcount[pfn] == 0)
    parts = [pfn] if not len(gone) else [pfn[: gone[0]], pfn[gone[0]: gone[0] + 1],
                                         pfn[gone[0] + 1:]]
    for part in parts:
        for run in np.split(part, np.flatnonzero(np.diff(part) != 1) + 1):
            if len(run):
                folio_remove_rmap_ptes(folio, int(run[0]), len(run), vma)


def make_device_exclusive(mm: MMStruct, addr: int, owner: object) -> int:
    """make_device_exclusive() - replace the PTE of the page at ``addr`` with a
    device-exclusive entry, so the device may operate on it atomically: the CPU faults on
    it and gets it back (remove_device_exclusive_entry()). Returns the page's PFN, its
    folio locked and holding the GUP reference, which the caller drops (folio_unlock(),
    folio_put()).

    Models: mm/rmap.c:make_device_exclusive() (v6.18, the single-page API): GUP with
    FOLL_GET | FOLL_WRITE | FOLL_SPLIT_PMD faults the page in writable (COW broken; a
    PMD-mapped THP is PMD-split, the folio stays large), -EFAULT for a read-only,
    PROT_NONE or unmapped address; -EOPNOTSUPP for a folio that is not anon; secondary
    MMUs hear MMU_NOTIFY_EXCLUSIVE with ``owner``; the PTE is cleared (a dirty one
    dirties the folio) and the entry installed with its soft-dirty bit. Mapcount,
    refcount and RSS stay as they were: core mm treats the entry like a present, clean,
    old mapping.
    """
    from pyfolio.arch.x86.pgtable import _PAGE_SWP_SOFT_DIRTY, pte_dirty, pte_soft_dirty
    from pyfolio.include.linux.swapops import make_device_exclusive_entry
    from pyfolio.mm.gup import FOLL, get_user_pages, put_user_page
    from pyfolio.mm.memory import pte_slot
    from pyfolio.sim.errors import EOPNOTSUPP, MmError

    m = mm.m
    addr &= ~(PAGE_SIZE - 1)
    [pfn] = get_user_pages(mm, addr, 1, FOLL.WRITE | FOLL.SPLIT_PMD)
    folio = page_folio(m, pfn)
    if not folio_test_anon(folio):
        put_user_page(m, pfn)
        raise MmError(EOPNOTSUPP, f"make_device_exclusive: {addr:#x} is not anonymous")
    folio_lock(folio)
    # mmu_notifier_range_init_owner(MMU_NOTIFY_EXCLUSIVE, 0, mm, addr, addr + PAGE_SIZE,
    # owner): a driver skips the invalidation its own request causes by ``owner``
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_EXCLUSIVE, mm, addr, addr + PAGE_SIZE,
                              owner)
    slot = pte_slot(mm, addr)
    assert slot is not None
    pte = int(m.pgtables[slot[0]][slot[1]])  # folio_walk_start(): the same page, writable
    if pte_dirty(pte):  # ptep_clear_flush(), then folio_mark_dirty()
        m.mem.set(folio.pfn, PG.dirty)
    entry = make_device_exclusive_entry(pfn) | (_PAGE_SWP_SOFT_DIRTY if pte_soft_dirty(pte)
                                                else 0)
    m.pgtables[slot[0]][slot[1]] = entry
    m.trace.cost("pte_writes")
    m.trace.cost("tlb_flushes")
    m.trace.emit("make_device_exclusive", address=addr, pfn=pfn)
    return pfn
