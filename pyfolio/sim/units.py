"""Sizes and the vocabulary of the simulator: page sizes, orders, size parsing.

x86-64 with 4 KiB base pages: a PMD maps 2 MiB (order 9, HPAGE_PMD_ORDER), a PUD 1 GiB.
"""

from __future__ import annotations

import re
from typing import NewType

from pyfolio.sim.errors import EINVAL, MmError

__all__ = [
    "KiB", "MiB", "GiB", "PAGE_SHIFT", "PAGE_SIZE", "PMD_SHIFT", "PMD_SIZE", "PUD_SHIFT",
    "PGDIR_SHIFT", "PTRS_PER_TABLE", "HPAGE_PMD_ORDER", "HPAGE_PMD_NR", "MAX_PAGE_ORDER",
    "Pfn", "Vaddr", "Order", "parse_size", "to_ulong", "to_size", "to_stamp",
]

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT
PUD_SHIFT = 30
PGDIR_SHIFT = 39
PTRS_PER_TABLE = 512
HPAGE_PMD_ORDER = PMD_SHIFT - PAGE_SHIFT  # 9
HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER  # 512
MAX_PAGE_ORDER = 10  # include/linux/mmzone.h: free lists for orders 0..10

Pfn = NewType("Pfn", int)
Vaddr = NewType("Vaddr", int)
Order = NewType("Order", int)

_UNITS = {"": 1, "B": 1, "K": KiB, "KB": KiB, "KIB": KiB, "M": MiB, "MB": MiB, "MIB": MiB,
          "G": GiB, "GB": GiB, "GIB": GiB}


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as ``"2M"``, ``"64MiB"`` or ``"4K"``.

    >>> parse_size("2M"), parse_size(4096), parse_size("1G") // MiB
    (2097152, 4096, 1024)
    """
    if isinstance(size, bool):
        raise MmError(EINVAL, f"size must be an int or a string like '2M', not {size!r}")
    if isinstance(size, int):
        if size < 0:
            raise MmError(EINVAL, f"size must not be negative: {size}")
        return size
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(size))
    if not m or m.group(2).upper() not in _UNITS:
        raise MmError(EINVAL, f"cannot read size {size!r}; use an int or a string like '64M'")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def to_ulong(value: object, what: str = "address") -> int:
    """A Python int as the kernel's ``unsigned long`` would receive it: a negative value
    is taken modulo 2**64 (what a C caller passing -4096 sends). TypeError for anything
    but an int (a bool included), ValueError for an int that does not fit in 64 bits.

    >>> hex(to_ulong(-4096)), to_ulong(4096)
    ('0xfffffffffffff000', 4096)
    """
    if type(value) is int and 0 <= value < 1 << 64:
        return value  # the common case, as the checks below take it
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__} {value!r}")
    if not -(1 << 63) <= value < 1 << 64:
        raise ValueError(f"{what} {value:#x} does not fit in 64 bits")
    return value & ((1 << 64) - 1)


def to_stamp(value: object) -> int:
    """A page's 64-bit contents: an int in [0, 2**64) (TypeError, ValueError otherwise).

    >>> to_stamp(7)
    7
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a page holds a 64-bit int, not {type(value).__name__} {value!r}")
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{value} does not fit in a 64-bit page stamp [0, 2**64)")
    return value


def to_size(length: object, what: str = "length") -> int:
    """A syscall's ``size_t`` length: a string such as ``"2M"`` (:func:`parse_size`) or
    an int taken as :func:`to_ulong` takes it."""
    if type(length) is int and 0 <= length < 1 << 64:
        return length  # as to_ulong() takes it, without the call
    if isinstance(length, str):
        return parse_size(length)
    return to_ulong(length, what)
