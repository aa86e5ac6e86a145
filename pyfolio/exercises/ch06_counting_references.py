"""Chapter 6 exercises: refcount, mapcount and pins through fork, COW and pin_user_pages.

The counts are read from the folio after the simulator ran the scenario; whether a split
succeeds is found by trying it (``split_mapped_folio``, as debugfs split_huge_pages does).
"""

from __future__ import annotations

from pyfolio.exercises.base import Exercise
from pyfolio.include.linux.mm import Folio
from pyfolio.mm.huge_memory_split import split_mapped_folio
from pyfolio.sim.errors import MmError
from pyfolio.sim.units import PAGE_SIZE, KiB, MiB
from pyfolio.system import Process, System

__all__ = ["ForkCounts", "CowCounts", "PinCounts", "KINDS"]


def _thp_process(seed: int) -> tuple[System, Process, int, Folio]:
    m = System(ram="64M", thp="always", seed=seed)
    p = m.spawn()
    a = p.mmap(2 * MiB)
    p.touch(a)
    f = p.folio_at(a)
    assert f is not None and f.order == 9
    return m, p, a, f


def _counts(f: Folio) -> str:
    return (f"refcount {f.refcount}, mapcount {f.mapcount}, entire mapcount "
            f"{f.entire_mapcount}, pincount {f.pincount}")


class ForkCounts(Exercise):
    """The counts of a THP after some forks, exits and PMD splits in the children."""

    chapter = 6
    kind = "fork"
    title = "Counts after fork"
    fields = ("refcount", "mapcount", "entire mapcount")

    def setup(self) -> None:
        rng = self.rng
        m, p, a, f = _thp_process(self.seed)
        self.steps.append(f"After the THP fault: {_counts(f)}.")
        mappers = rng.randint(1, 5)  # processes that still map it at the end
        self.n = rng.randint(max(1, mappers - 1), 5)
        children = []
        for _ in range(self.n):
            children.append(p.fork())
            self.steps.append(f"fork(): {_counts(f)}.")
        self.exits = self.n + 1 - mappers
        for c in children[:self.exits]:
            c.exit()
            self.steps.append(f"a child exits: {_counts(f)}.")
        alive = {"the parent": p} | {f"child {i + 1}": c for i, c in enumerate(children)
                                     if i >= self.exits}
        self.splits = [(who, rng.randrange(512))
                       for who in rng.sample(sorted(alive), rng.randint(0, len(alive)))]
        for who, page in self.splits:
            alive[who].mprotect(a + page * PAGE_SIZE, PAGE_SIZE, "r")
            self.steps.append(f"{who} mprotect()s page {page}: its PMD becomes 512 PTEs, "
                              f"each mapping one page of the folio: {_counts(f)}.")
        self.answer = (f.refcount, f.mapcount, f.entire_mapcount)

    def question(self) -> str:
        ex = (f", then children 1..{self.exits} exit" if self.exits > 1 else
              ", then child 1 exits" if self.exits else "")
        spl = (", then " + " and ".join(f"{who} mprotect()s page {pg} PROT_READ"
                                        for who, pg in self.splits)) if self.splits else ""
        return (f"A process writes a 2 MiB-aligned 2 MiB mapping (THP policy always: one THP "
                f"mapped by one PMD). It forks {self.n} time(s) (children 1..{self.n})"
                f"{ex}{spl}. What are the folio's "
                f"refcount, mapcount and entire mapcount now? {self.answer_format()}.")

    def hint(self) -> str:
        return ("fork (copy_huge_pmd) shares the folio: each PMD mapping holds one reference "
                "and counts once in the mapcount and in the entire mapcount. A PMD split into "
                "PTEs holds one reference and one mapcount per PTE, and leaves the entire "
                "mapcount.")


class CowCounts(Exercise):
    """The counts after writes to a THP that fork shared (copy-on-write)."""

    chapter = 6
    kind = "cow"
    title = "Counts after copy-on-write"
    fields = ("refcount", "mapcount", "entire mapcount", "mapcount of the page asked about")

    def setup(self) -> None:
        rng = self.rng
        m, p, a, f = _thp_process(self.seed)
        procs = {"parent": p, "child": p.fork()}
        if rng.random() < 0.4:
            procs["second child"] = p.fork()
        self.forks = len(procs) - 1
        self.steps.append(f"After {self.forks} fork(s): {_counts(f)}.")
        self.writes: list[tuple[str, int]] = []
        for _ in range(rng.randint(1, 4)):
            who, page = rng.choice(sorted(procs)), rng.randrange(512)
            procs[who].write(a + page * PAGE_SIZE, 7)
            self.writes.append((who, page))
            self.steps.append(f"The {who} writes page {page}: a shared PMD is split into 512 "
                              f"PTEs first (thp_split_pmd {m.vmstat()['thp_split_pmd']}), then "
                              f"the written page is copied to a new 4 KiB folio: {_counts(f)}.")
        self.page = rng.choice([page for _, page in self.writes] + [rng.randrange(512)])
        self.answer = (f.refcount, f.mapcount, f.entire_mapcount,
                       f.page_mapcounts()[self.page])

    def question(self) -> str:
        forks = "forks" if self.forks == 1 else "forks twice"
        writes = ", then ".join(f"the {who} writes page {page}" for who, page in self.writes)
        return (f"A process writes a 2 MiB-aligned 2 MiB mapping (one PMD-mapped THP) and "
                f"{forks} (the children keep running). Then {writes}. What are the original "
                f"folio's refcount, mapcount and entire mapcount, and the PTE mapcount of page "
                f"{self.page} of it? {self.answer_format()}.")

    def hint(self) -> str:
        return ("A write to a shared PMD-mapped THP splits the writer's PMD into 512 PTEs "
                "(each holds a reference and a mapcount) and copies only the written page, "
                "whose PTE then maps the copy; a PMD mapping counts in the entire mapcount, "
                "not in a page's PTE mapcount.")


class PinCounts(Exercise):
    """Pins on a small or large folio: the counts, and can the folio be split?"""

    chapter = 6
    kind = "pin"
    title = "Pins"
    fields = ("refcount", "pincount", "split to order 0 succeeds")

    def setup(self) -> None:
        rng = self.rng
        self.large = rng.random() < 0.8
        if self.large:
            m, p, a, _ = _thp_process(self.seed)
        else:
            m = System(ram="64M", thp="never", seed=self.seed)
            p = m.spawn()
            a = p.mmap(64 * KiB)
            p.touch(a)
        span = 512 if self.large else 6
        #: pin_user_pages() calls: (first page, number of pages); some pages twice
        self.calls = [(first, n) for first, n in
                      ((rng.randrange(span), rng.randint(1, 4)) for _ in range(rng.randint(1, 4)))
                      if first + n <= span] or [(0, 1)]
        for first, n in self.calls:
            p.pin(a + first * PAGE_SIZE, n * PAGE_SIZE)
        self.unpinned = self.calls[:rng.randint(0, len(self.calls) - 1)]
        for first, n in self.unpinned:
            p.unpin(a + first * PAGE_SIZE, n * PAGE_SIZE)
        first, n = rng.choice(self.calls)
        self.look = first + rng.randrange(n)
        looked = p.folio_at(a + self.look * PAGE_SIZE)
        assert looked is not None
        f = looked
        counts = (f.refcount, f.pincount)
        self.steps.append(f"After the pins and unpins, the folio at page {self.look}: "
                          f"{_counts(f)}.")
        try:
            split_mapped_folio(m.machine, f.pfn, 0)
            ok, why = True, "the split succeeded"
        except MmError as e:
            ok, why = False, f"the split failed: {e}"
        self.steps.append(f"Trying split_mapped_folio(pfn {f.pfn:#x}, 0): {why}.")
        self.answer = (*counts, ok)

    def question(self) -> str:
        what = ("a 2 MiB-aligned 2 MiB mapping (one PMD-mapped THP, policy always)"
                if self.large else "a 64 KiB mapping (policy never: 4 KiB folios)")
        def pages(calls: list[tuple[int, int]]) -> str:
            return ", ".join(f"page {f}" if n == 1 else f"pages {f}..{f + n - 1}"
                             for f, n in calls)

        un = (f", then unpin_user_pages() drops the pins of the first {len(self.unpinned)} "
              f"call(s)" if self.unpinned else "")
        return (f"A process writes {what}, then calls pin_user_pages(FOLL_WRITE) once for each "
                f"of: {pages(self.calls)}{un}. For the folio holding page "
                f"{self.look}: what are its refcount and pincount, and would a split to order 0 "
                f"succeed? {self.answer_format()}.")

    def hint(self) -> str:
        return ("FOLL_PIN on a large folio adds 1 to the refcount and 1 to _pincount; on a "
                "small folio it adds 1024 to the refcount. A split needs refcount == mapcount "
                "+ the caller's reference, and a small folio has nothing to split.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (ForkCounts, CowCounts, PinCounts)}
