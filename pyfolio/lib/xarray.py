"""The XArray the page cache keeps its folios in: multi-index entries, lookups, splits.

Models: lib/xarray.c and include/linux/xarray.h (v6.18): an XArray maps each index to an
entry; a *multi-index* entry of order k occupies the naturally aligned range of 2^k
indices around it (``xas_set_order()`` then ``xas_store()``), which is how one large
folio sits in ``mapping->i_pages``. ``xas_split()`` and ``xas_try_split()`` cut one
multi-index entry into entries of a smaller order, each holding the same value, before
``__split_unmapped_folio()`` stores each new folio in its own range.

Simplification: the tree of ``xa_node`` s (64 slots each, sibling entries for the parts
of a multi-index entry) is not built; the entries are kept by their first index with
their order, which is what every caller observes. So ``xas_split_alloc()`` never needs
memory and ``xas_try_split()`` never fails with -ENOMEM (the kernel's can, leaving a
partly split folio). Marks (dirty, writeback, towrite) are not kept: the page flags say
the same for the simulator's callers.

Value entries (xa_mk_value(): an integer stored in the array, not a pointer) are how shmem
keeps a swapped-out folio's swap entry in its page cache (mm/shmem.c, swp_to_radix_entry()).
The kernel tags them with bit 0; pyfolio stores folio head PFNs as plain ints (odd ones
too), so a value is a type of its own, :class:`XaValue`, and every reader of a page cache
that may hold them tells them apart with :func:`xa_is_value`.

>>> xa = XArray()
>>> xas = XaState(xa, 0); xas_set_order(xas, 512, 9); xas_store(xas, 0x1200)
>>> xa_load(xa, 700), xa_entries(xa)
(4608, [(512, 9, 4608)])
>>> xas_set_order(xas, 512, 7); xas_split(xas, 0x1200, 9); xa_entries(xa)[:2]
[(512, 7, 4608), (640, 7, 4608)]
>>> xas_set_order(xas, 0, 4); xas_store(xas, xa_mk_value(7)); xa_get_order(xa, 3), xa_load(xa, 3)
(4, XaValue(v=7))
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from pyfolio.sim.errors import VmWarning

__all__ = ["XArray", "XaState", "XaValue", "Entry", "xa_mk_value", "xa_is_value",
           "xa_to_value", "xa_get_order", "xa_load", "xa_entries", "xa_find", "xas_set_order",
           "xas_load", "xas_store", "xas_find_conflict", "xas_split_alloc", "xas_split",
           "xas_try_split", "xas_try_split_min_order", "xa_empty"]

#: include/linux/xarray.h: XA_CHUNK_SHIFT (64 slots per node)
XA_CHUNK_SHIFT = 6


@dataclass(frozen=True, slots=True)
class XaValue:
    """A value entry: the integer ``v`` stored in the array (xa_mk_value(v))."""

    v: int


#: what an XArray slot holds: a folio's head PFN, or a value entry
Entry = int | XaValue


def xa_mk_value(v: int) -> XaValue:
    """xa_mk_value() - the value entry holding the integer ``v``.

    Models: include/linux/xarray.h:xa_mk_value() (v6.18).
    """
    if v < 0:
        raise VmWarning(f"xa_mk_value({v}): values are unsigned")
    return XaValue(v)


def xa_is_value(entry: object) -> bool:
    """xa_is_value() - is this entry a value (not a pointer)?

    Models: include/linux/xarray.h:xa_is_value() (v6.18).
    """
    return isinstance(entry, XaValue)


def xa_to_value(entry: XaValue) -> int:
    """xa_to_value() - the integer a value entry holds.

    Models: include/linux/xarray.h:xa_to_value() (v6.18).
    """
    return entry.v


@dataclass(eq=False)
class XArray:
    """struct xarray: ``heads`` maps the first index of each entry to (order, entry); the
    sorted list ``index`` of those first indices stands in for the tree walk."""

    heads: dict[int, tuple[int, Entry]] = field(default_factory=dict)
    index: list[int] = field(default_factory=list)


@dataclass(eq=False)
class XaState:
    """struct xa_state (XA_STATE()/XA_STATE_ORDER()): the array, the index the operation is
    at and its order (``xa_shift`` + ``xa_sibs`` in the kernel)."""

    xa: XArray
    xa_index: int
    order: int = 0


def _covering(xa: XArray, index: int) -> int | None:
    """The first index of the entry covering ``index``, or None."""
    i = bisect.bisect_right(xa.index, index) - 1
    if i < 0:
        return None
    head = xa.index[i]
    return head if index < head + (1 << xa.heads[head][0]) else None


def xa_load(xa: XArray, index: int) -> Entry | None:
    """xa_load() - the entry at ``index`` (a multi-index entry answers for each of its
    indices), or None.

    Models: lib/xarray.c:xa_load() (v6.18).
    """
    head = _covering(xa, index)
    return None if head is None else xa.heads[head][1]


def xa_get_order(xa: XArray, index: int) -> int:
    """xa_get_order() - the order of the entry at ``index`` (0 if there is none).

    Models: lib/xarray.c:xa_get_order() (v6.18).
    """
    head = _covering(xa, index)
    return 0 if head is None else xa.heads[head][0]


def xa_empty(xa: XArray) -> bool:
    """xa_empty() - no entry at all.

    Models: include/linux/xarray.h:xa_empty() (v6.18).
    """
    return not xa.heads


def xa_find(xa: XArray, start: int, max_: int) -> tuple[int, int, Entry] | None:
    """xa_find() - the first entry at an index in [start, max_], as (first index, order,
    entry); an entry that begins before ``start`` but covers it is found too.

    Models: lib/xarray.c:xa_find() (v6.18), returning the entry's first index instead of
    updating ``*indexp``.
    """
    head = _covering(xa, start)
    if head is None:
        i = bisect.bisect_left(xa.index, start)
        if i == len(xa.index) or xa.index[i] > max_:
            return None
        head = xa.index[i]
    order, entry = xa.heads[head]
    return head, order, entry


def xa_entries(xa: XArray, start: int = 0, end: int | None = None
               ) -> list[tuple[int, int, Entry]]:
    """Every entry meeting [start, end), in index order, as (first index, order, entry)
    (what an ``xas_for_each()`` loop visits)."""
    lo = _covering(xa, start)
    i = bisect.bisect_left(xa.index, start if lo is None else lo)
    j = len(xa.index) if end is None else bisect.bisect_left(xa.index, end)
    return [(h, *xa.heads[h]) for h in xa.index[i:j]]


def xas_set_order(xas: XaState, index: int, order: int) -> None:
    """xas_set_order() - point the state at the aligned range of 2^order around ``index``.

    Models: include/linux/xarray.h:xas_set_order() (v6.18).
    """
    xas.xa_index = index & ~((1 << order) - 1)
    xas.order = order


def xas_load(xas: XArray | XaState) -> Entry | None:
    """xas_load() - the entry at the state's index.

    Models: lib/xarray.c:xas_load() (v6.18).
    """
    assert isinstance(xas, XaState)
    return xa_load(xas.xa, xas.xa_index)


def xas_find_conflict(xas: XaState) -> Entry | None:
    """xas_find_conflict() - any entry inside the state's range (the caller wants to store
    a multi-index entry there), or None.

    Models: lib/xarray.c:xas_find_conflict() (v6.18).
    """
    found = xa_find(xas.xa, xas.xa_index, xas.xa_index + (1 << xas.order) - 1)
    return None if found is None else found[2]


def _erase(xa: XArray, head: int) -> None:
    del xa.heads[head]
    del xa.index[bisect.bisect_left(xa.index, head)]


def _put(xa: XArray, head: int, order: int, entry: Entry) -> None:
    if head not in xa.heads:
        bisect.insort(xa.index, head)
    xa.heads[head] = (order, entry)


def xas_store(xas: XaState, entry: Entry | None) -> None:
    """xas_store() - store ``entry`` (None erases) over the state's range.

    Models: lib/xarray.c:xas_store() (v6.18). An order-0 store at an index inside a
    multi-index entry changes that whole entry (every index shares one value), as
    ``__xa_store(&mapping->i_pages, new_folio->index, new_folio, 0)`` relies on; a store
    of order k replaces every entry inside its range. Storing part of a larger entry at a
    smaller order is a VmWarning (the kernel splits first, with xas_split()).
    """
    xa, head, order = xas.xa, xas.xa_index, xas.order
    cover = _covering(xa, head)
    if cover is not None and (order == 0 or xa.heads[cover][0] >= order):
        if cover != head or xa.heads[cover][0] != order:
            if order:
                raise VmWarning(f"xas_store of order {order} at {head:#x} inside the "
                                f"order-{xa.heads[cover][0]} entry at {cover:#x}")
            order, head = xa.heads[cover][0], cover
        if entry is None:
            _erase(xa, head)
        else:
            _put(xa, head, order, entry)
        return
    for h, _, _ in xa_entries(xa, head, head + (1 << order)):
        _erase(xa, h)
    if entry is not None:
        _put(xa, head, order, entry)


def xas_split_alloc(xas: XaState, entry: Entry, order: int) -> int:
    """xas_split_alloc() - allocate the nodes a later xas_split() of the order-``order``
    ``entry`` into entries of the state's order needs; 0 (the simulator keeps no nodes).

    Models: lib/xarray.c:xas_split_alloc() (v6.18).
    """
    if order <= xas.order:
        raise VmWarning(f"xas_split_alloc of order {order} into order {xas.order}")
    return 0


def xas_split(xas: XaState, entry: Entry, order: int) -> None:
    """xas_split() - cut the order-``order`` multi-index entry at the state's index into
    entries of the state's order; ``entry`` is copied to all of them.

    Models: lib/xarray.c:xas_split() (v6.18); the uniform split of a page-cache folio.
    """
    xa = xas.xa
    head = xas.xa_index & ~((1 << order) - 1)
    if xa.heads.get(head, (-1, 0))[0] != order:
        raise VmWarning(f"xas_split: no order-{order} entry at {head:#x}")
    _erase(xa, head)
    step = 1 << xas.order
    for i in range(head, head + (1 << order), step):
        _put(xa, i, xas.order, entry)


def xas_try_split(xas: XaState, entry: Entry, order: int) -> None:
    """xas_try_split() - split the order-``order`` entry at the state's index into entries
    of the state's order (one step of the non-uniform split), each holding ``entry``.

    Models: lib/xarray.c:xas_try_split() (v6.18). The kernel may fail to get a node with
    GFP_NOWAIT (xas_error() -ENOMEM: the folio is left partly split); the simulator
    needs none, so it always succeeds.
    """
    xas_split(xas, entry, order)


def xas_try_split_min_order(order: int) -> int:
    """xas_try_split_min_order() - the smallest order one xas_try_split() of an order-``order``
    entry can reach: one step down at a node boundary, else down to it.

    Models: lib/xarray.c:xas_try_split_min_order() (v6.18).

    >>> [xas_try_split_min_order(o) for o in (9, 6, 5, 1, 0)]
    [6, 5, 0, 0, 0]
    """
    if order % XA_CHUNK_SHIFT == 0:
        return order - 1 if order else 0
    return order - order % XA_CHUNK_SHIFT
