"""Splitting a large folio: the folio-split half of mm/huge_memory.c.

Models: mm/huge_memory.c (v6.18) __folio_split() and its entry points. The unmap and
remap steps use mm/rmap.c:try_to_migrate() (:mod:`pyfolio.mm.rmap`) and
mm/migrate.c:remove_migration_ptes() (:mod:`pyfolio.mm.migrate`), re-exported here. PMD-level
code (split_huge_pmd, the deferred split queue) is in :mod:`pyfolio.mm.huge_memory`.

Two designs for splitting a folio that migration has already unmapped (the device
fallback of "mm: support THP migration for zone device private pages"):

* (a) the v7 series (Oct 2025, patch 11/16): ``bool unmapped`` threaded through
  ``__folio_split()`` and ``__split_huge_page_to_list_to_order()``; here
  ``__folio_split(..., unmapped=True)`` and
  ``split_huge_page_to_list_to_order(page, list_, new_order, unmapped=True)``.
* (b) what was merged instead (Nov 2025, "mm/huge_memory.c: introduce
  folio_split_unmapped", cab812d9c964; merged for v6.19 with mm-stable-2025-12-03):
  ``folio_split_unmapped()`` built on ``__folio_freeze_and_split_unmapped()``.

The struct-page split (__split_unmapped_folio() and its helpers, and the design (b)
entry point) is in :mod:`pyfolio.mm.huge_memory_split_unmapped`, re-exported here.

Return convention: kernel-named functions return 0 or a negative errno, as the kernel
does (callers such as MADV_FREE ignore it, as the kernel's do); a failed split leaves
the machine as it was. The Python-only helper :func:`split_mapped_folio` raises
``MmError`` with the errno instead. A page is a PFN; a ``list_`` is a Python list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pyfolio.include.linux.huge_mm import MTHP_STAT, count_mthp_stat
from pyfolio.include.linux.mm import (
    VM_WARN_ON_FOLIO,
    Folio,
    __folio_put,
    folio_expected_ref_count,
    folio_get,
    folio_is_zone_device,
    folio_lock,
    folio_mapcount,
    folio_mapped,
    folio_nr_pages,
    folio_order,
    folio_put,
    folio_ref_count,
    folio_test_anon,
    folio_test_large,
    folio_test_locked,
    folio_unlock,
    is_zero_folio,
    page_folio,
)
from pyfolio.mm.huge_memory import __folio_unqueue_deferred_split
from pyfolio.mm.huge_memory_batch import folio_split_pmd_mapped_run
from pyfolio.mm.huge_memory_split_unmapped import (
    __folio_freeze_and_split_unmapped,
    __split_folio_to_order,
    __split_unmapped_folio,
    folio_cache_ref_count,
    heads_in_range,
    orders_in_range,
)
from pyfolio.mm.migrate import (
    RMP_LOCKED,
    RMP_USE_SHARED_ZEROPAGE,
    remove_migration_entries,
    remove_migration_ptes,
)
from pyfolio.mm.rmap import TTU_RMAP_LOCKED, TTU_SPLIT_HUGE_PMD, folio_anon_vma, try_to_migrate
from pyfolio.sim.errors import EAGAIN, EBUSY, EINVAL, MmError
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_NR, HPAGE_PMD_ORDER

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace
    from pyfolio.lib.xarray import XaState
    from pyfolio.sim.machine import Machine

__all__ = [
    "RMP_LOCKED", "RMP_USE_SHARED_ZEROPAGE", "TTU_SPLIT_HUGE_PMD", "TTU_RMAP_LOCKED",
    "can_split_folio", "uniform_split_supported", "non_uniform_split_supported",
    "min_order_for_split", "try_to_migrate", "unmap_folio", "remove_migration_ptes",
    "remap_page", "__split_folio_to_order", "__split_unmapped_folio",
    "__folio_freeze_and_split_unmapped", "__folio_split", "__split_huge_page_to_list_to_order",
    "split_huge_page_to_list_to_order", "split_huge_page", "split_folio_to_order",
    "split_folio_to_list", "split_folio", "folio_split", "try_folio_split",
    "folio_split_unmapped", "thp_underused", "deferred_split_scan", "shrink_deferred_split",
    "split_mapped_folio", "KHUGEPAGED_MAX_PTES_NONE", "lru_add_split_folio",
]

#: /sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none default (HPAGE_PMD_NR - 1).
KHUGEPAGED_MAX_PTES_NONE = HPAGE_PMD_NR - 1


# -- checks ------------------------------------------------------------------------------
def can_split_folio(folio: Folio, caller_pins: int) -> tuple[bool, int]:
    """can_split_folio() - is every reference but the caller's explained by mappings?

    Models: mm/huge_memory.c:can_split_folio() (v6.18). Returns (ok, extra_pins): extra
    pins are the swap-cache references of an anon folio (none in the simulator unless
    PG_swapcache is set); ok when ``mapcount == refcount - extra_pins - caller_pins``.
    """
    extra = folio_cache_ref_count(folio)
    return folio_mapcount(folio) == folio_ref_count(folio) - extra - caller_pins, extra


def non_uniform_split_supported(folio: Folio, new_order: int, warns: bool) -> bool:
    """non_uniform_split_supported() - anon: any order but 1; a file folio whose mapping
    cannot hold large folios (CONFIG_READ_ONLY_THP_FOR_FS THPs): no; a folio in the swap
    cache (anon or shmem): no.

    Models: mm/huge_memory.c:non_uniform_split_supported() (v6.18). The VM_WARN_ONCE
    becomes a ``VM_WARN_ONCE`` trace event.
    """
    from pyfolio.include.linux.pagemap import folio_mapping, mapping_large_folio_support

    if folio_test_anon(folio):
        if new_order == 1:
            _warn(folio, warns, "Cannot split to order-1 folio")
            return False
    else:
        mapping = folio_mapping(folio)
        if mapping is not None and not mapping_large_folio_support(mapping):
            _warn(folio, warns, "Cannot split file folio to non-0 order")
            return False
    if folio.m.mem.test(folio.pfn, PG.swapcache):
        _warn(folio, warns, "Cannot split swapcache folio to non-0 order")
        return False
    return True


def uniform_split_supported(folio: Folio, new_order: int, warns: bool) -> bool:
    """uniform_split_supported() - anon: any order but 1; a file folio to a non-0 order
    only where its mapping holds large folios; the swap cache: order 0 only.

    Models: mm/huge_memory.c:uniform_split_supported() (v6.18).
    """
    from pyfolio.include.linux.pagemap import folio_mapping, mapping_large_folio_support

    if folio_test_anon(folio):
        if new_order == 1:
            _warn(folio, warns, "Cannot split to order-1 folio")
            return False
    else:
        mapping = folio_mapping(folio)
        if new_order and mapping is not None and not mapping_large_folio_support(mapping):
            _warn(folio, warns, "Cannot split file folio to non-0 order")
            return False
    if new_order and folio.m.mem.test(folio.pfn, PG.swapcache):
        _warn(folio, warns, "Cannot split swapcache folio to non-0 order")
        return False
    return True


def _warn(folio: Folio, warns: bool, what: str) -> None:
    if warns:
        folio.m.trace.emit("VM_WARN_ONCE", pfn=folio.pfn, what=what)


def min_order_for_split(folio: Folio) -> int:
    """min_order_for_split() - 0 for anon folios; a file folio's mapping's minimum folio
    order; a truncated file folio (no mapping) gives -EBUSY.

    Models: mm/huge_memory.c:min_order_for_split() (v6.18), which also counts
    ``thp_split_page_failed`` for a PMD-sized truncated folio.
    """
    from pyfolio.include.linux.pagemap import folio_mapping, mapping_min_folio_order

    if folio_test_anon(folio):
        return 0
    mapping = folio_mapping(folio)
    if mapping is None:
        if folio_order(folio) == HPAGE_PMD_ORDER:
            folio.m.vmstat["thp_split_page_failed"] += 1
        return -EBUSY
    return mapping_min_folio_order(mapping)


# -- unmap and remap -----------------------------------------------------------------------
def unmap_folio(folio: Folio) -> None:
    """unmap_folio() - remove every mapping of the folio: an anon folio's become migration
    entries (remap_page() restores them after the split), a file folio's are just
    removed (try_to_unmap(): it is faulted in again, piece by piece).

    Models: mm/huge_memory.c:unmap_folio() (v6.18): try_to_migrate(), or for a file folio
    try_to_unmap() with TTU_IGNORE_MLOCK, with TTU_SPLIT_HUGE_PMD for a PMD-mappable folio
    (and TTU_RMAP_LOCKED|TTU_SYNC|TTU_BATCH_FLUSH). Emits ``unmap_folio`` with the map and
    reference counts before and after.
    """
    VM_WARN_ON_FOLIO(not folio_test_large(folio), folio, "unmap_folio of a small folio")
    before = (folio_mapcount(folio), folio_ref_count(folio))
    flags = TTU_RMAP_LOCKED | (TTU_SPLIT_HUGE_PMD if folio_order(folio) >= HPAGE_PMD_ORDER
                               else 0)
    if folio_test_anon(folio):
        try_to_migrate(folio, flags)
    else:
        from pyfolio.mm.rmap_file import TTU_IGNORE_MLOCK, try_to_unmap

        try_to_unmap(folio, flags | TTU_IGNORE_MLOCK)
    folio.m.trace.emit("unmap_folio", changes={
        "mapcount": (before[0], folio_mapcount(folio)),
        "refcount": (before[1], folio_ref_count(folio))}, pfn=folio.pfn)


def remap_page(folio: Folio, nr: int, flags: int) -> None:
    """remap_page() - remove_migration_ptes() over every folio in [folio, folio + nr).

    Models: mm/huge_memory.c:remap_page() (v6.18): the kernel walks the rmap once per
    after-split folio; the simulator walks the range once and resolves each entry's
    folio (same result). Emits ``remap_page`` with the PTEs restored and zero-mapped.
    """
    if not folio_test_anon(folio):
        return
    restored, zero = remove_migration_entries(folio.m, folio.pfn, folio.pfn, nr, folio.pfn,
                                              flags)
    folio.m.trace.emit("remap_page", changes={"ptes": restored, "zero_page_ptes": zero},
                       pfn=folio.pfn, nr=nr, flags=flags)


def split_orders(m: Machine, pfn: int, at: int, new_order: int, *, uniform: bool) -> list[int]:
    """Split the mapped folio at ``pfn`` (at page offset ``at``) and list the orders of
    the folios it leaves, in address order (a Python helper for docs and tests)."""
    nr = folio_nr_pages(page_folio(m, pfn))
    head = page_folio(m, pfn).pfn
    split_mapped_folio(m, head, new_order, uniform=uniform, at=None if uniform else at)
    return orders_in_range(m, head, nr)


# -- __folio_split and its entry points -----------------------------------------------------
def __folio_split(folio: Folio, new_order: int, split_at: int, lock_at: int,
                  list_: list[Folio] | None, uniform_split: bool, unmapped: bool = False) -> int:
    """__folio_split() - split a locked, referenced large folio; 0 or -errno.

    Models: mm/huge_memory.c:__folio_split() (v6.18; ``unmapped`` is the v7 series
    patch 11/16, Oct 2025, never merged). Order checks (-EINVAL, not counted); the huge
    zero folio or writeback (-EBUSY, not counted); an anon folio: no anon_vma because
    it is not mapped (-EBUSY); a file folio: no mapping because it was truncated
    (-EBUSY), an order below the mapping's minimum (-EINVAL), private data that cannot
    be released (-EBUSY: ext4's dirty buffers), then the XArray nodes of a uniform
    split are reserved, i_mmap_lock_read() taken and ``end`` noted;
    can_split_folio(folio, 1) false (-EAGAIN); unmap_folio() (anon: migration entries;
    file: unmapped outright); freeze at 1 + expected refs (-EAGAIN);
    __split_unmapped_folio(); unfreeze; LRU; a file folio's pieces back in the page
    cache, those past ``end`` dropped (shmem_uncharge() for shmem); remap_page() (anon
    only) with RMP_USE_SHARED_ZEROPAGE on success (zero-filled order-0 anon pages go to
    the shared zero page and are freed); unlock and put every new folio but the one
    holding ``lock_at``; i_mmap_unlock_read() (the ``out_unlock:`` label). Once the
    anon_vma/mapping step is reached the result is counted (the ``out:`` label):
    ``thp_split_page`` or ``thp_split_page_failed`` for an order-9 folio, the per-size
    ``split`` or ``split_failed`` for every order (the newest mm tree counts the early
    -EINVAL/-EBUSY returns too; v6.18 does not). With ``unmapped`` (v7): no anon_vma,
    no unmap, no LRU, and from the freeze on it returns right after unfreezing (nothing
    counted, nothing remapped, no shmem_uncharge(), a file folio's i_mmap_rwsem still
    held, every piece locked with one reference: v7 was written for anon folios only).
    """
    m, order, is_anon = folio.m, folio_order(folio), folio_test_anon(folio)
    VM_WARN_ON_FOLIO(not folio_test_locked(folio), folio, "split of an unlocked folio")
    VM_WARN_ON_FOLIO(not folio_test_large(folio), folio, "split of a small folio")
    if page_folio(m, split_at) != folio or page_folio(m, lock_at) != folio:
        return -EINVAL
    if new_order & 0xFFFFFFFF >= order:  # unsigned int new_order: -1 is 4294967295
        return -EINVAL
    if uniform_split and not uniform_split_supported(folio, new_order, True):
        return -EINVAL
    if not uniform_split and not non_uniform_split_supported(folio, new_order, True):
        return -EINVAL
    if is_zero_folio(folio) or m.mem.test(folio.pfn, PG.writeback):
        return -EBUSY
    ret, after_freeze = _split_mapped_steps(folio, new_order, split_at, lock_at, list_,
                                            uniform_split, unmapped, is_anon)
    if unmapped and after_freeze:
        return ret  # v7: "if (unmapped) return ret;" right after the fail: label
    if order == HPAGE_PMD_ORDER:
        m.vmstat["thp_split_page" if not ret else "thp_split_page_failed"] += 1
    count_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_SPLIT if not ret
                    else MTHP_STAT.MTHP_STAT_SPLIT_FAILED)
    m.trace.emit("__folio_split", changes={"ret": ret}, pfn=folio.pfn, new_order=new_order,
                 uniform=uniform_split)
    return ret


def _split_mapped_steps(folio: Folio, new_order: int, split_at: int, lock_at: int,
                        list_: list[Folio] | None, uniform: bool, unmapped: bool,
                        is_anon: bool) -> tuple[int, bool]:
    """The body of __folio_split() from the anon_vma (or page-cache) step to the final
    unlock: (ret, whether the freeze was reached: the v7 ``fail:`` label)."""
    from pyfolio.include.linux.fs import i_mmap_lock_read, i_mmap_unlock_read
    from pyfolio.lib.xarray import xas_load

    m, nr, pfn = folio.m, folio_nr_pages(folio), folio.pfn
    if is_anon and not unmapped and (not folio_mapped(folio)
                                     or folio_anon_vma(folio) is None):
        return -EBUSY, False  # folio_get_anon_vma() is NULL
    mapping = xas = None
    end = 0
    if not is_anon:
        got = _file_split_prepare(folio, new_order, uniform)
        if isinstance(got, int):
            return got, False
        mapping, xas, end = got
        i_mmap_lock_read(mapping)
    if not can_split_folio(folio, 1)[0]:
        if mapping is not None:  # out_unlock:
            i_mmap_unlock_read(mapping)
        return -EAGAIN, False
    if not unmapped:
        unmap_folio(folio)
    held = m.mem.extra_refs.pop(pfn, 0)
    dropped = [0]
    if xas is not None and xas_load(xas) != pfn:  # not in the page cache any more
        ret = -EAGAIN
    else:
        ret = __folio_freeze_and_split_unmapped(folio, new_order, split_at, xas, mapping,
                                                not unmapped, list_, uniform, end, dropped)
    heads = heads_in_range(m, pfn, nr) if not ret else np.array([pfn])
    keeper = page_folio(m, lock_at).pfn
    if unmapped:  # v7: the caller keeps every piece (one reference each, locked)
        for h in heads if held else ():
            m.mem.extra_refs[int(h)] += held
        return ret, True
    if dropped[0] and mapping is not None:
        from pyfolio.mm.shmem import shmem_uncharge

        shmem_uncharge(mapping.host, dropped[0])
    if held:
        m.mem.extra_refs[keeper if not ret else pfn] += held
    flags = RMP_USE_SHARED_ZEROPAGE if not ret and is_anon and \
        not folio_is_zone_device(folio) else 0
    remap_page(folio, nr, flags)
    _unlock_and_put(m, heads[heads != keeper])
    if mapping is not None:  # out_unlock:
        i_mmap_unlock_read(mapping)
    return ret, True


def _file_split_prepare(folio: Folio, new_order: int, uniform: bool
                        ) -> tuple[AddressSpace, XaState, int] | int:
    """The page-cache branch of __folio_split() before the freeze: the folio must still be
    in a mapping (-EBUSY: truncated), the order not below the mapping's minimum (-EINVAL),
    its private data releasable (filemap_release_folio(); -EBUSY: ext4's dirty buffers);
    the uniform split reserves its XArray nodes; ``end`` is the first page the split
    drops (DIV_ROUND_UP(i_size, PAGE_SIZE), for shmem shmem_fallocend())."""
    from pyfolio.include.linux.fs import i_size_read
    from pyfolio.include.linux.pagemap import folio_mapping, mapping_min_folio_order
    from pyfolio.lib.xarray import XaState as _XaState
    from pyfolio.lib.xarray import xas_set_order, xas_split_alloc
    from pyfolio.mm.filemap import filemap_release_folio
    from pyfolio.mm.shmem import shmem_fallocend, shmem_mapping
    from pyfolio.sim.units import PAGE_SIZE

    mapping = folio_mapping(folio)
    if mapping is None:
        return -EBUSY
    if new_order < mapping_min_folio_order(mapping):
        _warn(folio, True, "Cannot split mapped folio below min-order")
        return -EINVAL
    if not filemap_release_folio(folio):
        return -EBUSY
    index = int(folio.m.mem.index[folio.pfn])
    xas = _XaState(mapping.i_pages, index)
    if uniform:
        xas_set_order(xas, index, new_order)
        xas_split_alloc(xas, folio.pfn, folio_order(folio))
    end = -(-i_size_read(mapping.host) // PAGE_SIZE)
    if shmem_mapping(mapping):
        end = shmem_fallocend(mapping.host, end)
    return mapping, xas, end


def _unlock_and_put(m: Machine, h: np.ndarray) -> None:
    """folio_unlock() + free_folio_and_swap_cache() on each folio, batched: an unmapped
    swap-cache piece nobody references leaves the swap cache (free_swap_cache()); the
    folios whose last reference goes are freed (__folio_put())."""
    from pyfolio.mm.swap_state import free_swap_cache

    m.mem.clear(h, PG.locked)
    for pfn in h[(m.mem.flags[h] & np.uint32(PG.swapcache)) != 0]:
        free_swap_cache(Folio(m, int(pfn)))
    m.mem._refcount[h] -= 1
    for pfn in h[m.mem._refcount[h] == 0]:
        __folio_put(Folio(m, int(pfn)))


def lru_add_split_folio(m: Machine, pfn: int, new_heads: np.ndarray) -> None:
    """lru_add_split_folio() - the pieces of a split folio join its LRU list right after it
    (newer than the head, the first piece newest: list_add_tail(&new->lru, &folio->lru)).

    Models: mm/huge_memory.c:lru_add_split_folio() (v6.18), without a list.
    """
    mem = m.mem
    if not len(new_heads):
        return
    s = float(mem.lru_seq[pfn])
    later = np.flatnonzero(mem.lru_seq > s)  # then PG_lru of those only: fewer to test
    newer = mem.lru_seq[later[(mem.flags[later] & np.uint32(PG.lru)) != 0]]
    nxt = float(newer.min()) if len(newer) else s + 1.0
    n = len(new_heads)
    mem.lru_seq[new_heads] = s + (nxt - s) * np.arange(n, 0, -1) / (n + 1)
    mem.set(new_heads, PG.lru)


def __split_huge_page_to_list_to_order(page: Folio, list_: list[Folio] | None, new_order: int,
                                       unmapped: bool = False) -> int:
    """__split_huge_page_to_list_to_order() - uniform split; ``page``'s folio stays locked.

    Models: mm/huge_memory.c:__split_huge_page_to_list_to_order() (v6.18; the v7 series
    adds ``unmapped``). ``page`` is the simulator's ``struct page *``: a view
    ``Folio(m, pfn)`` of any page of the folio (head or tail).
    """
    folio = page_folio(page.m, page.pfn)
    if not unmapped and not new_order and list_ is None:
        if folio_split_pmd_mapped_run(folio, page.pfn):  # __folio_split(), batched
            return 0
    return __folio_split(folio, new_order, folio.pfn, page.pfn, list_, True, unmapped)


def split_huge_page_to_list_to_order(page: Folio, list_: list[Folio] | None, new_order: int,
                                     unmapped: bool = False) -> int:
    """split_huge_page_to_list_to_order() - uniform split of ``page``'s folio; 0 or -errno.

    Models: include/linux/huge_mm.h:split_huge_page_to_list_to_order() (v6.18), which is
    __split_huge_page_to_list_to_order(page, list, new_order, false) in the v7 series.
    ``unmapped=True`` is design (a): the v7 __ variant, callable from a class.
    """
    return __split_huge_page_to_list_to_order(page, list_, new_order, unmapped)


def split_huge_page(page: Folio) -> int:
    """split_huge_page() - split to order 0 (min_order_for_split()); ``page`` stays locked.

    Models: include/linux/huge_mm.h:split_huge_page() (v6.18).
    """
    ret = min_order_for_split(page_folio(page.m, page.pfn))
    return ret if ret < 0 else split_huge_page_to_list_to_order(page, None, ret)


def split_folio_to_order(folio: Folio, new_order: int) -> int:
    """split_folio_to_order() - uniform split of a locked folio; the head stays locked.

    Models: include/linux/huge_mm.h:split_folio_to_order() (v6.18).
    """
    return split_huge_page_to_list_to_order(folio, None, new_order)


def split_folio_to_list(folio: Folio, list_: list[Folio] | None) -> int:
    """split_folio_to_list() - split to min_order_for_split().

    Models: mm/huge_memory.c:split_folio_to_list() (v6.18).
    """
    ret = min_order_for_split(folio)
    return ret if ret < 0 else split_huge_page_to_list_to_order(folio, list_, ret)


def split_folio(folio: Folio) -> int:
    """split_folio() - split_folio_to_list(folio, NULL): to order 0, head stays locked.

    Models: include/linux/huge_mm.h:split_folio() (v6.18).
    """
    return split_folio_to_list(folio, None)


def folio_split(folio: Folio, new_order: int, split_at: int, list_: list[Folio] | None) -> int:
    """folio_split() - non-uniform (buddy-style) split at page ``split_at`` (a PFN).

    Models: mm/huge_memory.c:folio_split() (v6.18): the folio (its first piece) stays
    locked. Order 9 at page 257 to order 0 leaves orders 8, 0, 0, 0, 0, 2, 3, 4, 5, 6, 7.
    """
    return __folio_split(folio, new_order, split_at, folio.pfn, list_, False, False)


def try_folio_split(folio: Folio, page: int, list_: list[Folio] | None) -> int:
    """try_folio_split() - non-uniform split to order 0 at ``page`` (a PFN), falling back
    to a uniform split where non-uniform is not supported (the swap cache).

    Models: include/linux/huge_mm.h:try_folio_split() (v6.18; later trees have
    try_folio_split_to_order()).
    """
    ret = min_order_for_split(folio)
    if ret < 0:
        return ret
    if not non_uniform_split_supported(folio, 0, False):
        return split_huge_page_to_list_to_order(folio, list_, ret)
    return folio_split(folio, ret, page, list_)


def folio_split_unmapped(folio: Folio, new_order: int) -> int:
    """folio_split_unmapped() - uniform split of an unmapped, isolated anon folio.

    Models: mm/huge_memory.c:folio_split_unmapped() (design (b): mm tree, Nov 2025,
    "mm/huge_memory.c: introduce folio_split_unmapped", cab812d9c964; not in v6.18, merged
    for v6.19). Warns unless unmapped, locked, large and anon; -EAGAIN unless
    folio_expected_ref_count() == refcount - 1 (the first version used
    can_split_folio(folio, 1)); then __folio_freeze_and_split_unmapped() with no LRU and
    no list. No remap, no unlock, no put, no vmstat: every piece stays locked with one
    reference (cache refs + 1), each recorded in ``extra_refs`` if the folio's was.
    """
    m = folio.m
    VM_WARN_ON_FOLIO(folio_mapped(folio), folio, "folio_split_unmapped of a mapped folio")
    VM_WARN_ON_FOLIO(not folio_test_locked(folio), folio, "not locked")
    VM_WARN_ON_FOLIO(not folio_test_large(folio), folio, "not large")
    VM_WARN_ON_FOLIO(not folio_test_anon(folio), folio, "not anon")
    if folio_expected_ref_count(folio) != folio_ref_count(folio) - 1:
        return -EAGAIN
    nr, held = folio_nr_pages(folio), m.mem.extra_refs.pop(folio.pfn, 0)
    ret = __folio_freeze_and_split_unmapped(folio, new_order, folio.pfn, None, None, False,
                                            None, True)
    if held:  # Counter.update() adds: extra_refs[h] += held for each new folio
        heads = heads_in_range(m, folio.pfn, nr).tolist() if not ret else [folio.pfn]
        m.mem.extra_refs.update(dict.fromkeys(heads, held))
    return ret


# -- the deferred split shrinker ----------------------------------------------------------
def thp_underused(folio: Folio) -> bool:
    """thp_underused() - more than max_ptes_none of the folio's pages are zero-filled.

    Models: mm/huge_memory.c:thp_underused() (v6.18): always false when
    khugepaged/max_ptes_none is its default 511 (HPAGE_PMD_NR - 1), so by default only
    partially mapped folios are split by the shrinker; otherwise true when more than
    ``m.khugepaged_max_ptes_none`` pages are all zeroes (stamp 0; the kernel's early exits
    give the same answer).
    """
    m = folio.m
    max_none = m.khugepaged_max_ptes_none
    if max_none == HPAGE_PMD_NR - 1:
        return False
    zero = int(np.count_nonzero(m.mem.stamp[folio.pfn: folio.pfn + folio_nr_pages(folio)] == 0))
    return zero > max_none


def deferred_split_scan(m: Machine, nr_to_scan: int | None = None) -> int:
    """deferred_split_scan() - the deferred split shrinker; returns how many it split.

    Models: mm/huge_memory.c:deferred_split_scan() (v6.18): take a reference on up to
    ``nr_to_scan`` queued folios (a folio being freed is dropped from the queue); a
    partially mapped one is split (split_folio(): its unmapped pages are freed); an
    unflagged one only if it is not mlocked and thp_underused() (then
    ``thp_underused_split_page`` is counted), otherwise it leaves the queue; a locked
    folio or a failed split of a partially mapped one stays queued. The mlocked check is
    read in v6.18.y (gregkh/linux v6.18.38); 6.18.0 not confirmed.
    """
    queued = list(m.deferred_split_queue)[: nr_to_scan]
    split = 0
    for pfn in queued:
        folio = Folio(m, pfn)
        if folio_ref_count(folio) <= 0:  # folio_try_get() failed: we lost the race
            __folio_unqueue_deferred_split(folio)
            continue
        folio_get(folio)
        did_split = underused = False
        partially = m.mem.test(pfn, PG.partially_mapped)
        if not partially and not m.mem.test(pfn, PG.mlocked):
            underused = thp_underused(folio)
        if (partially or underused) and not folio_test_locked(folio):
            folio_lock(folio)
            if not split_folio(folio):
                did_split, split = True, split + 1
                if underused:
                    m.vmstat["thp_underused_split_page"] += 1
            folio_unlock(folio)
        if not did_split and not m.mem.test(pfn, PG.partially_mapped):
            m.deferred_split_queue.pop(pfn, None)
        folio_put(folio)
    m.trace.emit("deferred_split_scan", changes={"split": split}, scanned=len(queued))
    return split


def shrink_deferred_split(m: Machine) -> int:
    """Run the deferred split shrinker over the whole queue (what ``echo 2 >
    /proc/sys/vm/drop_caches`` does to it, through drop_slab()); how many were split."""
    return deferred_split_scan(m, None)


# -- the debugfs-style helper ---------------------------------------------------------------
def split_mapped_folio(m: Machine, pfn: int, new_order: int, *, uniform: bool = True,
                       at: int | None = None) -> int:
    """Split the folio holding frame ``pfn`` as debugfs split_huge_pages does
    (mm/huge_memory.c:split_huge_pages_pid()): get, lock, split_folio_to_order() or,
    with ``uniform=False``, folio_split() at page offset ``at`` (default 0), unlock, put.

    Returns 0; raises MmError with the kernel's errno (state unchanged but for
    ``thp_split_page_failed``) if the split fails, the folio is not large, ``at`` is not
    a page of it or ``new_order`` is negative (EINVAL: checked before the folio is
    referenced or locked).
    """
    if not 0 <= pfn < m.mem.nr:
        raise MmError(EINVAL, f"pfn {pfn:#x} is outside the memmap (0..{m.mem.nr - 1:#x})")
    folio = page_folio(m, pfn)
    if not folio_test_large(folio):
        raise MmError(EINVAL, f"frame {pfn:#x} is not in a large folio")
    if new_order < 0:
        raise MmError(EINVAL, f"new order {new_order} is negative")
    if not 0 <= (at or 0) < folio_nr_pages(folio):
        raise MmError(EINVAL, f"split page {at} is not a page of the order-"
                      f"{folio_order(folio)} folio at {folio.pfn:#x}")
    folio_get(folio)
    folio_lock(folio)
    try:
        if uniform:
            ret = split_folio_to_order(folio, new_order)
        else:
            ret = folio_split(folio, new_order, folio.pfn + (at or 0), None)
    finally:
        folio_unlock(folio)
        folio_put(folio)
    if ret:
        raise MmError(-ret, f"split of the order-{folio_order(folio) if ret else 0} folio at "
                      f"{folio.pfn:#x} to order {new_order} failed")
    return 0
