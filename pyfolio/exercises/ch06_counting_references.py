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
    """The counts of a PMD-mapped THP after some forks and exits."""

    chapter = 6
    kind = "fork"
    title = "Counts after fork"
    fields = ("refcount", "mapcount", "entire mapcount")

    def setup(self) -> None:
        m, p, a, f = _thp_process(self.seed)
        self.steps.append(f"After the THP fault: {_counts(f)}.")
        self.n = self.rng.randint(1, 3)
        children = []
        for _ in range(self.n):
            children.append(p.fork())
            self.steps.append(f"fork(): {_counts(f)}.")
        self.exits = self.rng.randint(0, self.n - 1)
        for c in children[:self.exits]:
            c.exit()
            self.steps.append(f"a child exits: {_counts(f)}.")
        self.answer = (f.refcount, f.mapcount, f.entire_mapcount)

    def question(self) -> str:
        ex = f", then {self.exits} of the children exit" if self.exits else ""
        return (f"A process writes a 2 MiB-aligned 2 MiB mapping (THP policy always: one THP "
                f"mapped by one PMD). It forks {self.n} time(s){ex}. What are the folio's "
                f"refcount, mapcount and entire mapcount now? {self.answer_format()}.")

    def hint(self) -> str:
        return ("fork (copy_huge_pmd) shares the folio: each PMD mapping holds one reference "
                "and counts once in the mapcount and in the entire mapcount.")


class CowCounts(Exercise):
    """The counts after a write to a THP that fork shared (copy-on-write)."""

    chapter = 6
    kind = "cow"
    title = "Counts after copy-on-write"
    fields = ("refcount", "mapcount", "entire mapcount", "mapcount of the written page")

    def setup(self) -> None:
        m, p, a, f = _thp_process(self.seed)
        c = p.fork()
        self.steps.append(f"After fork: {_counts(f)}.")
        self.writer = self.rng.choice(["child", "parent"])
        who = c if self.writer == "child" else p
        self.page = self.rng.randrange(512)
        who.write(a + self.page * PAGE_SIZE, 7)
        self.steps.append(
            f"The {self.writer} writes page {self.page}: its PMD is split into 512 PTEs "
            f"(thp_split_pmd {m.vmstat()['thp_split_pmd']}), page {self.page} is copied to a "
            f"new 4 KiB folio, the other 511 PTEs still map the THP: {_counts(f)}.")
        self.answer = (f.refcount, f.mapcount, f.entire_mapcount,
                       f.page_mapcounts()[self.page])

    def question(self) -> str:
        return (f"A process writes a 2 MiB-aligned 2 MiB mapping (one PMD-mapped THP) and "
                f"forks. Then the {self.writer} writes to page {self.page} of it (offset "
                f"{self.page * 4} KiB). What are the original folio's refcount, mapcount and "
                f"entire mapcount, and the PTE mapcount of page {self.page} of it? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("A write to a shared PMD-mapped THP splits the writer's PMD into 512 PTEs "
                "and copies only the written page; each PTE holds a reference.")


class PinCounts(Exercise):
    """Pins on a small or large folio: the counts, and can the folio be split?"""

    chapter = 6
    kind = "pin"
    title = "Pins"
    fields = ("refcount", "pincount", "split to order 0 succeeds")

    def setup(self) -> None:
        self.large = self.rng.random() < 0.7
        if self.large:
            m, p, a, _ = _thp_process(self.seed)
        else:
            m = System(ram="64M", thp="never", seed=self.seed)
            p = m.spawn()
            a = p.mmap(64 * KiB)
            p.touch(a)
        self.pages = sorted(self.rng.sample(range(8), self.rng.randint(1, 3)))
        for i in self.pages:
            p.pin(a + i * PAGE_SIZE, 4 * KiB)
        self.unpinned = self.pages[:self.rng.randint(0, len(self.pages))]
        for i in self.unpinned:
            p.unpin(a + i * PAGE_SIZE, 4 * KiB)
        self.look = self.pages[-1]
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
        un = (f", then unpins page(s) {', '.join(map(str, self.unpinned))}"
              if self.unpinned else "")
        return (f"A process writes {what}, pins page(s) {', '.join(map(str, self.pages))} with "
                f"pin_user_pages(FOLL_WRITE) one call per page{un}. For the folio holding page "
                f"{self.look}: what are its refcount and pincount, and would a split to order 0 "
                f"succeed? {self.answer_format()}.")

    def hint(self) -> str:
        return ("FOLL_PIN on a large folio adds 1 to the refcount and 1 to _pincount; on a "
                "small folio it adds 1024 to the refcount. A split needs refcount == mapcount "
                "+ the caller's reference, and a small folio has nothing to split.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (ForkCounts, CowCounts, PinCounts)}
