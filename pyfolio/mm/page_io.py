"""Writing folios to swap and reading them back.

Models: mm/page_io.c (v6.18): swap_writeout(), the zeromap (is_folio_zero_filled(),
swap_zeromap_folio_set(), swap_zeromap_folio_clear(), swap_zeromap_batch(),
swap_read_folio_zeromap()), __swap_writepage() with count_swpout_vm_event(),
end_swap_bio_write(), and swap_read_folio(). No zswap (compiled in here, but
``zswap.enabled=N``), no SWP_FS_OPS areas.

One write is one bio for the whole folio (a THP written whole is one 2 MiB write; a split
one 512 writes of 4 KiB, measured with block_bio_queue); each is recorded on the area as
``("W", first slot, pages)`` and each read as ``("R", ...)``. A SWP_SYNCHRONOUS_IO area
(zram) completes its writes before __swap_writepage() returns; on any other area the
folio stays under writeback until :func:`end_swap_bio_writes` (the simulator completes the
writes of a reclaim pass when the pass has put its folios back on the LRU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyfolio.include.linux.huge_mm import MTHP_STAT, count_mthp_stat
from pyfolio.include.linux.mm import (
    VM_WARN_ON_FOLIO,
    Folio,
    folio_nr_pages,
    folio_order,
    folio_unlock,
)
from pyfolio.include.linux.swap import SWP, SwapInfoStruct
from pyfolio.include.linux.swapops import swp_offset
from pyfolio.mm.swap import folio_rotate_reclaimable
from pyfolio.mm.swapfile import folio_free_swap, swap_entry_to_info
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import HPAGE_PMD_ORDER

if TYPE_CHECKING:
    from pyfolio.sim.machine import Machine

__all__ = ["is_folio_zero_filled", "swap_zeromap_folio_set", "swap_zeromap_folio_clear",
           "swap_zeromap_batch", "swap_writeout", "count_swpout_vm_event", "__swap_writepage",
           "folio_end_writeback", "end_swap_bio_write", "end_swap_bio_writes",
           "swap_read_folio_zeromap", "swap_read_folio"]


def _si(folio: Folio) -> tuple[SwapInfoStruct, int]:
    si = swap_entry_to_info(folio.m, int(folio.m.mem.swap[folio.pfn]))
    assert si is not None, "a swap I/O on a folio with no swap slot"
    return si, swp_offset(int(folio.m.mem.swap[folio.pfn]))


def is_folio_zero_filled(folio: Folio) -> bool:
    """is_folio_zero_filled() - every page of the folio is all zeroes (stamp 0).

    Models: mm/page_io.c:is_folio_zero_filled() (v6.18).
    """
    n = folio_nr_pages(folio)
    return not folio.m.mem.stamp[folio.pfn: folio.pfn + n].any()


def swap_zeromap_folio_set(folio: Folio) -> None:
    """swap_zeromap_folio_set() - mark the folio's slots as holding zeroes (no I/O) and
    count ``swpout_zero``.

    Models: mm/page_io.c:swap_zeromap_folio_set() (v6.18).
    """
    si, off = _si(folio)
    nr = folio_nr_pages(folio)
    si.zeromap[off: off + nr] = True
    folio.m.vmstat["swpout_zero"] += nr


def swap_zeromap_folio_clear(folio: Folio) -> None:
    """swap_zeromap_folio_clear() - the slots will hold real data: clear their zeromap bits.

    Models: mm/page_io.c:swap_zeromap_folio_clear() (v6.18).
    """
    si, off = _si(folio)
    si.zeromap[off: off + folio_nr_pages(folio)] = False


def swap_zeromap_batch(m: Machine, entry: int, max_nr: int) -> tuple[int, bool]:
    """swap_zeromap_batch() - how many slots from ``entry`` share its zeromap state, and
    that state.

    Models: mm/swap.h:swap_zeromap_batch() (v6.18).
    """
    si = swap_entry_to_info(m, entry)
    assert si is not None
    off = swp_offset(entry)
    bits = si.zeromap[off: off + max_nr]
    first = bool(bits[0])
    diff = (bits != first).nonzero()[0]
    return (int(diff[0]) if len(diff) else len(bits)), first


def count_swpout_vm_event(folio: Folio) -> None:
    """count_swpout_vm_event() - ``thp_swpout`` for a PMD-sized folio, the size's
    ``swpout``, ``pswpout`` += pages.

    Models: mm/page_io.c:count_swpout_vm_event() (v6.18).
    """
    m, order = folio.m, folio_order(folio)
    if order >= HPAGE_PMD_ORDER:  # folio_test_pmd_mappable()
        m.vmstat["thp_swpout"] += 1
    count_mthp_stat(m, order, MTHP_STAT.MTHP_STAT_SWPOUT)
    m.vmstat["pswpout"] += folio_nr_pages(folio)


def __swap_writepage(folio: Folio) -> None:
    """__swap_writepage() - write the folio to its slots: one bio; counted; under
    writeback until the write completes (at once on a SWP_SYNCHRONOUS_IO area).

    Models: mm/page_io.c:__swap_writepage(), swap_writepage_bdev_sync() and
    swap_writepage_bdev_async() (v6.18): the folio is unlocked once the bio is submitted.
    """
    m = folio.m
    si, off = _si(folio)
    nr = folio_nr_pages(folio)
    count_swpout_vm_event(folio)
    m.mem.set(folio.pfn, PG.writeback)  # folio_start_writeback()
    folio_unlock(folio)
    si.data[off: off + nr] = m.mem.stamp[folio.pfn: folio.pfn + nr]
    si.bios.append(("W", off, nr))
    m.trace.emit("swap_writepage", changes={"bio_pages": nr}, pfn=folio.pfn, offset=off,
                 sync=bool(si.flags & SWP.SWP_SYNCHRONOUS_IO))
    if si.flags & SWP.SWP_SYNCHRONOUS_IO:
        end_swap_bio_write(folio)
    else:
        m.swap_writeback.append(folio.pfn)


def swap_writeout(folio: Folio) -> int:
    """swap_writeout() - pageout() of a swap-cache folio: free its slots if no page table
    needs them; a zero-filled folio only sets the zeromap (``swpout_zero``, no I/O);
    otherwise __swap_writepage(). Unlocks the folio. Returns 0.

    Models: mm/page_io.c:swap_writeout() (v6.18; no zswap).
    """
    if folio_free_swap(folio):
        folio_unlock(folio)
        return 0
    if is_folio_zero_filled(folio):
        swap_zeromap_folio_set(folio)
        folio_unlock(folio)
        return 0
    swap_zeromap_folio_clear(folio)
    __swap_writepage(folio)
    return 0


def folio_end_writeback(folio: Folio) -> None:
    """folio_end_writeback() - writeback done: a folio reclaim wrote (PG_reclaim) moves to
    the tail of the inactive list (folio_rotate_reclaimable(), if it is back on the LRU).

    Models: mm/filemap.c:folio_end_writeback() (v6.18).
    """
    mem = folio.m.mem
    VM_WARN_ON_FOLIO(not mem.test(folio.pfn, PG.writeback), folio, "not under writeback")
    if mem.test(folio.pfn, PG.reclaim):
        mem.clear(folio.pfn, PG.reclaim)
        folio_rotate_reclaimable(folio)
    mem.clear(folio.pfn, PG.writeback)


def end_swap_bio_write(folio: Folio) -> None:
    """end_swap_bio_write() - the device finished writing the folio.

    Models: mm/page_io.c:end_swap_bio_write() / __end_swap_bio_write() (v6.18; no I/O
    errors).
    """
    folio_end_writeback(folio)


def end_swap_bio_writes(m: Machine) -> int:
    """Complete every swap write in flight (end_swap_bio_write() for each, in submission
    order); how many. The simulator's stand-in for the device finishing its queue."""
    done = list(m.swap_writeback)
    m.swap_writeback.clear()
    for pfn in done:
        end_swap_bio_write(Folio(m, pfn))
    return len(done)


def swap_read_folio_zeromap(folio: Folio) -> bool:
    """swap_read_folio_zeromap() - a folio whose slots are all in the zeromap is zeroed
    instead of read (``swpin_zero``); True if so.

    Models: mm/page_io.c:swap_read_folio_zeromap() (v6.18).
    """
    m, nr = folio.m, folio_nr_pages(folio)
    n, zero = swap_zeromap_batch(m, int(m.mem.swap[folio.pfn]), nr)
    VM_WARN_ON_FOLIO(n != nr, folio, "a large folio partly in the zeromap")
    if not zero:
        return False
    m.vmstat["swpin_zero"] += nr
    m.mem.stamp[folio.pfn: folio.pfn + nr] = 0
    m.mem.set(folio.pfn, PG.uptodate)
    return True


def swap_read_folio(folio: Folio) -> None:
    """swap_read_folio() - fill a locked folio from its slots: from the zeromap, or one
    bio (``pswpin`` += pages, the size's ``swpin``); uptodate and unlocked when done.

    Models: mm/page_io.c:swap_read_folio(), swap_read_folio_bdev_sync() and
    swap_read_folio_bdev_async() (v6.18; reads complete at once here).
    """
    m = folio.m
    VM_WARN_ON_FOLIO(not m.mem.test(folio.pfn, PG.locked), folio, "read into an unlocked folio")
    if not swap_read_folio_zeromap(folio):
        si, off = _si(folio)
        nr = folio_nr_pages(folio)
        m.vmstat["pswpin"] += nr
        count_mthp_stat(m, folio_order(folio), MTHP_STAT.MTHP_STAT_SWPIN)
        m.mem.stamp[folio.pfn: folio.pfn + nr] = si.data[off: off + nr]
        si.bios.append(("R", off, nr))
        m.mem.set(folio.pfn, PG.uptodate)
    folio_unlock(folio)
