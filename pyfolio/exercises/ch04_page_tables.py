"""Chapter 4 exercises: x86-64 4-level page tables.

Index decomposition uses ``pgd_index()`` .. ``pte_index()``; entries to decode are read out
of a real simulated page table after a small scenario; translations are done by the walk.
"""

from __future__ import annotations

from collections.abc import Callable
from random import Random

from pyfolio.arch.x86.pgtable import decode_entry, pgd_index, pmd_index, pte_index, pud_index
from pyfolio.exercises.base import Exercise
from pyfolio.sim.units import PAGE_SIZE, KiB, MiB
from pyfolio.system import Process, System

__all__ = ["IndexDecomposition", "DecodeEntry", "Translate", "KINDS", "SCENARIOS"]


def _page(rng: Random | None, fixed: int) -> int:
    """A seeded 4 KiB page offset in the first 2 MiB; ``fixed`` without a generator."""
    return fixed if rng is None else rng.randrange(512) * PAGE_SIZE


def _thp(p: Process, a: int, rng: Random | None) -> tuple[int, str]:
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
    text = "madvise(MADV_HUGEPAGE) the first 2 MiB and write all of it"
    if rng is None:
        return a, text
    off = _page(rng, 0)
    return a + off, f"{text}; look at +{off // KiB} KiB"


def _thp_readonly(p: Process, a: int, rng: Random | None) -> tuple[int, str]:
    addr, text = _thp(p, a, rng)
    p.mprotect(a, 2 * MiB, "r")
    return addr, text.replace("all of it", "all of it, then mprotect() all 2 MiB PROT_READ")


def _thp_fork(p: Process, a: int, rng: Random | None) -> tuple[int, str]:
    addr, text = _thp(p, a, rng)
    p.fork()
    return addr, text.replace("all of it", "all of it, then fork()")


def _pte(p: Process, a: int, rng: Random | None) -> tuple[int, str]:
    off = _page(rng, 8 * KiB)
    p.touch(a + off, 4 * KiB)
    return a + off, f"write one 4 KiB page at +{off // KiB} KiB"


def _read_only(p: Process, a: int, rng: Random | None) -> tuple[int, str]:
    n = 4 if rng is None else rng.randint(2, 16)
    off = _page(rng, 4 * KiB) % (n * PAGE_SIZE)
    p.touch(a, n * PAGE_SIZE)
    p.mprotect(a + off, 4 * KiB, "r")
    return a + off, f"write {n * 4} KiB, then mprotect(+{off // KiB} KiB, 4 KiB, PROT_READ)"


def _after_fork(p: Process, a: int, rng: Random | None) -> tuple[int, str]:
    off = _page(rng, 12 * KiB)
    p.touch(a + off, 4 * KiB)
    p.fork()
    return a + off, f"write the page at +{off // KiB} KiB, then fork()"


def _huge_zero(p: Process, a: int, rng: Random | None) -> tuple[int, str]:
    p.madvise(a, 2 * MiB, "hugepage")
    off = _page(rng, 0)
    p.read(a + off)
    text = "madvise(MADV_HUGEPAGE) the first 2 MiB and read"
    return a + off, f"{text} its first byte" if rng is None else f"{text} +{off // KiB} KiB"


Scenario = Callable[[Process, int, "Random | None"], tuple[int, str]]
#: name -> action on the 4 MiB mapping at ``a``: (the address to look at, what it did); with
#: no generator each acts at a fixed offset ("translate" uses those five)
SCENARIOS: dict[str, Scenario] = {
    "thp": _thp, "pte": _pte, "read_only": _read_only, "fork": _after_fork,
    "huge_zero": _huge_zero, "thp_readonly": _thp_readonly, "thp_fork": _thp_fork,
}
_FIXED = ("fork", "huge_zero", "pte", "read_only", "thp")


def _scenario(ex: Exercise, varied: bool) -> tuple[System, Process, int, str]:
    """Run one seeded scenario on a 4 MiB mapping; the address it touched and its text.
    ``varied``: another process writes a few THPs and pages first (so the PFNs differ from
    seed to seed), every scenario may run, each at a seeded offset."""
    m = System(ram="64M", thp="madvise", seed=ex.seed)
    if not varied:
        p = m.spawn()
        a = p.mmap(4 * MiB)
        addr, text = SCENARIOS[ex.rng.choice(_FIXED)](p, a, None)
        return m, p, addr, f"A process maps 4 MiB at {a:#x} and does: {text}."
    other = m.spawn()
    thps, pages = ex.rng.randint(0, 6), ex.rng.randint(0, 40)
    if thps:
        t = other.mmap(thps * 2 * MiB)
        other.madvise(t, thps * 2 * MiB, "hugepage")
        other.touch(t, thps * 2 * MiB)
    if pages:
        b = other.mmap(pages * PAGE_SIZE)
        other.madvise(b, pages * PAGE_SIZE, "nohugepage")
        other.touch(b, pages * PAGE_SIZE)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    addr, text = SCENARIOS[ex.rng.choice(sorted(SCENARIOS))](p, a, ex.rng)
    return m, p, addr, (f"Another process has written {thps} THP(s) and {pages} 4 KiB page(s). "
                        f"A process maps 4 MiB at {a:#x} and does: {text}.")


class IndexDecomposition(Exercise):
    """Split a virtual address into its four table indices and the page offset."""

    chapter = 4
    kind = "indices"
    title = "Decompose an address"
    fields = ("pgd index", "pud index", "pmd index", "pte index", "offset")

    def setup(self) -> None:
        self.addr = self.rng.randrange(0, 1 << 47) & ~7  # a user-space address
        a = self.addr
        self.answer = (pgd_index(a), pud_index(a), pmd_index(a), pte_index(a), a % PAGE_SIZE)
        self.steps.append(
            f"{a:#x} = {a:048b} in binary; bits 47..39, 38..30, 29..21, 20..12 and 11..0 "
            f"give pgd_index {pgd_index(a)}, pud_index {pud_index(a)}, pmd_index "
            f"{pmd_index(a)}, pte_index {pte_index(a)}, offset {a % PAGE_SIZE:#x}.")

    def question(self) -> str:
        return (f"Decompose the x86-64 user address {self.addr:#x} (4-level paging, 4 KiB "
                f"pages) into its page-table indices and page offset. {self.answer_format()}.")

    def hint(self) -> str:
        return "Each level takes 9 bits (512 entries per table); the offset is the low 12 bits."


class DecodeEntry(Exercise):
    """Decode a raw entry read out of a simulated page table."""

    chapter = 4
    kind = "decode"
    title = "Decode a page-table entry"
    fields = ("present", "writable", "dirty", "maps 2 MiB (PSE)", "pfn")

    def setup(self) -> None:
        m, p, addr, self.text = _scenario(self, varied=True)
        e = p.lookup(addr)
        self.raw, self.level = e.raw, e.level
        d = decode_entry(e.raw, e.level)
        self.answer = (d.present, d.write, d.dirty, d.pse, d.pfn)
        self.steps.append(f"decode_entry({e.raw:#x}, {e.level!r}) = {d}")

    def question(self) -> str:
        bit7 = ("PSE, bit 7" if self.level != "pte" else
                "in a 4 KiB PTE bit 7 is PAT, not PSE, so a PTE never does")
        return (f"{self.text}\nThe walk for that page ends at a {self.level.upper()} entry "
                f"{self.raw:#018x}. Is it present (bit 0)? writable (RW, bit 1)? dirty as "
                f"pte_dirty() says (D, bit 6, or SavedDirty, bit 58)? Does it map 2 MiB "
                f"directly ({bit7})? Which PFN (bits 12..51)? {self.answer_format()}.")

    def hint(self) -> str:
        return ("Write the low 12 bits in binary, and look at bit 58 too: a read-only entry "
                "keeps its dirtiness there, never in D. The PFN is (raw >> 12) & "
                "((1 << 40) - 1).")


class Translate(Exercise):
    """Translate a virtual address to a physical one by walking the tables."""

    chapter = 4
    kind = "translate"
    title = "Translate an address"
    fields = ("level of the last entry (pmd/pte)", "physical address")

    def setup(self) -> None:
        m, p, addr, self.text = _scenario(self, varied=False)
        self.vaddr = addr + self.rng.randrange(0, PAGE_SIZE, 8)
        e = p.lookup(self.vaddr)
        pfn = p.pfn_at(self.vaddr)
        assert pfn is not None
        self.raw = e.raw
        self.answer = (e.level, pfn * PAGE_SIZE + self.vaddr % PAGE_SIZE)
        self.steps.append(
            f"walk(..., {self.vaddr:#x}) ends at the {e.level.upper()} entry {e.raw:#x} "
            f"(pfn {e.pfn:#x}); follow_page gives pfn {pfn:#x}; physical address = pfn * 4096 "
            f"+ offset = {self.answer[1]:#x}.")

    def question(self) -> str:
        return (f"{self.text}\nThe walk for {self.vaddr:#x} ends at the entry {self.raw:#018x}. "
                f"At which level is that entry, and which physical address does {self.vaddr:#x} "
                f"translate to? {self.answer_format()}.")

    def hint(self) -> str:
        return ("A PMD leaf maps 2 MiB: add the address's low 21 bits to the 2 MiB-aligned "
                "physical base; a PTE maps 4 KiB: add the low 12 bits.")


KINDS: dict[str, type[Exercise]] = {c.kind: c for c in (IndexDecomposition, DecodeEntry, Translate)}
