"""Chapter 8 exercises: the orders a split leaves, why a split fails, and what the deferred
split shrinker frees.

Every answer comes from running the split on the simulator (``split_mapped_folio``, as
debugfs split_huge_pages does, or the deferred split shrinker) and reading the result.
"""

from __future__ import annotations

from pyfolio.exercises.base import Exercise
from pyfolio.include.linux.mm import page_folio
from pyfolio.mm.huge_memory_split import shrink_deferred_split, split_mapped_folio
from pyfolio.sim.errors import MmError
from pyfolio.sim.units import PAGE_SIZE, MiB
from pyfolio.system import Process, System

__all__ = ["written_thp", "SplitOrders", "SplitErrno", "DeferredShrink", "KINDS"]


def written_thp(seed: int = 0) -> tuple[System, Process, int, int]:
    """A fresh machine whose one process has written one PMD-mapped THP (MADV_HUGEPAGE):
    (system, process, address, head PFN). Chapter 8 starts each of its splits from one."""
    m = System(ram="64M", thp="madvise", seed=seed)
    p, a = m.spawn_with_thp(4 * MiB)
    f = p.folio_at(a)
    assert f is not None and f.order == 9
    return m, p, a, f.pfn


def _orders(m: System, head: int, nr: int) -> list[int]:
    """Orders of the folios in [head, head + nr), in address order."""
    out, pfn = [], head
    while pfn < head + nr:
        f = page_folio(m.machine, pfn)
        out.append(f.order)
        pfn += f.nr_pages
    return out


class SplitOrders(Exercise):
    """The folios a non-uniform (buddy-style) split leaves."""

    chapter = 8
    kind = "orders"
    title = "Which folios does a non-uniform split leave?"
    fields = ("number of folios", "order of the folio holding the split page",
              "index (0..511) of that folio's first page", "order of the first folio")

    def setup(self) -> None:
        self.at = self.rng.randrange(512)
        self.new_order = self.rng.choice([0, 0, 2, 3, 4])
        m, _, _, head = written_thp(self.seed)
        split_mapped_folio(m.machine, head, self.new_order, uniform=False, at=self.at)
        orders = _orders(m, head, 512)
        holder = page_folio(m.machine, head + self.at)
        self.answer = (len(orders), holder.order, holder.pfn - head, orders[0])
        self.steps.append(f"folio_split(folio, {self.new_order}, page {self.at}) halves the "
                          f"piece holding page {self.at} at each order from 8 down to "
                          f"{self.new_order}, keeping the other half (anon: no order-1 step). "
                          f"Orders in address order: {orders}.")

    def question(self) -> str:
        return (f"A written, PMD-mapped anonymous THP (order 9) is split non-uniformly "
                f"(folio_split()) to order {self.new_order} at page {self.at}. How many folios "
                f"are there afterwards, what is the order of the folio holding page {self.at} and "
                f"the index of its first page, and what is the order of the first folio? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("Buddy-style: split in halves, keep the half without the split page, recurse "
                "into the other; an anonymous folio skips order 1, so the order-2 piece "
                "becomes four order-0 folios when splitting to order 0.")


class SplitErrno(Exercise):
    """A second split of one of the folios a first split left: does it succeed?"""

    chapter = 8
    kind = "errno"
    title = "Does the second split succeed?"
    fields = ("result of the second split (0, EINVAL or EAGAIN)",
              "folios in the 2 MiB afterwards")

    def setup(self) -> None:
        rng = self.rng
        self.first = (rng.randint(2, 8), rng.random() < 0.5, rng.randrange(512))
        self.pin = rng.randrange(512) if rng.random() < 0.5 else None
        self.forked = rng.random() < 0.25
        self.second = (rng.randint(0, 8), rng.random() < 0.5, rng.randrange(512))
        m, p, a, head = written_thp(self.seed)
        order, uniform, at = self.first
        split_mapped_folio(m.machine, head, order, uniform=uniform, at=at)
        self.steps.append(f"The first split leaves orders {_orders(m, head, 512)}.")
        if self.forked:
            p.fork()
        if self.pin is not None:
            p.pin(a + self.pin * PAGE_SIZE, PAGE_SIZE)
        order, uniform, at = self.second
        target = page_folio(m.machine, head + at)
        self.steps.append(f"Page {at} is in the order-{target.order} folio at page "
                          f"{target.pfn - head} (refcount {target.refcount}, mapcount "
                          f"{target.mapcount}).")
        try:
            split_mapped_folio(m.machine, target.pfn, order, uniform=uniform, at=at)
            result = "0"
        except MmError as e:
            result = e.errname
        self.answer = (result, len(_orders(m, head, 512)))
        self.steps.append(f"The second split returned {result}; the 2 MiB now holds "
                          f"{self.answer[1]} folio(s).")

    @staticmethod
    def _how(order: int, uniform: bool, at: int) -> str:
        return (f"uniformly (split_folio_to_order()) to order {order}" if uniform else
                f"non-uniformly (folio_split()) to order {order} at page {at}")

    def question(self) -> str:
        extra = ([("the process forks (the child keeps running)")] if self.forked else []) \
            + ([f"page {self.pin} is pinned with pin_user_pages()"]
               if self.pin is not None else [])
        also = ("; then " + " and ".join(extra)) if extra else ""
        order, uniform, at = self.second
        return (f"A written, PMD-mapped anonymous THP (order 9) is split "
                f"{self._how(*self.first)}{also}. Then the folio holding page {at} is split "
                f"{self._how(order, uniform, at)}. What does the second split return, and how "
                f"many folios does the 2 MiB hold afterwards? {self.answer_format()}.")

    def hint(self) -> str:
        return ("new_order must be below the folio's own order and not 1 for anon folios "
                "(EINVAL, checked first); a reference not explained by a mapping (a pin on a "
                "page of that folio) makes can_split_folio() fail (EAGAIN). A fork adds one "
                "mapping and one reference: no obstacle. A failed split changes nothing.")


class DeferredShrink(Exercise):
    """What the deferred split shrinker frees after a partial unmap."""

    chapter = 8
    kind = "deferred"
    title = "What does the shrinker free?"
    fields = ("frames freed by the shrinker", "PTEs that now map the shared zero page",
              "Rss of the range afterwards in kB")

    def setup(self) -> None:
        rng = self.rng
        self.written = sorted(rng.sample(range(512), rng.randint(1, 12)))
        self.unmapped = rng.randint(1, 200)
        m = System(ram="64M", thp="madvise", seed=self.seed)
        p = m.spawn()
        a = p.mmap(4 * MiB)
        p.madvise(a, 2 * MiB, "hugepage")
        for i in self.written:
            p.write(a + i * PAGE_SIZE, i + 1)
        p.munmap(a + (512 - self.unmapped) * PAGE_SIZE, self.unmapped * PAGE_SIZE)
        free = m.nr_free_pages()
        n = shrink_deferred_split(m.machine)
        freed = m.nr_free_pages() - free
        rss = sum(s["Rss"] for s in p.smaps())
        zero = sum(p.lookup(a + i * PAGE_SIZE).kind == "zero" for i in range(512))
        self.answer = (freed, zero, rss)
        kept = [i for i in self.written if i < 512 - self.unmapped]
        self.steps.append(f"munmap() left the THP flagged partially mapped (on the deferred "
                          f"split queue since its fault); the shrinker "
                          f"split {n} folio(s): the {self.unmapped} unmapped pages were freed, "
                          f"and every still-mapped page that is all zeros was remapped to the "
                          f"shared zero page and freed too; {len(kept)} written page(s) stay.")

    def question(self) -> str:
        return (f"A process writes pages {', '.join(map(str, self.written))} of a 2 MiB-aligned "
                f"MADV_HUGEPAGE range (the first write faults in one THP; the rest of it is "
                f"zero-filled), then munmap()s its last {self.unmapped} page(s). Then the "
                f"deferred split shrinker runs. How many frames does it free, how many PTEs map "
                f"the shared zero page afterwards, and what is the Rss of the mapping? "
                f"{self.answer_format()}.")

    def hint(self) -> str:
        return ("The shrinker splits the partially mapped folio to order 0: the unmapped "
                "pages are freed, and remap_page() maps zero-filled pages to the shared zero "
                "page (RMP_USE_SHARED_ZEROPAGE), freeing them as well.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (SplitOrders, SplitErrno,
                                                         DeferredShrink)}
