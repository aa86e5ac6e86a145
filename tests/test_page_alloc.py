"""Buddy allocator: split on allocation, merge on free, ENOMEM, take_page_off_buddy."""

from __future__ import annotations

import pytest

from pyfolio.mm.mm_init import boot_machine
from pyfolio.mm.page_alloc import (
    __free_pages,
    alloc_pages,
    buddyinfo,
    defragment,
    fragment,
    take_page_off_buddy,
)
from pyfolio.sim.errors import EINVAL, ENOMEM, MmError


def test_boot_frees_all_but_the_zero_page() -> None:
    m = boot_machine(ram_pages=2048)
    assert m.free_area.nr_free == 2047
    # frame 0 is the zero page, so frames 1..1023 are free as blocks of orders 0..9
    assert buddyinfo(m) == [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]


def test_alloc_splits_and_free_merges_back() -> None:
    m = boot_machine(ram_pages=2048)
    before = buddyinfo(m)
    pfn = alloc_pages(m, 0)
    assert m.mem._refcount[pfn] == 1
    assert buddyinfo(m) != before
    __free_pages(m, pfn, 0)
    assert buddyinfo(m) == before and m.free_area.nr_free == 2047


def test_large_allocation_is_aligned_and_compound() -> None:
    m = boot_machine(ram_pages=4096)
    pfn = alloc_pages(m, 9)
    assert pfn % 512 == 0
    assert (m.mem.compound_head[pfn + 1: pfn + 512] == pfn).all()
    assert m.mem.order[pfn] == 9


def test_enomem_changes_nothing() -> None:
    m = boot_machine(ram_pages=1024)
    before = buddyinfo(m)
    with pytest.raises(MmError) as e:
        alloc_pages(m, 10)
    assert e.value.errno == ENOMEM and buddyinfo(m) == before
    with pytest.raises(MmError) as e:
        alloc_pages(m, 11)
    assert e.value.errno == EINVAL


def test_take_page_off_buddy_breaks_the_block_around_the_frame() -> None:
    m = boot_machine(ram_pages=2048)
    assert take_page_off_buddy(m, 1024 + 300)
    assert not take_page_off_buddy(m, 1024 + 300)  # no longer free
    assert buddyinfo(m)[10] == 0 and buddyinfo(m)[9] == 2
    __free_pages(m, 1024 + 300, 0)
    assert buddyinfo(m)[10] == 1


def test_fragment_leaves_no_order9_block() -> None:
    m = boot_machine(ram_pages=8192)
    held = fragment(m)
    assert held == 16 and max(i for i, n in enumerate(buddyinfo(m)) if n) < 9
    with pytest.raises(MmError):
        alloc_pages(m, 9)
    defragment(m)
    assert alloc_pages(m, 9) % 512 == 0
