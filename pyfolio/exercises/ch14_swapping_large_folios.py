"""Chapter 14 exercises: whole or split on the way out, which slot each page gets, and what a
fault brings back and from where.

Every answer is read off the simulator after the operations: the counters with
``m.vmstat()``, the slots with ``p.pagemap()`` (``swap_offset``), the folio with
``p.folio_at()``, the area's use with ``m.swaps()``.
"""

from __future__ import annotations

from pyfolio.exercises.base import Exercise
from pyfolio.sim.units import PAGE_SIZE, KiB, MiB
from pyfolio.system import Process, System

__all__ = ["swapped_out", "WholeOrSplit", "WhichSlot", "WhatComesBack", "KINDS", "AREAS"]

#: the areas, as the questions name them
AREAS = {"file": "a swap file", "block": "a loop block device", "zram": "a zram device"}
#: folio sizes the "whole" exercise pages out: (label, bytes, sysfs size or None for a THP)
SIZES: tuple[tuple[str, int, str | None], ...] = (
         ("THP (2 MiB)", 2 * MiB, None), ("64 KiB mTHP", 64 * KiB, "64kB"),
         ("32 KiB mTHP", 32 * KiB, "32kB"), ("16 KiB mTHP", 16 * KiB, "16kB"))


def swapped_out(kind: str, small: int = 0, size: int = 2 * MiB, mthp: str | None = None,
                seed: int = 0) -> tuple[System, Process, int]:
    """A 64 MiB swap area of ``kind``; ``small`` order-0 pages paged out first; then a region
    of ``size`` bytes of large folios (a THP, or ``mthp``-sized mTHPs with that size set to
    "madvise"), written, and returned unpaged: (system, process, address of the region)."""
    m = System(ram="64M", thp="madvise", seed=seed)
    m.swapon("64M", kind)
    if mthp:
        m.set_mthp(mthp, "madvise")
    p = m.spawn()
    if small:
        s = p.mmap(small * PAGE_SIZE)
        p.touch(s)
        p.madvise(s, small * PAGE_SIZE, "pageout")
    a = p.mmap(max(size, 2 * MiB))
    p.madvise(a, size, "hugepage")
    p.touch(a, size)
    return m, p, a


class WholeOrSplit(Exercise):
    """Large folios paged out to an area: written whole, or split first?"""

    chapter = 14
    kind = "whole"
    title = "Whole or split on the way out?"
    fields = ("pswpout", "thp_swpout", "thp_swpout_fallback", "slot of page 0")

    def setup(self) -> None:
        rng = self.rng
        self.area = rng.choice(list(AREAS))
        self.label, self.folio_size, self.mthp = rng.choice(SIZES)
        self.n = rng.randint(1, 2) if self.mthp is None else rng.randint(1, 4)
        self.small = rng.randint(0, 40)
        size = self.folio_size * self.n
        m, p, a = swapped_out(self.area, self.small, size, self.mthp, self.seed)
        v0 = m.vmstat()
        p.madvise(a, size, "pageout")
        v1 = m.vmstat()
        d = {k: v1[k] - v0[k] for k in ("pswpout", "thp_swpout", "thp_swpout_fallback")}
        slot = p.pagemap(a)[0].swap_offset
        self.answer = (d["pswpout"], d["thp_swpout"], d["thp_swpout_fallback"], slot)
        whole = self.area != "file"
        if self.small == 0:
            first = "No page was swapped before: cluster 0 serves order 0 from slot 1 (slot 0 is "
            first += "the header)."
        elif self.small == 1:
            first = "The small page first took slot 1 of cluster 0 (order 0)."
        else:
            first = (f"{self.small} small pages first took slots 1-{self.small} of cluster 0 "
                     "(order 0).")
        self.steps.append(first)
        self.steps.append(
            ("A block device gives a large folio a naturally aligned run of slots in a cluster "
             "of its own (the first free one: cluster 1 = slot 512): written whole, one bio per "
             "folio. thp_swpout counts only a PMD-sized folio.") if whole else
            ("A swap file gives no large run (\"Swapfile is not block device\"): each folio is "
             "split to order 0 first (thp_swpout_fallback for a PMD-sized one, the size's "
             "swpout_fallback otherwise), its head takes the next order-0 slot, the tails "
             "follow from the last page down."))
        self.steps.append(f"pswpout counts every page written: {d['pswpout']}.")

    def question(self) -> str:
        many = f"{self.n} x {self.label} (one region)" if self.n > 1 else f"one {self.label}"
        first = (f"{self.small} order-0 page(s) were paged out to it first; then "
                 if self.small else "")
        return (f"A fresh 64 MiB swap area on {AREAS[self.area]}: {first}{many} (written, "
                f"MADV_HUGEPAGE) is paged out with MADV_PAGEOUT. How do pswpout, thp_swpout "
                f"and thp_swpout_fallback move, and which slot holds page 0 of the region? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("Only a block device (SWP_BLKDEV) hands out more than one slot at a time; a "
                "large folio gets a cluster of its own, naturally aligned. On a swap file the "
                "folio is split first and every page takes the next order-0 slot.")


class WhichSlot(Exercise):
    """Which slot does page i of a THP get?"""

    chapter = 14
    kind = "slots"
    title = "Which slot does each page get?"
    fields = ("slot of page 0", "slot of page i")

    def setup(self) -> None:
        rng = self.rng
        self.area = rng.choice(("file", "block"))
        self.small = rng.randint(0, 30)
        self.page = rng.randint(1, 511)
        m, p, a = swapped_out(self.area, self.small, seed=self.seed)
        p.madvise(a, 2 * MiB, "pageout")
        s0 = p.pagemap(a)[0].swap_offset
        si = p.pagemap(a + self.page * PAGE_SIZE)[0].swap_offset
        self.answer = (s0, si)
        if self.area == "block":
            self.steps.append("The THP goes whole to the first free cluster (cluster 1, slots "
                              "512-1023), page i at slot 512 + i, whatever order-0 slots were "
                              "used before in cluster 0.")
        else:
            self.steps.append(f"Split first: the head (page 0) takes the next order-0 slot, "
                              f"{s0}; the tails join the reclaim list and are taken from its "
                              f"end, last page first: page 511 gets {s0 + 1}, page i gets "
                              f"{s0} + 512 - i.")

    def question(self) -> str:
        first = (f"{self.small} order-0 page(s) were paged out to it first" if self.small
                 else "nothing was swapped before")
        return (f"A written PMD-mapped THP is paged out (MADV_PAGEOUT) to a fresh 64 MiB "
                f"{AREAS[self.area].removeprefix('a ')} ({first}). Which swap slot (pagemap's "
                f"swap offset) holds page 0, and which page {self.page}? {self.answer_format()}.")

    def hint(self) -> str:
        return ("Large runs come from clusters of their own, in index order; order 0 fills "
                "cluster 0 from slot 1 on. shrink_folio_list() takes split tails from the end "
                "of its list.")


class WhatComesBack(Exercise):
    """A fault on one page of a THP that was paged out: what comes back, from where."""

    chapter = 14
    kind = "swapin"
    title = "What comes back, and from where?"
    fields = ("slot of the page", "pages mapped by the fault", "folio order", "major fault",
              "Used kB after")

    def setup(self) -> None:
        rng = self.rng
        self.area = rng.choice(list(AREAS))
        self.mthp = self.area == "zram" and rng.random() < 0.5
        self.write = rng.random() < 0.5
        self.page = rng.randrange(512)
        m, p, a = swapped_out(self.area, seed=self.seed)
        p.madvise(a, 2 * MiB, "pageout")
        if self.mthp:
            m.set_mthp("64kB", "madvise")
        addr = a + self.page * PAGE_SIZE
        slot = p.pagemap(addr)[0].swap_offset
        v0 = m.vmstat()
        mark = m.trace.mark()
        if self.write:
            p.write(addr, 1)
        else:
            p.read(addr)
        ev = [e for e in m.trace.since(mark) if e.name == "do_swap_page"][0]
        f = p.folio_at(addr)
        assert f is not None
        major = m.vmstat()["pgmajfault"] > v0["pgmajfault"]
        used = int(m.swaps()[0]["Used"])  # type: ignore[call-overload]
        self.answer = (slot, ev.change("nr_pages"), f.order, major, used)
        src = {"swapcache": "the swap cache (no I/O, no major fault)",
               "direct": "zram directly (a major fault; the swap cache is skipped and the "
                         "slots are freed)",
               "device": "the device through the swap cache"}[ev.change("source")]
        self.steps.append(f"Page {self.page} was at slot {slot}; the fault found it in {src}.")
        self.steps.append(
            f"{ev.change('nr_pages')} page(s) mapped, a folio of order {f.order}; "
            f"/proc/swaps Used is now {used} kB" + (
                " (a write fault on a folio only the fault and the swap cache hold frees its "
                "slots: should_try_to_free_swap())" if self.write and ev.change("source")
                == "swapcache" else "") + ".")

    def question(self) -> str:
        how = "writes" if self.write else "reads"
        extra = " hugepages-64kB/enabled is set to madvise before the fault." if self.mthp \
            else ""
        return (f"A written THP (MADV_HUGEPAGE) was paged out with MADV_PAGEOUT to a fresh "
                f"64 MiB swap area on {AREAS[self.area]}.{extra} The process now {how} page "
                f"{self.page}. Which slot held the page, how many pages does the fault map, "
                f"what is the folio's order, is it a major fault, and what does /proc/swaps "
                f"show as Used (kB) afterwards? {self.answer_format()}.")

    def hint(self) -> str:
        return ("On a device that is not synchronous the folio stays in the swap cache at the "
                "order it went out: a block device maps the whole folio, a swap file one page. "
                "zram reads directly, at the largest mTHP size enabled at fault time (below "
                "the PMD size) and frees the slots.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (WholeOrSplit, WhichSlot, WhatComesBack)}
