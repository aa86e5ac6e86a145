"""Entry encodings: x86-64 bits and the kernel's swap-format entries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyfolio.pgtable import (
    _PAGE_DIRTY,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SWP_EXCLUSIVE,
    SwpType,
    decode_entry,
    is_device_private_entry,
    is_migration_entry,
    make_readable_exclusive_migration_entry,
    make_writable_device_private_entry,
    make_writable_migration_entry,
    pfn_pte,
    pgd_index,
    pmd_index,
    pte_index,
    pud_index,
    swp_entry,
    swp_offset,
    swp_type,
    vm_page_prot,
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
