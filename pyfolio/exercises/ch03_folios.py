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

    def setup(self) -> None:
        m = boot_machine(RAM_PAGES)
        self.m = m
        self.folios = []
        for order in self.rng.sample([2, 3, 4, 5, 9], 3):
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
        return (f"A machine allocated three folios ({sizes}); each is naturally aligned: an "
                f"order-n folio starts at a PFN that is a multiple of 2^n. "
                f"They sit at PFNs {', '.join(hex(p) for p, _ in self.folios)} "
                f"(in that order of PFN, not of size).")


class FolioHead(_Folios):
    """Given a tail PFN, the head PFN and the order of its folio."""

    kind = "head"
    title = "Find the head page"
    fields = ("head pfn", "order")

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


class KpageflagsBits(Exercise):
    """Which compound-page bits /proc/kpageflags shows for a frame."""

    chapter = 3
    kind = "kpageflags"
    title = "Read /proc/kpageflags"
    fields = ("COMPOUND_HEAD", "COMPOUND_TAIL", "THP", "BUDDY")

    def setup(self) -> None:
        m = System(ram="16M", thp="always", seed=self.seed)
        p = m.spawn()
        a = p.mmap(2 * MiB)
        b = p.mmap(64 * 1024)
        p.touch(a)  # a THP fault: one order-9 folio
        p.touch(b)  # sixteen order-0 folios
        thp = p.folio_at(a)
        assert thp is not None
        small = p.pfn_at(b + 4096 * self.rng.randrange(16))
        assert small is not None
        free = next(iter(m.machine.free_area.lists[self.rng.randrange(3)] or [0]))
        choices = {"the head of the THP": thp.pfn,
                   f"page {(i := self.rng.randrange(1, 512))} of the THP": thp.pfn + i,
                   "a 4 KiB page of the second mapping": small,
                   "the first frame of a free block": free}
        self.what, self.pfn = self.rng.choice(list(choices.items()))
        flags = m.kpageflags([self.pfn])[0]
        self.answer = tuple(bool(flags >> KPF[name] & 1) for name in self.fields)
        set_ = [n for n in KPF if flags >> KPF[n] & 1]
        self.steps.append(f"kpageflags([{self.pfn:#x}]) = {flags:#x}: {', '.join(set_)}.")

    def question(self) -> str:
        return ("A process (THP policy always) writes a 2 MiB-aligned 2 MiB mapping (one THP) "
                "and a 64 KiB mapping (4 KiB pages). "
                f"PFN {self.pfn:#x} is {self.what}. Which of the /proc/kpageflags bits "
                "COMPOUND_HEAD, COMPOUND_TAIL, THP and BUDDY are set for it? "
                "Answer with four yes/no, in that order.")

    def hint(self) -> str:
        return ("Every page of a THP shows THP; the first also COMPOUND_HEAD, the others "
                "COMPOUND_TAIL. BUDDY marks the first frame of a free block.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (FolioHead, PageIndex, KpageflagsBits)}
