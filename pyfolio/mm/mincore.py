"""mincore(): which pages of a mapping are resident.

Models: mm/mincore.c (v6.18): do_mincore() with mincore_pte_range() and
__mincore_unmapped_range(), and mincore_page() with mm/swap_state.c's
filemap_get_incore_folio(). A page a PTE maps is resident; where the PTE is empty, a file
VMA asks the page cache; a shmem page cache holding a swap entry (the page was swapped
out) answers from the swap cache: resident while the swap-cache folio is still there,
not once it was freed (zram frees it at once). That is how user space can see that a
swapped-out shmem page is still in memory (measured on 6.18.44: 1 after MADV_PAGEOUT to a
swap file or a loop device, 0 on zram).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.arch.x86.pgtable import pmd_present, pte_present, walk
from pyfolio.include.linux.mm import folio_put
from pyfolio.include.linux.swapops import (
    is_swap_pte,
    non_swap_entry,
    pte_to_swp_entry,
    radix_to_swp_entry,
)
from pyfolio.lib.xarray import XaValue, xa_get_order, xa_load
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace
    from pyfolio.include.linux.mm_types import VMA, MMStruct
    from pyfolio.sim.machine import Machine

__all__ = ["mincore_page", "mincore_swap", "do_mincore", "sys_mincore"]


def mincore_swap(m: Machine, entry: int) -> int:
    """The swap-cache half of mincore: 1 if ``entry``'s slot holds an uptodate folio in
    the swap cache, else 0.

    Models: mm/mincore.c:mincore_page() on swap_address_space() (v6.18; the newest tree
    calls it mincore_swap()).
    """
    from pyfolio.mm.swap_state import swap_cache_get_folio

    folio = swap_cache_get_folio(m, entry)
    if folio is None:
        return 0
    present = int(m.mem.test(folio.pfn, PG.uptodate))
    folio_put(folio)
    return present


def mincore_page(mapping: AddressSpace, index: int) -> int:
    """mincore_page() - is page ``index`` of ``mapping`` resident: a folio in the page
    cache, uptodate; or, for shmem, a swap entry whose slot's folio is still in the swap
    cache (filemap_get_incore_folio()).

    Models: mm/mincore.c:mincore_page() and mm/swap_state.c:filemap_get_incore_folio()
    (v6.18).
    """
    from pyfolio.mm.shmem import shmem_mapping

    m = mapping.host.i_sb.m
    entry = xa_load(mapping.i_pages, index)
    if entry is None:
        return 0
    if isinstance(entry, XaValue):
        if not shmem_mapping(mapping):
            return 0  # a shadow entry of another file system: not resident
        order = xa_get_order(mapping.i_pages, index)
        swp = radix_to_swp_entry(entry) + (index & ((1 << order) - 1))
        return mincore_swap(m, swp)
    return int(m.mem.test(entry, PG.uptodate))


def do_mincore(vma: VMA, addr: int, pages: int) -> list[int]:
    """do_mincore() - one byte (0 or 1) per page of [addr, addr + pages * PAGE_SIZE) inside
    ``vma``: mapped pages are resident; an empty PTE asks the file's page cache
    (mincore_page(); 0 for anonymous memory); a swap PTE asks the swap cache (a migration
    or device entry counts as resident).

    Models: mm/mincore.c:do_mincore(), mincore_pte_range() and __mincore_unmapped_range()
    (v6.18).
    """
    m = vma.vm_mm.m
    out: list[int] = []
    for i in range(pages):
        a = addr + i * PAGE_SIZE
        w = walk(m, vma.vm_mm.pgd, a)
        raw = w.raw if w.level in ("pmd", "pte") else 0
        if w.level == "pmd" and raw and pmd_present(raw) or w.level == "pte" and pte_present(raw):
            out.append(1)
        elif raw and is_swap_pte(raw):
            entry = pte_to_swp_entry(raw)
            out.append(1 if non_swap_entry(entry) else mincore_swap(m, entry))
        elif vma.vm_file is not None:
            index = vma.vm_pgoff + ((a - vma.vm_start) >> PAGE_SHIFT)
            out.append(mincore_page(vma.vm_file.f_mapping, index))
        else:
            out.append(0)
    return out


def sys_mincore(mm: MMStruct, start: int, length: int) -> list[int]:
    """sys_mincore() - mincore(start, len, vec): one 0/1 per page of the range.

    Models: mm/mincore.c:sys_mincore() (v6.18): EINVAL for a misaligned start, ENOMEM
    where part of the range is not mapped (checked first here: nothing is returned).
    """
    from pyfolio.sim.errors import EINVAL, ENOMEM, MmError

    if start % PAGE_SIZE:
        raise MmError(EINVAL, f"mincore: start {start:#x} is not page aligned")
    pages = -(-length // PAGE_SIZE)
    end = start + pages * PAGE_SIZE
    vmas = mm.vmas_between(start, end)
    if sum(min(v.vm_end, end) - max(v.vm_start, start) for v in vmas) != end - start:
        raise MmError(ENOMEM, f"mincore: [{start:#x}, {end:#x}) is not fully mapped")
    out: list[int] = []
    for v in vmas:
        lo, hi = max(v.vm_start, start), min(v.vm_end, end)
        out += do_mincore(v, lo, (hi - lo) // PAGE_SIZE)
    return out
