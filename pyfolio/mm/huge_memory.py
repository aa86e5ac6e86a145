"""Transparent huge pages at the PMD level: THP faults, the huge zero page, PMD COW,
zap and fork of PMD leaves, split_huge_pmd, and the deferred split queue.

Models: mm/huge_memory.c (v6.18). Splitting the folio itself (__folio_split and its
entry points) lives in :mod:`pyfolio.mm.huge_memory_split` (the same kernel file, kept
apart for size).
"""

from __future__ import annotations

from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from pyfolio.arch.x86.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    _PAGE_SWP_EXCLUSIVE,
    _PAGE_SWP_SOFT_DIRTY,
    _PAGE_TABLE,
    _PAGE_UFFD_WP,
    PTE_PFN_MASK,
    pfn_pte,
    pmd_dirty,
    pmd_leaf,
    pmd_mkclean,
    pmd_mkdirty,
    pmd_mkwrite,
    pmd_modify,
    pmd_present,
    pmd_wrprotect,
    pte_alloc_one,
    pte_free,
    pte_mkdirty,
    pte_mkold,
    pte_mksoft_dirty,
    pte_mkwrite,
    pte_pfn,
    pte_soft_dirty,
    swp_offset,
)
from pyfolio.include.linux.huge_mm import MTHP_STAT, count_mthp_stat, mod_mthp_stat
from pyfolio.include.linux.mm import (
    Folio,
    add_mm_counter,
    folio_get,
    folio_lock,
    folio_order,
    folio_put,
    folio_ref_add,
    folio_ref_count,
    folio_test_anon,
    folio_unlock,
    mm_counter,
    page_folio,
)
from pyfolio.include.linux.mm_types import (
    MM_ANONPAGES,
    MM_SWAPENTS,
    VM_FAULT_FALLBACK,
    VM_FAULT_OOM,
)
from pyfolio.include.linux.swapops import (
    is_device_private_entry,
    is_writable_device_private_entry,
    is_writable_migration_entry,
    make_readable_device_private_entry,
)
from pyfolio.mm import memory as _memory  # a cycle: used at call time only
from pyfolio.mm.huge_memory_batch import split_huge_pmd_present_run
from pyfolio.mm.mmu_notifier import MMU_NOTIFY, invalidate_secondary_mmus
from pyfolio.mm.rmap import (
    RMAP_EXCLUSIVE,
    RMAP_NONE,
    anon_vma_prepare,
    folio_add_anon_rmap_ptes,
    folio_add_new_anon_rmap,
    folio_mms,
    folio_move_anon_rmap,
    folio_remove_rmap_pmd,
    folio_try_dup_anon_rmap_pmd,
    folio_try_dup_anon_rmap_ptes,
    folio_try_share_anon_rmap_pmd,
)
from pyfolio.mm.swap import folio_add_lru_vma, folio_mark_lazyfree
from pyfolio.sim.errors import EAGAIN, ENOMEM, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SIZE, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA
    from pyfolio.sim.machine import Machine

__all__ = [
    "THP_ORDERS_ALL_ANON", "highest_order", "next_order", "thp_vma_allowable_orders",
    "thp_vma_suitable_orders", "thp_vma_allowable_order", "mm_get_huge_zero_folio",
    "do_huge_pmd_anonymous_page", "map_anon_folio_pmd", "do_huge_pmd_wp_page",
    "do_huge_zero_wp_pmd",
    "huge_pmd_set_accessed", "do_huge_pmd_device_private", "zap_huge_pmd", "copy_huge_pmd",
    "copy_nonpresent_pte", "change_huge_pmd", "split_huge_pmd", "__split_huge_pmd",
    "__split_huge_pmd_locked", "split_huge_pmd_address", "vma_adjust_trans_huge",
    "deferred_split_folio", "__folio_unqueue_deferred_split", "madvise_free_huge_pmd",
    "pgtable_trans_huge_withdraw", "is_huge_zero_pmd",
]

Slot = tuple[int, int]


def _pmd(m: Machine, slot: Slot) -> int:
    return int(m.pgtables[slot[0]][slot[1]])


def _set_pmd_at(m: Machine, slot: Slot, val: int) -> None:
    """set_pmd_at() - write one PMD entry (counted as a PMD write).

    Models: arch/x86/include/asm/pgtable.h:set_pmd_at().
    """
    m.pgtables[slot[0]][slot[1]] = val
    m.trace.cost("pmd_writes")


def is_huge_zero_pmd(m: Machine, pmd: int) -> bool:
    """is_huge_zero_pmd() - does the PMD map the huge zero folio?

    Models: include/linux/huge_mm.h:is_huge_zero_pmd() (v6.18).
    """
    return pmd_leaf(pmd) and m.huge_zero_pfn >= 0 and pte_pfn(pmd) == m.huge_zero_pfn


#: THP_ORDERS_ALL_ANON (include/linux/huge_mm.h): orders 2..PMD order, bit n for order n
THP_ORDERS_ALL_ANON = ((1 << (HPAGE_PMD_ORDER + 1)) - 1) & ~0b11


def highest_order(orders: int) -> int:
    """highest_order() - the highest order set in the bitfield ``orders`` (-1 for none).

    Models: include/linux/huge_mm.h:highest_order() (v6.18).
    """
    return orders.bit_length() - 1


def next_order(orders: int, prev: int) -> tuple[int, int]:
    """next_order() - clear ``prev`` from ``orders``: (the orders left, the highest of them).

    Models: include/linux/huge_mm.h:next_order() (v6.18), which updates ``*orders`` in
    place; here the new bitfield is returned with the order.
    """
    orders &= ~(1 << prev)
    return orders, highest_order(orders)


def thp_vma_allowable_orders(vma: VMA, orders: int) -> int:
    """thp_vma_allowable_orders() - the orders of ``orders`` (bit n = order n) that a page
    fault may use for anonymous ``vma``.

    Models: include/linux/huge_mm.h:thp_vma_allowable_orders() and
    mm/huge_memory.c:__thp_vma_allowable_orders() (v6.18, TVA_PAGEFAULT, anonymous VMA):
    the per-size hugepages-<size>kB/enabled settings give the mask: ``always`` sizes;
    ``madvise`` sizes with MADV_HUGEPAGE (VM_HUGEPAGE); ``inherit`` sizes when the global
    enabled is ``always``, or ``madvise`` with VM_HUGEPAGE. Then THP_ORDERS_ALL_ANON and
    vma_thp_disabled() (MADV_NOHUGEPAGE: none). Not modelled: prctl(PR_SET_THP_DISABLE),
    temporary stacks, hardware without THP.
    """
    from pyfolio.include.linux.mm_types import VM

    m = vma.vm_mm.m
    flags = int(vma.vm_flags)
    if flags & VM.NOHUGEPAGE:  # vma_thp_disabled(): checked first here, same result
        return 0
    hugepage = bool(flags & VM.HUGEPAGE)
    inherit = m.thp_enabled == "always" or (hugepage and m.thp_enabled == "madvise")
    allowed = {"always": True, "madvise": hugepage, "inherit": inherit, "never": False}
    mask = sum(1 << o for o, mode in m.thp_anon_enabled.items() if allowed[mode])
    return orders & mask & THP_ORDERS_ALL_ANON


def thp_vma_suitable_orders(vma: VMA, addr: int, orders: int) -> int:
    """thp_vma_suitable_orders() - drop, highest first, the orders whose naturally aligned
    range around ``addr`` does not lie inside ``vma`` (the lower ones then all fit).

    Models: include/linux/huge_mm.h:thp_vma_suitable_orders() and
    thp_vma_suitable_order() (v6.18): for a file VMA the order must also divide
    ``(vm_start >> PAGE_SHIFT) - vm_pgoff`` (file offset and address congruent), which
    anonymous VMAs need not check.
    """
    from pyfolio.include.linux.mm import vma_is_anonymous

    skew = 0 if vma_is_anonymous(vma) else (vma.vm_start >> 12) - vma.vm_pgoff
    order = highest_order(orders)
    while orders:
        size = PAGE_SIZE << order
        haddr = addr & ~(size - 1)
        if haddr >= vma.vm_start and haddr + size <= vma.vm_end \
                and not skew & ((1 << order) - 1):
            break
        orders, order = next_order(orders, order)
    return orders


def thp_vma_allowable_order(vma: VMA, address: int) -> bool:
    """thp_vma_allowable_order() - may a PMD-sized THP back ``address`` in ``vma``?

    Models: include/linux/huge_mm.h:thp_vma_allowable_order(..., PMD_ORDER) (v6.18) as
    __handle_mm_fault() asks it, together with the thp_vma_suitable_order() check that
    do_huge_pmd_anonymous_page() makes first: hugepages-2048kB/enabled (default
    ``inherit``: the global policy, ``always`` unless MADV_NOHUGEPAGE, ``madvise`` only
    with MADV_HUGEPAGE, ``never`` never) allows it and the 2 MiB-aligned range around
    ``address`` lies inside the VMA.
    """
    orders = thp_vma_allowable_orders(vma, 1 << HPAGE_PMD_ORDER)
    return bool(thp_vma_suitable_orders(vma, address, orders))


def mm_get_huge_zero_folio(m: Machine) -> int:
    """mm_get_huge_zero_folio() - the huge zero folio, allocated on first use.

    Models: mm/huge_memory.c:get_huge_zero_folio() (v6.18): the first user allocates a
    zeroed order-9 folio (``thp_zero_page_alloc``; ``thp_zero_page_alloc_failed`` if it
    cannot). Simplification: once allocated it is never freed (the kernel's shrinker may).
    Returns its PFN or -1.
    """
    from pyfolio.mm.page_alloc import alloc_pages

    if m.huge_zero_pfn >= 0:
        return m.huge_zero_pfn
    try:
        pfn = alloc_pages(m, HPAGE_PMD_ORDER)
    except MmError:
        m.vmstat["thp_zero_page_alloc_failed"] += 1
        return -1
    m.mem.stamp[pfn: pfn + HPAGE_PMD_NR] = 0
    m.huge_zero_pfn = pfn  # a plain folio_alloc()ed folio: no PG_reserved
    m.vmstat["thp_zero_page_alloc"] += 1
    return pfn


def pgtable_trans_huge_deposit(vma: VMA, slot: Slot, pgtable: int) -> None:
    """pgtable_trans_huge_deposit() - park a PTE table with the PMD for a later split.

    Models: mm/pgtable-generic.c:pgtable_trans_huge_deposit() (v6.18).
    """
    vma.vm_mm.pmd_huge_pte[slot] = pgtable


def pgtable_trans_huge_withdraw(vma: VMA, slot: Slot) -> int:
    """pgtable_trans_huge_withdraw() - take back the PTE table deposited with the PMD.

    Models: mm/pgtable-generic.c:pgtable_trans_huge_withdraw() (v6.18).
    """
    return vma.vm_mm.pmd_huge_pte.pop(slot)


def maybe_pmd_mkwrite(pmd: int, vma: VMA) -> int:
    """maybe_pmd_mkwrite() - pmd_mkwrite() where the VMA is writable.

    Models: mm/huge_memory.c:maybe_pmd_mkwrite() (v6.18).
    """
    return pmd_mkwrite(pmd) if vma.writable else pmd


def _thp_pmd(folio_pfn: int, vma: VMA) -> int:
    """folio_mk_pmd() + maybe_pmd_mkwrite(pmd_mkdirty()): a fresh THP's PMD entry (D and
    soft-dirty; in a read-only VMA the dirtiness is kept in SavedDirty)."""
    entry = pfn_pte(folio_pfn, vma.vm_page_prot | _PAGE_PSE)
    return maybe_pmd_mkwrite(pmd_mkdirty(entry), vma)


def map_anon_folio_pmd(folio: Folio, slot: Slot, vma: VMA, haddr: int) -> None:
    """map_anon_folio_pmd() - map a new anon THP with one PMD.

    Models: mm/huge_memory.c:map_anon_folio_pmd() (v6.18): writable, dirty PMD; new anon
    rmap (exclusive); onto the LRU; MM_ANONPAGES += 512; ``thp_fault_alloc`` and the
    2048kB ``anon_fault_alloc``; and onto the deferred split queue as not partially
    mapped (deferred_split_folio(folio, false), for the underused-THP shrinker). Where
    that call sits moved: the v7 series tree (mm-new, Oct 2025) has it in
    __do_huge_pmd_anonymous_page(), so a do_huge_zero_wp_pmd() THP was not queued; Wei
    Yang's "mm/huge_memory: add pmd folio to ds_queue in do_huge_zero_wp_pmd()" (Cc
    stable) moved it here. 6.18.y has it (v6.18.38 read; the lab's 6.18.44 queues a
    zero-page THP); 6.18.0 not confirmed.
    """
    m = folio.m
    folio_add_new_anon_rmap(folio, vma, haddr, RMAP_EXCLUSIVE)
    folio_add_lru_vma(folio, vma)
    _set_pmd_at(m, slot, _thp_pmd(folio.pfn, vma))
    add_mm_counter(vma.vm_mm, MM_ANONPAGES, HPAGE_PMD_NR)
    m.vmstat["thp_fault_alloc"] += 1
    count_mthp_stat(m, HPAGE_PMD_ORDER, MTHP_STAT.MTHP_STAT_ANON_FAULT_ALLOC)
    deferred_split_folio(folio, False)


def _vma_alloc_anon_folio_pmd(vma: VMA) -> Folio | None:
    """vma_alloc_anon_folio_pmd(): an order-9 folio, zeroed; ``thp_fault_fallback`` and the
    2048kB ``anon_fault_fallback`` if none (no memcg, so never the _charge variants)."""
    from pyfolio.mm.page_alloc import alloc_pages

    m = vma.vm_mm.m
    try:
        pfn = alloc_pages(m, HPAGE_PMD_ORDER)
    except MmError:
        m.vmstat["thp_fault_fallback"] += 1
        count_mthp_stat(m, HPAGE_PMD_ORDER, MTHP_STAT.MTHP_STAT_ANON_FAULT_FALLBACK)
        m.trace.emit("thp_fault_fallback", reason="no free order-9 block")
        return None
    m.mem.stamp[pfn: pfn + HPAGE_PMD_NR] = 0
    m.trace.cost("pages_zeroed", HPAGE_PMD_NR)
    return Folio(m, pfn)


def do_huge_pmd_anonymous_page(vma: VMA, address: int, flags: int, slot: Slot) -> int:
    """do_huge_pmd_anonymous_page() - fault a whole 2 MiB range in with one PMD.

    Models: mm/huge_memory.c:do_huge_pmd_anonymous_page() (v6.18): a read fault maps the
    huge zero folio read-only (when use_zero_page is on); a write fault allocates an
    order-9 folio. Either way a PTE table is allocated and deposited for a later split.
    Returns VM_FAULT_FALLBACK (so the fault is retried with 4 KiB pages) when no order-9
    block is free, VM_FAULT_OOM when the page table cannot be allocated (the new folio
    is put back first: __do_huge_pmd_anonymous_page()'s ``release``).
    """
    m = vma.vm_mm.m
    haddr = address & ~(PMD_SIZE - 1)
    anon_vma_prepare(vma)
    if not flags & 1 and m.thp_use_zero_page:
        try:  # the zero-page path allocates the page table first
            pgtable = pte_alloc_one(m)
        except MmError:
            return VM_FAULT_OOM
        zero = mm_get_huge_zero_folio(m)
        if zero < 0:
            pte_free(m, pgtable)
            m.vmstat["thp_fault_fallback"] += 1
            m.trace.emit("thp_fault_fallback", reason="no huge zero folio")
            return VM_FAULT_FALLBACK
        pgtable_trans_huge_deposit(vma, slot, pgtable)
        _set_pmd_at(m, slot, pfn_pte(zero, vma.vm_page_prot | _PAGE_PSE | _PAGE_SPECIAL))
        m.trace.emit("set_huge_zero_folio", address=haddr, pfn=zero)
        return 0
    folio = _vma_alloc_anon_folio_pmd(vma)
    if folio is None:
        return VM_FAULT_FALLBACK
    try:
        pgtable = pte_alloc_one(m)
    except MmError:
        folio_put(folio)
        return VM_FAULT_OOM
    pgtable_trans_huge_deposit(vma, slot, pgtable)
    map_anon_folio_pmd(folio, slot, vma, haddr)
    m.trace.emit("do_huge_pmd_anonymous_page", changes={"folio_order": HPAGE_PMD_ORDER},
                 address=haddr, pfn=folio.pfn)
    return 0


def huge_pmd_set_accessed(vma: VMA, slot: Slot, write: bool) -> None:
    """huge_pmd_set_accessed() - a fault on a present PMD leaf: set young (and, for a
    write, pmd_mkdirty()).

    Models: mm/huge_memory.c:huge_pmd_set_accessed() and touch_pmd() (v6.18).
    """
    m = vma.vm_mm.m
    pmd = _pmd(m, slot)
    new = (pmd_mkdirty(pmd) if write else pmd) | _PAGE_ACCESSED
    if new != pmd:
        _set_pmd_at(m, slot, new)


def do_huge_zero_wp_pmd(vma: VMA, address: int, slot: Slot) -> int:
    """do_huge_zero_wp_pmd() - a write to the huge zero page: allocate a real THP.

    Models: mm/huge_memory.c:do_huge_zero_wp_pmd() (v6.13+, commit 1ced09e0331f "mm:
    Allocate THP on hugezeropage wp-fault"): the huge zero PMD is replaced by a new zeroed
    THP, no PMD split (secondary MMUs hear MMU_NOTIFY_CLEAR for the 2 MiB range first);
    if no order-9 block is free the PMD is split (into 512 zero-page PTEs) and the fault
    falls back to the PTE level. The new THP goes through map_anon_folio_pmd(), so it is
    queued for the deferred split shrinker too (seen on 6.18.44: with max_ptes_none 256
    the shrinker splits it as underused).
    """
    m = vma.vm_mm.m
    haddr = address & ~(PMD_SIZE - 1)
    folio = _vma_alloc_anon_folio_pmd(vma)
    if folio is None:
        __split_huge_pmd(vma, slot, address, False)
        return VM_FAULT_FALLBACK
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_CLEAR, vma.vm_mm, haddr, haddr + PMD_SIZE)
    map_anon_folio_pmd(folio, slot, vma, haddr)
    m.trace.emit("do_huge_zero_wp_pmd", address=haddr, pfn=folio.pfn)
    return 0


def do_huge_pmd_wp_page(vma: VMA, address: int, flags: int, slot: Slot) -> int:
    """do_huge_pmd_wp_page() - a write to a write-protected PMD-mapped THP.

    Models: mm/huge_memory.c:do_huge_pmd_wp_page() (v6.18): an exclusive folio (head page
    PG_anon_exclusive, or refcount 1 so nobody else holds it) is reused in place; a shared
    one is not copied whole: the PMD is split (__split_huge_pmd) and VM_FAULT_FALLBACK
    makes the PTE-level do_wp_page() copy just the 4 KiB page written.
    """
    m = vma.vm_mm.m
    pmd = _pmd(m, slot)
    if is_huge_zero_pmd(m, pmd):
        return do_huge_zero_wp_pmd(vma, address, slot)
    folio = page_folio(m, pte_pfn(pmd))
    reuse = m.mem.test(folio.pfn, PG.anon_exclusive)
    if not reuse and folio_ref_count(folio) == 1:
        folio_move_anon_rmap(folio, vma)
        m.mem.set(folio.pfn, PG.anon_exclusive)
        reuse = True
    if reuse:  # maybe_pmd_mkwrite(pmd_mkdirty(pmd_mkyoung(orig_pmd)))
        _set_pmd_at(m, slot, maybe_pmd_mkwrite(pmd_mkdirty(pmd | _PAGE_ACCESSED), vma))
        m.trace.emit("do_huge_pmd_wp_page", address=address, reused=True)
        return 0
    m.trace.emit("do_huge_pmd_wp_page", address=address, reused=False)
    __split_huge_pmd(vma, slot, address, False)
    return VM_FAULT_FALLBACK


def do_huge_pmd_device_private(vma: VMA, address: int, flags: int, slot: Slot) -> int:
    """do_huge_pmd_device_private() - a CPU fault on a device-private PMD entry.

    Models: mm/huge_memory.c:do_huge_pmd_device_private() (the 2025 series): the owning
    driver's ``migrate_to_ram`` is called with no PTE (the whole folio may come back),
    the folio locked and referenced around it (``folio_trylock()``, ``folio_get()``;
    then ``folio_unlock()``, ``folio_put()`` of the same folio). If the folio is already
    locked the fault returns 0 and the access faults again.
    """
    from pyfolio.include.linux.mm import folio_test_locked
    from pyfolio.mm.migrate import ref_drop, ref_hold

    m = vma.vm_mm.m
    pfn = swp_offset(_pmd(m, slot))
    folio = page_folio(m, pfn)
    if folio_test_locked(folio):
        return 0  # folio_trylock() failed
    folio_lock(folio)
    ref_hold(folio)
    pgmap = m.pgmaps[int(m.mem.pgmap[pfn])]
    ret = int(pgmap.ops.migrate_to_ram(vma, address, pfn, False))  # type: ignore[attr-defined]
    folio_unlock(folio)
    ref_drop(folio)
    return ret


def zap_huge_pmd(vma: VMA, slot: Slot, addr: int) -> None:
    """zap_huge_pmd() - unmap a whole PMD leaf: free the deposited table, drop the folio.

    Models: mm/huge_memory.c:zap_huge_pmd() (v6.18); a device-private PMD entry (series)
    is dropped the same way. An anon folio's 512 pages leave MM_ANONPAGES (a file one's
    mm_counter_file(): together, mm_counter()); the huge zero PMD was never counted. A
    file VMA's PMD has no deposited PTE table (x86 needs none: arch_needs_pgtable_deposit()
    is false).
    """
    from pyfolio.include.linux.mm import vma_is_anonymous

    m = vma.vm_mm.m
    pmd = _pmd(m, slot)
    _set_pmd_at(m, slot, 0)
    m.trace.cost("tlb_flushes")
    if vma_is_anonymous(vma):
        pte_free(m, pgtable_trans_huge_withdraw(vma, slot))
    if is_huge_zero_pmd(m, pmd):
        return
    pfn = pte_pfn(pmd) if pmd_leaf(pmd) else swp_offset(pmd)
    folio = page_folio(m, pfn)
    folio_remove_rmap_pmd(folio, folio.pfn, vma)
    add_mm_counter(vma.vm_mm, mm_counter(folio), -HPAGE_PMD_NR)
    if m.mem.test(folio.pfn, PG.swapcache):  # tlb_remove_page_size(): free_swap_cache()
        from pyfolio.mm.swap_state import free_swap_cache

        free_swap_cache(folio)
    folio_put(folio)
    m.trace.emit("zap_huge_pmd", address=addr, pfn=folio.pfn)


def copy_huge_pmd(dst_vma: VMA, src_vma: VMA, slot: Slot, addr: int) -> int:
    """copy_huge_pmd() - fork: share a PMD-mapped THP with the child.

    Models: mm/huge_memory.c:copy_huge_pmd() (v6.18): both PMDs end write-protected
    (pmdp_set_wrprotect() and pmd_wrprotect(): a set D moves to SavedDirty), the child's
    marked old; refcount and entire mapcount rise by one; PG_anon_exclusive is
    cleared. A maybe-pinned exclusive folio is not shared: the parent's PMD is split and
    -EAGAIN makes the caller copy at the PTE level. The child's MM_ANONPAGES gains 512 for
    a shared THP or a device-private PMD, nothing for the huge zero PMD. The child's PMD
    table (copy_pmd_range()'s pmd_alloc()) and the PTE table to deposit (pte_alloc_one())
    are allocated before anything else: MmError(ENOMEM), nothing counted, if they cannot
    be.
    """
    from pyfolio.include.linux.mm import vma_is_anonymous
    from pyfolio.mm.memory import pmd_slot

    if not vma_is_anonymous(dst_vma):
        return 0  # "Skip if can be re-fill on fault": the child faults file PMDs in
    m = src_vma.vm_mm.m
    pmd = _pmd(m, slot)
    dslot = pmd_slot(dst_vma.vm_mm, addr, alloc=True)
    assert dslot is not None
    pgtable = pte_alloc_one(m)
    if is_device_private_entry(pmd):
        folio = page_folio(m, swp_offset(pmd))
        folio_get(folio)
        folio_try_dup_anon_rmap_pmd(folio, folio.pfn, src_vma)
        if is_writable_device_private_entry(pmd):
            pmd = make_readable_device_private_entry(swp_offset(pmd)) | (pmd & 0xE)
            _set_pmd_at(m, slot, pmd)
        add_mm_counter(dst_vma.vm_mm, MM_ANONPAGES, HPAGE_PMD_NR)
        pgtable_trans_huge_deposit(dst_vma, dslot, pgtable)
        _set_pmd_at(m, dslot, pmd)
        return 0
    if is_huge_zero_pmd(m, pmd):
        pgtable_trans_huge_deposit(dst_vma, dslot, pgtable)
        _set_pmd_at(m, dslot, pmd)
        return 0
    folio = page_folio(m, pte_pfn(pmd))
    if not folio_try_dup_anon_rmap_pmd(folio, folio.pfn, src_vma):
        pte_free(m, pgtable)
        __split_huge_pmd(src_vma, slot, addr, False)
        return -EAGAIN
    folio_get(folio)
    add_mm_counter(dst_vma.vm_mm, MM_ANONPAGES, HPAGE_PMD_NR)
    pgtable_trans_huge_deposit(dst_vma, dslot, pgtable)
    pmd = pmd_wrprotect(pmd)
    _set_pmd_at(m, slot, pmd)
    _set_pmd_at(m, dslot, pte_mkold(pmd))
    m.trace.emit("copy_huge_pmd", address=addr, pfn=folio.pfn)
    return 0


def copy_nonpresent_pte(dst_vma: VMA, src_vma: VMA, src_slot: Slot, dst_slot: Slot,
                        addr: int) -> None:
    """copy_nonpresent_pte() - fork of a swap-format PTE.

    Models: mm/memory.c:copy_nonpresent_pte() (v6.18): a device-private entry shares its
    device folio with the child (reference and mapcount +1, and the child's
    ``rss[mm_counter(folio)]++``: "treated just like normal pages"); a writable one is
    made readable in both so a later write goes through the fault path. A genuine swap
    entry gains a reference on its slot (swap_duplicate(): the swap count becomes 2, and
    smaps' SwapPss halves), loses its exclusive bit in the parent ("Mark the swap entry as
    shared") and counts in the child's MM_SWAPENTS.
    """
    from pyfolio.include.linux.swapops import (
        is_swap_entry,
        pte_swp_clear_exclusive,
        pte_swp_exclusive,
        pte_to_swp_entry,
    )

    m = src_vma.vm_mm.m
    raw = int(m.pgtables[src_slot[0]][src_slot[1]])
    if is_swap_entry(raw):
        from pyfolio.mm.swapfile import swap_duplicate

        if swap_duplicate(m, pte_to_swp_entry(raw)) < 0:
            raise MmError(ENOMEM, "fork: a swap count cannot rise further (no continuation "
                                  "pages in the simulator)")
        if pte_swp_exclusive(raw):
            raw = pte_swp_clear_exclusive(raw)
            m.pgtables[src_slot[0]][src_slot[1]] = raw
        add_mm_counter(dst_vma.vm_mm, MM_SWAPENTS, 1)
    elif is_device_private_entry(raw):
        pfn = swp_offset(raw)
        folio = page_folio(m, pfn)
        folio_get(folio)
        folio_try_dup_anon_rmap_ptes(folio, pfn, 1, src_vma)
        add_mm_counter(dst_vma.vm_mm, mm_counter(folio), 1)
        if is_writable_device_private_entry(raw):
            raw = make_readable_device_private_entry(pfn) | (raw & 0xE & ~_PAGE_SWP_EXCLUSIVE)
            m.pgtables[src_slot[0]][src_slot[1]] = raw
    m.pgtables[dst_slot[0]][dst_slot[1]] = raw
    m.trace.cost("pte_writes")


def change_huge_pmd(vma: VMA, slot: Slot, addr: int, writable: bool) -> int:
    """change_huge_pmd() - mprotect of a whole PMD leaf; returns HPAGE_PMD_NR when a
    PMD leaf was changed (change_pmd_range() counts it in ``numa_huge_pte_updates``),
    else 0.

    Models: mm/huge_memory.c:change_huge_pmd() (v6.18): pmd_modify() with the VMA's
    protection (a private mapping's has no RW; a shared one's has, unless the file wants
    write notification; a PROT_NONE VMA's is PAGE_NONE: the PMD stays a leaf, P cleared,
    PROTNONE set, PFN inverted), then pmd_mkwrite() where the VMA is writable and the folio
    anon and exclusive (can_change_pmd_writable(): never the huge zero folio); otherwise
    the next write takes a write-protect fault. pmd_modify() keeps the dirtiness as
    pte_modify() does (D to SavedDirty), with the 6.18.y fix
    (pgtable.PMD_MODIFY_DROPS_DIRTY).
    A PMD migration entry or device-private PMD (is_swap_pmd(), the series) loses its
    write permission instead (:func:`pyfolio.mm.mprotect.change_nonpresent_entry`).
    """
    from pyfolio.mm.memory_file import vma_page_prot
    from pyfolio.mm.mprotect import change_nonpresent_entry

    m = vma.vm_mm.m
    pmd = _pmd(m, slot)
    if pmd and not pmd_present(pmd):  # is_swap_pmd(): migration or device-private
        new = change_nonpresent_entry(m, pmd)
        if new != pmd:
            _set_pmd_at(m, slot, new)
        return 0
    if not pmd_leaf(pmd):
        return 0
    new = pmd_modify(pmd, vma_page_prot(vma))
    if writable and not new & _PAGE_RW and not is_huge_zero_pmd(m, pmd) and \
            folio_test_anon(page_folio(m, pte_pfn(pmd))) and \
            m.mem.test(pte_pfn(pmd), PG.anon_exclusive):
        new = pmd_mkwrite(new)
    if new != pmd:
        _set_pmd_at(m, slot, new)
        m.trace.cost("tlb_flushes")
    return HPAGE_PMD_NR


def split_huge_pmd(vma: VMA, slot: Slot, address: int) -> None:
    """split_huge_pmd() - replace one PMD mapping with a table of 512 PTEs.

    Models: mm/huge_memory.c:split_huge_pmd() (v6.18). Never fails. The folio stays one
    order-9 folio, now PTE-mapped.
    """
    __split_huge_pmd(vma, slot, address, False)


def __split_huge_pmd(vma: VMA, slot: Slot, address: int, freeze: bool) -> None:
    """__split_huge_pmd() - split the PMD at ``slot`` if it is a leaf or a swap-format
    (migration or device-private) PMD entry; ``freeze`` installs migration entries.

    Models: mm/huge_memory.c:__split_huge_pmd() (v6.18): secondary MMUs hear
    MMU_NOTIFY_CLEAR over the 2 MiB range first, whatever the PMD holds.
    """
    m = vma.vm_mm.m
    haddr = address & ~(PMD_SIZE - 1)
    invalidate_secondary_mmus(MMU_NOTIFY.MMU_NOTIFY_CLEAR, vma.vm_mm, haddr, haddr + PMD_SIZE)
    pmd = _pmd(m, slot)
    if pmd_leaf(pmd) or (pmd and not pmd & _PAGE_PRESENT):
        __split_huge_pmd_locked(vma, slot, address & ~(PMD_SIZE - 1), freeze)


def split_huge_pmd_address(vma: VMA, address: int, freeze: bool) -> None:
    """split_huge_pmd_address() - find the PMD for ``address`` and split it if huge.

    Models: mm/huge_memory.c:split_huge_pmd_address() (v6.18).
    """
    slot = _memory.pmd_slot(vma.vm_mm, address)  # mm_find_pmd()
    if slot is not None:
        __split_huge_pmd(vma, slot, address, freeze)


def __split_huge_pmd_locked(vma: VMA, slot: Slot, haddr: int, freeze: bool) -> None:
    """__split_huge_pmd_locked() - the split itself.

    Models: mm/huge_memory.c:__split_huge_pmd_locked() (v6.18; device-private PMDs as in
    the merged series, read in the linux-mm tree):

    * ``thp_split_pmd`` is counted; a huge zero PMD becomes 512 zero-page PTEs.
    * In a file VMA the PMD is only cleared: no PTEs are made, the next access faults them
      in (:func:`pyfolio.mm.huge_memory_file.split_huge_pmd_file`).
    * The deposited PTE table is withdrawn and filled with 512 entries, page i of the folio
      in entry i, each inheriting write, dirty (pmd_dirty(): D or SavedDirty; the PTE gets
      pte_mkdirty(), so D when writable, SavedDirty when not, and soft-dirty), young,
      soft-dirty and uffd-wp.
    * A present PMD without ``freeze``: ``folio_ref_add(folio, 511)`` so each PTE holds a
      reference, every page gets a PTE mapping (RMAP_EXCLUSIVE if the head page was
      PageAnonExclusive), and the PMD mapping is removed (_entire_mapcount -1).
    * With ``freeze`` (used to split the folio): an exclusive folio is shared first
      (folio_try_share_anon_rmap_pmd() clears the head's PG_anon_exclusive); if it may be
      pinned that fails and the PMD is split without freeze. Otherwise 512 migration
      entries (writable if the PMD was, else readable-exclusive if the head page was
      exclusive, else readable), no PTE mappings, the PMD mapping removed and the PMD's
      reference dropped (put_page()).
    * A PMD migration entry becomes 512 PTE migration entries of the same kind (an anon
      folio's readable-exclusive stays readable-exclusive); no rmap and no reference
      changes (put_page() only with ``freeze``, as the kernel writes it).
    * A device-private PMD becomes 512 device-private PTEs, with references and PTE
      mappings as for a present PMD (exclusive if the head page was); with ``freeze``, as
      for a present PMD, migration entries instead.

    The young and dirty bits x86-64 keeps in each migration entry made with ``freeze`` are
    kept beside it (``m.migration_ad``) for remove_migration_pte().
    """
    if not freeze and split_huge_pmd_present_run(vma, slot, haddr):  # the same, batched
        return
    from pyfolio.arch.x86.pgtable import _PAGE_SWP_UFFD_WP, swp_type
    from pyfolio.include.linux.mm import vma_is_anonymous
    from pyfolio.include.linux.swapops import SwpType, is_migration_entry
    from pyfolio.mm.rmap import swp_entries

    m = vma.vm_mm.m
    pmd = _pmd(m, slot)
    m.vmstat["thp_split_pmd"] += 1
    if not vma_is_anonymous(vma):
        from pyfolio.mm.huge_memory_file import split_huge_pmd_file

        split_huge_pmd_file(vma, slot, haddr, pmd)
        return
    pgtable = pgtable_trans_huge_withdraw(vma, slot)
    tbl = m.pgtables[pgtable]
    if is_huge_zero_pmd(m, pmd):
        tbl[:] = pfn_pte(m.zero_pfn, vma.vm_page_prot | _PAGE_SPECIAL)
        _finish_split(vma, slot, pgtable, haddr, pmd, "zero")
        return
    migration, device = is_migration_entry(pmd), is_device_private_entry(pmd)
    pfn = swp_offset(pmd) if migration or device else pte_pfn(pmd)
    folio = page_folio(m, pfn)
    young = dirty = False
    if migration:
        soft_dirty, uffd_wp = pmd & _PAGE_SWP_SOFT_DIRTY, pmd & _PAGE_SWP_UFFD_WP
        write = is_writable_migration_entry(pmd)
        anon_exclusive = folio_test_anon(folio) and \
            swp_type(pmd) == SwpType.SWP_MIGRATION_READ_EXCLUSIVE
    else:
        if device:
            soft_dirty, uffd_wp = pmd & _PAGE_SWP_SOFT_DIRTY, pmd & _PAGE_SWP_UFFD_WP
            write = is_writable_device_private_entry(pmd)
        else:
            soft_dirty, uffd_wp = pte_soft_dirty(pmd), pmd & _PAGE_UFFD_WP
            write, young, dirty = bool(pmd & _PAGE_RW), bool(pmd & _PAGE_ACCESSED), \
                pmd_dirty(pmd)
            if dirty:
                m.mem.set(folio.pfn, PG.dirty)
        anon_exclusive = m.mem.test(folio.pfn, PG.anon_exclusive)
        if freeze and anon_exclusive and not folio_try_share_anon_rmap_pmd(folio, folio.pfn):
            freeze = False
        if not freeze:
            folio_ref_add(folio, HPAGE_PMD_NR - 1)
            folio_add_anon_rmap_ptes(folio, folio.pfn, HPAGE_PMD_NR, vma, haddr,
                                     RMAP_EXCLUSIVE if anon_exclusive else RMAP_NONE)
    pfns = np.arange(pfn, pfn + HPAGE_PMD_NR, dtype=np.uint64)
    if freeze or migration:
        typ = (SwpType.SWP_MIGRATION_WRITE if write else SwpType.SWP_MIGRATION_READ_EXCLUSIVE
               if anon_exclusive else SwpType.SWP_MIGRATION_READ)
        tbl[:] = swp_entries(np.full(HPAGE_PMD_NR, typ), pfns) | np.uint64(
            (_PAGE_SWP_SOFT_DIRTY if soft_dirty else 0) | (_PAGE_SWP_UFFD_WP if uffd_wp else 0))
        if freeze and not device:  # the PMD's young/dirty go into each entry (x86-64)
            m.migration_ad.update(zip(zip(repeat(pgtable), range(HPAGE_PMD_NR)),
                                      repeat(int(young) | (2 * int(dirty)))))
    elif device:
        typ = SwpType.SWP_DEVICE_WRITE if write else SwpType.SWP_DEVICE_READ
        tbl[:] = swp_entries(np.full(HPAGE_PMD_NR, typ), pfns) | np.uint64(
            (_PAGE_SWP_SOFT_DIRTY if soft_dirty else 0) | (_PAGE_SWP_UFFD_WP if uffd_wp else 0))
    else:
        prot = vma.vm_page_prot  # PAGE_NONE in a PROT_NONE VMA: the PFNs inverted
        frames = pfns << np.uint64(12)
        if not prot & _PAGE_PRESENT:
            frames = ~frames & np.uint64(PTE_PFN_MASK)
        tbl[:] = frames | np.uint64(_split_pte_bits(prot, write, young, dirty,
                                                    bool(soft_dirty), bool(uffd_wp)))
    if not migration:
        folio_remove_rmap_pmd(folio, folio.pfn, vma)
    if freeze:
        folio_put(folio)
    _finish_split(vma, slot, pgtable, haddr, pmd,
                  "migration" if freeze or migration else "device_private" if device else "pte")


def _split_pte_bits(prot: int, write: bool, young: bool, dirty: bool, soft_dirty: bool,
                    uffd_wp: bool) -> int:
    """The flag bits every PTE of a split present PMD gets, in the kernel's order:
    mk_pte(vma->vm_page_prot) (``prot``), pte_mkwrite() if the PMD was writable,
    pte_mkold() if it was not young, pte_mkdirty() if pmd_dirty() (D and soft-dirty; on a
    read-only PTE D lands in SavedDirty), pte_mksoft_dirty() if the PMD was soft-dirty,
    uffd-wp."""
    entry = prot
    if write:
        entry = pte_mkwrite(entry)
    if not young:
        entry = pte_mkold(entry)
    if dirty:
        entry = pte_mkdirty(entry)
    if soft_dirty:
        entry = pte_mksoft_dirty(entry)
    return entry | (_PAGE_UFFD_WP if uffd_wp else 0)


def _finish_split(vma: VMA, slot: Slot, pgtable: int, haddr: int, old: int, into: str) -> None:
    """pmd_populate(): point the PMD at the filled PTE table. Only a present PMD (a THP or
    the huge zero page) was cleared with a TLB flush (pmdp_invalidate() /
    pmdp_huge_clear_flush()); a migration or device-private PMD is not in the TLB."""
    m = vma.vm_mm.m
    m.trace.cost("pte_writes", HPAGE_PMD_NR)
    if pmd_present(old):
        m.trace.cost("tlb_flushes")
    _set_pmd_at(m, slot, pfn_pte(pgtable, _PAGE_TABLE))
    m.trace.emit("split_huge_pmd", changes={"ptes_written": HPAGE_PMD_NR, "into": into},
                 address=haddr, old_pmd=old)


def vma_adjust_trans_huge(vma: VMA, start: int, end: int) -> None:
    """vma_adjust_trans_huge() - before a VMA is cut at ``start``/``end``, split any PMD
    leaf that the cut would straddle (split_huge_pmd_if_needed()).

    Models: mm/huge_memory.c:vma_adjust_trans_huge() (v6.18).
    """
    for address in (start, end):
        if address & (PMD_SIZE - 1):
            lo = address & ~(PMD_SIZE - 1)
            if vma.vm_start <= lo and lo + PMD_SIZE <= vma.vm_end:
                split_huge_pmd_address(vma, address, False)


def deferred_split_folio(folio: Folio, partially_mapped: bool) -> None:
    """deferred_split_folio() - queue a large anon folio for the deferred split shrinker.

    Models: mm/huge_memory.c:deferred_split_folio() (v6.18): orders <= 1 are never queued;
    a partially mapped folio is flagged PG_partially_mapped, once: ``thp_deferred_split_page``
    for PMD-sized ones, and the per-size ``split_deferred`` and
    ``nr_anon_partially_mapped`` (+1) for every size; every new THP is queued unflagged,
    so the shrinker can split it if it turns out underused (shrink_underused).
    """
    m = folio.m
    order = folio_order(folio)
    if order <= 1 or m.mem.test(folio.pfn, PG.swapcache):
        return
    if partially_mapped:
        if not m.mem.test(folio.pfn, PG.partially_mapped):
            m.mem.set(folio.pfn, PG.partially_mapped)
            if order == HPAGE_PMD_ORDER:
                m.vmstat["thp_deferred_split_page"] += 1
            count_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_SPLIT_DEFERRED)
            mod_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_NR_ANON_PARTIALLY_MAPPED, 1)
            m.trace.emit("deferred_split_folio", pfn=folio.pfn, partially_mapped=True)
    elif not m.thp_shrink_underused:
        return
    m.deferred_split_queue.setdefault(folio.pfn, None)


def __folio_unqueue_deferred_split(folio: Folio) -> bool:
    """__folio_unqueue_deferred_split() - take the folio off the deferred split queue; a
    partially mapped one loses PG_partially_mapped and ``nr_anon_partially_mapped`` -1.
    Returns whether it was queued.

    Models: mm/huge_memory.c:__folio_unqueue_deferred_split() (v6.18), and the same
    unqueue step inlined in __folio_split() under the freeze and in deferred_split_scan()
    when folio_try_get() loses the race with the last folio_put().
    """
    m = folio.m
    if m.deferred_split_queue.pop(folio.pfn, False) is False:
        return False
    if m.mem.test(folio.pfn, PG.partially_mapped):
        m.mem.clear(folio.pfn, PG.partially_mapped)
        mod_mthp_stat(m, folio_order(folio), MTHP_STAT.MTHP_STAT_NR_ANON_PARTIALLY_MAPPED, -1)
    return True


def madvise_free_huge_pmd(vma: VMA, slot: Slot, addr: int, next_: int) -> bool:
    """madvise_free_huge_pmd() - MADV_FREE over a PMD-mapped THP.

    Models: mm/huge_memory.c:madvise_free_huge_pmd() (v6.18): a folio mapped by another
    process is left alone; a range covering only part of the THP splits the folio at once
    (split_folio()); a whole one is marked clean and old without any split and handed to
    folio_mark_lazyfree(), which, the folio being large, makes it lazy-free at once
    (PG_swapbacked cleared, ``pglazyfree`` +512). Returns True when the PMD was handled
    whole.
    """
    m = vma.vm_mm.m
    pmd = _pmd(m, slot)
    if is_huge_zero_pmd(m, pmd) or not pmd_present(pmd):
        return True
    folio = page_folio(m, pte_pfn(pmd))
    # folio_maybe_mapped_shared(): a folio mapped once is mapped by this PMD alone
    if int(m.mem._large_mapcount[folio.pfn]) and folio_mms(folio) - {vma.vm_mm.id}:
        return True
    if next_ - addr != PMD_SIZE:
        from pyfolio.mm.huge_memory_split import split_folio

        folio_get(folio)
        folio_lock(folio)
        split_folio(folio)
        folio_unlock(folio)
        folio_put(folio)
        return False
    m.mem.clear(folio.pfn, PG.dirty)  # folio_clear_dirty()
    _set_pmd_at(m, slot, pte_mkold(pmd_mkclean(pmd)))
    folio_mark_lazyfree(folio)
    m.trace.emit("madvise_free_huge_pmd", address=addr, pfn=folio.pfn)
    return True

