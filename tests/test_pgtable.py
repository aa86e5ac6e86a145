"""Entry encodings: x86-64 bits and the kernel's swap-format entries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyfolio.arch.x86.pgtable import (
    _HPAGE_CHG_MASK,
    _PAGE_CHG_MASK,
    _PAGE_DIRTY,
    _PAGE_DIRTY_BITS,
    _PAGE_PAT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SAVED_DIRTY,
    _PAGE_SOFT_DIRTY,
    _PAGE_SWP_EXCLUSIVE,
    PAGE_NONE,
    PHYSICAL_PMD_PAGE_MASK,
    PTE_PFN_MASK,
    decode_entry,
    pfn_pte,
    pgd_index,
    pmd_index,
    pmd_leaf,
    pmd_mkclean,
    pmd_mkdirty,
    pmd_mkwrite,
    pmd_modify,
    pmd_present,
    pmd_wrprotect,
    pte_dirty,
    pte_index,
    pte_mkclean,
    pte_mkdirty,
    pte_mkwrite,
    pte_modify,
    pte_pfn,
    pte_present,
    pte_protnone,
    pte_wrprotect,
    pud_index,
    swp_entry,
    swp_offset,
    swp_type,
    vm_get_page_prot,
    vm_page_prot,
)
from pyfolio.include.linux.swapops import (
    SwpType,
    is_device_private_entry,
    is_migration_entry,
    make_readable_exclusive_migration_entry,
    make_writable_device_private_entry,
    make_writable_migration_entry,
)


@given(st.integers(0, 31), st.integers(0, (1 << 50) - 1))
def test_swap_entry_round_trip(type_: int, offset: int) -> None:
    e = swp_entry(type_, offset)
    assert (swp_type(e), swp_offset(e)) == (type_, offset)
    assert e & 0x1FF == 0  # bits 0-8 are free for P, SD, F, E ... (offset starts at bit 9)


def test_offset_is_stored_inverted() -> None:
    e = make_writable_migration_entry(0)
    assert (e >> 9) & 0xFFFF == 0xFFFF and swp_type(e) == SwpType.SWP_MIGRATION_WRITE == 27


def test_special_types_decode() -> None:
    assert is_migration_entry(make_readable_exclusive_migration_entry(5))
    assert decode_entry(make_readable_exclusive_migration_entry(5)).exclusive
    d = make_writable_device_private_entry(0x1234) | _PAGE_SWP_EXCLUSIVE
    assert is_device_private_entry(d) and not is_migration_entry(d)
    e = decode_entry(d)
    assert (e.kind, e.pfn, e.write, e.exclusive, e.present) == (
        "device_private", 0x1234, True, True, False)


def test_present_entries_decode() -> None:
    raw = pfn_pte(0x42, vm_page_prot(True) | _PAGE_RW | _PAGE_DIRTY)
    e = decode_entry(raw)
    assert (e.kind, e.pfn, e.write, e.dirty, e.user, e.nx, e.pse) == (
        "page", 0x42, True, True, True, True, False)
    assert decode_entry(raw | _PAGE_PSE, "pmd").kind == "huge"
    assert decode_entry(raw, "pmd").kind == "table"
    assert decode_entry(0).kind == "none"


def test_address_indices() -> None:
    addr = (3 << 39) | (5 << 30) | (7 << 21) | (9 << 12) | 0x123
    assert (pgd_index(addr), pud_index(addr), pmd_index(addr), pte_index(addr)) == (3, 5, 7, 9)


# -- dirty bits: D (6), soft-dirty (11), SavedDirty (58), as arch/x86/include/asm/pgtable.h ----
_FLAGS = st.integers(0, (1 << 64) - 1)


def _bit(v: int, b: int) -> int:
    return (v >> b) & 1


def _expect(v: int, *, rw: int | None = None, d: int | None = None, sv: int | None = None,
            sd: int | None = None) -> int:
    """``v`` with the RW (1), D (6), SavedDirty (58) and soft-dirty (11) bits replaced."""
    for b, x in ((1, rw), (6, d), (58, sv), (11, sd)):
        if x is not None:
            v = (v & ~(1 << b)) | (x << b)
    return v


def test_saved_dirty_is_bit_58_and_dirty_bits_are_d_or_saved_dirty() -> None:
    assert _PAGE_SAVED_DIRTY == 1 << 58 and _PAGE_SOFT_DIRTY == 1 << 11
    assert _PAGE_DIRTY_BITS == (1 << 6) | (1 << 58) and _PAGE_PAT == _PAGE_PSE == 1 << 7


@given(_FLAGS)
def test_pte_wrprotect_moves_d_to_saved_dirty(v: int) -> None:
    # pte_clear_flags(_PAGE_RW), then mksaveddirty_shift(): RW is now 0, so D -> SavedDirty
    got = pte_wrprotect(v)
    assert got == _expect(v, rw=0, d=0, sv=_bit(v, 58) | _bit(v, 6))
    assert pmd_wrprotect(v) == got and pte_dirty(got) == pte_dirty(v)


@given(_FLAGS)
def test_pte_mkwrite_moves_saved_dirty_back_to_d(v: int) -> None:
    # pte_mkwrite_novma() sets RW, then clear_saveddirty_shift(): SavedDirty -> D
    got = pte_mkwrite(v)
    assert got == _expect(v, rw=1, d=_bit(v, 6) | _bit(v, 58), sv=0)
    assert pmd_mkwrite(v) == got and pte_dirty(got) == pte_dirty(v)


@given(_FLAGS)
def test_pte_mkdirty_sets_soft_dirty_and_respects_rw(v: int) -> None:
    got = pte_mkdirty(v)
    if _bit(v, 1):  # writable: D
        assert got == _expect(v, d=1, sd=1)
    else:  # read-only: the D just set moves to SavedDirty
        assert got == _expect(v, d=0, sv=1, sd=1)
    assert pmd_mkdirty(v) == got and pte_dirty(got)


@given(_FLAGS)
def test_pte_mkclean_clears_both_dirty_bits_not_soft_dirty(v: int) -> None:
    assert pte_mkclean(v) == _expect(v, d=0, sv=0) == pmd_mkclean(v)
    assert not pte_dirty(pte_mkclean(v)) and pte_dirty(v) == bool(v & ((1 << 6) | (1 << 58)))


@given(_FLAGS)
def test_pte_modify_saves_d_of_a_writable_pte(v: int) -> None:
    v |= 1  # a present entry (a non-present one has its PFN inverted: see below)
    prot = vm_page_prot(True)
    got = pte_modify(v, prot)
    kept = v & _PAGE_CHG_MASK  # PFN, PCD, PWT, SP, A, D, SavedDirty, SD, UW, PAT
    base = kept | (prot & ~_PAGE_CHG_MASK)
    if _bit(v, 1):  # old value writable: mksaveddirty (the result has RW=0)
        assert got == _expect(base, d=0, sv=_bit(v, 6) | _bit(v, 58))
    else:  # clear_saveddirty: acts only on RW=1, so nothing moves
        assert got == base
    assert pte_dirty(got) == pte_dirty(v)


@given(_FLAGS)
def test_pmd_modify_of_6_18_0_dropped_hardware_d(v: int) -> None:
    # 6.18.0: val &= (_HPAGE_CHG_MASK & ~_PAGE_DIRTY): D is gone before mksaveddirty could
    # save it (fixed in 6.18.y by f7491d7c81db, the simulator's default)
    import pyfolio.arch.x86.pgtable as pgtable

    v |= 1
    prot = vm_page_prot(True)
    pgtable.PMD_MODIFY_DROPS_DIRTY = True
    try:
        got = pmd_modify(v, prot)
    finally:
        pgtable.PMD_MODIFY_DROPS_DIRTY = False
    assert not got & _PAGE_DIRTY and bool(got & _PAGE_SAVED_DIRTY) == bool(v & _PAGE_SAVED_DIRTY)
    assert got & ~_PAGE_SAVED_DIRTY == (v & _HPAGE_CHG_MASK & ~_PAGE_DIRTY & ~_PAGE_SAVED_DIRTY) \
        | (prot & ~_HPAGE_CHG_MASK)


@given(_FLAGS)
def test_pmd_modify_keeps_d_like_pte_modify_with_the_6_18_y_fix(v: int) -> None:
    # f7491d7c81db: val &= _HPAGE_CHG_MASK; a writable dirty PMD's D moves to SavedDirty
    v |= 1
    prot = vm_page_prot(True)
    got = pmd_modify(v, prot)
    base = (v & _HPAGE_CHG_MASK) | (prot & ~_HPAGE_CHG_MASK)
    if _bit(v, 1):
        assert got == _expect(base, d=0, sv=_bit(v, 6) | _bit(v, 58))
    else:
        assert got == base
    assert pte_dirty(got) == pte_dirty(v)


def test_fork_and_cow_round_trip_of_one_entry() -> None:
    fresh = pte_mkwrite(pte_mkdirty(pfn_pte(0x42, vm_page_prot(True))))  # do_anonymous_page
    assert fresh & (_PAGE_RW | _PAGE_DIRTY | _PAGE_SOFT_DIRTY) == \
        _PAGE_RW | _PAGE_DIRTY | _PAGE_SOFT_DIRTY and not fresh & _PAGE_SAVED_DIRTY
    forked = pte_wrprotect(fresh)
    e = decode_entry(forked)
    assert (e.write, e.dirty, e.saved_dirty, e.soft_dirty) == (False, True, True, True)
    assert not forked & _PAGE_DIRTY
    assert pte_mkwrite(pte_mkdirty(forked)) == fresh  # wp_page_reuse()


def test_bit_7_is_pse_in_a_pmd_and_pat_in_a_pte() -> None:
    raw = pfn_pte(0x200, vm_page_prot(True) | _PAGE_PSE)
    pmd, pte = decode_entry(raw, "pmd"), decode_entry(raw, "pte")
    assert (pmd.pse, pmd.pat, pte.pse, pte.pat) == (True, False, False, True)


@given(st.integers(1, (1 << 40) - 1), st.booleans())
def test_prot_none_inverts_the_pfn_and_stays_present(pfn: int, pmd: bool) -> None:
    # arch/x86: PAGE_NONE = A | PROTNONE (the Global bit); pfn_pte() and pte_modify() invert
    # the PFN bits of an entry without P (pgtable-invert.h), pte_pfn() undoes it
    prot = vm_page_prot(True) | (_PAGE_PSE if pmd else 0)
    present = pfn_pte(pfn << (9 if pmd else 0), prot) | _PAGE_RW | _PAGE_DIRTY
    modify = pmd_modify if pmd else pte_modify
    none = modify(present, PAGE_NONE)
    assert not none & 1 and none & _PAGE_PROTNONE and pte_present(none) and pte_protnone(none)
    mask = PHYSICAL_PMD_PAGE_MASK if pmd else PTE_PFN_MASK
    assert none & mask == ~present & mask  # stored inverted
    assert pte_pfn(none) == pte_pfn(present) and pmd_leaf(none) == pmd
    assert not pte_protnone(present) and pmd_present(none)
    back = modify(none, vm_page_prot(True))
    assert back & 1 and pte_pfn(back) == pte_pfn(present)
    assert back & mask == present & mask
    e = decode_entry(none, "pmd" if pmd else "pte")
    assert (e.kind, e.pfn, e.present, e.protnone) == ("huge" if pmd else "page", pte_pfn(present),
                                                      True, True)
    assert pfn_pte(pfn, PAGE_NONE) & PTE_PFN_MASK == ~(pfn << 12) & PTE_PFN_MASK
    assert vm_get_page_prot(0) == PAGE_NONE and vm_get_page_prot(3) == vm_page_prot(True)
