"""Migration entries in and out, and moving struct-page state from one folio to another.

Models: mm/migrate.c (remove_migration_ptes(), remove_migration_pte(),
folio_migrate_mapping(), folio_migrate_flags()), the PMD halves of mm/huge_memory.c
(set_pmd_migration_entry(), remove_migration_pmd()), and mm/vmscan.c:folio_isolate_lru()
/ mm/migrate.c:folio_putback_lru(), as the folio split (remap_page()) and the
device-migration path (mm/migrate_device.c, merged series, linux-mm tree) use them.
``try_to_migrate()`` (mm/rmap.c) lives in :mod:`pyfolio.mm.rmap` and is re-exported here.
The migrate_vma interface of include/linux/migrate.h (``MIGRATE_PFN_*``,
``MIGRATE_VMA_SELECT``, :class:`MigrateVma`, migrate_pfn()) is defined at the end, for
:mod:`pyfolio.mm.migrate_device`, which re-exports it.

Simplifications: no page cache (``mapping`` is NULL for anon folios); the young and dirty
bits x86-64 keeps in a migration PTE are kept beside it (``m.migration_ad``, written by
try_to_migrate() and the freezing PMD split): a restored entry is old unless the entry was
young, dirty when the folio and the entry are; an entry made elsewhere restores young,
dirty when the folio is PG_dirty. References held between steps by isolation are recorded in
``m.mem.extra_refs`` (see :func:`ref_hold`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from pyfolio.arch.x86.pgtable import (
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
    pfn_pte,
    pmd_mkdirty,
    pmd_mkwrite,
    pmd_present,
    pte_dirty,
    pte_index,
    pte_mkdirty,
    pte_mksoft_dirty,
    pte_mkwrite,
    pte_present,
    swp_offset,
    swp_type,
    vm_page_prot,
)
from pyfolio.include.linux.huge_mm import MTHP_STAT, mod_mthp_stat
from pyfolio.include.linux.mm import (
    Folio,
    add_mm_counter,
    folio_expected_ref_count,
    folio_get,
    folio_nr_pages,
    folio_order,
    folio_put,
    folio_ref_count,
    folio_test_anon,
    folio_test_large,
    mm_counter,
    page_folio,
)
from pyfolio.include.linux.swapops import (
    SwpType,
    is_migration_entry,
    is_writable_device_private_entry,
    make_readable_device_private_entry,
    make_readable_exclusive_migration_entry,
    make_readable_migration_entry,
    make_writable_device_private_entry,
    make_writable_migration_entry,
)
from pyfolio.mm.rmap import (
    RMAP_EXCLUSIVE,
    RMAP_NONE,
    anon_vma_ranges,
    folio_add_anon_rmap_pmd,
    folio_remove_rmap_pmd,
    folio_remove_rmap_pte,
    folio_try_share_anon_rmap_pmd,
    folio_try_share_anon_rmap_pte,
    pmd_chunks,
    pte_table_of,
    swp_entries,
    try_to_migrate,
)
from pyfolio.sim.errors import EBUSY, KernelBug
from pyfolio.sim.memmap import NO_HEAD, PG, ZONE_DEVICE
from pyfolio.sim.units import HPAGE_PMD_ORDER, PAGE_SHIFT, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.mm_types import VMA
    from pyfolio.sim.machine import Machine

__all__ = ["RMP_LOCKED", "RMP_USE_SHARED_ZEROPAGE", "ref_hold", "ref_drop",
           "folio_isolate_lru", "folio_putback_lru", "set_pte_migration_entry",
           "set_pmd_migration_entry", "try_to_migrate", "remove_migration_ptes",
           "remove_migration_entries", "folio_migrate_mapping", "folio_migrate_flags",
           "MIGRATE_PFN", "MIGRATE_PFN_VALID", "MIGRATE_PFN_MIGRATE", "MIGRATE_PFN_WRITE",
           "MIGRATE_PFN_COMPOUND", "MIGRATE_PFN_SHIFT", "MIGRATE_VMA_SELECT", "MigrateVma",
           "migrate_pfn", "migrate_pfn_to_page"]

#: include/linux/rmap.h enum rmp_flags (v6.18); later trees fold them into ttu_flags.
RMP_LOCKED = 1 << 0
RMP_USE_SHARED_ZEROPAGE = 1 << 1
_U64 = np.uint64
_TYPE_SHIFT = _U64(59)
_MIG_READ, _MIG_WRITE = _U64(SwpType.SWP_MIGRATION_READ), _U64(SwpType.SWP_MIGRATION_WRITE)
_PG_HEAD, _PG_MLOCKED = np.uint32(PG.head), np.uint32(PG.mlocked)
_PG_ANON_EXCLUSIVE = np.uint32(PG.anon_exclusive)
_PG_DIRTY_BIT = np.uint32(int(PG.dirty).bit_length() - 1)
#: swap-format soft-dirty / uffd-wp bit -> the present PTE's bit (x86-64)
_SOFT_DIRTY_SHIFT = _U64(_PAGE_SOFT_DIRTY.bit_length() - _PAGE_SWP_SOFT_DIRTY.bit_length())
_UFFD_WP_SHIFT = _U64(_PAGE_UFFD_WP.bit_length() - _PAGE_SWP_UFFD_WP.bit_length())
Slot = tuple[int, int]


def ref_hold(folio: Folio) -> None:
    """folio_get() for a reference held outside page tables (recorded in extra_refs)."""
    folio_get(folio)
    folio.m.mem.extra_refs[folio.pfn] += 1


def ref_drop(folio: Folio) -> None:
    """folio_put() of a reference taken with :func:`ref_hold` (may free the folio)."""
    mem = folio.m.mem
    mem.extra_refs[folio.pfn] -= 1
    if mem.extra_refs[folio.pfn] <= 0:
        del mem.extra_refs[folio.pfn]
    folio_put(folio)


def folio_isolate_lru(folio: Folio) -> bool:
    """folio_isolate_lru() - take the folio off the LRU, holding a reference for it.

    Models: mm/vmscan.c:folio_isolate_lru() (v6.18): fails (False) if not on the LRU.
    """
    if not folio.m.mem.test(folio.pfn, PG.lru):
        return False
    folio.m.mem.clear(folio.pfn, PG.lru)
    ref_hold(folio)
    return True


def folio_putback_lru(folio: Folio) -> None:
    """folio_putback_lru() - back on the LRU, dropping the isolation reference.

    Models: mm/vmscan.c:folio_putback_lru() (v6.18): folio_add_lru(), then folio_put().
    """
    from pyfolio.mm.swap import folio_add_lru  # mm/swap.py holds folios with ref_hold()

    folio_add_lru(folio)
    ref_drop(folio)


def _migration_entry(folio: Folio, raw: int, pfn: int, anon_exclusive: bool) -> int:
    """The migration entry that replaces ``raw`` (present or device-private) for ``pfn``:
    writable if it was, else readable-exclusive for an exclusive page, else readable;
    soft-dirty kept; a dirty present entry dirties the folio (try_to_migrate_one())."""
    if pte_present(raw):
        write, soft = bool(raw & _PAGE_RW), bool(raw & _PAGE_SOFT_DIRTY)
        if pte_dirty(raw):  # D or SavedDirty
            folio.m.mem.set(folio.pfn, PG.dirty)
    else:
        write, soft = is_writable_device_private_entry(raw), bool(raw & _PAGE_SWP_SOFT_DIRTY)
    make = (make_writable_migration_entry if write else
            make_readable_exclusive_migration_entry if anon_exclusive else
            make_readable_migration_entry)
    return make(pfn) | (_PAGE_SWP_SOFT_DIRTY if soft else 0)


def set_pte_migration_entry(vma: VMA, slot: Slot, pfn: int) -> bool:
    """Replace one PTE (present or device-private) mapping ``pfn`` with a migration entry.

    Models: the per-PTE body of mm/migrate_device.c:migrate_vma_collect_pmd() and
    mm/rmap.c:try_to_migrate_one(): an exclusive page must become shareable first
    (folio_try_share_anon_rmap_pte(); False if it may be pinned, entry untouched); the
    dirty bit moves to the folio; the rmap and the mapping's reference are dropped.
    """
    m = vma.vm_mm.m
    raw = int(m.pgtables[slot[0]][slot[1]])
    folio = page_folio(m, pfn)
    excl = folio_test_anon(folio) and m.mem.test(pfn, PG.anon_exclusive)
    if excl and not folio_try_share_anon_rmap_pte(folio, pfn):
        return False
    m.pgtables[slot[0]][slot[1]] = _migration_entry(folio, raw, pfn, excl)
    m.trace.cost("pte_writes")
    folio_remove_rmap_pte(folio, pfn, vma)
    folio_put(folio)
    return True


def set_pmd_migration_entry(vma: VMA, slot: Slot, pfn: int) -> int:
    """set_pmd_migration_entry() - replace a PMD mapping (present or device-private) with a
    PMD migration entry.

    Models: mm/huge_memory.c:set_pmd_migration_entry() (merged series, linux-mm): an
    exclusive folio that cannot be shared (maybe pinned) gives -EBUSY with the PMD
    unchanged; otherwise the PMD rmap and the mapping's reference go. The deposited PTE
    table stays with the PMD. Returns 0 or -EBUSY.
    """
    m = vma.vm_mm.m
    raw = int(m.pgtables[slot[0]][slot[1]])
    folio = page_folio(m, pfn)
    excl = folio_test_anon(folio) and m.mem.test(folio.pfn, PG.anon_exclusive)
    if excl and not folio_try_share_anon_rmap_pmd(folio, folio.pfn):
        return -EBUSY
    m.pgtables[slot[0]][slot[1]] = _migration_entry(folio, raw, folio.pfn, excl)
    m.trace.cost("pmd_writes")
    if pmd_present(raw):  # pmdp_invalidate() flushes; pmdp_huge_get_and_clear() does not
        m.trace.cost("tlb_flushes")
    folio_remove_rmap_pmd(folio, folio.pfn, vma)
    folio_put(folio)
    return 0


def remove_migration_ptes(src: Folio, dst: Folio, flags: int = 0) -> int:
    """remove_migration_ptes() - turn every migration entry pointing into ``src`` into a
    mapping of the same page of ``dst``; returns the number of entries replaced.

    Models: mm/migrate.c:remove_migration_ptes() with remove_migration_pte() (v6.18, and
    the merged device-private series) and mm/huge_memory.c:remove_migration_pmd(): the
    walk goes through ``dst``'s anon_vma (rmap_walk(dst)). Each PTE entry becomes a PTE
    with the VMA's protection, writable if the entry was, dirty if the folio is dirty
    (pte_mkdirty() before pte_mkwrite(): D if writable, else SavedDirty), soft-dirty
    exactly as the entry had it, uffd-wp kept; the page gets a PTE mapping
    (RMAP_EXCLUSIVE unless the entry was readable) and its folio a reference. A
    device-private page gets a device-private entry (writable iff the migration entry
    was) instead; a PMD migration entry becomes a PMD (or device-private PMD) the same
    way, except that remove_migration_pmd() calls pmd_mkwrite() before pmd_mkdirty(),
    which sets soft-dirty whatever the entry had. With RMP_USE_SHARED_ZEROPAGE,
    try_to_map_unused_to_zeropage(): an order-0, not mlocked
    page whose contents are all zero (stamp 0) is mapped to the shared zero page
    (special, read-only, soft-dirty and uffd-wp kept) with no reference and no rmap.
    An entry whose young/dirty bits were kept (``m.migration_ad``) comes back old unless
    it was young, and dirty only if it was dirty too (!is_migration_entry_young():
    pte_mkold(); is_migration_entry_dirty()). Simplifications: no VM_LOCKED or
    mm_forbids_zeropage().
    """
    m = src.m
    done, zero = remove_migration_entries(m, dst.pfn, src.pfn, folio_nr_pages(src), dst.pfn,
                                          flags)
    m.trace.emit("remove_migration_ptes", changes={"entries": done + zero}, src=src.pfn,
                 dst=dst.pfn)
    return done + zero


def remove_migration_entries(m: Machine, anon: int, src: int, nr: int, dst: int,
                             flags: int) -> tuple[int, int]:
    """The rmap walk of remove_migration_ptes(): through the anon_vma of the folio at
    ``anon``, every migration entry for pages [src, src + nr) becomes a mapping of page
    ``dst + (pfn - src)``. Returns (entries mapped, entries put on the shared zero page).
    remap_page() uses it once for all the folios a split made. Each entry put on the
    zero page is one page less in the mm's ``rss[mm_counter(folio)]``
    (try_to_map_unused_to_zeropage(): dec_mm_counter())."""
    restored = zeroed = 0
    for vma, lo, hi in list(anon_vma_ranges(m, anon, nr)):
        for addr, nxt, slot in pmd_chunks(vma, lo, hi):
            pmd = int(m.pgtables[slot[0]][slot[1]])
            if is_migration_entry(pmd) and src <= swp_offset(pmd) < src + nr:
                _remove_migration_pmd(vma, slot, addr, pmd, dst + swp_offset(pmd) - src)
                restored += 1
                continue
            table = pte_table_of(m, slot)
            if table is not None:
                r, z = _remap_table(m, table, pte_index(addr), (nxt - addr) >> PAGE_SHIFT,
                                    src, nr, dst - src, flags, vma.vm_page_prot)
                restored, zeroed = restored + r, zeroed + z
                if z:
                    add_mm_counter(vma.vm_mm, mm_counter(page_folio(m, anon)), -z)
    return restored, zeroed


def _remove_migration_pmd(vma: VMA, slot: Slot, addr: int, old: int, new_pfn: int) -> None:
    """mm/huge_memory.c:remove_migration_pmd(): a PMD migration entry back to a PMD
    mapping of the (PMD-sized) folio at ``new_pfn``, or to a device-private PMD.

    remove_migration_pte() first checks ``VM_BUG_ON_FOLIO(folio_test_hugetlb(folio) ||
    !folio_test_pmd_mappable(folio), folio)``: a PMD migration entry whose folio was split
    meanwhile is a kernel bug, raised here as :class:`~pyfolio.sim.errors.KernelBug` (a
    CONFIG_DEBUG_VM kernel stops there; without it remove_migration_pmd() maps the small
    folio with a PMD and folio_add_anon_rmap_pmd() counts an entire mapping on it). The
    merged device-migration series reaches it: see :func:`pyfolio.mm.migrate_device.
    migrate_vma_split_unmapped_folio` (a THP shared by fork() and migrated to a device
    without large pages).
    """
    from pyfolio.mm.memremap import is_device_private_page

    m = vma.vm_mm.m
    folio = page_folio(m, new_pfn)
    if folio_order(folio) < HPAGE_PMD_ORDER:  # !folio_test_pmd_mappable(folio)
        raise KernelBug(
            f"VM_BUG_ON_FOLIO(!folio_test_pmd_mappable(folio)) in mm/migrate.c:"
            f"remove_migration_pte(): mm {vma.vm_mm.id} still has a PMD migration entry at "
            f"{addr & ~(PMD_SIZE - 1):#x} for page {swp_offset(old):#x}, whose THP was split "
            f"(the new folio {folio.pfn:#x} has order {folio_order(folio)}). "
            "migrate_device_unmap()'s try_to_migrate(folio, 0) turned this other mapping "
            "into a PMD migration entry; migrate_vma_split_unmapped_folio() splits only the "
            "migrating VMA's PMD (split_huge_pmd_address()) before folio_split_unmapped().")
    write = swp_type(old) == SwpType.SWP_MIGRATION_WRITE
    soft = bool(old & _PAGE_SWP_SOFT_DIRTY)
    folio_get(folio)
    folio_add_anon_rmap_pmd(folio, folio.pfn, vma, addr & ~(PMD_SIZE - 1),
                            RMAP_NONE if swp_type(old) == SwpType.SWP_MIGRATION_READ
                            else RMAP_EXCLUSIVE)
    if is_device_private_page(m, new_pfn):
        make = make_writable_device_private_entry if write else make_readable_device_private_entry
        entry = make(new_pfn) | (_PAGE_SWP_SOFT_DIRTY if soft else 0)
    else:  # soft-dirty, pmd_mkwrite(), then pmd_mkdirty() (which sets soft-dirty too)
        entry = pfn_pte(new_pfn, vma.vm_page_prot | _PAGE_PSE)
        if soft:
            entry = pte_mksoft_dirty(entry)
        if write:
            entry = pmd_mkwrite(entry)
        if m.mem.test(folio.pfn, PG.dirty):
            entry = pmd_mkdirty(entry)
    m.pgtables[slot[0]][slot[1]] = entry
    m.trace.cost("pmd_writes")


def _remap_table(m: Machine, table: int, i0: int, n: int, src: int, nr: int, delta: int,
                 flags: int, prot: int) -> tuple[int, int]:
    """remove_migration_pte() for every migration entry for [src, src + nr) among the
    entries [i0, i0 + n) of one PTE table, vectorised (the new page is pfn + delta);
    ``prot`` is the VMA's vm_page_prot (PAGE_NONE: PROT_NONE entries, PFNs inverted)."""
    ents = m.pgtables[table][i0: i0 + n]
    typ, pfns, mig = migration_entry_pfns(ents)
    hit = mig & (pfns >= _U64(src)) & (pfns < _U64(src + nr))
    sel: slice | np.ndarray = slice(0, n) if hit.all() else np.flatnonzero(hit)
    if isinstance(sel, np.ndarray) and not len(sel):
        return 0, 0
    return remap_entries(m, table, i0, sel, pfns[sel].astype(np.int64) + delta, flags, prot)


def migration_entry_pfns(ents: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of PTE entries: their swap type, the PFN a swap-format entry names, and which are
    migration entries (is_migration_entry())."""
    typ = ents >> _TYPE_SHIFT
    pfns = ((~ents) << _U64(SWP_TYPE_BITS)) >> _U64(SWP_OFFSET_SHIFT)
    mig = (typ >= _MIG_READ) & (typ <= _MIG_WRITE) \
        & ((ents & _U64(_PAGE_PRESENT | _PAGE_PROTNONE)) == 0)
    return typ, pfns, mig


def remap_entries(m: Machine, table: int, i0: int, sel: slice | np.ndarray, pfn: np.ndarray,
                  flags: int, prot: int) -> tuple[int, int]:
    """remove_migration_pte() for the migration entries ``i0 + sel`` of one PTE table
    (a slice of them, or offsets), each becoming a mapping of the page in ``pfn`` (distinct
    pages); returns (entries mapped, entries put on the shared zero page)."""
    mem, tbl = m.mem, m.pgtables[table]
    n = sel.stop if isinstance(sel, slice) else 0
    raw = tbl[i0: i0 + n] if isinstance(sel, slice) else tbl[i0 + sel]
    typ = raw >> _TYPE_SHIFT
    cnt = len(raw)
    ch = mem.compound_head[pfn]
    heads = np.where(ch == NO_HEAD, pfn, ch)
    hflags = mem.flags[heads]
    large = (hflags & _PG_HEAD) != 0
    write = typ == _MIG_WRITE
    soft = (raw & _U64(_PAGE_SWP_SOFT_DIRTY)) << _SOFT_DIRTY_SHIFT
    uffd = (raw & _U64(_PAGE_SWP_UFFD_WP)) << _UFFD_WP_SHIFT
    dirty = ((hflags >> _PG_DIRTY_BIT) & 1).astype(np.int64)
    old = np.zeros(cnt, bool)
    if m.migration_ad:  # the young/dirty bits x86-64 keeps in migration entries
        slots = (np.arange(i0, i0 + n) if isinstance(sel, slice) else i0 + sel).tolist()
        ad = np.fromiter(map(m.migration_ad.pop, zip(repeat(table), slots), repeat(3)),
                         np.int64, len(slots))
        old, dirty = (ad & 1) == 0, dirty & (ad >> 1)
    frames = pfn.astype(_U64) << _U64(PAGE_SHIFT)
    bits = _RESTORED_BITS if prot == vm_page_prot(True) else _restored_bits_table(prot)
    if not prot & _PAGE_PRESENT:  # PAGE_NONE: pfn_pte() stores the PFN inverted
        frames = ~frames & _U64(PTE_PFN_MASK)
    pte = frames | bits[write * 2 + dirty] | soft | np.where(write, _U64(0), uffd)
    pte = np.where(old, pte & ~_U64(0x20), pte)  # !is_migration_entry_young(): pte_mkold()
    device = mem.zone[pfn] == ZONE_DEVICE
    if device.any():
        pte = _device_private_ptes(m, pfn, write, raw, device, pte)
    zero = None
    if flags & RMP_USE_SHARED_ZEROPAGE:
        zero = ~large & (mem.stamp[pfn] == 0) & ((hflags & _PG_MLOCKED) == 0) & ~device
        if zero.any():
            zpte = _U64(pfn_pte(m.zero_pfn, prot) | _PAGE_SPECIAL)  # vma->vm_page_prot
            pte = np.where(zero, zpte | soft | uffd, pte)
            keep = ~zero
            pfn, heads, large, typ = pfn[keep], heads[keep], large[keep], typ[keep]
        else:
            zero = None
    if isinstance(sel, slice):
        tbl[i0: i0 + n] = pte
    else:
        tbl[i0 + sel] = pte
    m.trace.cost("pte_writes", cnt)
    mem._mapcount[pfn] += 1  # folio_add_anon_rmap_pte(); distinct pages within one table
    mem.flags[pfn[typ != _MIG_READ]] |= _PG_ANON_EXCLUSIVE  # RMAP_EXCLUSIVE
    _add_per_head(mem._refcount, heads, None)  # folio_get() per PTE
    if large.any():  # the large folios' counts
        lh = heads[large]
        _add_per_head(mem._large_mapcount, lh, None)
        _add_per_head(mem._nr_pages_mapped, lh, mem._mapcount[pfn[large]] == 0)
    zeroed = int(np.count_nonzero(zero)) if zero is not None else 0
    return cnt - zeroed, zeroed


def _add_per_head(arr: np.ndarray, heads: np.ndarray, weights: np.ndarray | None) -> None:
    """``arr[h] += 1`` (or the weight) for each h of ``heads`` in turn (repeats add up)."""
    if not len(heads):
        return
    lo, hi = int(heads.min()), int(heads.max()) + 1
    if hi - lo <= 4 * len(heads):
        w = None if weights is None else weights.astype(np.int64)
        arr[lo:hi] += np.bincount(heads - lo, w, hi - lo).astype(arr.dtype)
    else:
        np.add.at(arr, heads, 1 if weights is None else weights.astype(arr.dtype))


def _restored_pte_bits(prot: int, write: bool, dirty: bool) -> int:
    """remove_migration_pte()'s flag bits apart from soft-dirty and uffd-wp, in its order:
    mk_pte(vma->vm_page_prot) (``prot``), pte_mkdirty() if the folio is dirty (on the still
    read-only entry D lands in SavedDirty), soft-dirty set or cleared from the migration
    entry (so the one pte_mkdirty() set is dropped here; the caller adds the entry's), then
    pte_mkwrite() for a writable entry (SavedDirty back to D)."""
    entry = prot
    if dirty:
        entry = pte_mkdirty(entry) & ~_PAGE_SOFT_DIRTY
    return pte_mkwrite(entry) if write else entry


def _restored_bits_table(prot: int) -> np.ndarray:
    """_restored_pte_bits(prot, write, dirty) indexed by write * 2 + dirty."""
    return np.array([_restored_pte_bits(prot, w, d) for w in (False, True)
                     for d in (False, True)], dtype=_U64)


_RESTORED_BITS = _restored_bits_table(vm_page_prot(True))


def _device_private_ptes(m: Machine, pfn: np.ndarray, write: np.ndarray, raw: np.ndarray,
                         device: np.ndarray, pte: np.ndarray) -> np.ndarray:
    """remove_migration_pte(): a device-private page gets a device-private entry
    (make_writable/readable_device_private_entry(), soft-dirty and uffd-wp kept)."""
    from pyfolio.mm.memremap import is_device_private_page

    ids = m.mem.pgmap[pfn]
    private = np.zeros(len(pfn), bool)
    for pg in np.unique(ids[device]).tolist():  # is_device_private_page() per pgmap
        at = device & (ids == pg)
        if is_device_private_page(m, int(pfn[np.flatnonzero(at)[0]])):
            private |= at
    if private.any():
        types = np.where(write, _U64(SwpType.SWP_DEVICE_WRITE), _U64(SwpType.SWP_DEVICE_READ))
        made = swp_entries(types, pfn) | (raw & _U64(_PAGE_SWP_SOFT_DIRTY | _PAGE_SWP_UFFD_WP))
        pte = np.where(private, made, pte)
    return pte


def folio_migrate_mapping(mapping: object, newfolio: Folio, folio: Folio,
                          extra_count: int) -> int:
    """folio_migrate_mapping() - check the references and move ``mapping``/``index``.

    Models: mm/migrate.c:folio_migrate_mapping() / __folio_migrate_mapping() (v6.18) for
    an anon folio without swap cache: -EAGAIN unless the refcount is exactly
    ``folio_expected_ref_count + extra_count + 1``; then the new folio takes ->index,
    ->mapping (a large anon one counts in its size's ``nr_anon``, +1: the old folio
    leaves it when freed) and PG_swapbacked. Returns 0 or -EAGAIN.
    """
    from pyfolio.sim.errors import EAGAIN

    expected = folio_expected_ref_count(folio) + extra_count + 1
    if folio_ref_count(folio) != expected:
        return -EAGAIN
    mem = folio.m.mem
    mem.index[newfolio.pfn] = mem.index[folio.pfn]
    mem.mapping[newfolio.pfn] = mem.mapping[folio.pfn]
    if folio_test_anon(folio) and folio_test_large(folio):
        mod_mthp_stat(folio.m, folio_order(folio), MTHP_STAT.MTHP_STAT_NR_ANON, 1)
    if folio_test_anon(folio):
        mem.set(newfolio.pfn, PG.swapbacked)
    return 0


def folio_migrate_flags(newfolio: Folio, folio: Folio) -> None:
    """folio_migrate_flags() - copy the page flags that travel with the data.

    Models: mm/migrate.c:folio_migrate_flags() (v6.18): referenced, uptodate, active,
    unevictable, dirty, mlocked; the old folio loses active/unevictable.
    """
    mem = folio.m.mem
    keep = PG.referenced | PG.uptodate | PG.active | PG.unevictable | PG.dirty | PG.mlocked
    mem.set(newfolio.pfn, PG(int(mem.flags[folio.pfn]) & keep))
    mem.clear(folio.pfn, PG.active | PG.unevictable)


# -- include/linux/migrate.h: the migrate_vma interface ------------------------------------
class MIGRATE_PFN(enum.IntFlag):
    """The flag bits of a src/dst entry (include/linux/migrate.h).

    An entry is ``pfn << MIGRATE_PFN_SHIFT | flags``::

        63 ............ 6 | 5 | 4        | 3     | 2 | 1       | 0
        pfn               | - | COMPOUND | WRITE | - | MIGRATE | VALID
    """

    VALID = 1 << 0
    MIGRATE = 1 << 1
    WRITE = 1 << 3
    COMPOUND = 1 << 4


# Plain ints (as the kernel's #defines): ``~`` of an IntFlag member would keep only the
# other flag bits and wipe the PFN.
MIGRATE_PFN_VALID = int(MIGRATE_PFN.VALID)
MIGRATE_PFN_MIGRATE = int(MIGRATE_PFN.MIGRATE)
MIGRATE_PFN_WRITE = int(MIGRATE_PFN.WRITE)
MIGRATE_PFN_COMPOUND = int(MIGRATE_PFN.COMPOUND)
MIGRATE_PFN_SHIFT = 6


class MIGRATE_VMA_SELECT(enum.IntFlag):
    """enum migrate_vma_direction (include/linux/migrate.h); COMPOUND is the series'."""

    SYSTEM = 1 << 0
    DEVICE_PRIVATE = 1 << 1
    DEVICE_COHERENT = 1 << 2
    COMPOUND = 1 << 3


def migrate_pfn(pfn: int) -> int:
    """migrate_pfn() - ``pfn << MIGRATE_PFN_SHIFT | MIGRATE_PFN_VALID``.

    Models: include/linux/migrate.h:migrate_pfn() (v6.18).

    >>> hex(migrate_pfn(0x1234))
    '0x48d01'
    """
    return (pfn << MIGRATE_PFN_SHIFT) | MIGRATE_PFN_VALID


def migrate_pfn_to_page(mpfn: int) -> int | None:
    """migrate_pfn_to_page() - the PFN of a VALID entry, else None.

    Models: include/linux/migrate.h:migrate_pfn_to_page() (v6.18), a PFN for a page.
    """
    return mpfn >> MIGRATE_PFN_SHIFT if mpfn & MIGRATE_PFN_VALID else None


@dataclass
class MigrateVma:
    """struct migrate_vma (include/linux/migrate.h), kernel field names.

    ``split_design`` is the simulator's switch between the two split-fallback designs.
    """

    vma: VMA | None
    start: int
    end: int
    src: list[int] = field(default_factory=list)
    dst: list[int] = field(default_factory=list)
    npages: int = 0
    cpages: int = 0
    pgmap_owner: object = None
    flags: int = 0
    fault_page: int | None = None
    split_design: str = "b"
