"""x86-64 page-table entries: hardware bits, the kernel's non-present encodings, walks.

Models: arch/x86/include/asm/pgtable_types.h, arch/x86/include/asm/pgtable_64.h,
arch/x86/include/asm/pgtable.h (v6.18). The kernel's non-present encodings built on the
swap format (migration and device-private entries) are in
:mod:`pyfolio.include.linux.swapops`.

Present entry (PTE, or PMD leaf with PSE)::

    63 | 62-59 | 58 | 57-52 | 51 .. 12 | 11 | 10 | 9  | 8 | 7   | 6 | 5 | 4  | 3  | 2 | 1  | 0
    NX | pkey  | SV | avail | PFN      | SD | UW | SP | G | PSE | D | A | CD | WT | U | RW | P

SD soft-dirty (_PAGE_SOFT_DIRTY, SOFTW3), UW uffd-wp (SOFTW2), SP _PAGE_SPECIAL (SOFTW1:
the zero page and other pages without a struct-page refcount), SV SavedDirty
(_PAGE_SAVED_DIRTY, SOFTW5). Bit 7 is PSE in a PMD or PUD (a leaf: it maps 2 MiB or 1 GiB)
and PAT in a 4 KiB PTE. A non-leaf entry points at the next table with _PAGE_TABLE
(P|RW|U|A|D).

PROT_NONE: a PTE or PMD leaf of a VMA without VM_READ keeps its page but has P clear and
bit 8 set (_PAGE_PROTNONE, the Global bit reused: PAGE_NONE is Accessed|Global), so the
CPU faults on any access while core mm still sees a present entry (pte_present() tests
P or PROTNONE; pmd_present() also PSE). Such a non-present entry has its PFN bits
inverted (the L1TF mitigation, pgtable-invert.h: protnone_mask(), flip_protnone_guard());
pte_pfn() undoes it.

Dirty, since 6.6 (x86 shadow stacks): hardware treats Write=0,Dirty=1 as a shadow-stack page,
so the kernel never leaves D set on a read-only entry. pte_wrprotect() and pte_mkdirty() of a
read-only entry move D to SavedDirty; pte_mkwrite() moves it back. pte_dirty() is "D or
SavedDirty"; pte_mkdirty() also sets soft-dirty.

Swap-format (non-present) entry, as drawn in pgtable_64.h::

    | TYPE (59-63) | ~OFFSET (9-58) | 0 | 0 | X | X | X | E | F | SD | 0 |
                                     8   7   6   5   4   3   2   1    0

TYPE 0..23 are swap files; the top types are special: 24 hwpoison, 25 migration read,
26 migration read-exclusive, 27 migration write, 28 device-private write, 29 device-private
read, 30 device-exclusive, 31 PTE marker. The offset (a PFN for migration and
device-private entries) is stored inverted. E (bit 3) keeps PG_anon_exclusive, SD (bit 1)
the soft-dirty bit, F (bit 2) uffd-wp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pyfolio.mm.page_alloc import __free_pages, alloc_pages
from pyfolio.sim.memmap import PGTY
from pyfolio.sim.units import PAGE_SHIFT, PGDIR_SHIFT, PMD_SHIFT, PTRS_PER_TABLE, PUD_SHIFT

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = [
    "_PAGE_PRESENT", "_PAGE_PROTNONE", "PAGE_NONE", "_PAGE_RW", "_PAGE_USER", "_PAGE_PWT",
    "_PAGE_PCD", "_PAGE_ACCESSED",
    "_PAGE_DIRTY", "_PAGE_PSE", "_PAGE_GLOBAL", "_PAGE_SPECIAL", "_PAGE_UFFD_WP",
    "_PAGE_SOFT_DIRTY", "_PAGE_SAVED_DIRTY", "_PAGE_DIRTY_BITS", "_PAGE_PAT", "_PAGE_NX",
    "_PAGE_TABLE", "PHYSICAL_PMD_PAGE_MASK", "_PAGE_CHG_MASK", "_HPAGE_CHG_MASK",
    "PTE_PFN_MASK", "_PAGE_SWP_SOFT_DIRTY", "PMD_MODIFY_DROPS_DIRTY",
    "_PAGE_SWP_UFFD_WP", "_PAGE_SWP_EXCLUSIVE", "Entry", "pfn_pte", "pte_pfn", "pmd_pfn",
    "pte_present", "pte_protnone", "pmd_present", "pmd_protnone", "protnone_mask",
    "flip_protnone_guard", "vm_get_page_prot", "pte_write", "pte_dirty", "pte_young",
    "pte_none", "pmd_leaf",
    "pte_soft_dirty", "pte_mksoft_dirty", "pte_mkdirty", "pte_mkclean", "pte_wrprotect",
    "pte_mkwrite", "pte_mkold", "pte_modify", "pmd_dirty", "pmd_mkdirty", "pmd_mkclean",
    "pmd_wrprotect", "pmd_mkwrite", "pmd_modify", "mksaveddirty_shift", "clear_saveddirty_shift",
    "swp_entry", "swp_type", "swp_offset", "decode_entry", "pgd_index", "pud_index",
    "pmd_index", "pte_index", "walk", "Walk", "vm_page_prot", "pte_alloc_one", "pte_free",
]

_PAGE_PRESENT = 1 << 0
_PAGE_RW = 1 << 1
_PAGE_USER = 1 << 2
_PAGE_PWT = 1 << 3
_PAGE_PCD = 1 << 4
_PAGE_ACCESSED = 1 << 5
_PAGE_DIRTY = 1 << 6
_PAGE_PSE = 1 << 7
_PAGE_GLOBAL = 1 << 8
#: _PAGE_BIT_PROTNONE = _PAGE_BIT_GLOBAL: a PROT_NONE entry (P clear) has this bit set
_PAGE_PROTNONE = _PAGE_GLOBAL
_PAGE_SPECIAL = 1 << 9
_PAGE_UFFD_WP = 1 << 10
_PAGE_SOFT_DIRTY = 1 << 11
_PAGE_PAT = 1 << 7  # _PAGE_BIT_PAT: in a 4 KiB PTE, the bit a PMD/PUD leaf uses for PSE
_PAGE_PAT_LARGE = 1 << 12  # _PAGE_BIT_PAT_LARGE, on 2 MiB or 1 GiB pages
_PAGE_BIT_RW, _PAGE_BIT_DIRTY, _PAGE_BIT_SAVED_DIRTY = 1, 6, 58
_PAGE_SAVED_DIRTY = 1 << _PAGE_BIT_SAVED_DIRTY  # _PAGE_BIT_SOFTW5 on x86-64
_PAGE_DIRTY_BITS = _PAGE_DIRTY | _PAGE_SAVED_DIRTY
_PAGE_NX = 1 << 63
PTE_PFN_MASK = ((1 << 52) - 1) & ~((1 << PAGE_SHIFT) - 1)  # bits 12..51
#: PHYSICAL_PMD_PAGE_MASK: the PFN bits of a 2 MiB leaf (21..51)
PHYSICAL_PMD_PAGE_MASK = ((1 << 52) - 1) & ~((1 << PMD_SHIFT) - 1)
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
#: bits pte_modify() / pmd_modify() keep from the old entry (pgtable_types.h; _PAGE_CC and
#: _PAGE_DEVMAP are 0 here)
_COMMON_PAGE_CHG_MASK = (PTE_PFN_MASK | _PAGE_PCD | _PAGE_PWT | _PAGE_SPECIAL | _PAGE_ACCESSED
                         | _PAGE_DIRTY_BITS | _PAGE_SOFT_DIRTY | _PAGE_UFFD_WP)
_PAGE_CHG_MASK = _COMMON_PAGE_CHG_MASK | _PAGE_PAT
_HPAGE_CHG_MASK = _COMMON_PAGE_CHG_MASK | _PAGE_PSE | _PAGE_PAT_LARGE

_PAGE_SWP_SOFT_DIRTY = 1 << 1
_PAGE_SWP_UFFD_WP = 1 << 2
_PAGE_SWP_EXCLUSIVE = 1 << 3
SWP_TYPE_BITS = 5
SWP_OFFSET_FIRST_BIT = 9  # _PAGE_BIT_PROTNONE (8) + 1
SWP_OFFSET_SHIFT = SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS  # 14
_U64 = (1 << 64) - 1
#: PAGE_NONE (pgtable_types.h): Accessed and the PROTNONE (Global) bit, not present
PAGE_NONE = _PAGE_ACCESSED | _PAGE_PROTNONE
#: PAGE_READONLY / PAGE_COPY_NOEXEC: what a private mapping with VM_READ gets (a private
#: mapping never has RW in its vm_page_prot: pte_mkwrite() adds it at fault time)
_PAGE_READONLY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX


def vm_get_page_prot(vm_flags: int) -> int:
    """vm_get_page_prot() - the protection bits of a private mapping with ``vm_flags``:
    PAGE_NONE without VM_READ|VM_WRITE, else PAGE_READONLY (= PAGE_COPY_NOEXEC).

    Models: arch/x86/mm/pgprot.c:protection_map[] and mm/mmap.c:vm_get_page_prot() (v6.18)
    for private, non-executable mappings (VM_WRITE alone implies read on x86).

    >>> vm_get_page_prot(0) == PAGE_NONE, vm_get_page_prot(0x3) & _PAGE_PRESENT
    (True, 1)
    """
    return _PAGE_READONLY if vm_flags & 0x3 else PAGE_NONE


def vm_page_prot(writable: bool) -> int:
    """The vm_page_prot of a private anonymous mapping the CPU may read: PAGE_COPY_NOEXEC
    (the same whether writable or not; a PROT_NONE VMA's is :func:`vm_get_page_prot`'s
    PAGE_NONE)."""
    del writable
    return _PAGE_READONLY


def __pte_needs_invert(val: int) -> bool:
    """__pte_needs_invert() - a non-zero entry without P has its PFN bits inverted.

    Models: arch/x86/include/asm/pgtable-invert.h:__pte_needs_invert() (v6.18).
    """
    return val != 0 and not val & _PAGE_PRESENT


def protnone_mask(val: int) -> int:
    """protnone_mask() - all ones for an entry whose PFN is stored inverted, else 0.

    Models: arch/x86/include/asm/pgtable-invert.h:protnone_mask() (v6.18).
    """
    return _U64 if __pte_needs_invert(val) else 0


def flip_protnone_guard(oldval: int, val: int, mask: int) -> int:
    """flip_protnone_guard() - invert the ``mask`` (PFN) bits when an entry goes from
    present to PROT_NONE or back.

    Models: arch/x86/include/asm/pgtable-invert.h:flip_protnone_guard() (v6.18).
    """
    if __pte_needs_invert(oldval) != __pte_needs_invert(val):
        val = (val & ~mask) | (~val & mask)
    return val & _U64


def pfn_pte(pfn: int, prot: int) -> int:
    """pfn_pte() / pfn_pmd() - an entry mapping ``pfn`` with protection bits ``prot``
    (a PROT_NONE ``prot`` stores the PFN inverted).

    Models: arch/x86/include/asm/pgtable.h:pfn_pte() and pfn_pmd() (v6.18): with PSE in
    ``prot`` (a PMD leaf) the PFN is masked with PHYSICAL_PMD_PAGE_MASK.

    >>> hex(pfn_pte(0x1234, PAGE_NONE)), pte_pfn(pfn_pte(0x1234, PAGE_NONE)) == 0x1234
    ('0xffffffedcb120', True)
    """
    mask = PHYSICAL_PMD_PAGE_MASK if prot & _PAGE_PSE else PTE_PFN_MASK
    return (((pfn << PAGE_SHIFT) ^ protnone_mask(prot)) & mask) | prot


def pte_pfn(pte: int) -> int:
    """pte_pfn() / pmd_pfn() - the PFN in bits 12..51 of an entry (un-inverted for a
    PROT_NONE entry).

    Models: arch/x86/include/asm/pgtable.h:pte_pfn() and pmd_pfn() (v6.18): an entry with
    PSE is a leaf PMD, whose PFN bits are pmd_pfn_mask()'s PHYSICAL_PMD_PAGE_MASK (21..51:
    only those are inverted in a PROT_NONE PMD). The simulator uses this one function for
    both levels; it never sets PAT (bit 7) in a 4 KiB PTE, so PSE means a PMD leaf.
    """
    mask = PHYSICAL_PMD_PAGE_MASK if pte & _PAGE_PSE else PTE_PFN_MASK
    return ((pte ^ protnone_mask(pte)) & mask) >> PAGE_SHIFT


pmd_pfn = pte_pfn


def pte_none(pte: int) -> bool:
    """pte_none() - an entry with no bits set.

    Models: arch/x86/include/asm/pgtable.h:pte_none() (v6.18).
    """
    return pte == 0


def pte_present(pte: int) -> bool:
    """pte_present() - P or PROTNONE: a PROT_NONE entry is present to core mm.

    Models: arch/x86/include/asm/pgtable.h:pte_present() (v6.18).
    """
    return bool(pte & (_PAGE_PRESENT | _PAGE_PROTNONE))


def pte_protnone(pte: int) -> bool:
    """pte_protnone() / pmd_protnone() - PROTNONE set and P clear.

    Models: arch/x86/include/asm/pgtable.h:pte_protnone() (v6.18).
    """
    return pte & (_PAGE_PROTNONE | _PAGE_PRESENT) == _PAGE_PROTNONE


def pmd_protnone(pmd: int) -> bool:
    """pmd_protnone() - a PROT_NONE PMD leaf (PROTNONE set, P clear).

    Models: arch/x86/include/asm/pgtable.h:pmd_protnone() (v6.18).
    """
    return pte_protnone(pmd)


def pmd_present(pmd: int) -> bool:
    """pmd_present() - P, PROTNONE or PSE (a PMD being split keeps PSE with P clear).

    Models: arch/x86/include/asm/pgtable.h:pmd_present() (v6.18).
    """
    return bool(pmd & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE))


def pte_write(pte: int) -> bool:
    """pte_write() - the RW bit.

    Models: arch/x86/include/asm/pgtable.h:pte_write() (v6.18).
    """
    return bool(pte & _PAGE_RW)


def pte_dirty(pte: int) -> bool:
    """pte_dirty() - dirty in hardware (D) or saved (SavedDirty): _PAGE_DIRTY_BITS.

    Models: arch/x86/include/asm/pgtable.h:pte_dirty() (v6.18).
    """
    return bool(pte & _PAGE_DIRTY_BITS)


def pmd_dirty(pmd: int) -> bool:
    """pmd_dirty() - D or SavedDirty in a PMD leaf.

    Models: arch/x86/include/asm/pgtable.h:pmd_dirty() (v6.18).
    """
    return pte_dirty(pmd)


def pte_soft_dirty(pte: int) -> bool:
    """pte_soft_dirty() - the soft-dirty bit (11) of a present entry.

    Models: arch/x86/include/asm/pgtable.h:pte_soft_dirty() (v6.18).
    """
    return bool(pte & _PAGE_SOFT_DIRTY)


def pte_mksoft_dirty(pte: int) -> int:
    """pte_mksoft_dirty() / pmd_mksoft_dirty() - set soft-dirty.

    Models: arch/x86/include/asm/pgtable.h:pte_mksoft_dirty() (v6.18).
    """
    return pte | _PAGE_SOFT_DIRTY


def mksaveddirty_shift(v: int) -> int:
    """mksaveddirty_shift() - on a read-only entry (RW=0) move D to SavedDirty.

    Models: arch/x86/include/asm/pgtable.h:mksaveddirty_shift() (v6.18).
    """
    cond = (~v >> _PAGE_BIT_RW) & 1
    v |= ((v >> _PAGE_BIT_DIRTY) & cond) << _PAGE_BIT_SAVED_DIRTY
    return v & ~(cond << _PAGE_BIT_DIRTY)


def clear_saveddirty_shift(v: int) -> int:
    """clear_saveddirty_shift() - on a writable entry (RW=1) move SavedDirty back to D.

    Models: arch/x86/include/asm/pgtable.h:clear_saveddirty_shift() (v6.18).
    """
    cond = (v >> _PAGE_BIT_RW) & 1
    v |= ((v >> _PAGE_BIT_SAVED_DIRTY) & cond) << _PAGE_BIT_DIRTY
    return v & ~(cond << _PAGE_BIT_SAVED_DIRTY)


def pte_mkdirty(pte: int) -> int:
    """pte_mkdirty() - set D and soft-dirty; on a read-only entry D lands in SavedDirty.

    Models: arch/x86/include/asm/pgtable.h:pte_mkdirty() (v6.18).
    """
    return mksaveddirty_shift(pte | _PAGE_DIRTY | _PAGE_SOFT_DIRTY)


def pmd_mkdirty(pmd: int) -> int:
    """pmd_mkdirty() - as pte_mkdirty(), for a PMD leaf.

    Models: arch/x86/include/asm/pgtable.h:pmd_mkdirty() (v6.18).
    """
    return pte_mkdirty(pmd)


def pte_mkclean(pte: int) -> int:
    """pte_mkclean() - clear both D and SavedDirty (soft-dirty stays).

    Models: arch/x86/include/asm/pgtable.h:pte_mkclean() (v6.18).
    """
    return pte & ~_PAGE_DIRTY_BITS


def pmd_mkclean(pmd: int) -> int:
    """pmd_mkclean() - clear D and SavedDirty of a PMD leaf.

    Models: arch/x86/include/asm/pgtable.h:pmd_mkclean() (v6.18).
    """
    return pte_mkclean(pmd)


def pte_wrprotect(pte: int) -> int:
    """pte_wrprotect() - clear RW; a set D moves to SavedDirty (no Write=0,Dirty=1 entry).

    Models: arch/x86/include/asm/pgtable.h:pte_wrprotect() (v6.18).
    """
    return mksaveddirty_shift(pte & ~_PAGE_RW)


def pmd_wrprotect(pmd: int) -> int:
    """pmd_wrprotect() - as pte_wrprotect(), for a PMD leaf.

    Models: arch/x86/include/asm/pgtable.h:pmd_wrprotect() (v6.18).
    """
    return pte_wrprotect(pmd)


def pte_mkwrite(pte: int) -> int:
    """pte_mkwrite() - set RW; SavedDirty moves back to D (no shadow-stack VMAs here).

    Models: arch/x86/mm/pgtable.c:pte_mkwrite() (v6.18).
    """
    return clear_saveddirty_shift(pte | _PAGE_RW)


def pmd_mkwrite(pmd: int) -> int:
    """pmd_mkwrite() - as pte_mkwrite(), for a PMD leaf.

    Models: arch/x86/mm/pgtable.c:pmd_mkwrite() (v6.18).
    """
    return pte_mkwrite(pmd)


def pte_mkold(pte: int) -> int:
    """pte_mkold() / pmd_mkold() - clear the A bit.

    Models: arch/x86/include/asm/pgtable.h:pte_mkold() (v6.18).
    """
    return pte & ~_PAGE_ACCESSED


def pte_modify(pte: int, newprot: int) -> int:
    """pte_modify() - mprotect's new protection: keep _PAGE_CHG_MASK, take the rest from
    ``newprot``; then, if the old entry was writable, move D to SavedDirty (mksaveddirty),
    else SavedDirty stays (clear_saveddirty acts only on RW=1).

    Models: arch/x86/include/asm/pgtable.h:pte_modify() (v6.18), with
    flip_protnone_guard() (to or from PROT_NONE the PFN bits are inverted).
    """
    val = (pte & _PAGE_CHG_MASK) | (newprot & ~_PAGE_CHG_MASK)
    val = flip_protnone_guard(pte, val, PTE_PFN_MASK)
    return mksaveddirty_shift(val) if pte & _PAGE_RW else clear_saveddirty_shift(val)


#: From Linux 6.6 (bb3aadf7d446, x86 shadow stacks) to 6.18.0, pmd_modify() masked the old
#: value with ``_HPAGE_CHG_MASK & ~_PAGE_DIRTY``, so an mprotect() of a whole PMD dropped its
#: hardware D bit (a data loss with MADV_FREE); f7491d7c81db ("x86/mm: Fix user-space data
#: loss with MADV_FREE and THP", Sep 2026, Cc: stable) keeps it, and the 6.18.44 kernel of
#: the book's lab has the fix (measured: a written THP mprotect()ed to PROT_READ or
#: PROT_NONE stays Private_Dirty in smaps). False models the fix; True reproduces 6.18.0.
PMD_MODIFY_DROPS_DIRTY = False


def pmd_modify(pmd: int, newprot: int) -> int:
    """pmd_modify() - as pte_modify() with _HPAGE_CHG_MASK: D moves to SavedDirty when the
    old PMD was writable (:data:`PMD_MODIFY_DROPS_DIRTY` True: the 6.18.0 code, which
    masked D out first, so a hardware-dirty PMD came out clean).

    Models: arch/x86/include/asm/pgtable.h:pmd_modify() (v6.18 with the 6.18.y fix
    f7491d7c81db), with flip_protnone_guard() on the PMD's PFN bits.
    """
    keep = _HPAGE_CHG_MASK & ~_PAGE_DIRTY if PMD_MODIFY_DROPS_DIRTY else _HPAGE_CHG_MASK
    val = (pmd & keep) | (newprot & ~_HPAGE_CHG_MASK)
    val = flip_protnone_guard(pmd, val, PHYSICAL_PMD_PAGE_MASK)
    return mksaveddirty_shift(val) if pmd & _PAGE_RW else clear_saveddirty_shift(val)


def pte_young(pte: int) -> bool:
    """pte_young() - the A (accessed) bit.

    Models: arch/x86/include/asm/pgtable.h:pte_young() (v6.18).
    """
    return bool(pte & _PAGE_ACCESSED)


def pmd_leaf(pmd: int) -> bool:
    """pmd_leaf() - a PMD with PSE maps 2 MiB directly (no PTE table below); a PROT_NONE
    leaf too (a swap-format PMD never has bit 7 set).

    Models: arch/x86/include/asm/pgtable.h:pmd_leaf() (v6.18).
    """
    return bool(pmd & _PAGE_PSE)


def swp_entry(type_: int, offset: int) -> int:
    """__swp_entry() - encode a swap-format entry (offset inverted, type in bits 59-63).

    Models: arch/x86/include/asm/pgtable_64.h:__swp_entry() (v6.18).
    """
    return ((((~offset) << SWP_OFFSET_SHIFT) & _U64) >> SWP_TYPE_BITS) | (type_ << 59)


def swp_type(entry: int) -> int:
    """swp_type() - the type field (bits 59..63) of a swap-format entry.

    Models: arch/x86/include/asm/pgtable_64.h:__swp_type() (v6.18).
    """
    return entry >> (64 - SWP_TYPE_BITS)


def swp_offset(entry: int) -> int:
    """__swp_offset() - shift up past the type, invert, shift down.

    Models: arch/x86/include/asm/pgtable_64.h:__swp_offset() (v6.18).
    """
    return ((((~entry) << SWP_TYPE_BITS) & _U64) >> SWP_OFFSET_SHIFT)


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded page-table entry. ``kind`` is one of: none, table, page, huge (PMD leaf),
    zero (special zero-page mapping), migration, device_private, device_exclusive, swap.
    ``present`` is pte_present(): a PROT_NONE leaf (``protnone``, P clear) is present.

    ``dirty`` is pte_dirty(): D (bit 6) or SavedDirty (bit 58, ``saved_dirty``), the form a
    read-only entry keeps its dirtiness in. Bit 7 is ``pse`` in a PMD/PUD (or PGD) entry and
    ``pat`` in a 4 KiB PTE."""

    raw: int
    level: str
    kind: str
    pfn: int = -1
    present: bool = False
    write: bool = False
    user: bool = False
    accessed: bool = False
    dirty: bool = False
    pse: bool = False
    nx: bool = False
    special: bool = False
    soft_dirty: bool = False
    uffd_wp: bool = False
    swp_type: int = -1
    swp_offset: int = -1
    exclusive: bool = False
    saved_dirty: bool = False
    pat: bool = False
    protnone: bool = False

    def __str__(self) -> str:
        bits = [n for n in ("write", "user", "accessed", "dirty", "saved_dirty", "pse", "pat",
                            "nx", "special", "soft_dirty", "exclusive", "protnone")
                if getattr(self, n)]
        where = f" pfn={self.pfn:#x}" if self.pfn >= 0 else ""
        return f"{self.level.upper()} {self.kind}{where} [{' '.join(bits)}] raw={self.raw:#018x}"


def decode_entry(raw: int, level: str = "pte") -> Entry:
    """Decode a raw 64-bit entry at ``level`` ("pgd", "pud", "pmd" or "pte").

    >>> bits = vm_page_prot(True) | _PAGE_RW | _PAGE_DIRTY | _PAGE_PSE
    >>> e = decode_entry(pfn_pte(0x200, bits), "pmd")
    >>> e.kind, hex(e.pfn), e.write, e.dirty, e.nx
    ('huge', '0x200', True, True, True)
    >>> f = decode_entry(pmd_wrprotect(e.raw), "pmd")
    >>> f.write, f.dirty, f.saved_dirty
    (False, True, True)
    >>> from pyfolio.include.linux.swapops import make_writable_migration_entry
    >>> decode_entry(make_writable_migration_entry(0x1234)).kind
    'migration'
    >>> g = decode_entry(pte_modify(pfn_pte(0x200, bits), PAGE_NONE), "pmd")
    >>> g.kind, hex(g.pfn), g.present, g.protnone, bool(g.raw & _PAGE_PRESENT)
    ('huge', '0x200', True, True, False)
    """
    raw = int(raw)
    if raw == 0:
        return Entry(raw, level, "none")
    if pte_present(raw):
        leaf = level == "pte" or (level in ("pmd", "pud") and bool(raw & _PAGE_PSE))
        kind = ("zero" if raw & _PAGE_SPECIAL else ("huge" if level != "pte" else "page")) \
            if leaf else "table"
        bit7 = bool(raw & _PAGE_PSE)
        return Entry(raw, level, kind, pte_pfn(raw), True, bool(raw & _PAGE_RW),
                     bool(raw & _PAGE_USER), bool(raw & _PAGE_ACCESSED), pte_dirty(raw),
                     bit7 and level != "pte", bool(raw & _PAGE_NX), bool(raw & _PAGE_SPECIAL),
                     bool(raw & _PAGE_SOFT_DIRTY), bool(raw & _PAGE_UFFD_WP),
                     saved_dirty=bool(raw & _PAGE_SAVED_DIRTY), pat=bit7 and level == "pte",
                     protnone=pte_protnone(raw))
    from pyfolio.include.linux.swapops import (
        SwpType,
        is_device_exclusive_entry,
        is_device_private_entry,
        is_migration_entry,
    )

    t, off = swp_type(raw), swp_offset(raw)
    if is_migration_entry(raw):
        kind = "migration"
    elif is_device_private_entry(raw):
        kind = "device_private"
    elif is_device_exclusive_entry(raw):
        kind = "device_exclusive"
    else:
        kind = "swap"
    write = t in (SwpType.SWP_MIGRATION_WRITE, SwpType.SWP_DEVICE_WRITE)
    excl = bool(raw & _PAGE_SWP_EXCLUSIVE) or t == SwpType.SWP_MIGRATION_READ_EXCLUSIVE
    return Entry(raw, level, kind, off if kind != "swap" else -1, False, write,
                 soft_dirty=bool(raw & _PAGE_SWP_SOFT_DIRTY), uffd_wp=bool(raw & _PAGE_SWP_UFFD_WP),
                 swp_type=t, swp_offset=off, exclusive=excl)


def pgd_index(addr: int) -> int:
    """Bits 39..47 of the address: the slot in the PGD (4-level paging).

    Models: include/linux/pgtable.h:pgd_index() (v6.18).
    """
    return (addr >> PGDIR_SHIFT) & (PTRS_PER_TABLE - 1)


def pud_index(addr: int) -> int:
    """pud_index() - bits 30..38 of the address: the slot in the PUD table.

    Models: include/linux/pgtable.h:pud_index() (v6.18).
    """
    return (addr >> PUD_SHIFT) & (PTRS_PER_TABLE - 1)


def pmd_index(addr: int) -> int:
    """pmd_index() - bits 21..29 of the address: the slot in the PMD table.

    Models: include/linux/pgtable.h:pmd_index() (v6.18).
    """
    return (addr >> PMD_SHIFT) & (PTRS_PER_TABLE - 1)


def pte_index(addr: int) -> int:
    """pte_index() - bits 12..20 of the address: the slot in the PTE table.

    Models: include/linux/pgtable.h:pte_index() (v6.18).
    """
    return (addr >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1)


@dataclass(frozen=True, slots=True)
class Walk:
    """Where a walk of ``addr`` ended: the tables it passed (pfn, index) per level, and
    the entry it stopped at. ``level`` is the last level reached."""

    addr: int
    tables: tuple[tuple[str, int, int], ...]  # (level, table pfn, index)
    level: str
    raw: int

    def slot(self) -> tuple[int, int]:
        """(table pfn, index) of the entry the walk stopped at."""
        _, pfn, idx = self.tables[-1]
        return pfn, idx


def walk(m: Machine, pgd: int, addr: int) -> Walk:
    """Walk the 4-level table from ``pgd`` down to the entry mapping ``addr``.

    Models: mm/pagewalk.c:walk_page_range() (one address, no callbacks) (v6.18).

    Stops at the first entry that is none, a leaf (PMD leaf), or not present.
    """
    # hot path (every fault walks): the index helpers and pte_pfn() inlined as shifts
    pgtables = m.pgtables
    tables: list[tuple[str, int, int]] = []
    pfn = pgd
    for level, shift in _WALK_LEVELS:
        idx = (addr >> shift) & (PTRS_PER_TABLE - 1)
        tables.append((level, pfn, idx))
        raw: int = pgtables[pfn].item(idx)
        if shift == PAGE_SHIFT or not raw & _PAGE_PRESENT or (
                shift == PMD_SHIFT and raw & _PAGE_PSE):
            return Walk(addr, tuple(tables), level, raw)
        pfn = (raw & PTE_PFN_MASK) >> PAGE_SHIFT
    raise AssertionError("unreachable")


_WALK_LEVELS = (("pgd", PGDIR_SHIFT), ("pud", PUD_SHIFT), ("pmd", PMD_SHIFT),
                ("pte", PAGE_SHIFT))


def pte_alloc_one(m: Machine) -> int:
    """pte_alloc_one() - a zeroed page-table page from the buddy allocator.

    Models: arch/x86/mm/pgtable.c:pte_alloc_one() (v6.18); the simulator uses it for page
    tables of every level (the kernel's __pmd_alloc()/__pud_alloc() also take one page).
    """
    pfn = alloc_pages(m, 0)
    m.mem.page_type[pfn] = PGTY.table
    m.pgtables[pfn] = np.zeros(PTRS_PER_TABLE, np.uint64)
    return pfn


def pte_free(m: Machine, pfn: int) -> None:
    """pte_free() - give a page-table page back to the buddy allocator.

    Models: include/asm-generic/pgalloc.h:pte_free() (v6.18).
    """
    del m.pgtables[pfn]
    m.mem.page_type[pfn] = PGTY.none
    __free_pages(m, pfn, 0)
