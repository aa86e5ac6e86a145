"""Shared pieces of the widget apps: the app base class, a figure shown as a PNG image
widget, a message line.

A figure is rendered to PNG bytes into an ``ipywidgets.Image`` (so tests can assert that a
redraw happened, and the static page keeps the last picture); errors are shown as a red
line, never as a traceback. An :class:`App` displays as the widget and, in the same output,
its ``static_figure()`` as ``image/png``: a front end that renders widgets (JupyterLab, the
book's HTML) shows the widget, one that cannot (print, PDF) shows the figure, so a chapter
never displays the picture twice.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from pyfolio.sim.errors import MmError, SegmentationFault

__all__ = ["App", "png", "image_widget", "Message"]


def png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes on a white background; the figure is cleared afterwards.
    At the views' 100 dpi a figure is at most the page's width (pyfolio.views._style), so
    the page shows it pixel for pixel."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    fig.clf()
    return buf.getvalue()


def image_widget(fig: Figure) -> widgets.Image:
    return widgets.Image(value=png(fig), format="png", layout={"max_width": "100%"})


class App(widgets.VBox):
    """A widget app: a VBox that also offers :meth:`static_figure` as ``image/png``."""

    def static_figure(self) -> Figure:
        """The app's picture as a matplotlib Figure (for print, PDF and the tests)."""
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        data: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)
        if data is not None:
            data["image/png"] = base64.b64encode(png(self.static_figure())).decode("ascii")
        return data


class Message(widgets.HTML):
    """A one-line status: ``ok(text)`` in green, ``error(text)`` in red."""

    def ok(self, text: str) -> None:
        self.value = f"<span style='color:#1a6b1a'>{html.escape(text)}</span>"

    def error(self, text: str) -> None:
        self.value = f"<span style='color:#b00020'><b>{html.escape(text)}</b></span>"

    def number_in(self, text: str, lo: int, hi: int, noun: str, where: str,
                  decimal: bool = False) -> int | None:
        """A typed whole number (0x... or decimal) in [lo, hi); else None, after saying what
        is wrong and what is allowed (an empty box: None, silently). ``decimal`` writes the
        bounds in decimal (page numbers) instead of hex (addresses, PFNs).

        >>> m = Message()
        >>> m.number_in("0x10", 0, 512, "a page number", "the THP's pages", decimal=True)
        16
        >>> m.number_in("3.5", 0, 512, "a page number", "the THP's pages", decimal=True)
        >>> m.text
        "'3.5' is not a page number: type a whole number from 0 to 511 (decimal or 0x...)"
        >>> m.number_in("600", 0, 512, "a page number", "the THP's pages", decimal=True)
        >>> m.text
        "600 is outside the THP's pages: type a whole number from 0 to 511"
        """
        show = str if decimal else hex
        allowed = f"a whole number from {show(lo)} to {show(hi - 1)}"
        if not text.strip():
            return None
        try:
            value = int(text.strip(), 0)
        except ValueError:
            try:
                value = int(text.strip(), 10)  # leading zeros: "010"
            except ValueError:
                self.error(f"{text.strip()!r} is not {noun}: type {allowed} (decimal or 0x...)")
                return None
        if not lo <= value < hi:
            self.error(f"{show(value)} is outside {where}: type {allowed}")
            return None
        return value

    def report(self, what: str, fn: Callable[[], str]) -> bool:
        """Run one action: ``what: <its text>`` in green, or ``what: <the error>`` in red
        when it raises MmError or SegmentationFault (never a traceback). True if it ran."""
        try:
            result = fn()
        except (MmError, SegmentationFault) as e:
            self.error(f"{what}: {e}")
            return False
        self.ok(f"{what}: {result}")
        return True

    @property
    def text(self) -> str:
        """The message without markup (for tests)."""
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.value))
