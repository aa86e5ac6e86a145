"""Entry inspector: a 64-bit page-table entry drawn as its bit fields.

Present entries (a PTE, or a PMD leaf with PSE) show NX, the protection-key bits, SavedDirty
(SV, bit 58: where a read-only entry keeps its dirtiness), the PFN and the flag bits, soft-dirty
(SD, bit 11) among them; bit 7 is PSE in a PMD/PUD entry and PAT in a 4 KiB PTE. The title
says "dirty" as pte_dirty() does: D or SV. Swap-format entries (migration, device-private,
swap) show the type, the inverted offset (and the PFN it decodes to), the unused bits 8..4 and
the E/F/SD software bits, laid out as in arch/x86/include/asm/pgtable_64.h. Values come from
:func:`pyfolio.arch.x86.pgtable.decode_entry` and the pgtable constants. Every abbreviation
the figure uses is spelled out in a key under it (:data:`FIELD_NAMES`).
"""

from __future__ import annotations

import textwrap

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pyfolio.arch.x86.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_GLOBAL,
    _PAGE_NX,
    _PAGE_PAT,
    _PAGE_PCD,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_PWT,
    _PAGE_RW,
    _PAGE_SAVED_DIRTY,
    _PAGE_SOFT_DIRTY,
    _PAGE_SPECIAL,
    _PAGE_SWP_EXCLUSIVE,
    _PAGE_SWP_SOFT_DIRTY,
    _PAGE_SWP_UFFD_WP,
    _PAGE_UFFD_WP,
    _PAGE_USER,
    PTE_PFN_MASK,
    Entry,
    decode_entry,
)
from pyfolio.include.linux.swapops import SwpType
from pyfolio.views._style import MIN_FONT, PAGE_WIDTH, TITLE_LINE, new_figure, wrap_title

__all__ = ["entry_fields", "entry_bits", "entry_key", "FIELD_NAMES"]

#: what each field name in the figure stands for (the kernel's name for the bit)
FIELD_NAMES = {
    "NX": "no-execute", "pkey": "protection key", "SV": "SavedDirty (_PAGE_SAVED_DIRTY)",
    "avail": "ignored by the CPU", "PFN": "page frame number",
    "SD": "soft-dirty", "UW": "userfaultfd write-protect", "SP": "special (_PAGE_SPECIAL)",
    "G": "global", "PAT": "page attribute table", "PSE": "page size: a leaf", "D": "dirty",
    "A": "accessed", "CD": "cache disable", "WT": "write-through", "U": "user", "RW": "writable",
    "P": "present",
    "type": "swap type", "~offset": "swap offset, stored inverted (L1TF)",
    "unused": "unused, 0", "E": "exclusive (_PAGE_SWP_EXCLUSIVE)",
    "F": "userfaultfd write-protect (_PAGE_SWP_UFFD_WP)",
}
#: a swap-format entry's soft-dirty bit has its own kernel name
_SWAP_SD = "soft-dirty (_PAGE_SWP_SOFT_DIRTY)"


def _bit(mask: int) -> int:
    return mask.bit_length() - 1


_PFN_LO, _PFN_HI = _bit(PTE_PFN_MASK & -PTE_PFN_MASK), PTE_PFN_MASK.bit_length() - 1
_SV = _bit(_PAGE_SAVED_DIRTY)
_HIGH = (("pkey", 62, _SV + 1), ("SV", _SV, _SV), ("avail", _SV - 1, _PFN_HI + 1))


def _present_flags(level: str) -> tuple[tuple[str, int], ...]:
    """Bits 11..0 of a present entry; bit 7 is PAT in a 4 KiB PTE, PSE above."""
    bit7 = ("PAT", _PAGE_PAT) if level == "pte" else ("PSE", _PAGE_PSE)
    return (("SD", _PAGE_SOFT_DIRTY), ("UW", _PAGE_UFFD_WP), ("SP", _PAGE_SPECIAL),
            ("G", _PAGE_GLOBAL), bit7, ("D", _PAGE_DIRTY), ("A", _PAGE_ACCESSED),
            ("CD", _PAGE_PCD), ("WT", _PAGE_PWT), ("U", _PAGE_USER), ("RW", _PAGE_RW),
            ("P", _PAGE_PRESENT))
_SWP_TYPE_LO, _SWP_OFF_LO = 59, 9


def entry_fields(entry: Entry | int, level: str = "pte") -> list[tuple[str, int, int, str]]:
    """``(name, high bit, low bit, value text)`` for each field of ``entry``, high bits first.

    >>> from pyfolio.arch.x86.pgtable import pfn_pte, pte_wrprotect
    >>> from pyfolio.include.linux.swapops import make_writable_migration_entry
    >>> [f[0] for f in entry_fields(make_writable_migration_entry(0x1234))]
    ['type', '~offset', 'unused', 'E', 'F', 'SD', 'P']
    >>> f = {n: v for n, _, _, v in entry_fields(pte_wrprotect(pfn_pte(0x42, 0x867)))}
    >>> f["RW"], f["D"], f["SV"], f["SD"], "PAT" in f
    ('0', '0', '1', '1', True)
    """
    e = entry if isinstance(entry, Entry) else decode_entry(entry, level)
    raw = e.raw
    if e.present or e.kind == "none":
        out = [("NX", 63, 63, str(int(bool(raw & _PAGE_NX))))]
        for name, hi, lo in _HIGH:
            v = (raw >> lo) & ((1 << (hi - lo + 1)) - 1)
            out.append((name, hi, lo, str(v) if hi == lo else f"{v:#x}"))
        pfn = f"{e.pfn:#x}" if e.pfn >= 0 else "0"
        out.append(("PFN", _PFN_HI, _PFN_LO, f"~{pfn} (PROT_NONE: inverted)" if e.protnone
                    else pfn))
        out += [(n, _bit(m), _bit(m), str(int(bool(raw & m))))
                for n, m in _present_flags(e.level)]
        return out
    t = e.swp_type
    tname = SwpType(t).name if t in SwpType._value2member_map_ else "swap file"
    inv = (raw >> _SWP_OFF_LO) & ((1 << (_SWP_TYPE_LO - _SWP_OFF_LO)) - 1)
    return [("type", 63, _SWP_TYPE_LO, f"{t} {tname}"),
            ("~offset", _SWP_TYPE_LO - 1, _SWP_OFF_LO,
             f"{inv:#x} -> offset {e.swp_offset:#x}"
             + (f" = PFN {e.pfn:#x}" if e.pfn >= 0 else "")),
            ("unused", 8, 4, f"{(raw >> 4) & 0x1F:#x}"),
            ("E", 3, 3, str(int(bool(raw & _PAGE_SWP_EXCLUSIVE)))),
            ("F", 2, 2, str(int(bool(raw & _PAGE_SWP_UFFD_WP)))),
            ("SD", 1, 1, str(int(bool(raw & _PAGE_SWP_SOFT_DIRTY)))),
            ("P", 0, 0, str(int(bool(raw & _PAGE_PRESENT))))]


#: drawn widths of a swap-format entry's wide fields (the type's name needs room)
_SWAP_WIDTHS = {"type": 5.0, "~offset": 8.0, "unused": 2.5}


def _width(name: str, hi: int, lo: int) -> float:
    """Drawn width of a field: one unit per single bit, wide fields compressed."""
    n = hi - lo + 1
    return 1.0 if n == 1 else _SWAP_WIDTHS.get(name, 3.0 + n / 8)


def _row(ax: object, fields: list[tuple[str, int, int, str]], y: float) -> None:
    """One row of boxes across the axes (x from 0 to 1): name above, bits below, value in."""
    from matplotlib.axes import Axes

    assert isinstance(ax, Axes)
    total = sum(_width(name, hi, lo) for name, hi, lo, _ in fields)
    x = 0.0
    for name, hi, lo, val in fields:
        w = _width(name, hi, lo) / total
        fits = max(4, int(w * 640 / 6.4))  # 6.4 px a character
        if len(val) > fits:  # "inverted -> offset = PFN": break after the arrow first
            val = "\n".join(line for seg in val.replace(" -> ", " ->\n").split("\n")
                            for line in textwrap.wrap(seg, fits))
        on = val not in ("0", "0x0")
        fc = (0.55, 0.75, 1.0) if on and hi == lo else (0.97, 0.97, 0.97) if hi == lo \
            else (1.0, 0.93, 0.78)
        ax.add_patch(Rectangle((x, y), w, 0.5, fc=fc, ec="black", lw=0.8, clip_on=False))
        ax.text(x + w / 2, y + 0.25, val, ha="center", va="center", fontsize=7.5,
                family="monospace")
        ax.text(x + w / 2, y + 0.56, name, ha="center", va="bottom", fontsize=7.5,
                weight="bold")
        ax.text(x + w / 2, y - 0.05, str(hi) if hi == lo else f"{hi}..{lo}", ha="center",
                va="top", fontsize=MIN_FONT, color="#444444")
        x += w


def _key(fields: list[tuple[str, int, int, str]], swap: bool) -> str:
    """The abbreviations of ``fields`` spelled out, wrapped to the figure's width."""
    words = [f"{n}: {_SWAP_SD if swap and n == 'SD' else FIELD_NAMES[n]}"
             for n, *_ in fields if n in FIELD_NAMES and n not in ("PFN", "unused")]
    return "\n".join(textwrap.wrap("; ".join(words), 118))


def entry_key(entry: Entry | int, level: str = "pte") -> str:
    """The key :func:`entry_bits` draws under the boxes: each abbreviation of ``entry``'s
    fields spelled out (a widget shows it as text, drawn once, see ``key=False``)."""
    e = entry if isinstance(entry, Entry) else decode_entry(entry, level)
    return _key(entry_fields(e), not (e.present or e.kind == "none"))


def entry_bits(entry: Entry | int, level: str = "pte", *, title: str | None = None,
               key: bool = True) -> Figure:
    """Draw ``entry`` (an :class:`~pyfolio.arch.x86.pgtable.Entry` or a raw int at ``level``) as its
    bit fields: name above each box, bit range under it, the field's value inside; a present
    entry takes two rows (bits 63..12, then the flag bits 11..0), a swap-format entry one. A
    key under the boxes spells out every abbreviation (``key=False``: no key; its text is
    :func:`entry_key`)."""
    e = entry if isinstance(entry, Entry) else decode_entry(entry, level)
    fields = entry_fields(e)
    swap = not (e.present or e.kind == "none")
    rows = [fields] if swap else [[f for f in fields if f[2] >= 12],
                                  [f for f in fields if f[2] < 12]]
    key_text = _key(fields, swap) if key else ""
    key_h = 0.16 * (key_text.count("\n") + 1) + 0.1 if key else 0.1
    row_h = 0.95
    dirty = f", dirty ({'SV' if e.saved_dirty else 'D'})" if e.present and e.dirty else ""
    title = wrap_title(title or f"{e.level.upper()} entry {e.raw:#018x}: {e.kind}{dirty}")
    height = 0.35 + TITLE_LINE * title.count("\n") + row_h * len(rows) + key_h
    fig = new_figure(PAGE_WIDTH, height)
    ax = fig.add_axes((0.01, key_h / height, 0.98, row_h * len(rows) / height))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, len(rows))
    ax.set_axis_off()
    for i, row in enumerate(rows):
        _row(ax, row, len(rows) - 1 - i + 0.25)
    if key:
        fig.text(0.01, 0.04 / height, key_text, fontsize=MIN_FONT, va="bottom", color="#333333")
    fig.suptitle(title, fontsize=9,
                 x=0.01, ha="left", y=1 - 0.05 / height, va="top")
    return fig
