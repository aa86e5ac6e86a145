"""Chapter 10 exercises: the flags of a src entry, what a migration costs, and what is left in
the page table after a migration to the device.

Every answer comes from running the migration on the simulator: ``migrate_vma_setup()`` and
the rest of the dmirror driver's sequence, or ``Device.migrate_to_device()``, and reading the
src array, the cost counters or the page table afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

from pyfolio.exercises.base import Exercise
from pyfolio.lib.dmirror import dmirror_migrate_alloc_and_copy, dmirror_migrate_finalize_and_map
from pyfolio.mm.migrate_device import (
    MIGRATE_PFN,
    MIGRATE_VMA_SELECT,
    MigrateVma,
    migrate_vma_finalize,
    migrate_vma_pages,
    migrate_vma_setup,
)
from pyfolio.sim.units import PAGE_SIZE, KiB, MiB
from pyfolio.system import Process, System
from pyfolio.views.migration_cost import BACKINGS, migration_cost, mpfn_str

__all__ = ["SrcEntry", "MigrationCostExercise", "AfterMigration", "KINDS", "ENTRY_SCENARIOS"]

def _thp(p: Process, a: int) -> None:
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)


def _small(p: Process, a: int) -> None:
    p.madvise(a, 2 * MiB, "nohugepage")
    p.touch(a, 2 * MiB)


def _small_readonly(p: Process, a: int) -> None:
    _small(p, a)
    p.mprotect(a, 2 * MiB, "r")


def _small_pinned(p: Process, a: int) -> None:
    _small(p, a)
    p.pin(a, PAGE_SIZE)


def _zero(p: Process, a: int) -> None:
    p.madvise(a, 2 * MiB, "nohugepage")
    p.read(a)


def _none(p: Process, a: int) -> None:
    p.madvise(a, 2 * MiB, "nohugepage")


def _thp_readonly(p: Process, a: int) -> None:
    _thp(p, a)
    p.mprotect(a, 2 * MiB, "r")


def _huge_zero(p: Process, a: int) -> None:
    p.madvise(a, 2 * MiB, "hugepage")
    p.read(a)


#: scenario -> (what the reader is told about the 2 MiB at ``a`` and its first page, how to
#: set it up, pages migrated: a number, or None for a seeded 1..64, or 0 for a seeded 1..511)
ENTRY_SCENARIOS: dict[str, tuple[str, Callable[[Process, int], None], int | None]] = {
    "4k-written": ("written 4 KiB pages (MADV_NOHUGEPAGE)", _small, None),
    "4k-readonly": ("written 4 KiB pages (MADV_NOHUGEPAGE), then all 2 MiB made read-only "
                    "with mprotect()", _small_readonly, None),
    "zero": ("4 KiB pages of which only the first was read (the shared zero page; "
             "MADV_NOHUGEPAGE)", _zero, None),
    "none": ("4 KiB pages never touched (MADV_NOHUGEPAGE)", _none, None),
    "4k-pinned": ("written 4 KiB pages (MADV_NOHUGEPAGE), the first pinned "
                  "(pin_user_pages())", _small_pinned, None),
    "thp": ("a written, PMD-mapped THP", _thp, 512),
    "thp-readonly": ("a written THP made read-only by mprotect() over the whole 2 MiB",
                     _thp_readonly, 512),
    "thp-part": ("a written, PMD-mapped THP", _thp, 0),
    "huge-zero": ("a MADV_HUGEPAGE range that was only read at its first byte (the huge zero "
                  "page)", _huge_zero, 512),
}


def _fresh(seed: int) -> tuple[System, Process, int]:
    m = System(ram="64M", thp="madvise", seed=seed)
    m.add_device("dmirror0", memory="8M")
    p = m.spawn()
    return m, p, p.mmap(2 * MiB)


class SrcEntry(Exercise):
    """The flags of ``src[0]`` after migrate_vma_setup()."""

    chapter = 10
    kind = "entry"
    title = "Which flags does src[0] carry?"
    fields = ("VALID", "MIGRATE", "WRITE", "COMPOUND", "cpages")

    def setup(self) -> None:
        self.scenario = self.rng.choice(sorted(ENTRY_SCENARIOS))
        text, prepare, npages = ENTRY_SCENARIOS[self.scenario]
        if npages is None:
            npages = self.rng.randint(1, 64)
        elif npages == 0:
            npages = self.rng.randint(1, 511)
        m, p, a = _fresh(self.seed)
        prepare(p, a)
        dev = m.device
        args = MigrateVma(p.vma_at(a), a, a + npages * PAGE_SIZE, pgmap_owner=dev.driver,
                          flags=MIGRATE_VMA_SELECT.SYSTEM | MIGRATE_VMA_SELECT.COMPOUND)
        migrate_vma_setup(args)
        src0, cpages = args.src[0], args.cpages
        dmirror_migrate_alloc_and_copy(args, dev.driver)
        migrate_vma_pages(args)
        dmirror_migrate_finalize_and_map(args, dev.driver)
        migrate_vma_finalize(args)
        assert m.check() == []
        self.text, self.npages = text, npages
        self.answer = (*(bool(src0 & f) for f in (MIGRATE_PFN.VALID, MIGRATE_PFN.MIGRATE,
                                                   MIGRATE_PFN.WRITE, MIGRATE_PFN.COMPOUND)),
                       cpages)
        self.steps.append(f"migrate_vma_setup() collected src[0] = {mpfn_str(src0)} "
                          f"({src0:#x}) and left cpages = {cpages} (the entries still set to "
                          f"migrate after the unmap step); afterwards the entry at the start is "
                          f"{p.lookup(a)}.")

    def question(self) -> str:
        return (f"A dmirror driver migrates the first {self.npages} page(s) "
                f"({self.npages * 4} KiB) of a 2 MiB-aligned range to its device, with "
                f"MIGRATE_VMA_SELECT_SYSTEM | MIGRATE_VMA_SELECT_COMPOUND. The range holds "
                f"{self.text}. Which flags does src[0] carry when migrate_vma_setup() returns, "
                f"and what is args.cpages then? {self.answer_format()} (yes or no for each "
                f"flag, then a number).")

    def hint(self) -> str:
        return ("VALID: there is a page (not for holes: none or the zero page); MIGRATE: it "
                "will migrate (cleared for a pinned page, whose entry becomes 0); WRITE: the "
                "mapping was writable; COMPOUND: a whole, aligned THP collected as one unit "
                "(a range covering part of a THP splits it first). cpages counts the entries "
                "still marked MIGRATE after the unmap step, holes included; a COMPOUND entry "
                "counts once.")


class MigrationCostExercise(Exercise):
    """Entries written, TLB flushes and pages copied for one direction of a migration."""

    chapter = 10
    kind = "cost"
    title = "What does this migration cost?"
    fields = ("page-table entries written", "TLB flushes", "pages copied")

    def setup(self) -> None:
        rng = self.rng
        self.backing = rng.choice(sorted(BACKINGS))
        self.large = rng.random() < 0.6
        # without large device pages each THP takes the split fallback (slow to simulate)
        self.kib = (2048 * rng.randint(1, 4 if self.large else 2) if self.backing == "thp"
                    else 4 * rng.randint(1, 256))
        self.back = rng.random() < 0.5
        there, back = migration_cost(self.kib * KiB, self.backing, large_pages=self.large,
                                     seed=self.seed)
        c = back if self.back else there
        self.answer = (c.entries_written, c.tlb_flushes, c.pages_copied)
        self.steps.append(f"Measured {c.direction}: {c.pte_writes} PTE and {c.pmd_writes} PMD "
                          f"entries written, {c.tlb_flushes} TLB flushes, {c.pages_copied} "
                          f"pages copied ({c.migrated} pages migrated).")

    def question(self) -> str:
        how = "4 KiB pages (MADV_NOHUGEPAGE)" if self.backing == "4k" else \
            "PMD-mapped THPs (MADV_HUGEPAGE)"
        dev = "with 2 MiB pages" if self.large else "without 2 MiB pages (large_pages=False)"
        what = (f"migrated to a dmirror device {dev} and then back to system memory. What "
                f"does the way BACK cost" if self.back else
                f"migrated to a dmirror device {dev}. What does that cost")
        return (f"A process writes every page of a {self.kib} KiB region mapped with {how}; "
                f"the region is {what}: how many page-table entries (PTEs and PMDs) are "
                f"written, how many TLB flushes, how many pages copied? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("Per 2 MiB window: one entry written to unmap and one to map again per "
                "page-table entry in use; a TLB flush for each present anon-exclusive PTE "
                "cleared, one per walked PMD range, one per present PMD invalidated; none for "
                "non-present device-private entries; the data is copied either way.")


class AfterMigration(Exercise):
    """The entry at a page, and how many pages moved, after migrate_to_device()."""

    chapter = 10
    kind = "after"
    title = "What is left in the page table?"
    fields = ("level (pmd or pte)", "kind of the entry", "pages migrated")

    def setup(self) -> None:
        rng = self.rng
        self.case = rng.choice(["thp", "thp-part", "4k-pin"])
        self.thps = rng.randint(1, 3) if self.case == "thp" else 1
        self.n = rng.randrange(1, 512) if self.case == "thp-part" else 512 * self.thps
        self.pinned = (sorted(rng.sample(range(512), rng.randint(1, 8)))
                       if self.case == "4k-pin" else [])
        self.page = rng.choice([0, self.n - 1, min(self.n, 511), rng.randrange(self.n),
                                *self.pinned[:1]])
        m = System(ram="64M", thp="madvise", seed=self.seed)
        m.add_device("dmirror0", memory="8M")
        p = m.spawn()
        a = p.mmap(self.thps * 2 * MiB)
        if self.case == "4k-pin":
            _small(p, a)
        else:
            p.madvise(a, self.thps * 2 * MiB, "hugepage")
            p.touch(a, self.thps * 2 * MiB)
        for page in self.pinned:
            p.pin(a + page * PAGE_SIZE, PAGE_SIZE)
        res = m.device.migrate_to_device(p, a, self.n * PAGE_SIZE)
        e = p.lookup(a + self.page * PAGE_SIZE)
        self.answer = (e.level, e.kind, sum(r.migrated for r in res))
        self.steps.append(f"migrate_to_device() moved {self.answer[2]} page(s); page "
                          f"{self.page} is now mapped by {e}.")

    def question(self) -> str:
        if self.case == "4k-pin":
            what = (f"a written 2 MiB region of 4 KiB pages (MADV_NOHUGEPAGE) whose page(s) "
                    f"{', '.join(map(str, self.pinned))} are pinned with pin_user_pages(); "
                    f"the whole 2 MiB")
        elif self.case == "thp":
            what = (f"{self.thps} written, PMD-mapped THP(s) ({self.thps * 512} pages); all of "
                    f"them")
        else:
            what = f"a written, PMD-mapped THP; only its first {self.n} page(s)"
        return (f"A dmirror device with 2 MiB pages is given {what} to migrate "
                f"(HMM_DMIRROR_MIGRATE_TO_DEV). Afterwards, what maps page {self.page} of the "
                f"region (level and kind, as p.lookup() says: page, huge, device_private...), "
                f"and how many pages migrated? {self.answer_format()}.")

    def hint(self) -> str:
        return ("A whole, aligned THP moves as one unit under a device-private PMD; a range "
                "that covers only part of a THP makes collect split it, so the rest stays in "
                "RAM under PTEs; a pinned page is restored where it was.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (SrcEntry, MigrationCostExercise,
                                                         AfterMigration)}
