"""Chapter 3 exercises: folios, head and tail pages, orders, /proc/kpageflags.

Answers come from the memmap: ``page_folio()`` follows a tail page's compound head,
``folio_order()`` and ``folio_page_idx()`` read the head, ``kpageflags()`` reports the flags.
"""

from __future__ import annotations

from pyfolio.exercises.base import Exercise
from pyfolio.fs.proc.page import KPF
from pyfolio.include.linux.mm import folio_order, folio_page_idx, page_folio
from pyfolio.mm.mm_init import boot_machine
from pyfolio.mm.page_alloc import alloc_pages
from pyfolio.sim.units import MiB
from pyfolio.system import System

__all__ = ["FolioHead", "PageIndex", "KpageflagsBits", "KINDS"]

RAM_PAGES = 2048  # 8 MiB: room for one order-9 folio next to smaller ones


class _Folios(Exercise):
    """A machine where a few compound pages (folios) of orders 2..9 were allocated."""

    chapter = 3
    #: the machine's size, the orders of the three folios, other allocations made first
    ram_pages: int = RAM_PAGES
    orders: tuple[int, ...] = (2, 3, 4, 5, 9)
    others_first = False

    def setup(self) -> None:
        m = boot_machine(self.ram_pages)
        self.m = m
        self.others = self.rng.randint(1, 12) if self.others_first else 0
        for _ in range(self.others):  # other allocations, so the folios land anywhere
            alloc_pages(m, self.rng.choice([0, 0, 1, 2, 3, 9]))
        self.folios = []
        for order in self.rng.sample(self.orders, 3):
            pfn = alloc_pages(m, order)  # __GFP_COMP: a compound page, as folio_alloc() makes
            self.folios.append((pfn, order))
        self.folios.sort()
        head, order = self.rng.choice(self.folios)
        self.pfn = head + self.rng.randrange(1, 1 << order)  # a tail page
        folio = page_folio(m, self.pfn)
        self.compute(folio)

    def compute(self, folio: object) -> None:
        raise NotImplementedError

    def scenario(self) -> str:
        sizes = ", ".join(f"one of order {o}" for o in sorted(o for _, o in self.folios))
        first = f"After {self.others} other allocation(s), a" if self.others else "A"
        return (f"{first} machine allocated three folios ({sizes}); each is naturally aligned: an "
                f"order-n folio starts at a PFN that is a multiple of 2^n. "
                f"They sit at PFNs {', '.join(hex(p) for p, _ in self.folios)} "
                f"(in that order of PFN, not of size).")


class FolioHead(_Folios):
    """Given a tail PFN, the head PFN and the order of its folio."""

    kind = "head"
    title = "Find the head page"
    fields = ("head pfn", "order")
    ram_pages, orders, others_first = 2 * RAM_PAGES, (2, 3, 4, 5, 6, 9), True

    def compute(self, folio: object) -> None:
        from pyfolio.include.linux.mm import Folio

        assert isinstance(folio, Folio)
        self.answer = (folio.pfn, folio_order(folio))
        self.steps.append(f"page_folio({self.pfn:#x}) reads compound_head of the tail page: "
                          f"{folio.pfn:#x}; folio_order() reads the head: {folio_order(folio)}.")

    def question(self) -> str:
        return (f"{self.scenario()}\nPFN {self.pfn:#x} is a tail page. Which PFN is its head "
                f"page, and what is the folio's order? {self.answer_format()}.")

    def hint(self) -> str:
        return "The head is the folio's first PFN: the PFN rounded down to a multiple of 2^order."


class PageIndex(_Folios):
    """Given a PFN, its index in the folio and the folio's number of pages."""

    kind = "index"
    title = "Which page of the folio?"
    fields = ("folio_page_idx", "folio_nr_pages")

    def compute(self, folio: object) -> None:
        from pyfolio.include.linux.mm import Folio

        assert isinstance(folio, Folio)
        self.answer = (folio_page_idx(folio, self.pfn), folio.nr_pages)
        self.steps.append(f"page_folio({self.pfn:#x}) = folio at {folio.pfn:#x}, order "
                          f"{folio.order}; the page is number {self.pfn - folio.pfn} of "
                          f"{folio.nr_pages}.")

    def question(self) -> str:
        return (f"{self.scenario()}\nFor PFN {self.pfn:#x}: what does folio_page_idx() return "
                f"for it, and how many pages does its folio have? {self.answer_format()}.")

    def hint(self) -> str:
        return "folio_page_idx is the PFN minus the head's PFN; nr_pages is 2^order."


_BITS = ("COMPOUND_HEAD", "COMPOUND_TAIL", "THP", "BUDDY")


class KpageflagsBits(Exercise):
    """Which compound-page bits /proc/kpageflags shows for two frames."""

    chapter = 3
    kind = "kpageflags"
    title = "Read /proc/kpageflags"
    fields = tuple(f"{who} {bit}" for who in ("A", "B") for bit in _BITS)

    def setup(self) -> None:
        m = System(ram="16M", thp="always", seed=self.seed)
        p = m.spawn()
        a = p.mmap(2 * MiB)
        b = p.mmap(64 * 1024)
        p.touch(a)  # a THP fault: one order-9 folio
        p.touch(b)  # sixteen order-0 folios
        thp = p.folio_at(a)
        assert thp is not None
        rng = self.rng
        order = rng.choice([o for o in range(1, 6) if m.machine.free_area.lists[o]])
        block = next(iter(m.machine.free_area.lists[order]))  # a free block of 2..32 frames
        i, j = rng.randrange(1, 512), rng.randrange(16)
        small = p.pfn_at(b + 4096 * j)
        assert small is not None
        inside = rng.randrange(1, 1 << order)
        choices = {"the head of the THP": thp.pfn,
                   f"page {i} of the THP": thp.pfn + i,
                   f"page {j} of the 64 KiB mapping": small,
                   f"the first frame of a free order-{order} block": block,
                   f"frame {inside} of a free order-{order} block (not its first)":
                       block + inside}
        self.picked = rng.sample(list(choices.items()), 2)
        pfns = [pfn for _, pfn in self.picked]
        flags = m.kpageflags(pfns)
        self.answer = tuple(bool(f >> KPF[name] & 1) for f in flags for name in _BITS)
        for who, pfn, f in zip("AB", pfns, flags, strict=True):
            set_ = [n for n in KPF if f >> KPF[n] & 1]
            self.steps.append(f"{who}: kpageflags([{pfn:#x}]) = {f:#x}: "
                              f"{', '.join(set_) or 'no flag'}.")

    def question(self) -> str:
        (what_a, a), (what_b, b) = self.picked
        return ("A process (THP policy always) writes a 2 MiB-aligned 2 MiB mapping (one THP) "
                "and a 64 KiB mapping (4 KiB pages). "
                f"PFN A = {a:#x} is {what_a}; PFN B = {b:#x} is {what_b}. Which of the "
                "/proc/kpageflags bits COMPOUND_HEAD, COMPOUND_TAIL, THP and BUDDY are set for "
                "each? Answer with eight yes/no: the four bits of A in that order, then those "
                "of B.")

    def hint(self) -> str:
        return ("Every page of a THP shows THP; the first also COMPOUND_HEAD, the others "
                "COMPOUND_TAIL. BUDDY marks only the first frame of a free block.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (FolioHead, PageIndex, KpageflagsBits)}
