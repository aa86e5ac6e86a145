"""The invariant checker: every way the simulated memory can be inconsistent.

Models: mm/debug.c and the CONFIG_DEBUG_VM checks (VM_BUG_ON_FOLIO, page-table checks in
mm/page_table_check.c) in spirit (v6.18): instead of warning at one site, ``check()``
recomputes from the page tables what every count must be and reports each difference.
It reads the state through the kernel models' decoders (entries, folios, rmap), so it sits
with them in mm/ rather than in the simulator's machinery below them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SPECIAL,
    PTE_PFN_MASK,
    SWP_OFFSET_SHIFT,
    SWP_TYPE_BITS,
    pte_pfn,
    pte_present,
    swp_offset,
    swp_type,
    walk,
)
from pyfolio.include.linux.huge_mm import MTHP_STAT
from pyfolio.include.linux.mm import (
    GUP_PIN_COUNTING_BIAS,
    Folio,
    folio_test_anon,
    mm_counter,
    page_folio,
)
from pyfolio.include.linux.mm_types import (
    MM_ANONPAGES,
    MM_COUNTER_NAMES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    NR_MM_COUNTERS,
)
from pyfolio.include.linux.pagemap import folio_mapping
from pyfolio.include.linux.swap import (
    CLUSTER_FLAG,
    MAX_SWAPFILES,
    SWAP_HAS_CACHE,
    SWAPFILE_CLUSTER,
    SwapInfoStruct,
)
from pyfolio.include.linux.swapops import (
    SwpType,
    is_device_exclusive_entry,
    is_device_private_entry,
    is_pfn_swap_entry,
    pte_to_swp_entry,
)
from pyfolio.include.linux.swapops import swp_offset as swp_offset_of
from pyfolio.include.linux.swapops import swp_type as swp_type_of
from pyfolio.mm.rmap import folio_anon_vma
from pyfolio.sim.memmap import ENTIRELY_MAPPED, FOLIO_MAPPING_ANON, NO_HEAD, PG, PGTY, ZONE_DEVICE
from pyfolio.sim.units import HPAGE_PMD_NR, PAGE_SHIFT, PGDIR_SHIFT, PMD_SHIFT, PUD_SHIFT

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace
    from pyfolio.include.linux.mm_types import VMA, MMStruct
    from pyfolio.lib.dmirror import Dmirror
    from pyfolio.sim.machine import Machine

__all__ = ["Violation", "check", "check_swap", "snapshot", "rss_of_leaf"]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: what kind, where (pfn or address), and the detail."""

    kind: str
    where: int
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.where:#x}: {self.detail}"


_SHIFT = {"pgd": PGDIR_SHIFT, "pud": PUD_SHIFT, "pmd": PMD_SHIFT, "pte": PAGE_SHIFT}
_NEXT = {"pgd": "pud", "pud": "pmd", "pmd": "pte"}
_KNOWN_SWP = {SwpType.SWP_MIGRATION_READ, SwpType.SWP_MIGRATION_READ_EXCLUSIVE,
              SwpType.SWP_MIGRATION_WRITE, SwpType.SWP_DEVICE_READ, SwpType.SWP_DEVICE_WRITE,
              SwpType.SWP_DEVICE_EXCLUSIVE}


def check(m: Machine) -> list[Violation]:
    """Every invariant violation in machine ``m``; an empty list means sound.

    Checked: each frame is exactly one of free, page table, folio or reserved; every page
    table is reachable exactly once; every entry is well formed and maps a live frame
    inside a VMA; per-page, entire and large mapcounts and _nr_pages_mapped equal what the
    page tables show; each folio's refcount equals its mappings plus pins plus the
    references recorded as held elsewhere; an anon folio's anon_vma reaches every VMA
    that maps it; each mm's RSS counters (``rss_stat``) equal what its page tables map
    (:func:`rss_of_leaf`); the per-size ``nr_anon`` and ``nr_anon_partially_mapped``
    stats equal the live anon large folios of each order and those flagged
    PG_partially_mapped; every migration entry points at a locked folio (one that is free
    or unlocked was left behind by an operation that is over); each device driver's free
    lists hold every device frame not in a live folio exactly once and no other; each
    entry of a device's own page table (a secondary MMU) maps what the CPU's maps there,
    writable only where the CPU's entry is (what the MMU notifiers keep true).
    Swap (:func:`check_swap`): each slot's swap count equals the swap
    PTEs that hold it, SWAP_HAS_CACHE is set exactly where the swap cache holds a folio,
    no slot is in use without either (none leaked), the swap cache and its folios agree
    (PG_swapcache, folio->swap, aligned slots), clusters count their slots and sit on the
    list their state names; a swap-cache folio's refcount includes one reference per page.
    """
    out: list[Violation] = []
    owner = _frame_owners(m, out)
    swap_refs: dict[int, np.ndarray] = {}
    pte_maps, pmd_maps = _scan_tables(m, owner, out, swap_refs)
    _shmem_swap_refs(m, swap_refs, out)
    _check_counts(m, pte_maps, pmd_maps, out)
    _check_devices(m, owner, out)
    check_swap(m, swap_refs, out)
    return out


def _frame_owners(m: Machine, out: list[Violation]) -> np.ndarray:
    """Label each frame: 0 unknown, 1 free, 2 page table, 3 folio, 4 reserved (PG_reserved,
    or the huge zero folio: held for good, mapped without mapcounts), 5 device."""
    mem = m.mem
    owner = np.zeros(mem.nr, np.int8)
    single = np.fromiter(m.free_area.lists[0], np.int64, len(m.free_area.lists[0]))
    np.add.at(owner, single, 1)  # the order-0 blocks in bulk; a frame on twice shows as 2
    for twice in np.flatnonzero(owner > 1):
        out.append(Violation("double-free", int(twice), "free block of order 0 overlaps"))
    owner[owner > 1] = 1
    for order, lst in enumerate(m.free_area.lists):
        for pfn in lst if order else ():
            if owner[pfn: pfn + (1 << order)].any():
                out.append(Violation("double-free", pfn, f"free block of order {order} overlaps"))
            owner[pfn: pfn + (1 << order)] = 1
    for pfn in m.pgtables:
        if owner[pfn]:
            out.append(Violation("pgtable-free", pfn, "page-table page is also free"))
        owner[pfn] = 2
    heads = np.flatnonzero((mem._refcount > 0) & (mem.compound_head == NO_HEAD)
                           & (mem.page_type == PGTY.none))
    large = (mem.flags[heads] & np.uint32(PG.head)) != 0
    small = heads[~large]  # order-0 folios, in bulk
    for pfn in small[owner[small] != 0]:
        out.append(Violation("pfn-in-two", int(pfn), "folio overlaps free or table frames"))
    reserved = ((mem.flags[small] & np.uint32(PG.reserved)) != 0) | (small == m.huge_zero_pfn)
    owner[small] = np.where(reserved, 4, 3)
    for p in heads[large]:
        pfn = int(p)
        n = 1 << int(mem.order[pfn]) if mem.test(pfn, PG.head) else 1
        if owner[pfn: pfn + n].any():
            out.append(Violation("pfn-in-two", pfn, "folio overlaps free or table frames"))
        reserved = mem.test(pfn, PG.reserved) or pfn == m.huge_zero_pfn
        owner[pfn: pfn + n] = 4 if reserved else 3
        if n > 1 and not (mem.compound_head[pfn + 1: pfn + n] == pfn).all():
            out.append(Violation("compound", pfn, "a tail does not point at its head"))
    if m.device_base:
        dev = slice(m.device_base, mem.nr)
        owner[dev] = np.where(owner[dev] == 0, 5, owner[dev])
    leaked = np.flatnonzero(owner[: m.nr_ram] == 0)
    if len(leaked):
        out.append(Violation("leak", int(leaked[0]), f"{len(leaked)} frames are neither free "
                             "nor in use"))
    return owner


def _scan_tables(m: Machine, owner: np.ndarray, out: list[Violation],
                 swap_refs: dict[int, np.ndarray]) -> tuple[np.ndarray, Counter[int]]:
    """Walk every mm's tables: count PTE mappings per pfn and PMD mappings per head."""
    pte_maps = np.zeros(m.mem.nr, np.int64)
    pmd_maps: Counter[int] = Counter()
    seen: Counter[int] = Counter()
    for mm in m.mms:
        rss = [0] * NR_MM_COUNTERS
        seen[mm.pgd] += 1
        for pt in mm.pmd_huge_pte.values():
            seen[pt] += 1
        stack = [(mm.pgd, "pgd", 0)]
        while stack:
            table, level, base = stack.pop()
            tbl = m.pgtables.get(table)
            if tbl is None:
                out.append(Violation("pgtable", table, f"{level} table is not a page table"))
                continue
            if level == "pte":
                _scan_pte_table(m, mm, table, base, owner, pte_maps, pmd_maps, rss, out,
                                swap_refs)
                continue
            for i in np.flatnonzero(tbl):
                raw, addr = int(tbl[i]), base + (int(i) << _SHIFT[level])
                leaf = level == "pte" or (level == "pmd" and (raw & _PAGE_PSE or not raw & 1))
                if not leaf:
                    seen[pte_pfn(raw)] += 1
                    stack.append((pte_pfn(raw), _NEXT[level], addr))
                    continue
                vma = mm.find_vma(addr)
                if vma is None:
                    out.append(Violation("entry-outside-vma", addr, f"mm {mm.id} {raw:#x}"))
                    continue
                pfn = _count_leaf(m, owner, raw, level, addr, pte_maps, pmd_maps, out,
                                  swap_refs)
                if pfn >= 0:
                    _check_rmap(m, vma, addr, pfn, out)
                member, nr = rss_of_leaf(m, raw, level)
                if member >= 0:
                    rss[member] += nr
        for member, want in enumerate(rss):
            if mm.rss_stat[member] != want:
                out.append(Violation("rss", mm.id, f"mm {mm.id} {MM_COUNTER_NAMES[member]}="
                                     f"{mm.rss_stat[member]} but its page tables map {want}"))
    for pfn in set(m.pgtables) | set(seen):
        if seen[pfn] != 1:
            out.append(Violation("pgtable-refs", pfn, f"table referenced {seen[pfn]} times"))
    return pte_maps, pmd_maps


def rss_of_leaf(m: Machine, raw: int, level: str) -> tuple[int, int]:
    """(rss_stat index, pages) one leaf entry counts for, or (-1, 0): what the functions
    that keep mm->rss_stat[] add for a mapping, as zap_pte_range() and zap_huge_pmd()
    take it away again. A present page (PROT_NONE too), a migration entry, a
    device-private entry and a device-exclusive entry count in mm_counter(folio)
    (MM_ANONPAGES for anon folios, device-private ones included); a PMD counts 512
    pages; the zero page and the huge zero page count in nothing; any other swap entry
    counts in MM_SWAPENTS.
    """
    nr = HPAGE_PMD_NR if level == "pmd" else 1
    if pte_present(raw):
        if raw & _PAGE_SPECIAL:
            return -1, 0
        pfn = pte_pfn(raw)
    elif is_pfn_swap_entry(raw):
        pfn = swp_offset(raw)
    else:
        return MM_SWAPENTS, nr
    if not 0 <= pfn < m.mem.nr:
        return -1, 0
    return mm_counter(page_folio(m, pfn)), nr


def _scan_pte_table(m: Machine, mm: MMStruct, table: int, base: int, owner: np.ndarray,
                    pte_maps: np.ndarray, pmd_maps: Counter[int], rss: list[int],
                    out: list[Violation], swap_refs: dict[int, np.ndarray]) -> None:
    """The leaves of one PTE table, vectorised: the common entries inside a VMA (a present
    page or a device-private entry mapping a live frame of the right zone, or the zero
    page) are counted, in ``pte_maps`` and in ``rss`` (as :func:`rss_of_leaf` counts
    them), and their rmap checked in bulk; every other entry goes through
    :func:`_count_leaf`, :func:`_check_rmap` and :func:`rss_of_leaf` one by one, as a
    PMD entry does."""
    mem = m.mem
    tbl = m.pgtables[table]
    idx = np.flatnonzero(tbl)
    if not len(idx):
        return
    raw = tbl[idx]
    addr = base + (idx.astype(np.int64) << PAGE_SHIFT)
    present = (raw & np.uint64(_PAGE_PRESENT)) != 0  # (PROT_NONE entries: one by one)
    typ = raw >> np.uint64(59)
    device = ~present & ((typ == np.uint64(SwpType.SWP_DEVICE_WRITE))
                         | (typ == np.uint64(SwpType.SWP_DEVICE_READ)))
    special = present & ((raw & np.uint64(_PAGE_SPECIAL)) != 0)
    pfn = np.where(device, ((~raw) << np.uint64(SWP_TYPE_BITS)) >> np.uint64(SWP_OFFSET_SHIFT),
                   (raw & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
    vma_of = np.full(len(idx), -1, np.int64)
    vmas = mm.vmas_between(base, base + (1 << PMD_SHIFT))
    for k, v in enumerate(vmas):
        vma_of[(addr >= v.vm_start) & (addr < v.vm_end)] = k
    ok = np.zeros(len(idx), bool)
    mapped = ((present & ~special) | device) & (pfn < mem.nr) & (vma_of >= 0)
    live = owner[np.where(mapped, pfn, 0)] == 3
    zone_ok = (mem.zone[np.where(mapped, pfn, 0)] == ZONE_DEVICE) == device
    ok[mapped & live & zone_ok] = True
    zero = special & (vma_of >= 0) & ((pfn == m.zero_pfn) | (pfn == m.huge_zero_pfn))
    for i in np.flatnonzero(~(ok | zero)):  # the rare ones, one by one
        a, r = int(addr[i]), int(raw[i])
        vma = mm.find_vma(a)
        if vma is None:
            out.append(Violation("entry-outside-vma", a, f"mm {mm.id} {r:#x}"))
            continue
        got = _count_leaf(m, owner, r, "pte", a, pte_maps, pmd_maps, out, swap_refs)
        if got >= 0:
            _check_rmap(m, vma, a, got, out)
        member, nr = rss_of_leaf(m, r, "pte")
        if member >= 0:
            rss[member] += nr
    if not ok.any():
        return
    pfn, addr, vma_of = pfn[ok], addr[ok], vma_of[ok]
    np.add.at(pte_maps, pfn, 1)
    heads = mem.compound_head[pfn]
    heads = np.where(heads == NO_HEAD, pfn, heads)
    mapping = mem.mapping[heads]
    anon = (mapping & FOLIO_MAPPING_ANON) != 0  # mm_counter(): anon, shmem or file
    shmem = (mem.flags[heads] & np.uint32(PG.swapbacked)) != 0
    rss[MM_ANONPAGES] += int(anon.sum())
    rss[MM_SHMEMPAGES] += int((~anon & shmem).sum())
    rss[MM_FILEPAGES] += int((~anon & ~shmem).sum())
    index = mem.index[heads] + pfn - heads
    for k in np.unique(vma_of):
        vma = vmas[int(k)]
        sel = (vma_of == k) & ((mapping & FOLIO_MAPPING_ANON) != 0)
        want = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
        for aid in np.unique(mapping[sel] >> 1):
            av = m.anon_vmas.get(int(aid))
            if av is None:
                continue  # reported by _check_folio
            these = sel & ((mapping >> 1) == aid)
            bad = these if vma not in av.vmas else these & (index != want)
            for i in np.flatnonzero(bad)[:20]:
                out.append(Violation("rmap", int(addr[i]), f"page {int(pfn[i]):#x} mapped "
                                     f"here cannot be found from its anon_vma {av.id} "
                                     f"(index {int(index[i]):#x})"))


def _check_rmap(m: Machine, vma: VMA, addr: int, pfn: int, out: list[Violation]) -> None:
    """The rmap can find this mapping: the folio's anon_vma reaches the VMA (anon), or the
    VMA maps the folio's file and is in its ``i_mmap`` (page cache), and vma_address() of
    the page's index is this address (what rmap_walk_anon() and rmap_walk_file() rely
    on)."""
    folio = page_folio(m, pfn)
    av = folio_anon_vma(folio)
    index = int(m.mem.index[folio.pfn]) + pfn - folio.pfn
    if av is not None:
        if vma not in av.vmas or vma.address_of(index) != addr:
            out.append(Violation("rmap", addr, f"page {pfn:#x} mapped here cannot be found "
                                 f"from its anon_vma {av.id} (index {index:#x})"))
        return
    mapping = folio_mapping(folio)
    if mapping is None:
        return  # reported by _check_folio
    if vma not in mapping.i_mmap or vma.vm_file is None or \
            vma.vm_file.f_mapping is not mapping or vma.address_of(index) != addr:
        out.append(Violation("rmap", addr, f"page {pfn:#x} (file index {index:#x}) mapped "
                             f"here cannot be found from its file's i_mmap"))


def _count_leaf(m: Machine, owner: np.ndarray, raw: int, level: str, addr: int,
                pte_maps: np.ndarray, pmd_maps: Counter[int], out: list[Violation],
                swap_refs: dict[int, np.ndarray]) -> int:
    """Count a leaf entry's mapping (a swap PTE's slot in ``swap_refs``); return the mapped
    pfn, or -1 if it maps no folio."""
    if pte_present(raw):
        pfn = pte_pfn(raw)
        if raw & _PAGE_SPECIAL:
            if pfn not in (m.zero_pfn, m.huge_zero_pfn):
                out.append(Violation("special", addr, f"special entry maps {pfn:#x}"))
            return -1
        device = False
    else:
        if swp_type(raw) < MAX_SWAPFILES:
            _count_swap_pte(m, raw, level, addr, out, swap_refs)
            return -1
        if swp_type(raw) not in _KNOWN_SWP:
            out.append(Violation("entry", addr, f"unknown swap-format entry {raw:#x}"))
            return -1
        if is_device_exclusive_entry(raw):  # keeps the mapping of a RAM page
            pfn, device = swp_offset(raw), False
        elif not is_device_private_entry(raw):
            _check_migration_entry(m, owner, raw, level, addr, out)
            return -1
        else:
            pfn, device = swp_offset(raw), True
    if not 0 <= pfn < m.mem.nr or owner[pfn] != 3:
        out.append(Violation("maps-free-frame", addr, f"entry {raw:#x} maps frame {pfn:#x}"))
        return -1
    if device != (int(m.mem.zone[pfn]) == ZONE_DEVICE):
        out.append(Violation("entry", addr, f"device-private entry vs zone of {pfn:#x}"))
    if level == "pmd":
        if m.mem.order[pfn] != 9 or not m.mem.test(pfn, PG.head):
            out.append(Violation("pmd-leaf", addr, f"maps {pfn:#x}, not an order-9 head"))
            return -1
        pmd_maps[pfn] += 1
    else:
        pte_maps[pfn] += 1
    return pfn


def _check_migration_entry(m: Machine, owner: np.ndarray, raw: int, level: str, addr: int,
                           out: list[Violation]) -> None:
    """A migration entry maps nothing and lives only inside a migration or a split, which
    holds its folio locked from unmap to remap (migration_entry_wait() sleeps on that
    lock): one pointing at a free frame or at an unlocked folio was left behind."""
    pfn = swp_offset(raw)
    if not 0 <= pfn < m.mem.nr or owner[pfn] != 3:
        out.append(Violation("migration-entry", addr, f"{level} migration entry {raw:#x} "
                             f"points at frame {pfn:#x}, which is free"))
    elif not m.mem.test(page_folio(m, pfn).pfn, PG.locked):
        out.append(Violation("migration-entry", addr, f"{level} migration entry {raw:#x} "
                             f"for frame {pfn:#x} outside a migration (folio not locked)"))


def _count_swap_pte(m: Machine, raw: int, level: str, addr: int, out: list[Violation],
                    swap_refs: dict[int, np.ndarray]) -> None:
    """A swap PTE: its area must be active and the slot in range; count the reference."""
    entry = pte_to_swp_entry(raw)
    t, off = swp_type_of(entry), swp_offset_of(entry)
    si = m.swap_info[t] if t < len(m.swap_info) else None
    if level != "pte" or si is None or not 0 < off < si.max:
        out.append(Violation("swap-entry", addr, f"{raw:#x}: type {t} offset {off} is not a "
                             "slot of an active swap area" + (" (PMD level)"
                                                              if level != "pte" else "")))
        return
    refs = swap_refs.setdefault(t, np.zeros(si.max, np.int64))
    refs[off] += 1


def _shmem_swap_refs(m: Machine, swap_refs: dict[int, np.ndarray], out: list[Violation]
                     ) -> None:
    """Each value entry of a shmem page cache holds one swap count on each slot it
    covers (mm/shmem.c:shmem_writeout(): swap_duplicate_nr()), as a swap PTE does."""
    from pyfolio.lib.xarray import XaValue, xa_entries

    for mapping in m.mappings.values():
        for head, order, e in xa_entries(mapping.i_pages):
            if not isinstance(e, XaValue):
                continue
            entry = e.v
            t, off = swp_type_of(entry), swp_offset_of(entry)
            si = m.swap_info[t] if t < len(m.swap_info) else None
            if si is None or off % (1 << order) or off + (1 << order) > si.max:
                out.append(Violation("swap-entry", head, f"file {mapping.host.i_ino} index "
                                     f"{head:#x}: order-{order} swap entry type {t} offset "
                                     f"{off} is not an aligned run of an active area"))
                continue
            refs = swap_refs.setdefault(t, np.zeros(si.max, np.int64))
            refs[off: off + (1 << order)] += 1


def check_swap(m: Machine, swap_refs: dict[int, np.ndarray], out: list[Violation]) -> None:
    """The swap invariants (see :func:`check`), for every active area."""
    for si in m.swap_info:
        if si is None:
            continue
        refs = swap_refs.get(si.type, np.zeros(si.max, np.int64))
        codes = si.swap_map.astype(np.int64)
        counts = codes & ~SWAP_HAS_CACHE
        counts[0] = 0  # the header: SWAP_MAP_BAD
        for off in np.flatnonzero(counts != refs)[:10]:
            out.append(Violation("swap-count", int(off), f"type {si.type} slot {int(off)}: "
                                 f"swap count {int(counts[off])} but {int(refs[off])} swap "
                                 "PTEs (and shmem swap entries) hold it"))
        cached = (codes & SWAP_HAS_CACHE) != 0
        cached[0] = False
        table = si.swap_table >= 0
        for off in np.flatnonzero(cached != table)[:10]:
            out.append(Violation("swap-cache", int(off), f"type {si.type} slot {int(off)}: "
                                 f"SWAP_HAS_CACHE {bool(cached[off])} but the swap table "
                                 f"holds {int(si.swap_table[off])}"))
        used = int(np.count_nonzero(codes[1:]))
        if used != si.inuse_pages:
            out.append(Violation("swap-inuse", si.type, f"inuse_pages {si.inuse_pages} but "
                                 f"{used} slots are in use"))
        zero_free = np.flatnonzero(si.zeromap & (codes == 0))
        if len(zero_free):
            out.append(Violation("swap-zeromap", int(zero_free[0]), "zeromap bit on a free "
                                 "slot"))
        _check_swap_table(m, si, out)
        _check_clusters(si, codes, out)


def _check_swap_table(m: Machine, si: SwapInfoStruct, out: list[Violation]) -> None:
    """Each cached folio covers its aligned slots exactly and knows them; every
    PG_swapcache folio of this area is in the table."""
    heads = np.unique(si.swap_table[si.swap_table >= 0])
    for h in (int(x) for x in heads):
        entry = int(m.mem.swap[h])
        nr = 1 << int(m.mem.order[h]) if m.mem.test(h, PG.head) else 1
        off0 = swp_offset_of(entry)
        where = np.flatnonzero(si.swap_table == h)
        ok = m.mem.test(h, PG.swapcache) and swp_type_of(entry) == si.type \
            and off0 % nr == 0 and len(where) == nr and int(where[0]) == off0 \
            and int(where[-1]) == off0 + nr - 1
        if not ok:
            out.append(Violation("swap-cache", h, f"folio {h:#x} in type {si.type}'s swap "
                                 f"table at {where[:4].tolist()}.., folio->swap offset "
                                 f"{off0}, order-{int(m.mem.order[h])}"))
    sc = np.flatnonzero((m.mem.flags & np.uint32(PG.swapcache)) != 0)
    for h in (int(x) for x in sc):
        if swp_type_of(int(m.mem.swap[h])) == si.type and h not in set(heads.tolist()):
            out.append(Violation("swap-cache", h, f"PG_swapcache folio {h:#x} is not in type "
                                 f"{si.type}'s swap table"))


def _check_clusters(si: SwapInfoStruct, codes: np.ndarray, out: list[Violation]) -> None:
    """Cluster counts and the lists they are on."""
    for idx, ci in enumerate(si.cluster_info):
        lo, hi = idx * SWAPFILE_CLUSTER, min((idx + 1) * SWAPFILE_CLUSTER, si.max)
        want = int(np.count_nonzero(codes[lo:hi])) + (idx + 1) * SWAPFILE_CLUSTER - hi \
            if idx == len(si.cluster_info) - 1 else int(np.count_nonzero(codes[lo:hi]))
        if ci.count != want:
            out.append(Violation("swap-cluster", idx, f"type {si.type} cluster {idx}: count "
                                 f"{ci.count}, {want} slots used"))
        on = {CLUSTER_FLAG.CLUSTER_FLAG_FREE: si.free_clusters,
              CLUSTER_FLAG.CLUSTER_FLAG_FULL: si.full_clusters,
              CLUSTER_FLAG.CLUSTER_FLAG_NONFULL: si.nonfull_clusters[ci.order],
              CLUSTER_FLAG.CLUSTER_FLAG_FRAG: si.frag_clusters[ci.order]}.get(
            CLUSTER_FLAG(ci.flags))
        state_ok = (ci.flags == CLUSTER_FLAG.CLUSTER_FLAG_FREE) == (ci.count == 0) and (
            ci.flags != CLUSTER_FLAG.CLUSTER_FLAG_FULL or ci.count == SWAPFILE_CLUSTER)
        if on is None or idx not in on or ci.lst is not on or not state_ok:
            out.append(Violation("swap-cluster", idx, f"type {si.type} cluster {idx} "
                                 f"(count {ci.count}, order {ci.order}) is not on the list "
                                 f"its flags {ci.flags} name"))


def _check_counts(m: Machine, pte_maps: np.ndarray, pmd_maps: Counter[int],
                  out: list[Violation]) -> None:
    mem = m.mem
    live = (mem.page_type == PGTY.none) & ((mem._refcount > 0) | (mem.compound_head >= 0)
                                           | (mem._mapcount >= 0))
    live[[m.zero_pfn] + ([m.huge_zero_pfn] if m.huge_zero_pfn >= 0 else [])] = False
    if m.huge_zero_pfn >= 0:
        live[m.huge_zero_pfn: m.huge_zero_pfn + HPAGE_PMD_NR] = False
    bad = np.flatnonzero(live & (mem._mapcount + 1 != pte_maps))
    for pfn in bad[:20]:
        out.append(Violation("mapcount", int(pfn), f"_mapcount+1={int(mem._mapcount[pfn]) + 1}"
                             f" but {int(pte_maps[pfn])} PTEs map it"))
    heads = np.flatnonzero(live & (mem.compound_head == NO_HEAD))
    large = (mem.flags[heads] & np.uint32(PG.head)) != 0
    for head in heads[large | _suspect_small_folios(m, heads, pte_maps)]:
        _check_folio(Folio(m, int(head)), pte_maps, pmd_maps, out)
    for pfn in m.deferred_split_queue:
        if not mem.test(pfn, PG.head) or mem._refcount[pfn] <= 0:
            out.append(Violation("deferred-split", pfn, "queued folio is not a live large folio"))
        elif not mem.mapping[pfn] & 1:
            out.append(Violation("deferred-split", pfn, "a file folio is on the deferred split "
                                                        "queue (only anon folios go there)"))
    for pfn in m.lru_lazyfree:
        if mem._refcount[pfn] <= 0 or mem.compound_head[pfn] != NO_HEAD \
                or mem.extra_refs[pfn] < m.lru_lazyfree.count(pfn):
            out.append(Violation("lru-batch", pfn, "a folio in the lazyfree batch is not a live "
                                                   "folio holding the batch's reference"))
    _check_mthp_gauges(m, live, out)
    _check_page_cache(m, live, out)


def _check_page_cache(m: Machine, live: np.ndarray, out: list[Violation]) -> None:
    """Every page cache is consistent: each XArray entry is a live folio head of the
    entry's order, naturally aligned, whose ``mapping`` and ``index`` name this entry;
    entries do not overlap; ``nrpages`` is their sum; every live folio pointing at a
    mapping is in its XArray; ``i_mmap`` holds only live VMAs mapping this file and its
    lock is not held; a shmem
    inode's charge (``alloced``) is its cached and swapped pages, and ``swapped`` the pages
    its value entries (swap entries) cover."""
    from pyfolio.include.linux.shmem_fs import ShmemInodeInfo
    from pyfolio.lib.xarray import xa_entries

    mem = m.mem
    live_vmas = {id(v) for mm in m.mms for v in mm.vmas}
    seen: set[int] = set()
    for mid, mapping in m.mappings.items():
        pages, last_end, swapped = 0, -1, 0
        for head, order, pfn in xa_entries(mapping.i_pages):
            where = f"file {mapping.host.i_ino} index {head:#x}"
            if head & ((1 << order) - 1) or head < last_end:
                out.append(Violation("page-cache", head, f"{where}: order-{order} entry "
                                     "misaligned or overlapping"))
            last_end = head + (1 << order)
            if not isinstance(pfn, int):  # a value entry: a swapped-out shmem page
                swapped += 1 << order
                continue
            seen.add(pfn)
            pages += 1 << order
            f_order = int(mem.order[pfn]) if mem.test(pfn, PG.head) else 0
            if not 0 <= pfn < mem.nr or not live[pfn] or f_order != order:
                out.append(Violation("page-cache", pfn, f"{where}: entry of order {order} is "
                                     f"not a live folio of that order"))
                continue
            if int(mem.mapping[pfn]) != mid << 2 or int(mem.index[pfn]) != head:
                out.append(Violation("page-cache", pfn, f"{where}: folio->mapping/index "
                                     f"say {int(mem.mapping[pfn]):#x}/{int(mem.index[pfn]):#x}"))
        if pages != mapping.nrpages:
            out.append(Violation("page-cache", mid, f"file {mapping.host.i_ino}: nrpages="
                                 f"{mapping.nrpages}, the XArray holds {pages}"))
        for vma in mapping.i_mmap:
            if id(vma) not in live_vmas or vma.vm_file is None or \
                    vma.vm_file.f_mapping is not mapping:
                out.append(Violation("i_mmap", mid, f"file {mapping.host.i_ino}: i_mmap holds "
                                     f"a VMA that does not map it ({vma!r})"))
        if mapping.i_mmap_readers:
            out.append(Violation("i_mmap", mid, f"file {mapping.host.i_ino}: i_mmap_rwsem "
                                 f"still held for read by {mapping.i_mmap_readers} (the next "
                                 f"i_mmap_lock_write() would wait forever)"))
        info = mapping.host.i_private
        if isinstance(info, ShmemInodeInfo) and info.alloced != mapping.nrpages + info.swapped:
            out.append(Violation("shmem", mid, f"file {mapping.host.i_ino}: alloced="
                                 f"{info.alloced}, but {mapping.nrpages} pages are cached "
                                 f"and {info.swapped} swapped"))
        if isinstance(info, ShmemInodeInfo) and info.swapped != swapped:
            out.append(Violation("shmem", mid, f"file {mapping.host.i_ino}: swapped="
                                 f"{info.swapped}, but the page cache holds swap entries "
                                 f"for {swapped} pages"))
        elif swapped and not isinstance(info, ShmemInodeInfo):
            out.append(Violation("page-cache", mid, f"file {mapping.host.i_ino}: value "
                                 "entries in a page cache that is not shmem's"))
    file_heads = np.flatnonzero(live & (mem.compound_head == NO_HEAD) & (mem.mapping != 0)
                                & ((mem.mapping & 3) == 0))
    for fh in file_heads:
        if int(fh) not in seen:
            out.append(Violation("page-cache", int(fh), "folio->mapping is set but the folio "
                                 "is in no page cache"))


def _check_mthp_gauges(m: Machine, live: np.ndarray, out: list[Violation]) -> None:
    """nr_anon / nr_anon_partially_mapped per order: the live anon large folios (RAM and
    device-private), and those of them flagged PG_partially_mapped."""
    mem = m.mem
    heads = np.flatnonzero(live & (mem.compound_head == NO_HEAD)
                           & ((mem.flags & np.uint32(PG.head)) != 0)
                           & ((mem.mapping & 1) == 1))
    orders = mem.order[heads].astype(np.int64)
    partial = (mem.flags[heads] & np.uint32(PG.partially_mapped)) != 0
    for item, got in ((MTHP_STAT.MTHP_STAT_NR_ANON, np.bincount(orders, minlength=10)),
                      (MTHP_STAT.MTHP_STAT_NR_ANON_PARTIALLY_MAPPED,
                       np.bincount(orders[partial], minlength=10))):
        for order in range(1, len(got)):
            have = int(m.mthp_stats[(order, int(item))])
            if have != int(got[order]):
                out.append(Violation("mthp-stat", order, f"order {order} {item.name}={have}, "
                                     f"but {int(got[order])} such folios are live"))


def _suspect_small_folios(m: Machine, heads: np.ndarray, pte_maps: np.ndarray) -> np.ndarray:
    """Which of the folio ``heads`` are small folios whose refcount or anon_vma
    _check_folio() would not accept (vectorised; large folios are checked one by one)."""
    mem = m.mem
    held = np.zeros(mem.nr, np.int64)
    for pfn, n in (+mem.extra_refs).items():
        held[pfn] += n
    for pfn, n in (+m.pins).items():
        held[pfn] += n * GUP_PIN_COUNTING_BIAS
    maps = pte_maps[heads]
    mapping = mem.mapping[heads]
    live_av = np.isin(mapping >> 1, np.fromiter(m.anon_vmas, np.int64, len(m.anon_vmas)))
    anon_ok = ((mapping & FOLIO_MAPPING_ANON) != 0) & live_av
    return (mem._refcount[heads] != maps + held[heads]) | ((maps > 0) & ~anon_ok)


def _check_folio(folio: Folio, pte_maps: np.ndarray, pmd_maps: Counter[int],
                 out: list[Violation]) -> None:
    m, mem, pfn = folio.m, folio.m.mem, folio.pfn
    large = mem.test(pfn, PG.head)
    nr = folio.nr_pages
    ptes = int(pte_maps[pfn: pfn + nr].sum())
    pmds = pmd_maps[pfn]
    if large:
        want = {"_entire_mapcount": pmds - 1, "_large_mapcount": ptes + pmds - 1,
                "_nr_pages_mapped": int((pte_maps[pfn: pfn + nr] > 0).sum())
                + (ENTIRELY_MAPPED if pmds else 0),
                "_pincount": m.pins[pfn]}
        for field, value in want.items():
            have = int(getattr(mem, field)[pfn])
            if have != value:
                out.append(Violation(field.strip("_"), pfn, f"{field}={have}, expected {value}"))
    pins = m.pins[pfn] * (1 if large else GUP_PIN_COUNTING_BIAS)
    page_cache = nr if folio_mapping(folio) is not None else 0
    swap_cache = nr if mem.test(pfn, PG.swapcache) else 0  # folio_expected_ref_count()
    cache = page_cache + swap_cache
    private = int(mem.test(pfn, PG.private))
    expected = ptes + pmds + pins + mem.extra_refs[pfn] + cache + private
    if int(mem._refcount[pfn]) != expected:
        out.append(Violation("refcount", pfn, f"_refcount={int(mem._refcount[pfn])}, expected "
                             f"{expected} ({ptes} PTE + {pmds} PMD mappings, {pins} pin refs, "
                             f"{page_cache} page cache, {swap_cache} swap cache, {private} "
                             f"PG_private, {mem.extra_refs[pfn]} held elsewhere)"))
    if (ptes or pmds) and not folio_test_anon(folio) and not page_cache:
        out.append(Violation("anon", pfn, "mapped folio is neither anonymous nor in a page "
                                          "cache"))
    elif (ptes or pmds) and folio_test_anon(folio) and folio_anon_vma(folio) is None:
        out.append(Violation("anon_vma", pfn, "folio->mapping points at no live anon_vma"))
    if folio_test_anon(folio) and private:
        out.append(Violation("private", pfn, "an anon folio has PG_private"))


def _check_devices(m: Machine, owner: np.ndarray, out: list[Violation]) -> None:
    """The device drivers' own state: free lists and device page tables."""
    from pyfolio.lib.dmirror import Dmirror
    from pyfolio.mm.memremap import DevPagemap

    for pgmap in m.pgmaps:
        assert isinstance(pgmap, DevPagemap)
        if isinstance(pgmap.owner, Dmirror):
            _check_device_free_lists(pgmap.range, pgmap.owner, owner, out)
            _check_device_mirror(m, pgmap.owner, out)


def _check_device_free_lists(rng: tuple[int, int], driver: Dmirror, owner: np.ndarray,
                             out: list[Violation]) -> None:
    """Every frame of the device range is either in a live device folio or on the
    driver's free lists (free_folios: 2 MiB-aligned order-9 blocks; free_pages: single
    frames), once."""
    start, end = rng
    on_list = np.zeros(end - start, np.int32)
    for name, n, lst in (("free_folios", HPAGE_PMD_NR, driver.free_folios),
                         ("free_pages", 1, driver.free_pages)):
        pfns = np.asarray(lst, np.int64)
        bad = (pfns < start) | (pfns + n > end) | (pfns % n != 0)
        for pfn in pfns[bad][:5]:
            out.append(Violation("device-free-list", int(pfn), f"{name} entry outside the "
                                 f"device [{start:#x}, {end:#x}) or not aligned"))
        edges = np.zeros(end - start + 1, np.int32)  # +1 where a block starts, -1 after it
        np.add.at(edges, pfns[~bad] - start, 1)
        np.add.at(edges, pfns[~bad] - start + n, -1)
        on_list += np.cumsum(edges[:-1], dtype=np.int32)
    live = owner[start:end] == 3
    # after HMM_DMIRROR_RELEASE the device has no chunk: its free frames are nobody's
    gone = on_list < 0 if driver.released else on_list == 0
    for bad, what in ((on_list > 1, "is on the free lists more than once"),
                      ((on_list > 0) & live, "is free and in a live folio"),
                      (gone & ~live, "is neither free nor in a live folio")):
        hits = np.flatnonzero(bad)
        if len(hits):
            out.append(Violation("device-free-list", start + int(hits[0]),
                                 f"{len(hits)} device frames: frame {what}"))


def _check_device_mirror(m: Machine, driver: Dmirror, out: list[Violation]) -> None:
    """Each device page-table entry (mm id, address) -> (pfn, tag) agrees with the CPU
    entry at that address of that mm: it maps the same frame (a present PTE or PMD, a
    device-private entry, or for an ATOMIC entry the device-exclusive entry
    make_device_exclusive() left, and only that), and the device may write (a WRITE or
    ATOMIC tag) only where the CPU may."""
    from pyfolio.include.linux.swapops import is_writable_device_private_entry
    from pyfolio.lib.dmirror import DPT_XA_TAG_ATOMIC, DPT_XA_TAG_WRITE

    mms = {mm.id: mm for mm in m.mms}
    walked: dict[tuple[int, int], tuple[str, int, int]] = {}  # (mm, 2 MiB) -> the walk's end
    for (mm_id, addr), (pfn, tag) in driver.pt.items():
        mm = mms.get(mm_id)
        if mm is None:
            out.append(Violation("mirror", addr, f"device entry for mm {mm_id}, which is gone"))
            continue
        chunk = (mm_id, addr >> PMD_SHIFT)
        if chunk not in walked:
            w = walk(m, mm.pgd, addr)
            walked[chunk] = (w.level, w.tables[-1][1], int(w.raw) if w.level != "pte" else -1)
        level, table, raw = walked[chunk]
        if level == "pte":
            raw = int(m.pgtables[table][(addr >> PAGE_SHIFT) & 511])
        exclusive = bool(raw) and level == "pte" and is_device_exclusive_entry(raw)
        if raw & _PAGE_PRESENT and (level == "pte" or raw & _PAGE_PSE):
            cpu, cpu_write = pte_pfn(raw), bool(raw & _PAGE_RW)
        elif raw and not raw & _PAGE_PRESENT and is_device_private_entry(raw):
            cpu, cpu_write = swp_offset(raw), is_writable_device_private_entry(raw)
        elif exclusive:
            cpu, cpu_write = swp_offset(raw), True
        else:
            cpu, cpu_write = -1, False
        if cpu >= 0 and level == "pmd":
            cpu += (addr & ((1 << PMD_SHIFT) - 1)) >> PAGE_SHIFT
        writable = bool(tag & DPT_XA_TAG_WRITE)
        if cpu != pfn or (writable and not cpu_write) or \
                exclusive != (tag == DPT_XA_TAG_ATOMIC):
            out.append(Violation("mirror", addr, f"mm {mm_id}: the device maps frame "
                                 f"{pfn:#x} (tag {tag}), the CPU entry is {raw:#x}: a missed "
                                 "MMU-notifier invalidation"))


def snapshot(m: Machine) -> dict[str, object]:
    """Everything an operation could change, in comparable form: memmap arrays, page
    tables, free lists, deposits, VMAs, pins, queues and counters (not the trace).

    A failed operation must leave ``snapshot(m)`` equal to what it was before. The
    device drivers' state (free lists, counters, flags, device page tables) and which mms
    have MMU-notifier subscriptions are included.
    """
    mem = m.mem
    arrays = {name: getattr(mem, name).tobytes() for name in (
        "flags", "page_type", "_refcount", "_mapcount", "compound_head", "order",
        "_entire_mapcount", "_large_mapcount", "_nr_pages_mapped", "_pincount", "mapping",
        "index", "zone", "pgmap", "stamp", "swap", "lru_seq")}
    return {
        **arrays,
        "extra_refs": dict(+mem.extra_refs),
        "pgtables": {pfn: tbl.tobytes() for pfn, tbl in m.pgtables.items()},
        "free_area": [list(lst) for lst in m.free_area.lists],
        "vmstat": dict(m.vmstat),
        "mthp_stats": {k: v for k, v in m.mthp_stats.items() if v},
        "pins": dict(+m.pins),
        "deferred_split_queue": list(m.deferred_split_queue),
        "lru_lazyfree": list(m.lru_lazyfree),
        "mms": [(mm.id, mm.pgd, dict(mm.pmd_huge_pte), list(mm.rss_stat),
                 [(v.vm_start, v.vm_end, int(v.vm_flags), v.vm_pgoff,
                   v.anon_vma.id if v.anon_vma else None,
                   v.vm_file.f_inode.i_ino if v.vm_file else None) for v in mm.vmas])
                for mm in m.mms],
        "huge_zero_pfn": m.huge_zero_pfn,
        "devices": [_device_state(pgmap) for pgmap in m.pgmaps],
        "notifiers": [(mm.id, len(mm.notifier_subscriptions.itree))
                      for mm in m.mms if mm.notifier_subscriptions is not None],
        "swap": [None if si is None else (
            si.type, si.kind, si.swap_file, int(si.flags), si.prio, si.inuse_pages,
            si.swap_map.tobytes(), si.swap_table.tobytes(), si.zeromap.tobytes(),
            si.data.tobytes(), [(c.count, c.order, int(c.flags)) for c in si.cluster_info],
            list(si.free_clusters), list(si.full_clusters), [list(x) for x in
                                                            si.nonfull_clusters],
            [list(x) for x in si.frag_clusters], list(si.global_cluster_next),
            list(si.bios)) for si in m.swap_info],
        "swap_state": (m.least_priority, m.nr_rotate_swap, list(m.percpu_swap_cluster_si),
                       list(m.percpu_swap_cluster_offset), list(m.swap_writeback),
                       m.swapin_readahead_hits, m.swapin_prev_offset,
                       m.last_readahead_pages, m.lru_clock, m.lru_tail_clock),
        "page_cache": {mid: _mapping_state(mp) for mid, mp in m.mappings.items()},
        "shmem": (m.shmem_huge, dict(m.thp_shmem_enabled)),
        "files": {name: sorted((path, i.i_ino) for path, i in sb.files.items())
                  for name, sb in m.super_blocks.items()},
    }


def _device_state(pgmap: object) -> tuple[object, ...]:
    driver = getattr(pgmap, "owner", None)
    return (list(getattr(driver, "free_folios", ())), list(getattr(driver, "free_pages", ())),
            getattr(driver, "calloc", None), getattr(driver, "cfree", None),
            getattr(driver, "flags", None), getattr(driver, "fail_large_alloc", None),
            dict(getattr(driver, "pt", {})))


def _mapping_state(mapping: AddressSpace) -> tuple[object, ...]:
    """One page cache and its inode, in comparable form."""
    from pyfolio.lib.xarray import xa_entries

    inode = mapping.host
    info = inode.i_private
    return (inode.i_ino, inode.i_size, inode.i_nlink, inode.i_count, mapping.nrpages,
            mapping.flags, tuple(xa_entries(mapping.i_pages)), tuple(sorted(inode.i_data.items())),
            sorted((v.vm_mm.id, v.vm_start) for v in mapping.i_mmap), mapping.i_mmap_readers,
            (info.alloced, info.fallocend) if hasattr(info, "alloced") else None)
