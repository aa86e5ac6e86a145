"""Folio API: references, freeze/unfreeze, pins, expected refcount."""

from __future__ import annotations

import pytest

from pyfolio import KiB, MiB, System
from pyfolio.include.linux.mm import (
    folio_expected_ref_count,
    folio_get,
    folio_maybe_dma_pinned,
    folio_put,
    folio_ref_freeze,
    folio_ref_unfreeze,
)
from pyfolio.sim.errors import VmWarning


def thp(m: System):  # type: ignore[no-untyped-def]
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a)
    return p, a, p.folio_at(a)


def test_freeze_only_at_exact_count() -> None:
    m = System(ram="16M")
    p, a, f = thp(m)
    folio_get(f)
    assert not folio_ref_freeze(f, 1) and f.refcount == 2
    assert folio_ref_freeze(f, 2) and f.refcount == 0
    folio_ref_unfreeze(f, 2)
    folio_put(f)
    assert m.check() == []
    with pytest.raises(VmWarning):
        folio_ref_unfreeze(f, 1)


def test_expected_refcount_and_pins() -> None:
    m = System(ram="16M")
    p, a, f = thp(m)
    assert folio_expected_ref_count(f) == f.refcount == 1
    assert not folio_maybe_dma_pinned(f)
    p.pin(a, 4 * KiB)
    assert folio_maybe_dma_pinned(f) and f.refcount == folio_expected_ref_count(f) + 1
    q = m.spawn()
    b = q.mmap(4 * KiB)
    q.pin(b, 4 * KiB)
    assert folio_maybe_dma_pinned(q.folio_at(b))


def test_last_put_frees_to_buddy() -> None:
    m = System(ram="16M")
    free = m.nr_free_pages()
    p, a, f = thp(m)
    assert m.nr_free_pages() < free - 512
    p.exit()
    assert m.nr_free_pages() == free
