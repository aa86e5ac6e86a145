"""Chapter 11 exercises: the split fallback when the device has no 2 MiB page, the faults on a
partially mapped device folio, and what a round trip brings back.

Every answer is read off the simulator after the operations: the entries with
``p.lookup()``, the folios with ``p.folio_at()``, the counters with ``m.vmstat()`` and
``m.trace.costs``, the device's bookkeeping with ``dev.driver.cfree``.
"""

from __future__ import annotations

from pyfolio.device import Device
from pyfolio.exercises.base import Exercise
from pyfolio.sim.units import PAGE_SIZE, MiB
from pyfolio.system import Process, System

__all__ = ["device_thps", "WhatReachesTheDevice", "FaultsOnAPartialFolio", "RoundTrip",
           "KINDS", "MODES"]

#: how the device answers a 2 MiB allocation in the "fallback" exercise
MODES = ("large pages", "no large pages", "fail next alloc")


def device_thps(n: int = 1, large_pages: bool = True, seed: int = 0,
                memory: str = "16M") -> tuple[System, Device, Process, int]:
    """A machine with a dmirror device ("dmirror0", ``memory`` of device-private memory,
    ``large_pages`` as given) and one process that has written ``n`` PMD-mapped THPs
    (MADV_HUGEPAGE, 2 MiB-aligned): (system, device, process, address). Chapter 11 starts
    its experiments from one."""
    m = System(ram="64M", thp="madvise", seed=seed)
    dev = m.add_device("dmirror0", memory=memory, large_pages=large_pages)
    p = m.spawn()
    a = p.mmap(n * 2 * MiB)
    p.madvise(a, n * 2 * MiB, "hugepage")
    p.touch(a, n * 2 * MiB)
    return m, dev, p, a


def _entries(p: Process, a: int, length: int) -> tuple[int, int]:
    """(device-private PMD entries, device-private PTE entries) over [a, a + length)."""
    pmds = ptes = 0
    addr = a
    while addr < a + length:
        e = p.lookup(addr)
        if e.level == "pmd":
            pmds += e.kind == "device_private"
            addr += 2 * MiB
        else:
            ptes += e.kind == "device_private"
            addr += PAGE_SIZE
    return pmds, ptes


class WhatReachesTheDevice(Exercise):
    """THPs migrated to a small device that may refuse 2 MiB pages."""

    chapter = 11
    kind = "fallback"
    title = "What reaches the device, and how is it mapped?"
    fields = ("device-private PMDs", "device-private PTEs", "thp_split_pmd",
              "pages left in RAM")

    def setup(self) -> None:
        rng = self.rng
        self.mode = rng.choice(MODES)
        # without large pages every THP takes the split fallback (slow to simulate): 1..2
        self.n = rng.randint(1, 2 if self.mode == "no large pages" else 4)
        self.mib = 2 * rng.randint(1, 4)
        self.pin = rng.randrange(512 * self.n) if rng.random() < 0.5 else None
        m, dev, p, a = device_thps(self.n, self.mode != "no large pages", self.seed,
                                   memory=f"{self.mib}M")
        if self.pin is not None:
            p.pin(a + self.pin * PAGE_SIZE, PAGE_SIZE)
        if self.mode == "fail next alloc":
            dev.fail_next_alloc()
        res = dev.migrate_to_device(p, a, self.n * 2 * MiB)
        pmds, ptes = _entries(p, a, self.n * 2 * MiB)
        split = m.vmstat()["thp_split_pmd"]
        moved = sum(r.migrated for r in res)
        self.answer = (pmds, ptes, split, 512 * self.n - moved)
        self.steps.append(f"The device has {self.mib // 2} 2 MiB chunk(s) of memory. "
                          f"{moved} of {len(res)} pages migrated. Each THP was collected as "
                          f"one COMPOUND entry; {split} of the {self.n} got 512 single device "
                          f"pages" + (
                              ", so migrate_vma_split_unmapped_folio() split its PMD "
                              "migration entry (thp_split_pmd) and the folio." if split else
                              "." if moved < 512 * self.n else
                              ": every one got a 2 MiB device folio and stays one PMD."))
        if moved < 512 * self.n:
            self.steps.append("When the device's memory runs out, no device page is "
                              "allocated: the dst entries stay 0, those pages are not "
                              "migrated, and their THP is restored where it was.")
        self.steps.append(f"Entries now: {pmds} device-private PMD(s), {ptes} device-private "
                          f"PTE(s).")

    def question(self) -> str:
        how = {"large pages": "can allocate 2 MiB device pages",
               "no large pages": "cannot allocate any 2 MiB device page (large_pages=False)",
               "fail next alloc": "fails only its next 2 MiB allocation "
                                  "(HMM_DMIRROR_FLAG_FAIL_ALLOC)"}[self.mode]
        return (f"A process has written {self.n} PMD-mapped THP(s) (2 MiB-aligned, "
                f"MADV_HUGEPAGE)"
                + (f", pins page {self.pin} of them with pin_user_pages()"
                   if self.pin is not None else "")
                + f" and migrates the {2 * self.n} MiB to a dmirror device with "
                f"{self.mib} MiB of device memory that {how}. How many device-private PMD "
                f"entries and device-private PTE entries map the range afterwards, what is "
                f"thp_split_pmd, and how many pages stayed in RAM? {self.answer_format()}.")

    def hint(self) -> str:
        return ("Each THP that gets a 2 MiB device folio stays one PMD entry; each that gets "
                "512 single device pages is split on the way: its PMD migration entry becomes "
                "512 PTE migration entries (thp_split_pmd + 1), and then 512 device-private "
                "PTEs. A 2 MiB chunk of device memory holds one device folio or 512 pages; "
                "what does not fit stays in RAM, and so does a THP with a pinned page "
                "(migrate_vma_check_page() fails on the extra reference).")


class FaultsOnAPartialFolio(Exercise):
    """A CPU touch of a device THP that munmap() left partially mapped."""

    chapter = 11
    kind = "faults"
    title = "How many faults does the touch take?"
    fields = ("page faults", "device pages freed")

    def setup(self) -> None:
        rng = self.rng
        self.first = rng.random() < 0.5
        self.pages = rng.randint(1, 511)
        mapped = range(self.pages, 512) if self.first else range(0, 512 - self.pages)
        self.touch = rng.choice([mapped[0], mapped[0], rng.choice(mapped)])
        m, dev, p, a = device_thps(1, True, self.seed)
        dev.migrate_to_device(p, a, 2 * MiB)
        lo = a if self.first else a + (512 - self.pages) * PAGE_SIZE
        p.munmap(lo, self.pages * PAGE_SIZE)
        before = m.vmstat()["pgfault"]
        value = p.read(a + self.touch * PAGE_SIZE)
        assert value == (a >> 12) + self.touch + 1
        faults = m.vmstat()["pgfault"] - before
        self.answer = (faults, dev.driver.cfree)
        self.steps.append(f"munmap() split the device-private PMD into PTEs: {512 - self.pages} "
                          f"pages of the order-9 device folio stay mapped. The touch of page "
                          f"{self.touch} faults through a PTE, so dmirror_devmem_fault() "
                          f"migrates one page; migrate_vma_collect_pmd() meets a large folio "
                          f"and splits it (split_folio()): the {self.pages} unmapped pieces "
                          f"go back to the driver.")
        self.steps.append("The fault page is the head of the old folio, so the same fault "
                          "collects and migrates it." if faults == 1 else
                          "fault_folio was taken before the split and no longer matches the "
                          "fault page's new folio, whose lock the walk cannot take: nothing "
                          "migrates, the fault returns 0 and the CPU faults again.")

    def question(self) -> str:
        side = "first" if self.first else "last"
        return (f"A device THP (one device-private PMD, 512 pages, on a dmirror device with "
                f"2 MiB pages) loses its {side} {self.pages} page(s) to munmap(). The CPU then "
                f"reads page {self.touch} of the original 2 MiB. How many page faults does the "
                f"read take, and how many device pages has the driver got back (cfree)? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("The first fault splits the partially mapped device folio; it can migrate the "
                "page in the same fault only if the page is the old folio's head (page 0). "
                "Every unmapped piece is freed by the split, the migrated page afterwards.")


class RoundTrip(Exercise):
    """CPU writes to some pages, then the device gives the range back."""

    chapter = 11
    kind = "roundtrip"
    title = "What comes back, and how?"
    fields = ("entry level", "folio order", "pages copied by the CPU faults",
              "pages copied by migrate_to_system")

    def setup(self) -> None:
        rng = self.rng
        self.large = rng.random() < 0.5
        # without large pages each THP becomes 512 device pages (slow to simulate): one THP
        self.thps = rng.randint(1, 3) if self.large else 1
        span = 512 * self.thps
        self.writes = sorted({rng.randrange(span) for _ in range(rng.randint(1, 12))})
        self.look = rng.choice([*self.writes, rng.randrange(span)])
        m, dev, p, a = device_thps(self.thps, self.large, self.seed)
        dev.migrate_to_device(p, a, self.thps * 2 * MiB)
        before = m.trace.costs["pages_copied"]
        for page in self.writes:
            p.write(a + page * PAGE_SIZE, 0xC0FFEE)
        copied = m.trace.costs["pages_copied"]
        faulted = copied - before
        dev.migrate_to_system(p, a, self.thps * 2 * MiB)
        back = m.trace.costs["pages_copied"] - copied
        e, f = p.lookup(a + self.look * PAGE_SIZE), p.folio_at(a + self.look * PAGE_SIZE)
        assert f is not None and all(p.read(a + pg * PAGE_SIZE) == 0xC0FFEE
                                     for pg in self.writes)
        self.answer = (e.level, f.order, faulted, back)
        self.steps.append(("The device had 2 MiB folios: a write to a THP still on the device "
                           "faulted on its PMD and brought all 512 pages back as one THP; "
                           "migrate_to_system copied each THP not written, 512 pages at "
                           "once.") if self.large else
                          ("The fallback left 512 order-0 device folios: each write brought "
                           "one page back; migrate_to_system copied the others, one order-0 "
                           "page each."))
        self.steps.append(f"The faults copied {faulted} page(s), migrate_to_system {back}. "
                          f"Page {self.look}: a "
                          f"{e.level.upper()} entry, folio order {f.order}.")

    def question(self) -> str:
        dev = "has 2 MiB pages" if self.large else "has no 2 MiB pages (large_pages=False)"
        return (f"{self.thps} written THP(s) ({self.thps * 512} pages, 2 MiB aligned) migrate "
                f"to a dmirror device that {dev}. The CPU writes page(s) "
                f"{', '.join(map(str, self.writes))}, then the device migrates the whole range "
                f"back (migrate_to_system). At what level is page {self.look} mapped (pmd or "
                f"pte), what is the order of its folio, and how many pages did the CPU faults "
                f"and then migrate_to_system copy? {self.answer_format()}.")

    def hint(self) -> str:
        return ("A fault on a device-private PMD brings the whole folio back; a fault on a "
                "device-private PTE one page. migrate_to_system copies what is still on the "
                "device, each folio at its own order.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (WhatReachesTheDevice,
                                                         FaultsOnAPartialFolio, RoundTrip)}
