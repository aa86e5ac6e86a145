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
    """Which functions does the fallback of a design pass through, how often, for what?"""

    chapter = 12
    kind = "path"
    title = "Which path does the fallback take?"
    fields = ("function migrate_vma_split_unmapped_folio() calls to split",
              "is __folio_split() on the stack at the freeze (yes/no)", "pages on the device")

    def setup(self) -> None:
        rng = self.rng
        self.design = rng.choice(DESIGNS)
        self.small = rng.randint(0, 64)
        run = fallback_scenario(self.design, self.seed, thps=1, small_pages=self.small)
        freeze = next(e for e in split_events(run) if e.name == "folio_ref_freeze")
        stack = freeze.stack[freeze.stack.index("migrate_vma_split_unmapped_folio"):]
        moved = sum(r.migrated for r in run.results)
        self.answer = (stack[1], "__folio_split" in stack, moved)
        self.steps.append(f"Traced run, design {self.design}: at folio_ref_freeze the stack "
                          f"was {' -> '.join(f + '()' for f in stack)}; {moved} pages reached "
                          f"the device.")

    def question(self) -> str:
        return (f"A process writes one THP and {self.small} small page(s) after it, then "
                f"migrates the whole range to a device without 2 MiB pages on a System with "
                f"split_design={self.design!r}. During the fallback, which function does "
                f"migrate_vma_split_unmapped_folio() call to split the folio, is "
                f"__folio_split() on the stack when the refcount is frozen, and how many pages "
                f"reach the device? {self.answer_format()}.")

    def hint(self) -> str:
        return ("The v7 patch reuses the mapped-folio entry point with unmapped=true; the "
                "merged design has its own entry point that shares only the freeze/split/"
                "unfreeze helper. Every page moves either way.")


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
        self.thps, self.small = rng.randint(1, 2), rng.randint(0, 64)
        self.large = rng.random() < 0.4
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
    """Which of three conditions in the split path are there only because of the flag?"""

    chapter = 12
    kind = "special"
    title = "Spot the special case"
    fields = ("condition 1 tests unmapped (yes/no)", "condition 2 tests unmapped (yes/no)",
              "condition 3 tests unmapped (yes/no)",
              "conditions on unmapped in the function of condition 1")

    def setup(self) -> None:
        loads = [reader_load(ENTRY[d], "unmapped") for d in DESIGNS]
        def key(b: Branch) -> tuple[str, str, str]:
            return b.function, b.kind, b.test

        on_flag = {b for load in loads for b in load.on_flag}
        pool = sorted({b for load in loads for b in load.branches}, key=key)
        on = [b for b in pool if b in on_flag]
        k = self.rng.randint(0, min(3, len(on)))  # how many of the three test the flag
        self.branches = (self.rng.sample(on, k)
                         + self.rng.sample([b for b in pool if b not in on_flag], 3 - k))
        self.rng.shuffle(self.branches)
        first = self.branches[0].function
        here = [b for b in on_flag if b.function == first]
        self.answer = (*(b in on_flag for b in self.branches), len(here))
        for n, b in enumerate(self.branches, 1):
            self.steps.append(f"{n}. {b.function}(): {b.kind} {b.test}: "
                              f"{'tests' if b in on_flag else 'does not test'} unmapped.")
        self.steps.append(f"{first}() has {len(here)} condition(s) on unmapped.")

    def question(self) -> str:
        conds = "\n".join(f"  {n}. in {b.function}(): `{b.kind} {b.test}`"
                          for n, b in enumerate(self.branches, 1))
        return (f"In pyfolio's model of the split path (both designs), these conditions "
                f"appear:\n{conds}\nWhich of them test the unmapped flag, and how many "
                f"conditions of {self.branches[0].function}() do? {self.answer_format()}.")

    def hint(self) -> str:
        return ("Look for the name unmapped in the condition; then count the conditions of "
                "the same function that mention it (read it with "
                "pyfolio.reading.review.branches(find_function(name), 'unmapped')).")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (WhichPath, PredictState,
                                                         SpotSpecialCase)}
