"""Which sizes a new shmem folio may have: the ``shmem_enabled`` knobs and the order masks.

Models: mm/shmem.c (v6.18): shmem_enabled_store(), thpsize_shmem_enabled_store(),
shmem_huge_global_enabled(), shmem_allowable_huge_orders(), shmem_get_orders_within_size(),
shmem_suitable_orders(). :func:`pyfolio.mm.shmem.shmem_get_folio_gfp` asks them before it
allocates; the rules measured on 6.18.44 are in :mod:`pyfolio.mm.shmem`'s docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.fs import Inode, SuperBlock, i_size_read
from pyfolio.include.linux.mm import VmFault
from pyfolio.include.linux.mm_types import VM, VMA
from pyfolio.include.linux.shmem_fs import SHMEM_SB, ShmemSbInfo
from pyfolio.lib.xarray import xa_find
from pyfolio.sim.errors import EINVAL, MmError
from pyfolio.sim.units import HPAGE_PMD_ORDER, PAGE_SIZE

if TYPE_CHECKING:
    from pyfolio.include.linux.fs import AddressSpace
    from pyfolio.sim.machine import Machine

__all__ = ["THP_ORDERS_ALL_FILE_DEFAULT", "SHMEM_SB_of", "huge_shmem_orders",
           "shmem_enabled_store", "thpsize_shmem_enabled_store",
           "shmem_get_orders_within_size", "shmem_huge_global_enabled",
           "shmem_allowable_huge_orders", "shmem_suitable_orders"]

#: include/linux/huge_mm.h: THP_ORDERS_ALL_FILE_DEFAULT = orders 1..MAX_PAGECACHE_ORDER
#: (bit n for order n; order 1 is allowed for file and shmem folios, unlike anon)
THP_ORDERS_ALL_FILE_DEFAULT = ((1 << (HPAGE_PMD_ORDER + 1)) - 1) & ~1
_PMD_ORDER_BIT = 1 << HPAGE_PMD_ORDER


# -- the sysfs knobs -------------------------------------------------------------------------
def shmem_enabled_store(m: Machine, value: str) -> None:
    """``echo value > /sys/kernel/mm/transparent_hugepage/shmem_enabled``.

    Models: mm/shmem.c:shmem_enabled_store() (v6.18): never/always/within_size/advise
    also become the ``huge`` of the internal mount (memfd, shared anonymous memory);
    deny and force override every mount without changing it. ``force`` is refused
    (EINVAL) while any size but the PMD size is ``inherit``
    (huge_shmem_orders_inherit != BIT(HPAGE_PMD_ORDER)).
    """
    from pyfolio.mm.shmem import shm_mnt
    from pyfolio.sim.machine import SHMEM_POLICIES

    if value not in SHMEM_POLICIES:
        raise MmError(EINVAL, f"shmem_enabled {value!r} is not one of "
                              f"{', '.join(SHMEM_POLICIES)}")
    inherit = [o for o, v in m.thp_shmem_enabled.items() if v == "inherit"]
    if value == "force" and inherit != [HPAGE_PMD_ORDER]:
        raise MmError(EINVAL, "shmem_enabled force: only the 2048kB size may be 'inherit'")
    m.shmem_huge = value
    if value not in ("deny", "force"):
        SHMEM_SB_of(shm_mnt(m)).huge = value


def SHMEM_SB_of(sb: SuperBlock) -> ShmemSbInfo:
    """The shmem_sb_info of a tmpfs superblock (SHMEM_SB(sb))."""
    info = sb.s_fs_info
    assert isinstance(info, ShmemSbInfo)
    return info


def thpsize_shmem_enabled_store(m: Machine, order: int, value: str) -> None:
    """``echo value > .../hugepages-<size>kB/shmem_enabled``.

    Models: mm/huge_memory.c:thpsize_shmem_enabled_store() (v6.18, defined in mm/shmem.c):
    always, inherit, within_size, advise or never; ``inherit`` for a size other than the
    PMD size is refused (EINVAL) while the top level is ``force``.
    """
    from pyfolio.sim.machine import SHMEM_SIZE_POLICIES

    if value not in SHMEM_SIZE_POLICIES:
        raise MmError(EINVAL, f"shmem_enabled {value!r} is not one of "
                              f"{', '.join(SHMEM_SIZE_POLICIES)}")
    if value == "inherit" and m.shmem_huge == "force" and order != HPAGE_PMD_ORDER:
        raise MmError(EINVAL, "inherit is refused for this size while shmem_enabled is force")
    m.thp_shmem_enabled[order] = value


def huge_shmem_orders(m: Machine, policy: str) -> int:
    """mm/shmem.c's huge_shmem_orders_<policy>: the sizes whose shmem_enabled says
    ``policy`` (bit n for order n)."""
    return sum(1 << o for o, v in m.thp_shmem_enabled.items() if v == policy)


# -- which orders --------------------------------------------------------------------------
def shmem_get_orders_within_size(inode: Inode, within_size_orders: int, index: int,
                                 write_end: int) -> int:
    """shmem_get_orders_within_size() - of ``within_size_orders``, from the highest down,
    the first order whose aligned range around ``index`` ends within max(write_end,
    i_size), with every lower order; 0 if none.

    Models: mm/shmem.c:shmem_get_orders_within_size() (v6.18).
    """
    orders = within_size_orders
    while orders:
        order = orders.bit_length() - 1
        aligned_index = -(-(index + 1) // (1 << order)) * (1 << order)
        size = -(-max(write_end, i_size_read(inode)) // PAGE_SIZE)
        if size >= aligned_index:
            return orders
        orders &= ~(1 << order)
    return 0


def shmem_huge_global_enabled(inode: Inode, index: int, write_end: int, shmem_huge_force: bool,
                              vma: VMA | None) -> int:
    """shmem_huge_global_enabled() - the orders the mount's policy allows (bit n for n).

    Models: mm/shmem.c:shmem_huge_global_enabled() (v6.18, as "mm: shmem: fix the
    strategy for the tmpfs 'huge=' options" left it, and as measured on 6.18.44): top
    ``deny`` -> none; ``force`` -> the PMD order; else by the mount's ``huge``: always ->
    the PMD order for a fault (``vma`` given), orders 1..9 for write()/fallocate();
    within_size -> likewise, kept only as far as they fit i_size or the write
    (shmem_get_orders_within_size()), else as advise; advise -> the PMD order with
    MADV_HUGEPAGE; never -> none. (The newest tree drops the fault's PMD-only rule.)
    """
    m = inode.i_sb.m
    if m.shmem_huge == "deny":
        return 0
    if shmem_huge_force or m.shmem_huge == "force":
        return _PMD_ORDER_BIT
    huge = SHMEM_SB(inode).huge
    hugepage = vma is not None and bool(vma.vm_flags & VM.HUGEPAGE)
    if huge == "always":
        return _PMD_ORDER_BIT if vma is not None else THP_ORDERS_ALL_FILE_DEFAULT
    if huge == "within_size":
        orders = _PMD_ORDER_BIT if vma is not None else THP_ORDERS_ALL_FILE_DEFAULT
        orders = shmem_get_orders_within_size(inode, orders, index, write_end)
        if orders:
            return orders
        return _PMD_ORDER_BIT if hugepage else 0
    if huge == "advise":
        return _PMD_ORDER_BIT if hugepage else 0
    return 0


def shmem_allowable_huge_orders(inode: Inode, vma: VMA | None, index: int, write_end: int,
                                shmem_huge_force: bool) -> int:
    """shmem_allowable_huge_orders() - the large orders a new shmem folio may have.

    Models: mm/shmem.c:shmem_allowable_huge_orders() (v6.18): none in a VMA with THP
    disabled (MADV_NOHUGEPAGE); the mount's orders (shmem_huge_global_enabled()) for
    write()/fallocate() and for linked tmpfs files; for an anonymous shmem VMA the
    per-size knobs: ``always`` sizes, ``within_size`` sizes that fit i_size, ``advise``
    sizes with MADV_HUGEPAGE, ``inherit`` sizes if the mount's policy allows any (top
    ``deny``: none; top ``force``: the ``inherit`` sizes).
    """
    from pyfolio.mm.shmem import vma_is_anon_shmem

    m = inode.i_sb.m
    if vma is not None and vma.vm_flags & VM.NOHUGEPAGE:
        return 0
    global_orders = shmem_huge_global_enabled(inode, index, write_end, shmem_huge_force, vma)
    if vma is None or not vma_is_anon_shmem(vma):
        return global_orders
    if m.shmem_huge == "deny":
        return 0
    if m.shmem_huge == "force":
        return huge_shmem_orders(m, "inherit")
    mask = huge_shmem_orders(m, "always")
    mask |= shmem_get_orders_within_size(inode, huge_shmem_orders(m, "within_size"), index, 0)
    if vma.vm_flags & VM.HUGEPAGE:
        mask |= huge_shmem_orders(m, "advise")
    if global_orders:
        mask |= huge_shmem_orders(m, "inherit")
    return THP_ORDERS_ALL_FILE_DEFAULT & mask


def shmem_suitable_orders(inode: Inode, vmf: VmFault | None, mapping: AddressSpace, index: int,
                          orders: int) -> int:
    """shmem_suitable_orders() - drop the orders that do not fit the fault's VMA
    (thp_vma_suitable_orders(): aligned, inside, file offset congruent), then, from the
    highest, those whose aligned range already holds a page-cache entry.

    Models: mm/shmem.c:shmem_suitable_orders() (v6.18).
    """
    from pyfolio.mm.huge_memory import thp_vma_suitable_orders

    if vmf is not None:
        orders = thp_vma_suitable_orders(vmf.vma, vmf.address, orders)
    while orders:
        order = orders.bit_length() - 1
        aligned = index & ~((1 << order) - 1)
        if xa_find(mapping.i_pages, aligned, aligned + (1 << order) - 1) is None:
            break
        orders &= ~(1 << order)
    return orders
