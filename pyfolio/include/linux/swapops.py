"""Swap entries: the arch-independent ``swp_entry_t`` of a swap slot and its page-table
form, and the swap-format entries that are not swap (migration, device-private and
device-exclusive entries, told apart by the special swap types).

Models: include/linux/swapops.h and include/linux/swap.h (v6.18). A ``swp_entry_t`` is an
int here, its ``val``: ``type << SWP_TYPE_SHIFT | offset`` (swp_entry()); its page-table
form is x86-64's (:mod:`pyfolio.arch.x86.pgtable`, there named ``swp_entry()``,
``swp_type()``, ``swp_offset()`` for the kernel's __swp_entry(), __swp_type() and
__swp_offset()), made by swp_entry_to_pte(), with the exclusive, soft-dirty and uffd-wp
bits beside it (pte_swp_mkexclusive(), ...). The migration and device-private makers below
return page-table entries directly, as the simulator has always used them.

>>> e = swp_entry(0, 512)
>>> swp_type(e), swp_offset(e), pte_to_swp_entry(pte_swp_mkexclusive(swp_entry_to_pte(e))) == e
(0, 512, True)
"""

from __future__ import annotations

import enum

from pyfolio.arch.x86.pgtable import (
    _PAGE_SWP_EXCLUSIVE,
    _PAGE_SWP_SOFT_DIRTY,
    _PAGE_SWP_UFFD_WP,
    pte_present,
)
from pyfolio.arch.x86.pgtable import swp_entry as __swp_entry
from pyfolio.arch.x86.pgtable import swp_offset as __swp_offset
from pyfolio.arch.x86.pgtable import swp_type as __swp_type
from pyfolio.lib.xarray import XaValue, xa_mk_value, xa_to_value

__all__ = ["SwpType", "SWP_TYPE_SHIFT", "SWP_OFFSET_MASK", "swp_entry", "swp_type",
           "swp_to_radix_entry", "radix_to_swp_entry",
           "swp_offset", "swp_entry_to_pte", "pte_to_swp_entry", "is_swap_pte",
           "non_swap_entry", "is_swap_entry", "pte_swp_exclusive", "pte_swp_mkexclusive",
           "pte_swp_clear_exclusive", "pte_swp_soft_dirty", "pte_swp_uffd_wp",
           "pte_swp_clear_flags", "pte_move_swp_offset", "make_readable_migration_entry",
           "make_readable_exclusive_migration_entry",
           "make_writable_migration_entry", "make_readable_device_private_entry",
           "make_writable_device_private_entry", "is_migration_entry",
           "is_writable_migration_entry", "is_device_private_entry",
           "is_writable_device_private_entry", "make_device_exclusive_entry",
           "is_device_exclusive_entry", "is_pfn_swap_entry"]


class SwpType(enum.IntEnum):
    """The special swap types at the top of the 5-bit type field (include/linux/swap.h)."""

    SWP_HWPOISON = 24
    SWP_MIGRATION_READ = 25
    SWP_MIGRATION_READ_EXCLUSIVE = 26
    SWP_MIGRATION_WRITE = 27
    SWP_DEVICE_WRITE = 28
    SWP_DEVICE_READ = 29
    SWP_DEVICE_EXCLUSIVE = 30
    SWP_PTE_MARKER = 31


def make_readable_migration_entry(pfn: int) -> int:
    """make_readable_migration_entry() - a read-only migration entry for ``pfn``.

    Models: include/linux/swapops.h:make_readable_migration_entry() (v6.18).
    """
    return __swp_entry(SwpType.SWP_MIGRATION_READ, pfn)


def make_readable_exclusive_migration_entry(pfn: int) -> int:
    """make_readable_exclusive_migration_entry() - a migration entry for a PG_anon_exclusive page.

    Models: include/linux/swapops.h:make_readable_exclusive_migration_entry() (v6.18).
    """
    return __swp_entry(SwpType.SWP_MIGRATION_READ_EXCLUSIVE, pfn)


def make_writable_migration_entry(pfn: int) -> int:
    """make_writable_migration_entry() - a migration entry that was writable.

    Models: include/linux/swapops.h:make_writable_migration_entry() (v6.18).
    """
    return __swp_entry(SwpType.SWP_MIGRATION_WRITE, pfn)


def make_readable_device_private_entry(pfn: int) -> int:
    """make_readable_device_private_entry() - a read-only device-private entry for device ``pfn``.

    Models: include/linux/swapops.h:make_readable_device_private_entry() (v6.18).
    """
    return __swp_entry(SwpType.SWP_DEVICE_READ, pfn)


def make_writable_device_private_entry(pfn: int) -> int:
    """make_writable_device_private_entry() - a writable device-private entry for device ``pfn``.

    Models: include/linux/swapops.h:make_writable_device_private_entry() (v6.18).
    """
    return __swp_entry(SwpType.SWP_DEVICE_WRITE, pfn)


def _is_swp(entry: int) -> bool:
    return entry != 0 and not pte_present(entry)  # is_swap_pte(): PROT_NONE is present


def is_migration_entry(entry: int) -> bool:
    """is_migration_entry() - a swap-format entry of one of the three migration types?

    Models: include/linux/swapops.h:is_migration_entry() (v6.18).
    """
    return _is_swp(entry) and __swp_type(entry) in (
        SwpType.SWP_MIGRATION_READ, SwpType.SWP_MIGRATION_READ_EXCLUSIVE,
        SwpType.SWP_MIGRATION_WRITE)


def is_writable_migration_entry(entry: int) -> bool:
    """is_writable_migration_entry() - a SWP_MIGRATION_WRITE entry?

    Models: include/linux/swapops.h:is_writable_migration_entry() (v6.18).
    """
    return _is_swp(entry) and __swp_type(entry) == SwpType.SWP_MIGRATION_WRITE


def is_device_private_entry(entry: int) -> bool:
    """is_device_private_entry() - a SWP_DEVICE_READ or SWP_DEVICE_WRITE entry?

    Models: include/linux/swapops.h:is_device_private_entry() (v6.18).
    """
    return _is_swp(entry) and __swp_type(entry) in (SwpType.SWP_DEVICE_READ,
                                                  SwpType.SWP_DEVICE_WRITE)


def is_writable_device_private_entry(entry: int) -> bool:
    """is_writable_device_private_entry() - a SWP_DEVICE_WRITE entry?

    Models: include/linux/swapops.h:is_writable_device_private_entry() (v6.18).
    """
    return _is_swp(entry) and __swp_type(entry) == SwpType.SWP_DEVICE_WRITE


# -- swap slots: swp_entry_t and its page-table form ------------------------------------
#: include/linux/swapops.h: BITS_PER_XA_VALUE (63) - MAX_SWAPFILES_SHIFT (5)
SWP_TYPE_SHIFT = 58
SWP_OFFSET_MASK = (1 << SWP_TYPE_SHIFT) - 1
_SWP_FLAGS = _PAGE_SWP_EXCLUSIVE | _PAGE_SWP_SOFT_DIRTY | _PAGE_SWP_UFFD_WP


def swp_entry(type_: int, offset: int) -> int:
    """swp_entry() - the swp_entry_t (its ``val``) of slot ``offset`` of swap area ``type_``.

    Models: include/linux/swapops.h:swp_entry() (v6.18).
    """
    return (type_ << SWP_TYPE_SHIFT) | (offset & SWP_OFFSET_MASK)


def swp_type(entry: int) -> int:
    """swp_type() - the swap area of a swp_entry_t.

    Models: include/linux/swapops.h:swp_type() (v6.18).
    """
    return entry >> SWP_TYPE_SHIFT


def swp_offset(entry: int) -> int:
    """swp_offset() - the slot of a swp_entry_t.

    Models: include/linux/swapops.h:swp_offset() (v6.18).
    """
    return entry & SWP_OFFSET_MASK


def swp_to_radix_entry(entry: int) -> XaValue:
    """swp_to_radix_entry() - the XArray value entry shmem stores in its page cache for a
    swapped-out folio (``entry`` is its first slot).

    Models: include/linux/swapops.h:swp_to_radix_entry() (v6.18): xa_mk_value(entry.val).

    >>> radix_to_swp_entry(swp_to_radix_entry(swp_entry(0, 512))) == swp_entry(0, 512)
    True
    """
    return xa_mk_value(entry)


def radix_to_swp_entry(arg: XaValue) -> int:
    """radix_to_swp_entry() - the swp_entry_t a shmem value entry holds.

    Models: include/linux/swapops.h:radix_to_swp_entry() (v6.18).
    """
    return xa_to_value(arg)


def swp_entry_to_pte(entry: int) -> int:
    """swp_entry_to_pte() - the page-table entry for a swp_entry_t (no flag bits).

    Models: include/linux/swapops.h:swp_entry_to_pte() (v6.18).
    """
    return __swp_entry(swp_type(entry), swp_offset(entry))


def pte_swp_clear_flags(pte: int) -> int:
    """pte_swp_clear_flags() - a swap PTE without its exclusive, soft-dirty, uffd-wp bits.

    Models: include/linux/swapops.h:pte_swp_clear_flags() (v6.18).
    """
    return pte & ~_SWP_FLAGS


def pte_to_swp_entry(pte: int) -> int:
    """pte_to_swp_entry() - the swp_entry_t a swap-format PTE holds.

    Models: include/linux/swapops.h:pte_to_swp_entry() (v6.18).
    """
    pte = pte_swp_clear_flags(pte)
    return swp_entry(__swp_type(pte), __swp_offset(pte))


def is_swap_pte(pte: int) -> bool:
    """is_swap_pte() - neither none nor present (pte_present(): P or PROTNONE): a
    swap-format entry of any type.

    Models: include/linux/swapops.h:is_swap_pte() (v6.18).
    """
    return pte != 0 and not pte_present(pte)


def non_swap_entry(entry: int) -> bool:
    """non_swap_entry() - a special type (migration, device, hwpoison, marker), no slot.

    Models: include/linux/swapops.h:non_swap_entry() (v6.18).
    """
    return swp_type(entry) >= SwpType.SWP_HWPOISON


def is_swap_entry(pte: int) -> bool:
    """is_swap_pte() && !non_swap_entry(): a PTE holding a real swap slot (types 0..23).

    Python-only helper: the kernel writes the two tests out where it needs them.
    """
    return is_swap_pte(pte) and not non_swap_entry(pte_to_swp_entry(pte))


def pte_swp_exclusive(pte: int) -> bool:
    """pte_swp_exclusive() - the swapped-out page was PageAnonExclusive.

    Models: arch/x86/include/asm/pgtable.h:pte_swp_exclusive() (v6.18).
    """
    return bool(pte & _PAGE_SWP_EXCLUSIVE)


def pte_swp_mkexclusive(pte: int) -> int:
    """pte_swp_mkexclusive() - set the exclusive bit of a swap PTE.

    Models: arch/x86/include/asm/pgtable.h:pte_swp_mkexclusive() (v6.18).
    """
    return pte | _PAGE_SWP_EXCLUSIVE


def pte_swp_clear_exclusive(pte: int) -> int:
    """pte_swp_clear_exclusive() - clear the exclusive bit (fork shares the entry).

    Models: arch/x86/include/asm/pgtable.h:pte_swp_clear_exclusive() (v6.18).
    """
    return pte & ~_PAGE_SWP_EXCLUSIVE


def pte_swp_soft_dirty(pte: int) -> bool:
    """pte_swp_soft_dirty() - the soft-dirty bit of a swap PTE.

    Models: arch/x86/include/asm/pgtable.h:pte_swp_soft_dirty() (v6.18).
    """
    return bool(pte & _PAGE_SWP_SOFT_DIRTY)


def pte_swp_uffd_wp(pte: int) -> bool:
    """pte_swp_uffd_wp() - the uffd-wp bit of a swap PTE.

    Models: arch/x86/include/asm/pgtable.h:pte_swp_uffd_wp() (v6.18).
    """
    return bool(pte & _PAGE_SWP_UFFD_WP)


def pte_move_swp_offset(pte: int, delta: int) -> int:
    """pte_move_swp_offset() - the same swap PTE (flags kept) ``delta`` slots further.

    Models: mm/internal.h:pte_move_swp_offset() (v6.18).
    """
    entry = pte_to_swp_entry(pte)
    return swp_entry_to_pte(swp_entry(swp_type(entry), swp_offset(entry) + delta)) \
        | (pte & _SWP_FLAGS)


def make_device_exclusive_entry(pfn: int) -> int:
    """make_device_exclusive_entry() - a device-exclusive entry for ``pfn``: the page stays
    mapped (mapcount, reference and RSS kept) but the CPU faults on it, so the device may
    operate on it atomically. One type since 6.14 (no readable/writable pair).

    Models: include/linux/swapops.h:make_device_exclusive_entry() (v6.18).
    """
    return __swp_entry(SwpType.SWP_DEVICE_EXCLUSIVE, pfn)


def is_device_exclusive_entry(entry: int) -> bool:
    """is_device_exclusive_entry() - a SWP_DEVICE_EXCLUSIVE entry?

    Models: include/linux/swapops.h:is_device_exclusive_entry() (v6.18).
    """
    return _is_swp(entry) and __swp_type(entry) == SwpType.SWP_DEVICE_EXCLUSIVE


def is_pfn_swap_entry(entry: int) -> bool:
    """is_pfn_swap_entry() - a swap-format entry whose offset is a PFN: migration,
    device-private, device-exclusive (or hwpoison, not modelled).

    Models: include/linux/swapops.h:is_pfn_swap_entry() (v6.18).
    """
    return (is_migration_entry(entry) or is_device_private_entry(entry)
            or is_device_exclusive_entry(entry))
