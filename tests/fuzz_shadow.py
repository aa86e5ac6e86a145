"""The fuzzer's oracle: a shadow of what each process must see, kept beside the simulator.

Per live process: which pages are mapped and with what protection (the VMA model), and
the value a read of each page may return: one int, or a set of ints where the kernel
allows either (MADV_FREE: the old value or 0 until the page is written; a touch that ran
out of memory part way: the old value or the new one). A page never written reads 0.

:func:`peek_chunk` reads what a process would read in one 2 MiB range without faulting
(the page tables and the frames' stamps, vectorised), so every step can be checked
against the shadow without changing the machine. Nothing here models the kernel: it
states what a program may observe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pyfolio.arch.x86.pgtable import (
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_SPECIAL,
    PTE_PFN_MASK,
    SWP_OFFSET_SHIFT,
    SWP_TYPE_BITS,
    pte_pfn,
    swp_offset,
    walk,
)
from pyfolio.include.linux.swap import MAX_SWAPFILES
from pyfolio.include.linux.swapops import SwpType, is_device_private_entry, pte_to_swp_entry
from pyfolio.include.linux.swapops import swp_offset as swap_slot
from pyfolio.include.linux.swapops import swp_type as swap_type
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PMD_SIZE

if TYPE_CHECKING:
    from pyfolio import Process

__all__ = ["Val", "Shadow", "peek_chunk", "default_stamp", "allowed", "chunk_index"]

#: a value a page may hold: one int, or the set of ints it may hold
Val = int | frozenset[int]
_U64 = np.uint64
_DEVICE_TYPES = (_U64(SwpType.SWP_DEVICE_WRITE), _U64(SwpType.SWP_DEVICE_READ),
                 _U64(SwpType.SWP_DEVICE_EXCLUSIVE))


def default_stamp(addr: int) -> int:
    """What Process.touch() writes to a page by default: its page number plus one."""
    return (addr >> PAGE_SHIFT) + 1


def allowed(v: Val) -> frozenset[int]:
    return v if isinstance(v, frozenset) else frozenset((v,))


@dataclass
class Shadow:
    """What one process must see. ``prot`` maps each mapped page to "r", "rw" or "none";
    ``val`` holds the pages whose value is not 0; ``lazy`` the pages MADV_FREE made
    discardable (their value may still become 0); ``pins`` the pins unpin() of the
    address can drop (page address -> count): zapping the page orphans them (the pin
    stays on the old folio until exit, and unpin() of the address no longer finds it).
    ``dontfork`` and ``wipeonfork`` hold the pages MADV_DONTFORK / MADV_WIPEONFORK
    marked (their VMA's VM_DONTCOPY / VM_WIPEONFORK): a child has no such page, or
    has it reading 0."""

    proc: Process
    prot: dict[int, str] = field(default_factory=dict)
    val: dict[int, Val] = field(default_factory=dict)
    lazy: set[int] = field(default_factory=set)
    pins: dict[int, int] = field(default_factory=dict)
    dontfork: set[int] = field(default_factory=set)
    wipeonfork: set[int] = field(default_factory=set)

    def fork(self, child: Process) -> Shadow:
        """dup_mmap(): VM_DONTCOPY pages are left out, VM_WIPEONFORK ones start empty
        (and keep the flag)."""
        gone = self.dontfork | self.wipeonfork
        return Shadow(child, {a: v for a, v in self.prot.items() if a not in self.dontfork},
                      {a: v for a, v in self.val.items() if a not in gone},
                      self.lazy - gone, {}, set(), self.wipeonfork - self.dontfork)

    def pages(self, addr: int, length: int) -> range:
        first = addr & ~(PAGE_SIZE - 1)
        return range(first, addr + length, PAGE_SIZE)

    def get(self, a: int) -> Val:
        return self.val.get(a, 0)

    def set(self, a: int, v: Val) -> None:
        if isinstance(v, frozenset) and len(v) == 1:
            v = next(iter(v))
        if v == 0:
            self.val.pop(a, None)
        else:
            self.val[a] = v

    def write(self, a: int, v: int) -> None:
        self.lazy.discard(a)
        self.set(a, v)

    def maybe(self, a: int, v: int) -> None:
        """The page holds its old value or ``v`` (a write that may not have happened)."""
        self.set(a, allowed(self.get(a)) | {v})

    def observe(self, a: int, seen: int) -> bool:
        """A read saw ``seen``: is that allowed? Narrows an uncertain value to it (not
        for a lazy-free page, which may still be discarded later)."""
        if seen not in allowed(self.get(a)):
            return False
        if a not in self.lazy:
            self.set(a, seen)
        return True

    def zap(self, a: int) -> None:
        """MADV_DONTNEED, or unmapped: nothing there, reads 0."""
        self.lazy.discard(a)
        self.val.pop(a, None)
        self.pins.pop(a, None)

    def unmap(self, a: int) -> None:
        self.zap(a)
        self.prot.pop(a, None)
        self.dontfork.discard(a)
        self.wipeonfork.discard(a)

    def lazyfree(self, a: int) -> None:
        if self.get(a) != 0:
            self.lazy.add(a)
            self.set(a, allowed(self.get(a)) | {0})

    def chunks(self) -> dict[int, list[int]]:
        """Mapped pages grouped by 2 MiB range."""
        out: dict[int, list[int]] = {}
        for a in self.prot:
            out.setdefault(a & ~(PMD_SIZE - 1), []).append(a)
        return out


def peek_chunk(p: Process, base: int) -> tuple[np.ndarray, np.ndarray]:
    """What each of the 512 pages of the 2 MiB range at ``base`` holds now, read through
    the page tables without faulting: (values, readable). A present or device-private
    entry gives its frame's stamp, and so does a PROT_NONE entry (P clear, PROTNONE set,
    its PFN inverted) and a device-exclusive entry; an empty entry or the zero page 0; a
    swap entry what its slot holds (:func:`peek_swap`); anything else (a migration entry,
    which no step may leave) is not readable."""
    m = p.m
    stamp = m.mem.stamp
    w = walk(m, p.mm.pgd, base)
    raw = int(w.raw)
    if w.level != "pte":
        if not raw or w.level != "pmd" or (raw & _PAGE_PRESENT and raw & _PAGE_SPECIAL):
            return np.zeros(512, _U64), np.ones(512, bool)
        if raw & (_PAGE_PRESENT | _PAGE_PROTNONE) and raw & _PAGE_PSE:
            first = pte_pfn(raw)
        elif is_device_private_entry(raw):  # (no device-exclusive PMD: FOLL_SPLIT_PMD)
            first = swp_offset(raw)
        else:
            return np.zeros(512, _U64), np.zeros(512, bool)
        return stamp[first: first + 512].copy(), np.ones(512, bool)
    tbl = m.pgtables[w.tables[-1][1]]
    protnone = ((tbl & _U64(_PAGE_PRESENT)) == 0) & ((tbl & _U64(_PAGE_PROTNONE)) != 0)
    present = ((tbl & _U64(_PAGE_PRESENT)) != 0) | protnone
    special = present & ((tbl & _U64(_PAGE_SPECIAL)) != 0)
    typ = tbl >> _U64(59)
    device = ~present & ((typ == _DEVICE_TYPES[0]) | (typ == _DEVICE_TYPES[1])
                         | (typ == _DEVICE_TYPES[2]))
    pfn = np.where(device, ((~tbl) << _U64(SWP_TYPE_BITS)) >> _U64(SWP_OFFSET_SHIFT),
                   (np.where(protnone, ~tbl, tbl) & _U64(PTE_PFN_MASK))
                   >> _U64(PAGE_SHIFT)).astype(np.int64)
    ok = (present & ~special) | device
    values = np.where(ok, stamp[np.where(ok, pfn, 0)], _U64(0))
    readable = ~((tbl != 0) & ~ok & ~special)
    for i in np.flatnonzero(~readable & (typ < _U64(MAX_SWAPFILES))).tolist():
        got = peek_swap(p, int(tbl[i]))
        if got is not None:
            values[i], readable[i] = got, True
    return values, readable


def peek_swap(p: Process, raw: int) -> int | None:
    """What the slot of swap PTE ``raw`` holds: the page of the swap-cache folio there,
    else 0 for a zero-filled slot (zeromap), else what was written to the area; None if
    the slot is not in an active area."""
    m = p.m
    entry = pte_to_swp_entry(raw)
    t, off = swap_type(entry), swap_slot(entry)
    si = m.swap_info[t] if t < len(m.swap_info) else None
    if si is None or not 0 < off < si.max:
        return None
    head = int(si.swap_table[off])
    if head >= 0:
        return int(m.mem.stamp[head + off - swap_slot(int(m.mem.swap[head]))])
    return 0 if si.zeromap[off] else int(si.data[off])


def chunk_index(a: int) -> int:
    return (a >> PAGE_SHIFT) & ((1 << (PMD_SHIFT - PAGE_SHIFT)) - 1)
