"""The claims of chapters/04-page-tables.md, checked through the same pyfolio calls."""

from __future__ import annotations

import pytest

from conftest import ROOT, glued
from pyfolio import KiB, MiB, System
from pyfolio.arch.x86.pgtable import decode_entry, pgd_index, pmd_index, pte_index, pud_index, walk

CHAPTER = ROOT / "chapters/04-page-tables.md"


def test_address_decomposes_into_the_indices_shown() -> None:
    m = System(ram="64M", thp="madvise", seed=0)
    a = m.spawn().mmap(4 * MiB)
    addr = a + 0x12345
    idx = (pgd_index(addr), pud_index(addr), pmd_index(addr), pte_index(addr), addr & 0xfff)
    assert idx == (253, 511, 510, 18, 0x345)  # a = 0x7effffc00000 in this simulator


def test_pmd_leaf_versus_pte_table_and_table_count() -> None:
    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp(4 * MiB)
    p.touch(a + 2 * MiB, 4 * KiB)
    huge, small = walk(m.machine, p.mm.pgd, a + 0x12345), walk(m.machine, p.mm.pgd, a + 2 * MiB)
    assert (len(huge.tables), huge.level) == (3, "pmd")
    assert (len(small.tables), small.level) == (4, "pte")
    h = decode_entry(huge.raw, "pmd")
    assert h.kind == "huge" and h.pse and h.write and h.dirty and h.nx and h.pfn % 512 == 0
    assert p.pfn_at(a + 0x12345) == h.pfn + 0x12
    assert len(m.machine.pgtables) == 5 and len(p.mm.pmd_huge_pte) == 1
    assert p.lookup(a + 2 * MiB + 4 * KiB).kind == "none"
    assert m.check() == []


def test_address_walker_pmd_leaf_then_pte_in_the_second_2mib() -> None:
    from pyfolio.views import pagetable_graph
    from pyfolio.widgets import address_walker

    m = System(ram="64M", thp="madvise", seed=0)
    p, a = m.spawn_with_thp(4 * MiB)
    p.write(a + 2 * MiB, 1)
    w = address_walker(p, a, 4 * MiB)
    assert w.message.text.startswith(f"{a:#x}: PMD entry, huge")
    w.addr.value = a + 2 * MiB
    assert w.message.text.startswith(f"{a + 2 * MiB:#x}: PTE entry, page")
    assert "pte" in pagetable_graph(p, a + 2 * MiB) and "pte" not in pagetable_graph(p, a)
    assert (w.addr.min, w.addr.max, w.addr.step) == (a, a + 4 * MiB - 4 * KiB, 4 * KiB)
    assert m.check() == []


@pytest.mark.xdist_group("04-page-tables")
def test_the_prose_quotes_what_the_simulator_computes() -> None:
    from pyfolio.widgets import address_walker

    g = glued(CHAPTER)
    m = System(ram="64M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    addr = a + 0x12345
    assert g["ch04_addr"] == f"{addr:#x}"
    assert (g["ch04_pgd"], g["ch04_pud"], g["ch04_pmd"], g["ch04_pte"], g["ch04_off"]) == (
        pgd_index(addr), pud_index(addr), pmd_index(addr), pte_index(addr), f"{addr & 0xfff:#x}")
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
    p.touch(a + 2 * MiB, 4 * KiB)
    huge, small = walk(m.machine, p.mm.pgd, addr), walk(m.machine, p.mm.pgd, a + 2 * MiB)
    assert (g["ch04_huge_levels"], g["ch04_small_levels"]) == (len(huge.tables), len(small.tables))
    assert g["ch04_huge_pfn"] == f"{decode_entry(huge.raw, 'pmd').pfn:#x}"
    assert g["ch04_tables"] == len(m.machine.pgtables)
    e = p.lookup(addr)
    assert (g["ch04_raw"], g["ch04_pfn"]) == (f"{e.raw:#018x}", f"{e.pfn:#x}")
    assert g["ch04_pfn"] == g["ch04_huge_pfn"]  # the PMD leaf the walk ended at
    w = address_walker(p, a, 4 * MiB)
    w.addr.value = a + 2 * MiB
    assert g["ch04_w_second"] == f"{w.addr.value:#x}"
    assert (g["ch04_w_first_level"], g["ch04_w_second_level"]) == (
        p.lookup(a).level.upper(), p.lookup(w.addr.value).level.upper())
    assert m.check() == []
