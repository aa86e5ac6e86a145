"""Migration entries in and out, and moving struct-page state from one folio to another.

Models: mm/migrate.c (remove_migration_ptes(), remove_migration_pte(),
remove_migration_pmd(), folio_migrate_mapping(), folio_migrate_flags()), the PMD half of
mm/huge_memory.c:set_pmd_migration_entry(), and mm/vmscan.c:folio_isolate_lru() /
mm/migrate.c:folio_putback_lru(), as the device-migration path (mm/migrate_device.c)
uses them (merged series, linux-mm tree). ``try_to_migrate()`` (mm/rmap.c) is modelled
for the mappings migrate_device_unmap() can meet: PTEs, device-private PTEs and PMDs.

Simplifications: no swap cache or page cache (``mapping`` is NULL for anon folios);
migration entries do not carry young/dirty bits, so a restored entry is young and is dirty
when the folio is PG_dirty. References held between steps by isolation are recorded in
``m.mem.extra_refs`` (see :func:`ref_hold`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import EBUSY
from .folio import (
    Folio,
    folio_expected_ref_count,
    folio_get,
    folio_put,
    folio_ref_count,
    folio_test_anon,
    page_folio,
)
from .memmap import PG
from .pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SOFT_DIRTY,
    _PAGE_SWP_SOFT_DIRTY,
    SwpType,
    is_writable_device_private_entry,
    make_readable_device_private_entry,
    make_readable_exclusive_migration_entry,
    make_readable_migration_entry,
    make_writable_device_private_entry,
    make_writable_migration_entry,
    pfn_pte,
    swp_type,
    vm_page_prot,
)
from .rmap import (
    RMAP_EXCLUSIVE,
    RMAP_NONE,
    folio_add_anon_rmap_pmd,
    folio_add_anon_rmap_ptes,
    folio_remove_rmap_pmd,
    folio_remove_rmap_pte,
    folio_try_share_anon_rmap_pmd,
    folio_try_share_anon_rmap_pte,
    rmap_walk,
)

if TYPE_CHECKING:
    from .mm_types import VMA

__all__ = ["ref_hold", "ref_drop", "folio_isolate_lru", "folio_putback_lru",
           "set_pte_migration_entry", "set_pmd_migration_entry", "try_to_migrate",
           "remove_migration_ptes", "folio_migrate_mapping", "folio_migrate_flags"]

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
    """folio_putback_lru() - back on the LRU, dropping the isolation reference."""
    folio.m.mem.set(folio.pfn, PG.lru)
    ref_drop(folio)


def _migration_entry(pfn: int, write: bool, anon_exclusive: bool) -> int:
    if write:
        return make_writable_migration_entry(pfn)
    if anon_exclusive:
        return make_readable_exclusive_migration_entry(pfn)
    return make_readable_migration_entry(pfn)


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
    if raw & _PAGE_PRESENT:
        write, soft = bool(raw & _PAGE_RW), bool(raw & _PAGE_SOFT_DIRTY)
        if raw & _PAGE_DIRTY:
            m.mem.set(folio.pfn, PG.dirty)
    else:
        write, soft = is_writable_device_private_entry(raw), bool(raw & _PAGE_SWP_SOFT_DIRTY)
    entry = _migration_entry(pfn, write, excl)
    m.pgtables[slot[0]][slot[1]] = entry | (_PAGE_SWP_SOFT_DIRTY if soft else 0)
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
    if raw & _PAGE_PRESENT:
        write, soft = bool(raw & _PAGE_RW), bool(raw & _PAGE_SOFT_DIRTY)
        if raw & _PAGE_DIRTY:
            m.mem.set(folio.pfn, PG.dirty)
    else:
        write, soft = is_writable_device_private_entry(raw), bool(raw & _PAGE_SWP_SOFT_DIRTY)
    entry = _migration_entry(folio.pfn, write, excl)
    m.pgtables[slot[0]][slot[1]] = entry | (_PAGE_SWP_SOFT_DIRTY if soft else 0)
    m.trace.cost("pmd_writes")
    if raw & _PAGE_PRESENT:  # pmdp_invalidate() flushes; pmdp_huge_get_and_clear() does not
        m.trace.cost("tlb_flushes")
    folio_remove_rmap_pmd(folio, folio.pfn, vma)
    folio_put(folio)
    return 0


def try_to_migrate(folio: Folio, flags: int = 0) -> None:
    """try_to_migrate() - replace every remaining mapping of the folio with migration
    entries (found through the rmap). Models: mm/rmap.c:try_to_migrate() (v6.18) for
    anon PTE, device-private PTE and PMD mappings; a mapping that cannot be shared stays."""
    from .memory import pmd_slot, pte_slot

    for mp in rmap_walk(folio):
        if mp.level == "pmd":
            slot = pmd_slot(mp.vma.vm_mm, mp.address)
            assert slot is not None
            set_pmd_migration_entry(mp.vma, slot, mp.pfn)
            continue
        pslot = pte_slot(mp.vma.vm_mm, mp.address)
        assert pslot is not None
        set_pte_migration_entry(mp.vma, pslot, mp.pfn)
        folio.m.trace.cost("tlb_flushes")


def _restored_entry(vma: VMA, old: int, new_pfn: int, device: bool, huge: bool) -> int:
    """remove_migration_pte()/remove_migration_pmd(): the entry that replaces ``old``."""
    m = vma.vm_mm.m
    write = swp_type(old) == SwpType.SWP_MIGRATION_WRITE
    soft = bool(old & _PAGE_SWP_SOFT_DIRTY)
    if device:
        make = make_writable_device_private_entry if write else make_readable_device_private_entry
        return make(new_pfn) | (_PAGE_SWP_SOFT_DIRTY if soft else 0)
    folio = page_folio(m, new_pfn)
    prot = vm_page_prot(True) | _PAGE_ACCESSED | (_PAGE_PSE if huge else 0)
    prot |= _PAGE_DIRTY if m.mem.test(folio.pfn, PG.dirty) else 0
    prot |= _PAGE_RW if write else 0
    prot |= _PAGE_SOFT_DIRTY if soft else 0
    return pfn_pte(new_pfn, prot)


def remove_migration_ptes(src: Folio, dst: Folio, flags: int = 0) -> int:
    """remove_migration_ptes() - turn every migration entry pointing into ``src`` into a
    mapping of the same page of ``dst``.

    Models: mm/migrate.c:remove_migration_ptes() with remove_migration_pte() and
    remove_migration_pmd() (merged series, linux-mm): a present PTE/PMD for system RAM, a
    device-private PTE/PMD (writable iff the migration entry was) when ``dst`` is
    device-private; the rmap is added (exclusive unless the entry was a plain readable
    one) and ``dst`` gains one reference per entry. Returns the number of entries.
    """
    from .memory import pmd_slot, pte_slot
    from .memremap import folio_is_device_private

    m = src.m
    device = folio_is_device_private(dst)
    done = 0
    for mp in rmap_walk(src, migration=True):
        if mp.kind != "migration":
            continue
        mm, vma = mp.vma.vm_mm, mp.vma
        slot = pmd_slot(mm, mp.address) if mp.level == "pmd" else pte_slot(mm, mp.address)
        assert slot is not None
        old = int(m.pgtables[slot[0]][slot[1]])
        new_pfn = dst.pfn + (mp.pfn - src.pfn)
        excl = RMAP_NONE if swp_type(old) == SwpType.SWP_MIGRATION_READ else RMAP_EXCLUSIVE
        folio_get(dst)
        if mp.level == "pmd":
            folio_add_anon_rmap_pmd(dst, dst.pfn, vma, mp.address, excl)
            m.trace.cost("pmd_writes")
        else:
            folio_add_anon_rmap_ptes(dst, new_pfn, 1, vma, mp.address, excl)
            m.trace.cost("pte_writes")
        m.pgtables[slot[0]][slot[1]] = _restored_entry(vma, old, new_pfn, device,
                                                       mp.level == "pmd")
        done += 1
    m.trace.emit("remove_migration_ptes", changes={"entries": done}, src=src.pfn, dst=dst.pfn)
    return done


def folio_migrate_mapping(mapping: object, newfolio: Folio, folio: Folio,
                          extra_count: int) -> int:
    """folio_migrate_mapping() - check the references and move ``mapping``/``index``.

    Models: mm/migrate.c:folio_migrate_mapping() / __folio_migrate_mapping() (v6.18) for
    an anon folio without swap cache: -EAGAIN unless the refcount is exactly
    ``folio_expected_ref_count + extra_count + 1``; then the new folio takes ->index,
    ->mapping and PG_swapbacked. Returns 0 or -EAGAIN.
    """
    from .errors import EAGAIN

    expected = folio_expected_ref_count(folio) + extra_count + 1
    if folio_ref_count(folio) != expected:
        return -EAGAIN
    mem = folio.m.mem
    mem.index[newfolio.pfn] = mem.index[folio.pfn]
    mem.mapping[newfolio.pfn] = mem.mapping[folio.pfn]
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
