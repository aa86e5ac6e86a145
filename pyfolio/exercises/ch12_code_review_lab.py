"""Chapter 12 exercises: review the two designs of the split fallback.

Every answer comes from the simulator or from pyfolio's own source: which function the
fallback goes through (a traced run of :func:`pyfolio.reading.review.fallback_scenario`), the
state a migration leaves (the same run), and which conditions of the split path exist only
because of the ``unmapped`` flag (:func:`pyfolio.reading.review.reader_load`, read with ``ast``).
"""

from __future__ import annotations

from pyfolio.exercises.base import Exercise
from pyfolio.reading.review import (
    DESIGNS,
    ENTRY,
    Branch,
    fallback_scenario,
    reader_load,
    split_events,
)

__all__ = ["WhichPath", "PredictState", "SpotSpecialCase", "KINDS"]


class WhichPath(Exercise):
    """Which functions does the fallback of a design pass through?"""

    chapter = 12
    kind = "path"
    title = "Which path does the fallback take?"
    fields = ("function migrate_vma_split_unmapped_folio() calls to split",
              "is __folio_split() on the stack at the freeze (yes/no)")

    def setup(self) -> None:
        self.design = self.rng.choice(DESIGNS)
        run = fallback_scenario(self.design, self.seed, thps=1, small_pages=0)
        freeze = next(e for e in split_events(run) if e.name == "folio_ref_freeze")
        stack = freeze.stack[freeze.stack.index("migrate_vma_split_unmapped_folio"):]
        self.answer = (stack[1], "__folio_split" in stack)
        self.steps.append(f"Traced run, design {self.design}: at folio_ref_freeze the stack "
                          f"was {' -> '.join(f + '()' for f in stack)}.")

    def question(self) -> str:
        return (f"A THP is migrated to a device without 2 MiB pages on a System with "
                f"split_design={self.design!r}. During the fallback, which function does "
                f"migrate_vma_split_unmapped_folio() call to split the folio, and is "
                f"__folio_split() on the stack when the refcount is frozen? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("The v7 patch reuses the mapped-folio entry point with unmapped=true; the "
                "merged design has its own entry point that shares only the freeze/split/"
                "unfreeze helper.")


class PredictState(Exercise):
    """What does a migration to the device leave, with or without large device pages?"""

    chapter = 12
    kind = "state"
    title = "Predict the state after the migration"
    fields = ("pages on the device", "PMD splits (thp_split_pmd)",
              "level of the entry at the start of the range (pmd or pte)")

    def setup(self) -> None:
        rng = self.rng
        self.design = rng.choice(DESIGNS)
        self.thps, self.small = rng.randint(1, 2), rng.choice([0, 5, 40])
        self.large = rng.random() < 0.35
        run = fallback_scenario(self.design, self.seed, thps=self.thps,
                                small_pages=self.small, large_pages=self.large)
        moved = sum(r.migrated for r in run.results)
        entry = run.proc.lookup(run.addr)
        self.answer = (moved, run.system.vmstat().get("thp_split_pmd", 0), entry.level)
        self.steps.append(f"{moved} pages reached the device; "
                          f"{len([e for e in split_events(run) if e.name == 'split_huge_pmd'])}"
                          f" fallback split(s) ran; the first entry is a {entry.level.upper()} "
                          f"{entry.kind} entry.")

    def question(self) -> str:
        dev = "with" if self.large else "without"
        return (f"A process writes {self.thps} THP(s) and {self.small} small page(s) after "
                f"them, then migrates the whole range to a device {dev} 2 MiB pages "
                f"(split_design={self.design!r}). How many pages are on the device, how many "
                f"PMDs were split, and is the entry at the start of the range a PMD or a PTE? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("Every page moves either way. Without large device pages each THP's PMD "
                "migration entry is split into PTEs before the folio is split; with them the "
                "THP moves whole under one device-private PMD. The design does not matter.")


class SpotSpecialCase(Exercise):
    """Is this condition in the split path there only because of the flag?"""

    chapter = 12
    kind = "special"
    title = "Spot the special case"
    fields = ("does the condition test unmapped (yes/no)",
              "branches on unmapped in that function")

    def setup(self) -> None:
        loads = [reader_load(ENTRY[d], "unmapped") for d in DESIGNS]
        pool: list[Branch] = [b for load in loads for b in load.branches]
        self.branch = self.rng.choice(pool)
        on_flag = {b for load in loads for b in load.on_flag}
        here = [b for b in on_flag if b.function == self.branch.function]
        self.answer = (self.branch in on_flag, len(here))
        self.steps.append(f"{self.branch.function}(): {self.branch.kind} "
                          f"{self.branch.test}; that function has "
                          f"{len(here)} condition(s) on unmapped.")

    def question(self) -> str:
        return (f"In pyfolio's model of the split path, {self.branch.function}() has the "
                f"condition `{self.branch.kind} {self.branch.test}`. Does it test the "
                f"unmapped flag, and how many conditions of {self.branch.function}() do? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("Look for the name unmapped in the condition; then count the conditions of "
                "the same function that mention it (read it with "
                "pyfolio.reading.review.branches(find_function(name), 'unmapped')).")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (WhichPath, PredictState,
                                                         SpotSpecialCase)}
