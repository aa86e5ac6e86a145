"""Chapter 4 exercises: x86-64 4-level page tables.

Index decomposition uses ``pgd_index()`` .. ``pte_index()``; entries to decode are read out
of a real simulated page table after a small scenario; translations are done by the walk.
"""

from __future__ import annotations

from pyfolio.arch.x86.pgtable import decode_entry, pgd_index, pmd_index, pte_index, pud_index
from pyfolio.exercises.base import Exercise
from pyfolio.sim.units import PAGE_SIZE, KiB, MiB
from pyfolio.system import Process, System

__all__ = ["IndexDecomposition", "DecodeEntry", "Translate", "KINDS", "SCENARIOS"]


def _thp(p: Process, a: int) -> int:
    p.madvise(a, 2 * MiB, "hugepage")
    p.touch(a, 2 * MiB)
    return a


def _pte(p: Process, a: int) -> int:
    p.touch(a + 8 * KiB, 4 * KiB)
    return a + 8 * KiB


def _read_only(p: Process, a: int) -> int:
    p.touch(a, 16 * KiB)
    p.mprotect(a + 4 * KiB, 4 * KiB, "r")
    return a + 4 * KiB


def _after_fork(p: Process, a: int) -> int:
    p.touch(a + 12 * KiB, 4 * KiB)
    p.fork()
    return a + 12 * KiB


def _huge_zero(p: Process, a: int) -> int:
    p.madvise(a, 2 * MiB, "hugepage")
    p.read(a)
    return a


#: name -> (description for the question, action returning the address to look at)
SCENARIOS = {
    "thp": ("madvise(MADV_HUGEPAGE) the first 2 MiB and write all of it", _thp),
    "pte": ("write one 4 KiB page at +8 KiB", _pte),
    "read_only": ("write 16 KiB, then mprotect(+4 KiB, 4 KiB, PROT_READ)", _read_only),
    "fork": ("write the page at +12 KiB, then fork()", _after_fork),
    "huge_zero": ("madvise(MADV_HUGEPAGE) the first 2 MiB and read its first byte", _huge_zero),
}


def _scenario(ex: Exercise) -> tuple[System, Process, int, str]:
    """Run one seeded scenario on a 4 MiB mapping; the address it touched and its text."""
    m = System(ram="64M", thp="madvise", seed=ex.seed)
    p = m.spawn()
    a = p.mmap(4 * MiB)
    name = ex.rng.choice(sorted(SCENARIOS))
    text, act = SCENARIOS[name]
    return m, p, act(p, a), f"A process maps 4 MiB at {a:#x} and does: {text}."


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
        m, p, addr, self.text = _scenario(self)
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
        m, p, addr, self.text = _scenario(self)
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
