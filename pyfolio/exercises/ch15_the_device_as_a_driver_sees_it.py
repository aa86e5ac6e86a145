"""Chapter 15 exercises: what a device's snapshot of the CPU page tables says, what the
mirror counts when it reads and writes, and what a CPU touch does to pages a device holds for
an atomic.

Every answer is read off the simulator after the operations: the bytes from
``Device.snapshot()``, the counts from ``Device.faults`` and the device's own page table
(:func:`pyfolio.widgets.driver_explorer.mirror_counts` reads it the same way), the entries
with ``p.lookup()`` and the counters with ``m.vmstat()``.
"""

from __future__ import annotations

from pyfolio.device import Device
from pyfolio.exercises.base import Exercise
from pyfolio.lib.dmirror import DPT_XA_TAG_WRITE
from pyfolio.sim.units import PAGE_SIZE
from pyfolio.system import Process, System

__all__ = ["driver_setup", "SnapshotBytes", "MirrorCounts", "AtomicTouches", "KINDS",
           "PAGE_STATES"]

#: what a page of the "snapshot" exercise went through, in the question's words
PAGE_STATES = {
    "gap": "was unmapped (munmap)",
    "protnone": "was written, then mprotect(PROT_NONE)",
    "empty": "was never touched",
    "zero": "was made read-only, then read by the CPU",
    "readonly": "was written, then made read-only",
    "written": "was written",
    "local": "was written, then migrated to device 0",
    "remote": "was written, then migrated to device 1",
    "exclusive": "was written, then taken by device 1 for an atomic (make_device_exclusive)",
}


def driver_setup(npages: int, devices: int = 1, seed: int = 0,
                 thp: bool = False) -> tuple[System, list[Device], Process, int]:
    """A machine with ``devices`` dmirror devices (dmirror0, dmirror1, ..., 8 MiB each) and
    a process with ``npages`` pages of anonymous memory mapped read-write: (system,
    devices, process, address). With ``thp`` the mapping is one written, PMD-mapped THP
    (``npages`` is then 512)."""
    m = System(ram="64M", thp="madvise", seed=seed)
    devs = [m.add_device(f"dmirror{i}", memory="8M") for i in range(devices)]
    if thp:
        p, a = m.spawn_with_thp()
    else:
        p = m.spawn()
        a = p.mmap(npages * PAGE_SIZE)
    return m, devs, p, a


class SnapshotBytes(Exercise):
    """HMM_DMIRROR_SNAPSHOT of pages with different histories."""

    chapter = 15
    kind = "snapshot"
    title = "What does the snapshot say?"

    def setup(self) -> None:
        rng = self.rng
        n = rng.randint(4, 6)
        self.states = [rng.choice(list(PAGE_STATES)) for _ in range(n)]
        self.fields = tuple(f"page {i}" for i in range(n))
        m, (d0, d1), p, a = driver_setup(n, devices=2, seed=self.seed)
        for i, state in enumerate(self.states):
            at = a + i * PAGE_SIZE
            if state == "gap":
                p.munmap(at, PAGE_SIZE)
                continue
            if state == "zero":
                p.mprotect(at, PAGE_SIZE, "r")
                p.read(at)
                continue
            if state == "empty":
                continue
            p.write(at, 100 + i)
            if state == "protnone":
                p.mprotect(at, PAGE_SIZE, "none")
            elif state == "readonly":
                p.mprotect(at, PAGE_SIZE, "r")
            elif state in ("local", "remote"):
                (d0 if state == "local" else d1).migrate_to_device(p, at, PAGE_SIZE)
            elif state == "exclusive":
                d1.make_exclusive(p, at, 1)
        got = d0.snapshot(p, a, n)
        assert m.check() == []
        self.answer = tuple(f"{b:#04x}" for b in got)
        why = {"gap": "no VMA: hmm_vma_walk_hole() gives HMM_PFN_ERROR -> 0xff",
               "protnone": "a VMA without VM_READ: hmm_vma_walk_test() gives HMM_PFN_ERROR "
                           "-> 0xff",
               "empty": "pte_none and no fault asked: 0 -> HMM_DMIRROR_PROT_NONE 0x00",
               "zero": "the zero page, read-only: ZERO | READ = 0x11",
               "readonly": "a present read-only PTE: READ = 0x01",
               "written": "a present writable PTE: WRITE = 0x02",
               "local": "a device-private entry of this device (dev_private_owner): "
                        "DEV_PRIVATE_LOCAL | WRITE = 0x22",
               "remote": "a device-private entry of another device: not reported, and no "
                         "fault asked -> 0x00",
               "exclusive": "a device-exclusive entry is not present: no fault asked -> 0x00"}
        self.steps += [f"Page {i}: {why[s]}." for i, s in enumerate(self.states)]
        self.steps.append("HMM_DMIRROR_SNAPSHOT calls hmm_range_fault() with default_flags 0: "
                          "it faults nothing in and reports what the CPU page tables hold.")

    def question(self) -> str:
        pages = "; ".join(f"page {i} {PAGE_STATES[s]}" for i, s in enumerate(self.states))
        return (f"A process maps {len(self.states)} pages read-write (MAP_PRIVATE|"
                f"MAP_ANONYMOUS, no THP). Then {pages}. Device 0 takes HMM_DMIRROR_SNAPSHOT "
                f"of the {len(self.states)} pages. What byte does it report for each (hex)? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("dmirror_mkentry(): HMM_PFN_ERROR -> 0xff; not VALID -> 0x00; else READ 0x01 "
                "or WRITE 0x02, plus ZERO 0x10 for the zero page and DEV_PRIVATE_LOCAL 0x20 "
                "for this device's page. A snapshot never faults: what hmm_range_fault() "
                "would have to fault in is not VALID.")


#: the CPU's step between the mirror's two commands in the "mirror" exercise
BETWEEN = {"nothing": "does nothing",
           "fork": "calls fork() (the child stays alive)",
           "munmap": "munmaps the last {k} pages",
           "dontneed": "madvise(MADV_DONTNEED)s the first {k} pages",
           "write": "writes the first {k} pages"}


class MirrorCounts(Exercise):
    """Two mirror commands with a CPU step between them."""

    chapter = 15
    kind = "mirror"
    title = "What does the second command count?"
    fields = ("faults", "device entries", "writable device entries")

    def setup(self) -> None:
        rng = self.rng
        self.n = rng.randint(8, 40)
        self.written = rng.randint(0, self.n)
        self.first = rng.choice(["read", "write"])
        self.between = rng.choice(list(BETWEEN))
        self.k = rng.randint(1, self.n // 2)
        self.second = rng.choice(["read", "write"])
        self.span = rng.randint(1, self.n - self.k) if self.between == "munmap" else \
            rng.randint(1, self.n)
        m, (d,), p, a = driver_setup(self.n, seed=self.seed)
        for i in range(self.written):
            p.write(a + i * PAGE_SIZE, i + 1)
        self._cmd(d, p, a, self.first, self.n)
        held = self._entries(d, p)
        if self.between == "fork":
            p.fork()
        elif self.between == "munmap":
            p.munmap(a + (self.n - self.k) * PAGE_SIZE, self.k * PAGE_SIZE)
        elif self.between == "dontneed":
            p.madvise(a, self.k * PAGE_SIZE, "dontneed")
        elif self.between == "write":
            for i in range(self.k):
                p.write(a + i * PAGE_SIZE, 50 + i)
        lost = len(held) - len(self._entries(d, p))
        self._cmd(d, p, a, self.second, self.span)
        entries = self._entries(d, p)
        writable = sum(tag == DPT_XA_TAG_WRITE for tag in entries)
        assert m.check() == []
        self.answer = (d.faults, len(entries), writable)
        self.steps.append(f"The first {self.first} mirrors all {self.n} pages: "
                          + ("a read of a page the CPU wrote gets HMM_PFN_WRITE (its PTE is "
                             "writable) and a WRITE-tagged entry; of an untouched page, the "
                             "zero page, read-only." if self.first == "read" else
                             "a write faults every page in writable (HMM_PFN_REQ_WRITE)."))
        why = {"fork": "fork() write-protects the private pages for copy-on-write, and "
                       "MMU_NOTIFY_PROTECTION_PAGE over the VMA erases every device entry",
               "munmap": "the unmap invalidates those pages",
               "dontneed": "the zap (MMU_NOTIFY_CLEAR) invalidates those pages",
               "write": "a CPU write to a page mapped read-only (the zero page) replaces its "
                        "PTE: the copy-on-write invalidates it (MMU_NOTIFY_CLEAR)",
               "nothing": ""}[self.between]
        self.steps.append(
            "The CPU step invalidates none of the device's entries." if not lost else
            f"The CPU step erased {lost} of the device's {len(held)} entries: {why} "
            f"(dmirror_do_update()'s last index is inclusive: the page after an invalidated "
            f"range goes too).")
        self.steps.append(f"The second {self.second} of {self.span} page(s): dmirror_do_"
                          f"{self.second}() stops at the first page it cannot use; if there is "
                          f"one, one dmirror_fault() round faults the rest of the range in "
                          f"(faults = {self.answer[0]}). The device then has {len(entries)} "
                          f"entries, {writable} writable.")

    @staticmethod
    def _entries(d: Device, p: Process) -> list[int]:
        """The tags of the device's page-table entries for ``p``."""
        return [tag for (mm_id, _), (_, tag) in d.driver.pt.items() if mm_id == p.mm.id]

    @staticmethod
    def _cmd(d: Device, p: Process, a: int, what: str, n: int) -> None:
        if what == "read":
            d.read_range(p, a, n)
        else:
            d.write_range(p, a, [7] * n)

    def question(self) -> str:
        between = BETWEEN[self.between].format(k=self.k)
        return (f"A process maps {self.n} pages read-write (no THP) and writes the first "
                f"{self.written}. A dmirror device does HMM_DMIRROR_{self.first.upper()} of "
                f"all {self.n} pages; then the process {between}; then the device does "
                f"HMM_DMIRROR_{self.second.upper()} of the first {self.span} page(s). What "
                f"is that command's faults count, and how many entries, and how many writable "
                f"(DPT_XA_TAG_WRITE) entries, does the device's page table then hold for "
                f"the process? {self.answer_format()}.")

    def hint(self) -> str:
        return ("A device entry is writable when hmm_range_fault() returned HMM_PFN_WRITE: "
                "the CPU's PTE was writable. Any invalidation of a page erases the device's "
                "entry. The faults count is the dmirror_fault() rounds: 0 when every page already "
                "had a usable entry, else 1 (one round faults the rest of the range).")


class AtomicTouches(Exercise):
    """The CPU touches pages a device took for an atomic."""

    chapter = 15
    kind = "atomic"
    title = "What does the CPU's touch give back?"
    fields = ("device-exclusive PTEs left", "PTEs restored", "thp_split_pmd")

    def setup(self) -> None:
        rng = self.rng
        self.thp = rng.random() < 0.4
        self.n = 512 if self.thp else rng.randint(8, 64)
        self.first = rng.randrange(self.n - 4)
        self.k = rng.randint(1, min(24, self.n - self.first))
        self.touches = [rng.randrange(self.n) for _ in range(rng.randint(1, 6))]
        self.writes = rng.random() < 0.5
        m, (d,), p, a = driver_setup(self.n, seed=self.seed, thp=self.thp)
        if not self.thp:
            for i in range(self.n):
                p.write(a + i * PAGE_SIZE, i)
        d.make_exclusive(p, a + self.first * PAGE_SIZE, self.k)
        mark = m.trace.mark()
        for t in self.touches:
            if self.writes:
                p.write(a + t * PAGE_SIZE, 1)
            else:
                p.read(a + t * PAGE_SIZE)
        restored = sum(e.name == "restore_exclusive_pte" for e in m.trace.since(mark))
        left = sum(p.lookup(a + i * PAGE_SIZE).kind == "device_exclusive"
                   for i in range(self.first, self.first + self.k))
        assert m.check() == []
        self.answer = (left, restored, m.vmstat()["thp_split_pmd"])
        held = set(range(self.first, self.first + self.k))
        hit = sorted(held & set(self.touches))
        self.steps.append(f"make_device_exclusive() took pages {self.first} to "
                          f"{self.first + self.k - 1}: each PTE became a device-exclusive "
                          f"entry" + (" after its GUP (FOLL_SPLIT_PMD) split the THP's PMD "
                                      "once; the folio stays order 9." if self.thp else "."))
        self.steps.append(f"The CPU touched {len(hit)} of them ({', '.join(map(str, hit))})"
                          if hit else "The CPU touched none of them")
        self.steps.append(f"The first touch of a device-exclusive PTE faults: do_swap_page() "
                          f"-> remove_device_exclusive_entry() -> restore_exclusive_pte() puts "
                          f"the PTE back (writable, as the VMA allows): {restored} restored, "
                          f"{left} stay device-exclusive.")

    def question(self) -> str:
        what = ("one written PMD-mapped THP (512 pages)" if self.thp else
                f"{self.n} written pages (no THP)")
        verb = "writes" if self.writes else "reads"
        return (f"A process has {what}. A dmirror device takes pages {self.first} to "
                f"{self.first + self.k - 1} for an atomic (HMM_DMIRROR_EXCLUSIVE). Then the "
                f"CPU {verb} pages {', '.join(map(str, self.touches))} in that order. How "
                f"many of the taken pages are still mapped by device-exclusive entries, how "
                f"many PTEs did the CPU's faults restore (restore_exclusive_pte()), and what "
                f"is thp_split_pmd? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("A device-exclusive entry is not present: the CPU faults on it, and the "
                "fault restores the PTE (as writable as the VMA allows). Pages the device "
                "did not take are mapped as before. make_device_exclusive() splits a THP's "
                "PMD, not the folio.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (SnapshotBytes, MirrorCounts,
                                                         AtomicTouches)}
