"""The claims of chapters/04-page-tables.md, checked through the same pyfolio calls."""

from __future__ import annotations

from pyfolio import KiB, MiB, System
from pyfolio.pgtable import decode_entry, pgd_index, pmd_index, pte_index, pud_index, walk


def test_address_decomposes_into_the_indices_shown() -> None:
    m = System(ram="64M", thp="madvise", seed=0)
    a = m.spawn().mmap(4 * MiB)
    addr = a + 0x12345
    idx = (pgd_index(addr), pud_index(addr), pmd_index(addr), pte_index(addr), addr & 0xfff)
    assert idx == (253, 511, 510, 18, 0x345)  # a = 0x7effffc00000 in this simulator


def test_pmd_leaf_versus_pte_table_and_table_count() -> None:
    m = System(ram="64M", thp="madvise", seed=0)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
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
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
    p.write(a + 2 * MiB, 1)
    w = address_walker(p, a, 4 * MiB)
    assert w.message.text.startswith(f"{a:#x}: PMD entry, huge")
    w.addr.value = a + 2 * MiB
    assert w.message.text.startswith(f"{a + 2 * MiB:#x}: PTE entry, page")
    assert "pte" in pagetable_graph(p, a + 2 * MiB) and "pte" not in pagetable_graph(p, a)
    assert (w.addr.min, w.addr.max, w.addr.step) == (a, a + 4 * MiB - 4 * KiB, 4 * KiB)
    assert m.check() == []
