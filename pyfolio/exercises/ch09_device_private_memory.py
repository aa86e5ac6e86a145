"""Chapter 9 exercises: decode a device-private entry, predict what CPU faults bring back, and
what a fault on a device-private PMD does.

Every answer is read off the simulator: ``p.lookup()`` for the entries, the dmirror driver's
counters and free lists for the device pages, the folio view for what came back.
"""

from __future__ import annotations

from pyfolio.device import Device
from pyfolio.exercises.base import Exercise
from pyfolio.sim.units import PAGE_SIZE, MiB
from pyfolio.system import Process, System

__all__ = ["pages_on_device", "DecodeEntry", "FaultBack", "PmdFault", "KINDS"]


def pages_on_device(npages: int, readonly: int = 0, seed: int = 0,
                    device: str = "16M") -> tuple[System, Process, int, Device]:
    """A process writes ``npages`` 4 KiB pages (no THP; page i holds 100 + i), makes the first
    ``readonly`` of them read-only, and migrates them all to a dmirror device:
    (system, process, address, device). Chapter 9 starts its 4 KiB experiments from one."""
    m = System(ram="64M", thp="madvise", seed=seed)
    dev = m.add_device("dmirror0", memory=device)
    p = m.spawn()
    a = p.mmap(npages * PAGE_SIZE)
    p.madvise(a, npages * PAGE_SIZE, "nohugepage")
    for i in range(npages):
        p.write(a + i * PAGE_SIZE, 100 + i)
    if readonly:
        p.mprotect(a, readonly * PAGE_SIZE, "r")
    done = dev.migrate_to_device(p, a, npages * PAGE_SIZE)
    assert all(r.migrated for r in done)
    return m, p, a, dev


def _on_device(p: Process, a: int, npages: int) -> int:
    """How many pages of [a, a + npages pages) are mapped by device-private entries."""
    return sum(p.lookup(a + i * PAGE_SIZE).kind == "device_private" for i in range(npages))


class DecodeEntry(Exercise):
    """Decode a raw device-private PTE: its swap type, the device PFN, writable or not."""

    chapter = 9
    kind = "entry"
    title = "Decode a device-private entry"
    fields = ("swap type", "device pfn", "writable")

    def setup(self) -> None:
        rng = self.rng
        self.npages = rng.randint(4, 32)
        self.readonly = rng.randint(0, self.npages // 2)
        self.page = rng.randrange(self.npages)
        _, p, a, _ = pages_on_device(self.npages, self.readonly, self.seed)
        e = p.lookup(a + self.page * PAGE_SIZE)
        self.raw = e.raw
        self.answer = (e.swp_type, e.swp_offset, e.write)
        what = "SWP_DEVICE_WRITE" if e.write else "SWP_DEVICE_READ"
        self.steps.append(f"The P bit (bit 0) is clear: a swap-format entry. Bits 63..59 hold "
                          f"the type, {e.swp_type} = {what}; bits 58..9 hold the offset, "
                          f"inverted: ~{(e.raw >> 9) & ((1 << 50) - 1):#x} = {e.swp_offset:#x}, "
                          f"the device page's PFN. Page {self.page} was "
                          f"{'writable' if e.write else 'read-only'} when it migrated.")

    def question(self) -> str:
        return (f"A process wrote {self.npages} pages, made the first {self.readonly} read-only "
                f"and migrated all of them to a dmirror device. The PTE of page {self.page} is "
                f"now {self.raw:#018x}. What is its swap type, which device PFN does it point "
                f"at, and is it writable? {self.answer_format()}.")

    def hint(self) -> str:
        return ("swp_type() is the top 5 bits; __swp_offset() shifts the type out and inverts "
                "the rest (x86 stores the offset inverted); type 28 is SWP_DEVICE_WRITE, 29 "
                "SWP_DEVICE_READ.")


class FaultBack(Exercise):
    """Which pages do CPU accesses bring back from the device, and what goes back to the driver?"""

    chapter = 9
    kind = "fault"
    title = "What do the CPU faults bring back?"
    fields = ("pages still on the device", "device pages freed to the driver",
              "value a read of the last page accessed returns")

    def setup(self) -> None:
        rng = self.rng
        self.npages = rng.randint(8, 48)
        self.accesses = [(rng.randrange(self.npages), rng.random() < 0.4)
                         for _ in range(rng.randint(2, 6))]
        _, p, a, dev = pages_on_device(self.npages, 0, self.seed)
        for page, write in self.accesses:
            addr = a + page * PAGE_SIZE
            if write:
                p.write(addr, 1000 + page)
            else:
                p.read(addr)
        last = a + self.accesses[-1][0] * PAGE_SIZE
        self.answer = (_on_device(p, a, self.npages), dev.driver.cfree, p.read(last))
        back = sorted({pg for pg, _ in self.accesses})
        self.steps.append(f"Each first access to a page on the device faults: do_swap_page() "
                          f"calls migrate_to_ram(), which migrates that one page (the fault came "
                          f"through a PTE) back to RAM; the device page's last reference goes and "
                          f"page_free() returns it to dmirror. Pages {back} came back; later "
                          f"accesses to them are ordinary. The data moves with each page: a "
                          f"read returns 100 + page, or 1000 + page after a write.")

    def question(self) -> str:
        acc = ", ".join(f"{'write' if w else 'read'} page {pg}" for pg, w in self.accesses)
        return (f"A process wrote {self.npages} 4 KiB pages (page i holds 100 + i) and "
                f"migrated them all to a dmirror device. Then the CPU accesses, in order: {acc} "
                f"(a write stores 1000 + the page number). How many pages are still on the "
                f"device, how many device pages has dmirror got back (cfree), and what does a "
                f"read of the last page accessed return? {self.answer_format()}.")

    def hint(self) -> str:
        return ("A CPU fault on a device-private PTE migrates exactly one page back (dmirror "
                "uses order 0 when vmf->pte is set); the data moves with it.")


class PmdFault(Exercise):
    """THPs on the device, as device THPs or as 512 device pages each: what do faults do?"""

    chapter = 9
    kind = "pmd"
    title = "Faults on device-private PMDs"
    fields = ("level of the entry at the range start after the migration",
              "pages back in RAM after the accesses", "pages still on the device")

    def setup(self) -> None:
        rng = self.rng
        self.large = rng.random() < 0.5
        self.thps = rng.randint(1, 4)
        self.accesses = [(rng.randrange(512 * self.thps), rng.random() < 0.5)
                         for _ in range(rng.randint(1, 4))]
        m = System(ram="64M", thp="madvise", seed=self.seed)
        dev = m.add_device("dmirror0", memory="8M")
        p, a = m.spawn_with_thp(self.thps * 2 * MiB)
        if not self.large:
            dev.fragment()
        dev.migrate_to_device(p, a, self.thps * 2 * MiB)
        level = p.lookup(a).level
        for page, write in self.accesses:
            if write:
                p.write(a + page * PAGE_SIZE, 7)
            else:
                p.read(a + page * PAGE_SIZE)
        on_device = _on_device(p, a, 512 * self.thps)
        self.answer = (level, 512 * self.thps - on_device, on_device)
        became = ("one order-9 device folio under a device-private PMD each" if self.large else
                  "512 order-0 device pages under device-private PTEs each, the source split "
                  "on the way")
        fault = ("A fault on a device-private PMD calls migrate_to_ram() with vmf->pte NULL, "
                 "so dmirror brings the whole 2 MiB folio back; later accesses to it are "
                 "ordinary." if level == "pmd" else
                 "A fault on a device-private PTE brings back that one page.")
        self.steps.append(f"The THPs became {became} (entry level: {level}). {fault} "
                          f"{512 * self.thps - on_device} page(s) are in RAM, {on_device} on "
                          f"the device.")

    def question(self) -> str:
        dev = ("has free 2 MiB folios" if self.large else
               "was fragmented (dev.fragment(): no free 2 MiB folio)")
        acc = ", ".join(f"{'writes' if w else 'reads'} page {pg}" for pg, w in self.accesses)
        return (f"A process writes {self.thps} PMD-mapped THP(s) ({self.thps * 512} pages, "
                f"2 MiB aligned) and migrates them to a dmirror device that {dev}. Then the CPU "
                f"{acc} of the range. At which level (pmd or pte) was the entry at the start "
                f"of the range after the migration, and how many of the pages are back in RAM "
                f"and how many still on the device after the accesses? {self.answer_format()}.")

    def hint(self) -> str:
        return ("A COMPOUND source needs a large device folio; without one dmirror falls back "
                "to 512 single pages and the source is split. dmirror_devmem_fault() uses the "
                "folio's order only when the fault came through a PMD (vmf->pte == NULL).")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (DecodeEntry, FaultBack, PmdFault)}
