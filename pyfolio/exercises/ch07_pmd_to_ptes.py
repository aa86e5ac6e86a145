"""Chapter 7 exercises: split_huge_pmd, its triggers, the counts and the bits it leaves.

Every answer is read off the simulator after the operation: ``m.vmstat()`` for the
counters, the folio view for the counts, ``p.lookup()`` for the bits of one PTE and the
struct page for PG_anon_exclusive (which /proc/kpageflags cannot show per page).
"""

from __future__ import annotations

from pyfolio.exercises.base import Exercise
from pyfolio.include.linux.mm import Folio
from pyfolio.sim.memmap import PG
from pyfolio.sim.units import PAGE_SIZE, KiB, MiB
from pyfolio.system import Process, System

__all__ = ["WhichCounters", "CountsAfterSplit", "InheritedBits", "KINDS", "TRIGGERS"]

#: the operations on a PMD-mapped THP the "trigger" exercise picks from
TRIGGERS = ("mprotect", "munmap", "dontneed", "free", "cow", "zero", "dontneed-all")
_COUNTERS = ("thp_split_pmd", "thp_split_page", "thp_deferred_split_page")


def _thp(seed: int, touch: bool = True) -> tuple[System, Process, int]:
    """A process with one 2 MiB-aligned MADV_HUGEPAGE range, written (one PMD-mapped THP)."""
    m = System(ram="64M", thp="madvise", seed=seed)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    p.madvise(a, 2 * MiB, "hugepage")
    if touch:
        p.touch(a, 2 * MiB)
    return m, p, a


class WhichCounters(Exercise):
    """Which THP counters does an operation on part of a PMD-mapped THP move?"""

    chapter = 7
    kind = "trigger"
    title = "Which counters move?"
    fields = (*_COUNTERS, "pages of the 2 MiB the process can write without a fault")

    def setup(self) -> None:
        rng = self.rng
        self.trigger = rng.choice(TRIGGERS)
        self.pages = rng.randint(1, 511)
        self.first = rng.randrange(512 - self.pages + 1)
        m, p, a = _thp(self.seed, touch=self.trigger != "zero")
        at, length = a + self.first * PAGE_SIZE, self.pages * PAGE_SIZE
        if self.trigger == "mprotect":
            p.mprotect(at, length, "r")
        elif self.trigger == "munmap":
            p.munmap(at, length)
        elif self.trigger in ("dontneed", "free"):
            p.madvise(at, length, self.trigger)
        elif self.trigger == "dontneed-all":
            p.madvise(a, 2 * MiB, "dontneed")
        elif self.trigger == "cow":
            p = p.fork()  # the child writes; the question asks about it
            p.write(at, 7)
        else:  # zero: a read maps the huge zero page, then mprotect part of it
            p.read(a)
            p.mprotect(at, length, "r")
        v = m.vmstat()
        writable = sum(e.present and e.write
                       for e in (p.lookup(a + i * PAGE_SIZE) for i in range(512)))
        self.answer = (*(v[k] for k in _COUNTERS), writable)
        self.steps.append("The simulator ran it; vmstat: "
                          + ", ".join(f"{k} {v[k]}" for k in _COUNTERS) + f"; {writable} of "
                          f"the 512 pages are mapped present and writable.")

    def question(self) -> str:
        span = f"{self.pages} page(s) from page {self.first}"
        what = {
            "mprotect": f"mprotect(PROT_READ) on {span}",
            "munmap": f"munmap() of {span}",
            "dontneed": f"madvise(MADV_DONTNEED) on {span}",
            "free": f"madvise(MADV_FREE) on {span}",
            "dontneed-all": "madvise(MADV_DONTNEED) on the whole 2 MiB",
            "cow": f"fork(), then the child writes page {self.first}",
            "zero": f"(no write: one read maps the huge zero page) mprotect(PROT_READ) on {span}",
        }[self.trigger]
        return (f"A process has written a 2 MiB-aligned MADV_HUGEPAGE range (one PMD-mapped "
                f"THP; THP policy madvise). Then: {what}. What are the vmstat counters "
                f"thp_split_pmd, thp_split_page and thp_deferred_split_page now, and how many "
                f"of the 512 pages can the process{' (the child)' if self.trigger == 'cow' else ''}"
                f" write without taking a fault? {self.answer_format()}.")

    def hint(self) -> str:
        return ("A PMD covers all 2 MiB with one set of bits: any operation on part of it "
                "splits the PMD (thp_split_pmd). Only MADV_FREE of part splits the folio at "
                "once (thp_split_page); pages unmapped from a still-mapped folio flag it "
                "partially mapped for the deferred split shrinker (thp_deferred_split_page). "
                "Whole-PMD operations need no split. A PTE keeps the PMD's write bit; fork "
                "write-protects both sides, and the zero page is never writable.")


class CountsAfterSplit(Exercise):
    """The folio's counts after one process's PMD is split."""

    chapter = 7
    kind = "counts"
    title = "Counts after split_huge_pmd"
    fields = ("refcount", "mapcount", "entire mapcount")

    def setup(self) -> None:
        rng = self.rng
        m, p, a = _thp(self.seed)
        self.forks = rng.randint(0, 2)
        for _ in range(self.forks):
            p.fork()
        self.unmapped = 0 if rng.random() < 0.2 else rng.randint(1, 511)
        f = p.folio_at(a)
        assert f is not None
        self.steps.append(f"Before: refcount {f.refcount}, mapcount {f.mapcount}, entire "
                          f"mapcount {f.entire_mapcount} ({1 + self.forks} PMD mapping(s)).")
        if self.unmapped:
            p.munmap(a + 2 * MiB - self.unmapped * PAGE_SIZE, self.unmapped * PAGE_SIZE)
        else:
            p.mprotect(a + 4 * KiB, 4 * KiB, "r")
        g = Folio(m.machine, f.pfn)
        self.answer = (g.refcount, g.mapcount, g.entire_mapcount)
        self.steps.append(f"The parent's PMD became 512 PTEs (folio_ref_add 511, one PTE "
                          f"mapping per page), then {self.unmapped} PTE(s) were zapped: "
                          f"refcount {g.refcount}, mapcount {g.mapcount}, entire mapcount "
                          f"{g.entire_mapcount}.")

    def question(self) -> str:
        act = (f"munmap()s the last {self.unmapped} page(s) of the 2 MiB range"
               if self.unmapped else "mprotect()s page 1 of it read-only")
        return (f"A process writes a 2 MiB-aligned MADV_HUGEPAGE range (one PMD-mapped THP), "
                f"forks {self.forks} time(s) (the children keep running), then {act}. What are "
                f"the folio's refcount, mapcount and entire mapcount? {self.answer_format()}.")

    def hint(self) -> str:
        return ("Each PMD mapping holds one reference and counts 1 in the mapcount and the "
                "entire mapcount; after the split each remaining PTE holds one reference and "
                "counts 1 in the mapcount.")


class InheritedBits(Exercise):
    """What a PTE made by split_huge_pmd inherits from the PMD and the head page."""

    chapter = 7
    kind = "bits"
    title = "What does each PTE inherit?"
    fields = ("pfn", "writable", "dirty", "young", "anon-exclusive")

    def setup(self) -> None:
        rng = self.rng
        m, p, a = _thp(self.seed)
        self.free = rng.random() < 0.5
        self.readonly = rng.random() < 0.5
        self.forked = rng.random() < 0.4
        if self.forked:
            p.fork()
        if self.free:
            p.madvise(a, 2 * MiB, "free")
        if self.readonly:
            p.mprotect(a, 2 * MiB, "r")
        pmd = p.lookup(a)
        head = pmd.pfn
        self.steps.append(f"Before the split: {pmd}.")
        p.munmap(a + 2 * MiB - PAGE_SIZE, PAGE_SIZE)
        self.page = rng.randrange(511)
        addr = a + self.page * PAGE_SIZE
        e = p.lookup(addr)
        excl = m.machine.mem.test(e.pfn, PG.anon_exclusive)  # not visible in /proc per page
        self.head = head
        self.answer = (e.pfn, e.write, e.dirty, e.accessed, excl)
        self.steps.append(f"munmap() of page 511 split the PMD; page {self.page}'s PTE is "
                          f"{e.raw:#x} (pfn {e.pfn:#x} = head + {self.page}); "
                          f"PageAnonExclusive is {'set' if excl else 'clear'}.")

    def question(self) -> str:
        acts = ([("fork()s (the child keeps running)")] if self.forked else []) \
            + (["madvise(MADV_FREE)s the whole 2 MiB"] if self.free else []) \
            + (["mprotect(PROT_READ)s the whole 2 MiB"] if self.readonly else [])
        then = ", ".join(acts) + ", then " if acts else ""
        return (f"A process writes a 2 MiB-aligned MADV_HUGEPAGE range (one PMD-mapped THP), "
                f"{then}munmap()s its last page. The THP's head page is PFN {self.head:#x}. "
                f"Which PFN does page {self.page}'s new PTE map, is that PTE writable, dirty "
                f"and young, and is the page PageAnonExclusive? {self.answer_format()} "
                f"(the PFN, then yes/no).")

    def hint(self) -> str:
        return ("PTE i maps page i of the folio (head PFN + i). Each PTE copies write, dirty "
                "(pte_dirty(): D or SavedDirty), young and "
                "soft-dirty from the PMD, and each page becomes anon-exclusive if the head "
                "page was. fork write-protects the PMD (D moves to SavedDirty) and clears "
                "anon-exclusive; MADV_FREE of the whole PMD makes it clean and old; "
                "mprotect() of the whole PMD (pmd_modify()) keeps its dirtiness in SavedDirty "
                "(6.18.0 dropped it; fixed in 6.18.y).")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (WhichCounters, CountsAfterSplit,
                                                         InheritedBits)}
