"""Address walker: pick an address of a process, see its page-table walk and the entry's bits.

The model operation is only a read: :func:`pyfolio.arch.x86.pgtable.walk` through
``Process.lookup``; the views are :func:`pyfolio.views.draw_pagetable` (the address split
into its 9/9/9/9/12 index bits and the tables the walk reads) and
:func:`pyfolio.views.entry_bits` (the last entry's bit fields; its key, the abbreviations
spelled out, is a line of text under the picture: :func:`pyfolio.views.entry_key`, as the
static figure draws it). Each picture is kept under
what it shows (the address and every table, slot and entry of its walk; the entry's raw
value and level), so a revisited address is not drawn again, and a walk that changed
(the process faulted or split in between) is.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.sim.units import PAGE_SIZE
from pyfolio.system import Process
from pyfolio.views import draw_pagetable, entry_bits, entry_key, stack
from pyfolio.views.pagetable import pagetable_graph
from pyfolio.widgets._common import App, Message, png

__all__ = ["address_walker", "AddressWalker"]


class AddressWalker(App):
    """The address walker app (see :func:`address_walker`)."""

    def __init__(self, proc: Process, start: int, length: int) -> None:
        self.proc = proc
        self.addr = widgets.IntSlider(value=start, min=start, max=start + length - PAGE_SIZE,
                                      step=PAGE_SIZE, description="address",
                                      readout_format="x", layout={"width": "90%"})
        self.typed = widgets.Text(placeholder=f"{start + 0x1234:#x}", description="or type",
                                  continuous_update=False, layout={"width": "20em"})
        #: the address shown: the slider's page, or any byte of the range typed in
        self.current = start
        self._following = False
        #: PNGs already drawn, under what they show (see the module's docstring)
        self._walk_pngs: dict[tuple[object, ...], bytes] = {}
        self._bits_pngs: dict[tuple[int, str], bytes] = {}
        self.message = Message()
        self.walk_image = widgets.Image(format="png", layout={"max_width": "100%"})
        self.bits_image = widgets.Image(format="png", layout={"max_width": "100%"})
        #: the entry's key as text: drawing it in the picture costs ~20 ms a new entry
        self.bits_key = widgets.HTML()
        self.reset_button = widgets.Button(description="Reset")
        self.reset_button.on_click(lambda _: self.reset())
        self.addr.observe(lambda _: self._slid(), names="value")
        self.typed.observe(lambda _: self.go_to(self.typed.value), names="value")
        super().__init__([widgets.HBox([self.addr, self.reset_button]), self.typed,
                          self.message, self.walk_image, self.bits_image, self.bits_key])
        self.redraw()

    def _slid(self) -> None:
        if self._following:  # go_to() moved the slider; it redraws once itself
            return
        self.current = self.addr.value
        self.redraw()

    def go_to(self, text: str) -> None:
        """Show the walk for a typed address (hex or decimal, any byte of the range); a bad
        entry is a message and changes nothing."""
        a = self.message.number_in(text, self.addr.min, self.addr.max + PAGE_SIZE,
                                   "an address", "the mapping")
        if a is None:
            return
        self._following = True
        try:
            self.addr.value = a & ~(PAGE_SIZE - 1)  # the slider follows to the page
        finally:
            self._following = False
        self.current = a
        self.redraw()

    def reset(self) -> None:
        """Back to the first address of the range."""
        self.typed.value = ""
        if self.addr.value == self.addr.min:
            self._slid()
        self.addr.value = self.addr.min

    def figures(self, key: bool = True) -> tuple[Figure, Figure]:
        """The walk diagram and the last entry's bits for the chosen address (``key``: with
        the bits' key drawn under them)."""
        a = self.current
        e = self.proc.lookup(a)
        return (draw_pagetable(self.proc, a),
                entry_bits(e, e.level, title=f"the {e.level.upper()} entry {e.raw:#018x} "
                                             f"({e.kind})", key=key))

    def static_figure(self) -> Figure:
        """The walk above the entry's bits, as in the widget (for print)."""
        return stack(*self.figures())

    def redraw(self) -> None:
        e = self.proc.lookup(self.current)
        self.message.ok(f"{self.current:#x}: {e.level.upper()} entry, {e.kind}")
        a = self.current
        g = pagetable_graph(self.proc, a)
        walk_key = (a, self.proc.pid, g.graph["leaf"],
                    tuple((n, tuple(sorted(d.items()))) for n, d in g.nodes(data=True)))
        bits_key = (e.raw, e.level)
        if walk_key not in self._walk_pngs or bits_key not in self._bits_pngs:
            walk, bits = self.figures(key=False)
            self._walk_pngs.setdefault(walk_key, png(walk))
            self._bits_pngs.setdefault(bits_key, png(bits))
        self.walk_image.value = self._walk_pngs[walk_key]
        self.bits_image.value = self._bits_pngs[bits_key]
        self.bits_key.value = ("<div style='font-size:0.8em;line-height:1.35;color:#333'>"
                               f"{html.escape(entry_key(e, e.level))}</div>")
        self.message.value += f" <code>{html.escape(str(e))}</code>"


def address_walker(proc: Process, start: int, length: int) -> AddressWalker:
    """A widget: a slider over ``[start, start + length)`` of ``proc``, page by page, and a
    box to type any address of the range; for the chosen address the page-table walk (index
    bits, tables, the entry at each level) and the last entry's bits. ``.static_figure()``
    gives both as one Figure for print."""
    return AddressWalker(proc, start, length)
