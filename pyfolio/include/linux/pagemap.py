"""Page-cache inlines: the folio order range of a mapping, folio positions, FGP flags.

Models: include/linux/pagemap.h (v6.18): the AS_FOLIO_ORDER bits of ``mapping->flags``
(mapping_set_folio_order_range(), mapping_min_folio_order(), mapping_max_folio_order(),
mapping_large_folio_support()), the FGP_* flags and fgf_set_order(), folio_pos(),
folio_next_index(), folio_file_page(), folio_attach_private() and
folio_detach_private(); and mm/util.c:folio_mapping().

>>> from pyfolio.include.linux.fs import AddressSpace
>>> fgf_set_order(64 * 1024) >> 26, fgf_set_order(4096), MAX_PAGECACHE_ORDER
(4, 0, 9)
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from pyfolio.include.linux.mm import Folio, folio_get, folio_nr_pages, folio_put, folio_test_anon
from pyfolio.sim.memmap import FOLIO_MAPPING_FLAGS, PG
from pyfolio.sim.units import HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace

__all__ = ["MAX_PAGECACHE_ORDER", "AS_FOLIO_ORDER_MIN", "AS_FOLIO_ORDER_MAX", "FGP",
           "fgf_set_order", "FGF_GET_ORDER", "mapping_set_folio_order_range",
           "mapping_set_large_folios", "mapping_min_folio_order", "mapping_max_folio_order",
           "mapping_large_folio_support", "mapping_max_folio_size", "folio_mapping",
           "folio_pos", "folio_next_index", "folio_file_page", "folio_contains",
           "folio_attach_private", "folio_detach_private", "folio_test_private"]

#: include/linux/pagemap.h: MAX_PAGECACHE_ORDER = min(MAX_XAS_ORDER,
#: PREFERRED_MAX_PAGECACHE_ORDER); on x86-64 with THP the preferred maximum is the PMD order
MAX_PAGECACHE_ORDER = HPAGE_PMD_ORDER
#: enum mapping_flags: bits 16-25 of mapping->flags hold the min and max folio order
AS_FOLIO_ORDER_BITS = 5
AS_FOLIO_ORDER_MIN = 16
AS_FOLIO_ORDER_MAX = AS_FOLIO_ORDER_MIN + AS_FOLIO_ORDER_BITS
_ORDER_MASK = (1 << AS_FOLIO_ORDER_BITS) - 1


class FGP(enum.IntFlag):
    """include/linux/pagemap.h: flags of __filemap_get_folio() (fgf_t); bits 26 and up
    carry the order asked for (fgf_set_order())."""

    ACCESSED = 0x1
    LOCK = 0x2
    CREAT = 0x4
    WRITE = 0x8
    NOFS = 0x10
    NOWAIT = 0x20
    FOR_MMAP = 0x40
    STABLE = 0x80
    WRITEBEGIN = LOCK | WRITE | CREAT | STABLE


def fgf_set_order(size: int) -> int:
    """fgf_set_order() - the FGP bits asking for a folio of ``size`` bytes: ilog2(size)
    minus PAGE_SHIFT, 0 for a page or less.

    Models: include/linux/pagemap.h:fgf_set_order() (v6.18).
    """
    shift = size.bit_length() - 1 if size > 0 else 0
    return 0 if shift <= PAGE_SHIFT else (shift - PAGE_SHIFT) << 26


def FGF_GET_ORDER(fgf: int) -> int:
    """FGF_GET_ORDER() - the order fgf_set_order() put in ``fgf``.

    Models: include/linux/pagemap.h:FGF_GET_ORDER() (v6.18).
    """
    return fgf >> 26


def mapping_set_folio_order_range(mapping: AddressSpace, min_: int, max_: int) -> None:
    """mapping_set_folio_order_range() - the folio orders the page cache of ``mapping``
    may hold, clamped to MAX_PAGECACHE_ORDER.

    Models: include/linux/pagemap.h:mapping_set_folio_order_range() (v6.18).
    """
    min_, max_ = min(min_, MAX_PAGECACHE_ORDER), min(max_, MAX_PAGECACHE_ORDER)
    max_ = max(max_, min_)
    mask = (_ORDER_MASK << AS_FOLIO_ORDER_MIN) | (_ORDER_MASK << AS_FOLIO_ORDER_MAX)
    mapping.flags = (mapping.flags & ~mask) | (min_ << AS_FOLIO_ORDER_MIN) \
        | (max_ << AS_FOLIO_ORDER_MAX)


def mapping_set_large_folios(mapping: AddressSpace) -> None:
    """mapping_set_large_folios() - any order from 0 to MAX_PAGECACHE_ORDER.

    Models: include/linux/pagemap.h:mapping_set_large_folios() (v6.18).
    """
    mapping_set_folio_order_range(mapping, 0, MAX_PAGECACHE_ORDER)


def mapping_min_folio_order(mapping: AddressSpace) -> int:
    """mapping_min_folio_order() - the smallest folio order the mapping allows.

    Models: include/linux/pagemap.h:mapping_min_folio_order() (v6.18).
    """
    return (mapping.flags >> AS_FOLIO_ORDER_MIN) & _ORDER_MASK


def mapping_max_folio_order(mapping: AddressSpace) -> int:
    """mapping_max_folio_order() - the largest folio order the mapping allows.

    Models: include/linux/pagemap.h:mapping_max_folio_order() (v6.18).
    """
    return (mapping.flags >> AS_FOLIO_ORDER_MAX) & _ORDER_MASK


def mapping_large_folio_support(mapping: AddressSpace) -> bool:
    """mapping_large_folio_support() - may the mapping hold folios above order 0?

    Models: include/linux/pagemap.h:mapping_large_folio_support() (v6.18).
    """
    return mapping_max_folio_order(mapping) > 0


def mapping_max_folio_size(mapping: AddressSpace) -> int:
    """mapping_max_folio_size() - PAGE_SIZE << mapping_max_folio_order().

    Models: include/linux/pagemap.h:mapping_max_folio_size() (v6.18).
    """
    return PAGE_SIZE << mapping_max_folio_order(mapping)


def folio_mapping(folio: Folio) -> AddressSpace | None:
    """folio_mapping() - the address_space of a page-cache folio (None for anon folios
    and for folios no longer in the page cache).

    Models: mm/util.c:folio_mapping() (v6.18).
    """
    if folio_test_anon(folio):
        return None
    raw = int(folio.m.mem.mapping[folio.pfn])
    if not raw or raw & FOLIO_MAPPING_FLAGS:
        return None
    return folio.m.mappings.get(raw >> 2)


def folio_pos(folio: Folio) -> int:
    """folio_pos() - the byte offset of the folio in its file.

    Models: include/linux/pagemap.h:folio_pos() (v6.18).
    """
    return int(folio.m.mem.index[folio.pfn]) << PAGE_SHIFT


def folio_next_index(folio: Folio) -> int:
    """folio_next_index() - the index just after the folio.

    Models: include/linux/pagemap.h:folio_next_index() (v6.18).
    """
    return int(folio.m.mem.index[folio.pfn]) + folio_nr_pages(folio)


def folio_contains(folio: Folio, index: int) -> bool:
    """folio_contains() - does the folio hold the page at file ``index``?

    Models: include/linux/pagemap.h:folio_contains() (v6.18).
    """
    first = int(folio.m.mem.index[folio.pfn])
    return first <= index < first + folio_nr_pages(folio)


def folio_file_page(folio: Folio, index: int) -> int:
    """folio_file_page() - the page (PFN) of the folio holding file ``index``.

    Models: include/linux/pagemap.h:folio_file_page() (v6.18).
    """
    return folio.pfn + (index & (folio_nr_pages(folio) - 1))


def folio_test_private(folio: Folio) -> bool:
    """folio_test_private() - PG_private: the file system has attached data (buffer heads).

    Models: include/linux/page-flags.h:folio_test_private() (v6.18).
    """
    return folio.m.mem.test(folio.pfn, PG.private)


def folio_attach_private(folio: Folio) -> None:
    """folio_attach_private() - set PG_private, taking a reference for it.

    Models: include/linux/pagemap.h:folio_attach_private() (v6.18).
    """
    folio_get(folio)
    folio.m.mem.set(folio.pfn, PG.private)


def folio_detach_private(folio: Folio) -> None:
    """folio_detach_private() - clear PG_private and drop its reference.

    Models: include/linux/pagemap.h:folio_detach_private() (v6.18).
    """
    if not folio_test_private(folio):
        return
    folio.m.mem.clear(folio.pfn, PG.private)
    folio_put(folio)
