"""The invariant checker finds broken state (it must be able to fail)."""

from __future__ import annotations

import pytest

from pyfolio import MiB, System
from pyfolio.arch.x86.pgtable import pte_alloc_one, walk


@pytest.fixture
def mp():  # type: ignore[no-untyped-def]
    m = System(ram="16M")
    p, a = m.spawn_with_thp(4 * MiB)
    p.touch(a + 2 * MiB, 16 * 4096)
    assert m.check() == []
    return m, p, a


def kinds(m: System) -> set[str]:
    return {v.kind for v in m.check()}


def test_refcount_off_by_one(mp) -> None:  # type: ignore[no-untyped-def]
    m, p, a = mp
    m.machine.mem._refcount[p.folio_at(a).pfn] += 1
    assert "refcount" in kinds(m)


def test_mapcount_mismatch(mp) -> None:  # type: ignore[no-untyped-def]
    m, p, a = mp
    m.machine.mem._mapcount[p.folio_at(a + 2 * MiB).pfn] += 1
    assert "mapcount" in kinds(m)


def test_entire_mapcount_mismatch(mp) -> None:  # type: ignore[no-untyped-def]
    m, p, a = mp
    m.machine.mem._entire_mapcount[p.folio_at(a).pfn] -= 1
    assert "entire_mapcount" in kinds(m)


def test_entry_mapping_a_free_frame(mp) -> None:  # type: ignore[no-untyped-def]
    m, p, a = mp
    w = walk(m.machine, p.mm.pgd, a + 2 * MiB)
    table, idx = w.slot()
    free_pfn = next(pfn for lst in m.machine.free_area.lists for pfn in lst)
    m.machine.pgtables[table][idx] = (free_pfn << 12) | 0x67
    assert "maps-free-frame" in kinds(m)


def test_leaked_frame(mp) -> None:  # type: ignore[no-untyped-def]
    m, p, a = mp
    order = next(o for o, lst in enumerate(m.machine.free_area.lists) if lst)
    pfn = next(iter(m.machine.free_area.lists[order]))
    m.machine.free_area.remove(m.machine.mem, pfn, order)
    assert "leak" in kinds(m)


def test_unreachable_page_table(mp) -> None:  # type: ignore[no-untyped-def]
    m, p, a = mp
    pte_alloc_one(m.machine)
    assert "pgtable-refs" in kinds(m)


def test_rmap_cannot_find_mapping(mp) -> None:  # type: ignore[no-untyped-def]
    m, p, a = mp
    m.machine.mem.index[p.folio_at(a + 2 * MiB).pfn] += 1
    assert "rmap" in kinds(m)
