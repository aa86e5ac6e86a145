"""The buddy allocator: free lists per order 0..MAX_PAGE_ORDER, split on allocation,
merge on free.

Models: mm/page_alloc.c (v6.18): __rmqueue_smallest(), expand(), __free_one_page(),
take_page_off_buddy(). Simplifications: one zone, one migratetype, no per-CPU lists, no
watermarks or reclaim: an allocation either finds a free block or fails with -ENOMEM.
Free blocks are kept LIFO per order as the kernel's list_add does, in dicts so a buddy can
be taken off its list in O(1) when it merges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.include.linux.huge_mm import MTHP_STAT, mod_mthp_stat
from pyfolio.sim.errors import EINVAL, ENOMEM, MmError
from pyfolio.sim.memmap import FOLIO_MAPPING_ANON, PG, PGTY, Memmap
from pyfolio.sim.units import HPAGE_PMD_NR, MAX_PAGE_ORDER

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["alloc_pages", "alloc_pages_run", "__free_pages", "free_pages_run",
           "free_large_pages_run",
           "take_page_off_buddy", "nr_free_pages", "buddyinfo", "fragment", "defragment",
           "prep_compound_page"]


def prep_compound_page(mem: Memmap, pfn: int, order: int) -> None:
    """prep_compound_page() - make frames [pfn, pfn + 2^order) one compound page.

    Models: mm/page_alloc.c:prep_compound_page() (v6.18): PG_head on the head, every tail
    points at it, the order is recorded, and the large-folio mapcounts start at -1.
    """
    mem.set(pfn, PG.head)
    mem.order[pfn] = order
    mem.compound_head[pfn + 1: pfn + (1 << order)] = pfn
    mem._entire_mapcount[pfn] = -1
    mem._large_mapcount[pfn] = -1
    mem._nr_pages_mapped[pfn] = 0
    mem._pincount[pfn] = 0


def alloc_pages(m: Machine, order: int, *, comp: bool = True) -> int:
    """alloc_pages() - take a free block of 2^order frames off the buddy free lists.

    Models: mm/page_alloc.c:__rmqueue_smallest() and expand() (v6.18): the smallest free
    block of at least ``order`` is taken and halved, the unused halves going back to the
    lower free lists. The returned head has ``_refcount`` 1; with ``comp`` (__GFP_COMP, as
    folio_alloc() asks) an order > 0 block becomes a compound page.

    Raises MmError(ENOMEM) when no block is large enough, and changes nothing then.

    >>> from pyfolio.mm.mm_init import boot_machine
    >>> m = boot_machine(ram_pages=1024)
    >>> pfn = alloc_pages(m, 9); (pfn % 512, int(m.mem._refcount[pfn]))
    (0, 1)
    """
    if not 0 <= order <= MAX_PAGE_ORDER:
        raise MmError(EINVAL, f"order {order} outside 0..{MAX_PAGE_ORDER}")
    fa, mem = m.free_area, m.mem
    for current in range(order, MAX_PAGE_ORDER + 1):
        if fa.lists[current]:
            break
    else:
        raise MmError(ENOMEM, f"no free block of order {order} "
                      f"({fa.nr_free} pages free, largest order {largest_free_order(m)})")
    pfn = next(reversed(fa.lists[current]))  # LIFO: the block freed last
    fa.remove(mem, pfn, current)
    while current > order:  # expand(): give back the upper halves
        current -= 1
        fa.add(mem, pfn + (1 << current), current)
    mem._refcount[pfn] = 1
    if order and comp:
        prep_compound_page(mem, pfn, order)
    m.trace.emit("mm_page_alloc", pfn=pfn, order=order)
    return pfn


def alloc_pages_run(m: Machine, nr: int) -> np.ndarray:
    """The frames ``nr`` successive ``alloc_pages(m, 0)`` calls return, in that order, with
    the free lists left as those calls leave them; fewer (as many as are free) when fewer
    are free. A simulator batch, not a kernel function: it emits no ``mm_page_alloc``
    events (the caller emits them where the per-page calls would).

    Each order-0 allocation takes the last block of the lowest non-empty list and, when
    that block is larger, splits it (expand()), giving back its upper halves; the next
    ones then take those halves page by page, in address order, until the block is used
    up and the lower lists are empty again. So a whole block of 2^k pages (k the lowest
    non-empty order) is taken in one step when at least 2^k are wanted; otherwise one
    page is taken with the split, exactly as alloc_pages() does it.

    >>> from pyfolio.mm.mm_init import boot_machine
    >>> a, b = boot_machine(ram_pages=1024), boot_machine(ram_pages=1024)
    >>> alloc_pages_run(a, 700).tolist() == [alloc_pages(b, 0) for _ in range(700)]
    True
    >>> [list(x) for x in a.free_area.lists] == [list(x) for x in b.free_area.lists]
    True
    """
    fa, mem = m.free_area, m.mem
    starts: list[np.ndarray] = []
    left = min(nr, fa.nr_free)
    while left:
        current = next(o for o in range(MAX_PAGE_ORDER + 1) if fa.lists[o])
        pfn = next(reversed(fa.lists[current]))
        fa.remove(mem, pfn, current)
        size = 1 << current
        if size > left:  # expand(): only the first page is taken, the halves go back
            while current:
                current -= 1
                fa.add(mem, pfn + (1 << current), current)
            size = 1
        starts.append(np.arange(pfn, pfn + size, dtype=np.int64))
        left -= size
    pfns = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    mem._refcount[pfns] = 1
    return pfns


def largest_free_order(m: Machine) -> int:
    for o in range(MAX_PAGE_ORDER, -1, -1):
        if m.free_area.lists[o]:
            return o
    return -1


def __free_pages(m: Machine, pfn: int, order: int) -> None:
    """__free_pages() - give 2^order frames back, merging with free buddies.

    Models: mm/page_alloc.c:__free_one_page() (v6.18): while the buddy block
    (``pfn ^ (1 << order)``) is free and of the same order, take it off its list and merge.
    The struct pages are reset first (free_pages_prepare(), which also takes an anon
    folio out of its size's ``nr_anon``: mod_mthp_stat(order, MTHP_STAT_NR_ANON, -1)).
    """
    mem, fa = m.mem, m.free_area
    if pfn & ((1 << order) - 1):
        raise MmError(EINVAL, f"pfn {pfn:#x} is not aligned to order {order}")
    if int(mem.mapping[pfn]) & FOLIO_MAPPING_ANON:
        mod_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_NR_ANON, -1)
    mem.reset(pfn, pfn + (1 << order))
    while order < MAX_PAGE_ORDER:
        buddy = pfn ^ (1 << order)
        if buddy + (1 << order) > m.nr_ram or buddy not in fa.lists[order]:
            break
        fa.remove(mem, buddy, order)
        pfn = min(pfn, buddy)
        order += 1
    fa.add(mem, pfn, order)
    m.trace.emit("mm_page_free", pfn=pfn, order=order)


#: for j in 0..2^MAX_PAGE_ORDER-1: the order the j-th page of an aligned block freed page
#: by page in address order merges up to inside the block (j's trailing one bits), and the
#: offset of the block it then heads
_IN_BLOCK = np.arange(1 << MAX_PAGE_ORDER, dtype=np.int64)
_IN_BLOCK_ORDER = np.log2((~_IN_BLOCK & (_IN_BLOCK + 1)).astype(np.float64)).astype(np.int64)
_IN_BLOCK_HEAD = _IN_BLOCK & ~((1 << _IN_BLOCK_ORDER) - 1)


def free_pages_run(m: Machine, pfns: list[int], blocks: bool = True) -> list[tuple[int, int]]:
    """What ``__free_pages(m, pfn, 0)`` for each of ``pfns`` in turn leaves (frames of
    order-0 folios, each freed once); returns (with ``blocks``) the (pfn, order) of the
    block each one ended in, for the ``mm_page_free`` events the caller emits in their
    place. A simulator batch, not a kernel function.

    The struct pages are reset first, all at once (a frame a later call frees is in use
    until then, so no earlier merge touches it); the merges run on the free lists alone,
    in the same order, and the buddy marks (page type and order of each block's first
    page) are written once at the end from where each block ended up. Where the run frees
    a whole aligned block of 2^k frames in address order, its pages can only merge with
    each other until the last one makes the whole block (page j reaches the order of j's
    trailing one bits), so only that last merge is walked. Order-0 frames count in no
    ``nr_anon`` (mod_mthp_stat() ignores order 0).

    >>> from pyfolio.mm.mm_init import boot_machine
    >>> for stride in (-2, 1, 3):
    ...     a, b = boot_machine(ram_pages=2048), boot_machine(ram_pages=2048)
    ...     got = [alloc_pages_run(x, 1500).tolist()[5::stride] for x in (a, b)]
    ...     ours = free_pages_run(a, got[0])
    ...     theirs = [__free_pages(b, p, 0) or b.trace.events[-1].args for p in got[1]]
    ...     print(ours == [(e[0][1], e[1][1]) for e in theirs],
    ...           [list(x) for x in a.free_area.lists] == [list(x) for x in b.free_area.lists],
    ...           bool((a.mem.page_type == b.mem.page_type).all()
    ...                and (a.mem.order == b.mem.order).all()))
    True True True
    True True True
    True True True
    """
    mem, fa = m.mem, m.free_area
    arr = np.asarray(pfns, dtype=np.int64)
    mem.reset_frames(arr)
    lists, nr_ram = fa.lists, m.nr_ram
    final: dict[int, int] = {}  # first page of a block -> its order on a list, or -1
    out: list[tuple[int, int]] = []

    def merge(pfn: int, order: int) -> None:
        block = _merge_free(lists, nr_ram, final, pfn, order)
        if blocks:
            out.append(block)

    breaks = np.flatnonzero(np.diff(arr) != 1) + 1  # runs of consecutive frames
    for s, e in zip([0, *breaks.tolist()], [*breaks.tolist(), len(pfns)], strict=True):
        j = s
        while j < e:
            pfn, k = pfns[j], 0
            while k < MAX_PAGE_ORDER and not pfn & (2 << k) - 1 and j + (2 << k) <= e:
                k += 1
            if k and blocks:  # the pages before the last merge inside the block only
                size = (1 << k) - 1
                out.extend(zip((pfn + _IN_BLOCK_HEAD[:size]).tolist(),
                               _IN_BLOCK_ORDER[:size].tolist(), strict=True))
            merge(pfn, k)
            j += 1 << k
    fa.nr_free += len(pfns)
    _mark_blocks(mem, final)
    return out


def _merge_free(lists: list[dict[int, None]], nr_ram: int, final: dict[int, int], pfn: int,
                order: int) -> tuple[int, int]:
    """__free_one_page() on the free lists alone: merge the block at ``pfn`` with its free
    buddies and put it on its list; ``final`` records each block head touched (its order
    on a list, or -1 for a buddy merged away) for :func:`_mark_blocks`. Returns the
    (pfn, order) of the block it ended in."""
    while order < MAX_PAGE_ORDER:
        buddy = pfn ^ (1 << order)
        if buddy + (1 << order) > nr_ram or buddy not in lists[order]:
            break
        del lists[order][buddy]
        final[buddy] = -1
        pfn = min(pfn, buddy)
        order += 1
    lists[order][pfn] = None
    final[pfn] = order
    return pfn, order


def _mark_blocks(mem: Memmap, final: dict[int, int]) -> None:
    """The buddy marks FreeArea.add()/remove() leave, written once: page type and order of
    each block head :func:`_merge_free` touched, from where it ended up."""
    heads = np.fromiter(final.keys(), np.int64, len(final))
    orders = np.fromiter(final.values(), np.int64, len(final))
    mem.page_type[heads] = np.where(orders >= 0, PGTY.buddy, PGTY.none)
    mem.order[heads] = np.maximum(orders, 0)


def free_large_pages_run(m: Machine, heads: list[int], orders: list[int],
                         blocks: bool = True) -> list[tuple[int, int]]:
    """What ``__free_pages(m, head, order)`` for each ``(head, order)`` in turn leaves
    (compound pages of large folios, each freed once); returns (with ``blocks``) the
    (pfn, order) of the block each one ended in, for the ``mm_page_free`` events the
    caller emits in their place. A simulator batch, not a kernel function.

    As :func:`free_pages_run`: the struct pages are reset first (free_pages_prepare();
    a block a later call frees is in use until then, so no earlier merge touches it),
    each anon folio leaves its size's ``nr_anon``, the merges run on the free lists
    alone in the same order, and the buddy marks are written once at the end.

    >>> from pyfolio.mm.mm_init import boot_machine
    >>> a, b = boot_machine(ram_pages=8192), boot_machine(ram_pages=8192)
    >>> sizes = (9, 2, 9, 4, 9, 1)
    >>> got = [[alloc_pages(x, o) for o in sizes] for x in (a, b)]
    >>> turn = [4, 0, 3, 2, 5, 1]
    >>> ours = free_large_pages_run(a, [got[0][i] for i in turn], [sizes[i] for i in turn])
    >>> theirs = [__free_pages(b, got[1][i], sizes[i]) or b.trace.events[-1].args
    ...           for i in turn]
    >>> ours == [(e[0][1], e[1][1]) for e in theirs]
    True
    >>> [list(x) for x in a.free_area.lists] == [list(x) for x in b.free_area.lists]
    True
    >>> arrays = [k for k, v in vars(a.mem).items() if isinstance(v, np.ndarray)]
    >>> all((getattr(a.mem, k) == getattr(b.mem, k)).all() for k in arrays)
    True
    >>> a.free_area.nr_free == b.free_area.nr_free
    True
    """
    if not heads:
        return []
    mem, fa = m.mem, m.free_area
    h = np.asarray(heads, dtype=np.int64)
    sizes = np.left_shift(1, np.asarray(orders, dtype=np.int64))
    anon = mem.mapping[h] & FOLIO_MAPPING_ANON != 0
    for order, nr in zip(*np.unique(np.asarray(orders)[anon], return_counts=True), strict=True):
        mod_mthp_stat(m, int(order), MTHP_STAT.MTHP_STAT_NR_ANON, -int(nr))
    sort = np.argsort(h)  # the frames in as few slices as they make
    lo, hi = h[sort], h[sort] + sizes[sort]
    joined = lo[1:] == hi[:-1]
    for start, end in zip(lo[np.r_[True, ~joined]].tolist(), hi[np.r_[~joined, True]].tolist(),
                          strict=True):
        mem.reset(start, end)
    lists, nr_ram = fa.lists, m.nr_ram
    final: dict[int, int] = {}
    out = [_merge_free(lists, nr_ram, final, pfn, order)
           for pfn, order in zip(heads, orders, strict=True)]
    fa.nr_free += int(sizes.sum())
    _mark_blocks(mem, final)
    return out if blocks else []


def take_page_off_buddy(m: Machine, pfn: int) -> bool:
    """take_page_off_buddy() - take one particular free frame out of the buddy allocator.

    Models: mm/page_alloc.c:take_page_off_buddy() (v6.18): find the free block holding
    ``pfn``, split it down around the frame (break_down_buddy_pages) and hand the frame out
    with ``_refcount`` 1. Returns False when the frame is not free.
    """
    mem, fa = m.mem, m.free_area
    for order in range(MAX_PAGE_ORDER + 1):
        head = pfn & ~((1 << order) - 1)
        if head in fa.lists[order]:
            break
    else:
        return False
    fa.remove(mem, head, order)
    while order:  # break_down_buddy_pages(): keep the half holding pfn, free the other
        order -= 1
        half = 1 << order
        if pfn >= head + half:
            fa.add(mem, head, order)
            head += half
        else:
            fa.add(mem, head + half, order)
    mem._refcount[pfn] = 1
    return True


def nr_free_pages(m: Machine) -> int:
    """nr_free_pages() - free frames in the buddy allocator.

    Models: include/linux/swap.h:nr_free_pages() (v6.18).
    """
    return m.free_area.nr_free


def buddyinfo(m: Machine) -> list[int]:
    """Free blocks per order, as a line of /proc/buddyinfo shows them.

    Models: mm/vmstat.c:frag_show_print() (v6.18).
    """
    return [len(lst) for lst in m.free_area.lists]


def fragment(m: Machine, every: int = HPAGE_PMD_NR) -> int:
    """Hold one free frame in every ``every``-frame block so no order-9 block stays free.

    Stands in for other users of memory (the kernel has no such call): afterwards a THP
    fault falls back to a smaller enabled mTHP size (with ``every`` = 512, any below
    2 MiB still fits) or to 4 KiB pages. Returns how many frames it took; :func:`defragment`
    gives them back.
    """
    taken = 0
    for block in range(0, m.nr_ram, every):
        pfn = block + every // 2
        if pfn < m.nr_ram and take_page_off_buddy(m, pfn):
            m.mem.extra_refs[pfn] += 1
            m.fragment_holds.append(pfn)
            taken += 1
    m.trace.emit("fragment", changes={"frames_held": taken}, every=every)
    return taken


def defragment(m: Machine) -> int:
    """Give back every frame :func:`fragment` took."""
    n = len(m.fragment_holds)
    for pfn in m.fragment_holds:
        m.mem.extra_refs[pfn] -= 1
        if not m.mem.extra_refs[pfn]:
            del m.mem.extra_refs[pfn]
        __free_pages(m, pfn, 0)
    m.fragment_holds.clear()
    return n
