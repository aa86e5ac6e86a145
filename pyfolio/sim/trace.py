"""Events and cost counters: every model operation records what it did.

Events are named after kernel functions or tracepoints (``do_huge_pmd_anonymous_page``,
``split_huge_pmd``, ``mm_page_alloc``...). Views and animations replay them; the cost
counters (PTE writes, TLB flushes, pages copied) feed the cost-model figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

__all__ = ["Event", "Trace", "COSTS"]

#: Cost counters kept by :class:`Trace` (a subset of what a profile of the kernel would show).
COSTS = ("pte_writes", "pmd_writes", "tlb_flushes", "pages_copied", "pages_zeroed")


@dataclass(frozen=True, slots=True)
class Event:
    """One operation: ``name`` is the kernel function or tracepoint, ``args`` what it was
    called with, ``changes`` what it changed (counts before/after, entries written...)."""

    seq: int
    name: str
    args: tuple[tuple[str, Any], ...] = ()
    changes: tuple[tuple[str, Any], ...] = ()

    def arg(self, key: str, default: Any = None) -> Any:
        return dict(self.args).get(key, default)

    def change(self, key: str, default: Any = None) -> Any:
        return dict(self.changes).get(key, default)

    def __str__(self) -> str:
        a = ", ".join(f"{k}={_fmt(k, v)}" for k, v in self.args)
        c = ", ".join(f"{k}={_fmt(k, v)}" for k, v in self.changes)
        return f"#{self.seq} {self.name}({a})" + (f" -> {c}" if c else "")


def _fmt(key: str, v: Any) -> str:
    """A PFN in hex, as the book writes PFNs everywhere (``pfn=0x200``); other numbers in
    hex from 0x100000 up (addresses), else in decimal."""
    if not isinstance(v, int) or isinstance(v, bool):
        return str(v)
    return hex(v) if "pfn" in key or key == "head" or v > 0xFFFFF else str(v)


@dataclass
class Trace:
    """An append-only list of events plus cost counters; ``enabled=False`` keeps counters only."""

    events: list[Event] = field(default_factory=list)
    costs: Counter[str] = field(default_factory=Counter)
    enabled: bool = True
    limit: int = 200_000

    def emit(self, name: str, changes: dict[str, Any] | None = None, **args: Any) -> Event | None:
        """Record one event and return it; None, and nothing built, when the trace is
        disabled or already holds ``limit`` events (as :meth:`emit_run`)."""
        events = self.events
        if not self.enabled or len(events) >= self.limit:
            return None
        ev = Event(len(events), name, tuple(args.items()),
                   tuple(changes.items()) if changes else ())
        events.append(ev)
        return ev

    def keeps_events(self) -> bool:
        """Whether an emit() now would be kept (enabled, and under the limit)."""
        return self.enabled and len(self.events) < self.limit

    def emit_run(self, events: Iterable[tuple[str, tuple[tuple[str, Any], ...],
                                              tuple[tuple[str, Any], ...]]]) -> None:
        """What ``emit(name, dict(changes), **dict(args))`` for each ``(name, args,
        changes)`` in turn leaves (a batched path's events): nothing when disabled, and
        only as many as the limit still takes (the rest are not even built)."""
        if not self.enabled:
            return
        start = len(self.events)
        self.events.extend(Event(start + k, name, args, changes) for k, (name, args, changes)
                           in enumerate(islice(events, max(0, self.limit - start))))

    def cost(self, name: str, n: int = 1) -> None:
        self.costs[name] += n

    def mark(self) -> int:
        """A position to slice from: ``trace.since(mark)`` returns the events after it."""
        return len(self.events)

    def since(self, mark: int) -> list[Event]:
        return self.events[mark:]

    def names(self, mark: int = 0) -> list[str]:
        return [e.name for e in self.events[mark:]]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)
