"""Chapter 5 exercises: anonymous faults, THP faults and their conditions, the zero pages,
and what smaps reports.

Every answer is read off the simulator after the fault: ``p.lookup()`` for the entry,
``m.vmstat()`` for the counters, ``p.smaps()`` for Rss and AnonHugePages.
"""

from __future__ import annotations

from pyfolio.exercises.base import Exercise
from pyfolio.sim.units import PAGE_SIZE, PMD_SIZE, KiB, MiB
from pyfolio.system import Process, System

__all__ = ["ThpOrNot", "ZeroPage", "SmapsSizes", "KINDS"]


def _sum(p: Process, key: str) -> int:
    return sum(d[key] for d in p.smaps())


class ThpOrNot(Exercise):
    """Does this write fault get a THP?"""

    chapter = 5
    kind = "thp"
    title = "Does this fault get a THP?"
    fields = ("level of the entry after the write (pmd/pte)",
              "first virtual address that entry maps", "thp_fault_alloc", "thp_fault_fallback")

    def setup(self) -> None:
        rng = self.rng
        self.policy = rng.choice(["always", "madvise", "never"])
        self.advised = rng.choice([True, False])
        self.length = rng.choice([2 * MiB, 4 * MiB, 3 * MiB, 2 * MiB + 512 * KiB])
        self.fragmented = rng.random() < 0.3
        m = System(ram="64M", thp=self.policy, seed=self.seed)
        if self.fragmented:
            m.fragment()
        p = m.spawn()
        p.mmap(rng.randint(1, 64) * PMD_SIZE)  # an earlier mapping: the address varies
        self.start = p.mmap(self.length)
        if self.advised:
            p.madvise(self.start, self.length, "hugepage")
        self.addr = self.start + rng.randrange(self.length // PAGE_SIZE) * PAGE_SIZE
        p.write(self.addr, 1)
        v = m.vmstat()
        e = p.lookup(self.addr)
        hstart = self.addr & ~(PMD_SIZE - 1)
        first = hstart if e.level == "pmd" else self.addr & ~(PAGE_SIZE - 1)
        self.answer = (e.level, first, v["thp_fault_alloc"], v["thp_fault_fallback"])
        inside = hstart >= self.start and hstart + PMD_SIZE <= self.start + self.length
        self.steps.append(
            f"policy {self.policy}, MADV_HUGEPAGE {'yes' if self.advised else 'no'}; the 2 MiB "
            f"range [{hstart:#x}, {hstart + PMD_SIZE:#x}) is "
            f"{'inside' if inside else 'not inside'} the VMA; "
            f"{'the machine is fragmented' if self.fragmented else 'order-9 blocks are free'}. "
            f"The fault mapped a {e.level.upper()} ({e.kind}) covering {first:#x} on; "
            f"vmstat thp_fault_alloc "
            f"{v['thp_fault_alloc']}, thp_fault_fallback {v['thp_fault_fallback']}.")

    def question(self) -> str:
        frag = ("m.fragment() has left no free order-9 block"
                if self.fragmented else "plenty of free 2 MiB blocks")
        adv = "calls madvise(MADV_HUGEPAGE) on all of it" if self.advised else \
            "gives no madvise() advice"
        return (f"THP policy '{self.policy}', {frag}. A process maps {self.length // KiB} KiB "
                f"(anonymous, read-write) at {self.start:#x}, {adv}, and writes to "
                f"{self.addr:#x}. Which entry maps the written page, from which virtual address "
                f"on does that entry map, and what do the vmstat counters thp_fault_alloc and "
                f"thp_fault_fallback read? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("A THP needs: the policy (always, or madvise with MADV_HUGEPAGE), the whole "
                "2 MiB-aligned range around the address inside the VMA, and a free order-9 "
                "block; only the last failing counts as a fallback. A PMD maps the aligned "
                "2 MiB around the address, a PTE its 4 KiB page.")


class ZeroPage(Exercise):
    """A read fault and then a write: which zero page, and what replaces it?"""

    chapter = 5
    kind = "zero"
    title = "Read first, then write"
    fields = ("level after the read", "kind after the read", "level after the write",
              "kind after the write", "first virtual address the entry after the write maps")

    def setup(self) -> None:
        rng = self.rng
        self.policy = rng.choice(["always", "never", "always"])
        self.fragmented = rng.random() < 0.25
        m = System(ram="64M", thp=self.policy, seed=self.seed)
        if self.fragmented:
            m.fragment()
        p = m.spawn()
        p.mmap(rng.randint(1, 64) * PMD_SIZE)  # an earlier mapping: the address varies
        a = self.start = p.mmap(4 * MiB)
        self.read_at = a + rng.randrange(1024) * PAGE_SIZE
        self.write_at = self.read_at + rng.choice([0, 4 * KiB, 64 * KiB]) if rng.random() < 0.7 \
            else a + rng.randrange(1024) * PAGE_SIZE
        p.read(self.read_at)
        r = p.lookup(self.read_at)
        p.write(self.write_at, 1)
        w = p.lookup(self.write_at)
        first = self.write_at & ~((PMD_SIZE if w.level == "pmd" else PAGE_SIZE) - 1)
        self.answer = (r.level, r.kind, w.level, w.kind, first)
        v = m.vmstat()
        self.steps.append(
            f"After the read: {r}. After the write: {w}. vmstat: thp_zero_page_alloc "
            f"{v['thp_zero_page_alloc']}, thp_fault_alloc {v['thp_fault_alloc']}, "
            f"thp_split_pmd {v['thp_split_pmd']}.")

    def question(self) -> str:
        frag = " m.fragment() ran first (no free order-9 block)." if self.fragmented else ""
        return (f"THP policy '{self.policy}'.{frag} A process maps 4 MiB at {self.start:#x} (2 MiB "
                f"aligned) and "
                f"reads {self.read_at:#x}, then writes {self.write_at:#x}. Which entry maps the "
                f"read address after the read, and the written address after the write? Give "
                f"each as a level (pmd/pte) and a kind (zero = a zero page, huge = a THP, "
                f"page = a 4 KiB page), and say from which virtual address on the entry after "
                f"the write maps. {self.answer_format()}.")

    def hint(self) -> str:
        return ("A read fault maps a zero page: the huge zero page with a PMD when a THP would "
                "be allowed, else the 4 KiB zero page; a write replaces it with real memory.")


class SmapsSizes(Exercise):
    """Rss and AnonHugePages in smaps after a few operations."""

    chapter = 5
    kind = "smaps"
    title = "What does smaps say?"
    fields = ("Rss (kB)", "AnonHugePages (kB)")

    def setup(self) -> None:
        rng = self.rng
        m = System(ram="64M", thp="always", seed=self.seed)
        p = m.spawn()
        self.huge, self.tail = rng.randint(1, 3), rng.randint(1, 256)
        total = self.huge * 512 + self.tail
        a = p.mmap((self.huge + 1) * PMD_SIZE)
        p.madvise(a + self.huge * PMD_SIZE, PMD_SIZE, "nohugepage")
        touched = rng.randint(1, self.huge * 512)
        p.touch(a, touched * PAGE_SIZE)
        p.touch(a + self.huge * PMD_SIZE, self.tail * PAGE_SIZE)
        self.ops = [f"writes its first {touched} page(s) ({touched * 4} KiB) and the first "
                    f"{self.tail} page(s) of its last 2 MiB"]
        after = rng.choice(["none", "mprotect", "dontneed", "munmap"])
        n = rng.randint(1, 64)
        at = a + rng.randrange(total - n + 1) * PAGE_SIZE
        if after == "mprotect":
            p.mprotect(at, n * PAGE_SIZE, "r")
            self.ops.append(f"mprotect({at:#x}, {n * 4} KiB, PROT_READ)")
        elif after == "dontneed":
            p.madvise(at, n * PAGE_SIZE, "dontneed")
            self.ops.append(f"madvise({at:#x}, {n * 4} KiB, MADV_DONTNEED)")
        elif after == "munmap":
            p.munmap(at, n * PAGE_SIZE)
            self.ops.append(f"munmap({at:#x}, {n * 4} KiB)")
        self.start = a
        self.answer = (_sum(p, "Rss"), _sum(p, "AnonHugePages"))
        self.steps.append(f"smaps: Rss {self.answer[0]} kB, AnonHugePages {self.answer[1]} kB "
                          f"(summed over the process's VMAs: {len(p.smaps())}).")

    def question(self) -> str:
        return (f"THP policy 'always'. A process maps {self.huge * 2 + 2} MiB at "
                f"{self.start:#x} (2 MiB aligned), calls madvise(MADV_NOHUGEPAGE) on its last "
                f"2 MiB, "
                f"then {', then '.join(self.ops)}. What do Rss and AnonHugePages add up to in "
                f"its /proc/PID/smaps? {self.answer_format()}.")

    def hint(self) -> str:
        return ("The first write in an eligible 2 MiB range faults in all 2 MiB; AnonHugePages "
                "counts only memory still mapped by a PMD; an operation on part of a PMD "
                "splits it, and a zapped page leaves Rss.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (ThpOrNot, ZeroPage, SmapsSizes)}
