"""Swap-format entries the kernel writes into page tables that are not swap: migration
entries and device-private entries, and the special swap types that tell them apart.

Models: include/linux/swapops.h and include/linux/swap.h (v6.18). The bit layout of a
swap-format entry is x86-64's (:mod:`pyfolio.arch.x86.pgtable`: __swp_entry()).
"""

from __future__ import annotations

import enum

from pyfolio.arch.x86.pgtable import _PAGE_PRESENT, swp_entry, swp_type

__all__ = ["SwpType", "make_readable_migration_entry", "make_readable_exclusive_migration_entry",
           "make_writable_migration_entry", "make_readable_device_private_entry",
           "make_writable_device_private_entry", "is_migration_entry",
           "is_writable_migration_entry", "is_device_private_entry",
           "is_writable_device_private_entry"]


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
    return swp_entry(SwpType.SWP_MIGRATION_READ, pfn)


def make_readable_exclusive_migration_entry(pfn: int) -> int:
    """make_readable_exclusive_migration_entry() - a migration entry for a PG_anon_exclusive page.

    Models: include/linux/swapops.h:make_readable_exclusive_migration_entry() (v6.18).
    """
    return swp_entry(SwpType.SWP_MIGRATION_READ_EXCLUSIVE, pfn)


def make_writable_migration_entry(pfn: int) -> int:
    """make_writable_migration_entry() - a migration entry that was writable.

    Models: include/linux/swapops.h:make_writable_migration_entry() (v6.18).
    """
    return swp_entry(SwpType.SWP_MIGRATION_WRITE, pfn)


def make_readable_device_private_entry(pfn: int) -> int:
    """make_readable_device_private_entry() - a read-only device-private entry for device ``pfn``.

    Models: include/linux/swapops.h:make_readable_device_private_entry() (v6.18).
    """
    return swp_entry(SwpType.SWP_DEVICE_READ, pfn)


def make_writable_device_private_entry(pfn: int) -> int:
    """make_writable_device_private_entry() - a writable device-private entry for device ``pfn``.

    Models: include/linux/swapops.h:make_writable_device_private_entry() (v6.18).
    """
    return swp_entry(SwpType.SWP_DEVICE_WRITE, pfn)


def _is_swp(entry: int) -> bool:
    return entry != 0 and not entry & _PAGE_PRESENT


def is_migration_entry(entry: int) -> bool:
    """is_migration_entry() - a swap-format entry of one of the three migration types?

    Models: include/linux/swapops.h:is_migration_entry() (v6.18).
    """
    return _is_swp(entry) and swp_type(entry) in (
        SwpType.SWP_MIGRATION_READ, SwpType.SWP_MIGRATION_READ_EXCLUSIVE,
        SwpType.SWP_MIGRATION_WRITE)


def is_writable_migration_entry(entry: int) -> bool:
    """is_writable_migration_entry() - a SWP_MIGRATION_WRITE entry?

    Models: include/linux/swapops.h:is_writable_migration_entry() (v6.18).
    """
    return _is_swp(entry) and swp_type(entry) == SwpType.SWP_MIGRATION_WRITE


def is_device_private_entry(entry: int) -> bool:
    """is_device_private_entry() - a SWP_DEVICE_READ or SWP_DEVICE_WRITE entry?

    Models: include/linux/swapops.h:is_device_private_entry() (v6.18).
    """
    return _is_swp(entry) and swp_type(entry) in (SwpType.SWP_DEVICE_READ,
                                                  SwpType.SWP_DEVICE_WRITE)


def is_writable_device_private_entry(entry: int) -> bool:
    """is_writable_device_private_entry() - a SWP_DEVICE_WRITE entry?

    Models: include/linux/swapops.h:is_writable_device_private_entry() (v6.18).
    """
    return _is_swp(entry) and swp_type(entry) == SwpType.SWP_DEVICE_WRITE
