"""Chapter 2 exercises: page frames and the buddy allocator.

Every scenario runs on a fresh 4 MiB machine (1024 frames; frame 0 is the zero page, so boot
frees frames 1..1023 as one block of each order 0..9). The answers come from running
``alloc_pages`` and ``__free_pages`` and reading the free lists and the trace.
"""

from __future__ import annotations

from pyfolio.exercises.base import Exercise
from pyfolio.mm.mm_init import boot_machine
from pyfolio.mm.page_alloc import __free_pages, alloc_pages, buddyinfo
from pyfolio.sim.machine import Machine

__all__ = ["BuddyMerge", "BuddyinfoAfter", "AllocPfn", "KINDS"]

RAM_PAGES = 1024
#: the orders of the allocations in "merge" and "alloc" (wide, so answers vary over seeds)
_WIDE = (0, 0, 1, 1, 2, 3, 4, 5)
#: __free_pages under a name that is not mangled inside the class bodies below.
_free_block = __free_pages


def _machine() -> Machine:
    return boot_machine(RAM_PAGES)


class _BuddyScenario(Exercise):
    """A random sequence of allocations (orders 0..3) and frees of some of them."""

    chapter = 2

    def run_sequence(self, m: Machine, n_alloc: int, n_free: int,
                     orders: tuple[int, ...] = (0, 0, 1, 1, 2, 3)) -> list[str]:
        blocks: list[tuple[str, int, int]] = []  # name, pfn, order
        lines = []
        for i in range(n_alloc):
            order = self.rng.choice(orders)
            pfn = alloc_pages(m, order, comp=False)
            name = "ABCDEFGH"[i]
            blocks.append((name, pfn, order))
            lines.append(f"{name} = alloc_pages(order={order})")
            self.steps.append(f"{name} = alloc_pages(order={order}) -> pfn {pfn:#x}; "
                              f"buddyinfo {buddyinfo(m)}")
        for name, pfn, order in self.rng.sample(blocks, n_free):
            _free_block(m, pfn, order)
            lines.append(f"__free_pages({name}, order={order})")
            self.steps.append(f"__free_pages({name}={pfn:#x}, order={order}); "
                              f"buddyinfo {buddyinfo(m)}")
            blocks.remove((name, pfn, order))
        self.live = blocks
        return lines


class BuddyMerge(_BuddyScenario):
    """Free one block: which block does it end up in after merging with free buddies?"""

    kind = "merge"
    title = "Which buddies merge?"
    fields = ("head pfn of the merged free block", "its order")

    def setup(self) -> None:
        m = _machine()
        self.lines = self.run_sequence(m, self.rng.randint(4, 8), self.rng.randint(1, 3),
                                       _WIDE)
        self.name, self.pfn, self.order = self.rng.choice(self.live)
        self.lines_before = list(self.lines)
        mark = m.trace.mark()
        _free_block(m, self.pfn, self.order)
        free = [e for e in m.trace.since(mark) if e.name == "mm_page_free"][-1]
        self.answer = (int(free.arg("pfn")), int(free.arg("order")))
        self.steps.append(
            f"__free_pages({self.name}={self.pfn:#x}, order={self.order}): the buddy at each "
            f"order is pfn ^ (1 << order); merging stops at the first buddy that is not a "
            f"free block of the same order. The free block is pfn {self.answer[0]:#x}, "
            f"order {self.answer[1]}.")

    def question(self) -> str:
        seq = "\n".join(f"  {i + 1}. {line}" for i, line in enumerate(self.lines_before))
        return (f"A fresh machine with {RAM_PAGES} frames (frame 0 reserved; boot freed "
                f"frames 1..{RAM_PAGES - 1}) runs:\n{seq}\n"
                f"Block {self.name} is at pfn {self.pfn:#x} (order {self.order}). "
                f"Now __free_pages({self.name}, order={self.order}) runs. After merging with "
                f"free buddies, which free block holds it? {self.answer_format()}.")

    def hint(self) -> str:
        return ("The buddy of a block at pfn P of order n is P ^ (1 << n); the merged block "
                "starts at the lower of the two.")


class BuddyinfoAfter(_BuddyScenario):
    """Free-list counts per order (a line of /proc/buddyinfo) after a sequence."""

    kind = "buddyinfo"
    title = "Free lists after a sequence"
    fields = tuple(f"order {o}" for o in range(10))

    def setup(self) -> None:
        m = _machine()
        self.start = buddyinfo(m)[:10]
        self.lines = self.run_sequence(m, self.rng.randint(2, 4), self.rng.randint(1, 2))
        info = buddyinfo(m)
        assert info[10] == 0  # 4 MiB has no order-10 block
        self.answer = tuple(info[:10])

    def question(self) -> str:
        seq = "\n".join(f"  {i + 1}. {line}" for i, line in enumerate(self.lines))
        return (f"A fresh machine with {RAM_PAGES} frames starts with one free block of each "
                f"order 0..9 (buddyinfo {list(self.start)}). It runs:\n{seq}\n"
                f"How many free blocks of each order 0..9 are left? "
                f"Answer with ten numbers, order 0 first.")

    def hint(self) -> str:
        return ("An allocation takes the smallest free block that is large enough and halves "
                "it, putting one half back at each lower order; a free merges upwards.")


class AllocPfn(_BuddyScenario):
    """Which PFNs do the next two allocations return?"""

    kind = "alloc"
    title = "Where do the next blocks come from?"
    fields = ("pfn returned first", "pfn returned second")

    def setup(self) -> None:
        m = _machine()
        self.lines = self.run_sequence(m, self.rng.randint(2, 6), self.rng.randint(1, 2),
                                       _WIDE)
        self.orders = (self.rng.choice([0, 1, 2, 3, 4, 5]), self.rng.choice([0, 1, 2, 3]))
        pfns = []
        for order in self.orders:
            pfn = alloc_pages(m, order, comp=False)
            pfns.append(pfn)
            self.steps.append(f"alloc_pages(order={order}) takes the smallest free block of "
                              f"order >= {order} (the most recently freed one on that list), "
                              f"splits it down to order {order} and returns its first frame, "
                              f"pfn {pfn:#x}; buddyinfo {buddyinfo(m)}.")
        self.answer = tuple(pfns)

    def question(self) -> str:
        seq = "\n".join(f"  {i + 1}. {line}" for i, line in enumerate(self.lines))
        a, b = self.orders
        return (f"A fresh machine with {RAM_PAGES} frames (one free block of each order 0..9 "
                f"after boot) runs:\n{seq}\nThen alloc_pages(order={a}) runs, and after it "
                f"alloc_pages(order={b}). Which pfn does each return? {self.answer_format()}.")

    def hint(self) -> str:
        return ("Look for the smallest order >= the request with a free block; splitting keeps "
                "the lower half and frees the upper halves, which the second request may use.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (BuddyMerge, BuddyinfoAfter, AllocPfn)}
