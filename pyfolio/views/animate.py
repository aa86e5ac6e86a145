"""Step-through player and before/after stills, for any view of recorded frames.

``draw`` is any view function taking a frame and returning a Figure (for example
``lambda f: draw_cells(f.cells)`` or ``count_panel``). Each frame is rendered once to pixels;
the player is matplotlib's JavaScript animation (``to_jshtml()``: play/pause and a step
slider that work on a static HTML page without a kernel).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from html import escape
from typing import Any, TypeVar

import numpy as np
from IPython.display import HTML
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure

from pyfolio.views._style import new_figure, wrap_title

__all__ = ["render", "animate", "before_after", "stack"]

F = TypeVar("F")


def render(fig: Figure) -> np.ndarray:
    """The figure as an RGB pixel array (white background); the figure is cleared."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]
    out = rgba[..., :3].copy()
    fig.clf()
    return out


def _pad(imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
    h, w = max(i.shape[0] for i in imgs), max(i.shape[1] for i in imgs)
    out = []
    for i in imgs:
        p = np.full((h, w, 3), 255, np.uint8)
        p[:i.shape[0], :i.shape[1]] = i
        out.append(p)
    return out


def _label(frame: Any, i: int) -> str:
    """The player's caption for frame ``i`` (a recorded frame's own ``step`` number when it
    has one): "step i: label" (a label that already says which step it is, "step 2 of 5:
    ...", is shown as it is), and the frame's error."""
    i = getattr(frame, "step", i)
    label = getattr(frame, "label", None)
    err = getattr(frame, "error", None)
    if not label:
        return f"step {i}"
    text = label if str(label).lower().startswith("step ") else f"step {i}: {label}"
    return text + (f" ({err})" if err else "")


def _alt(frames: Sequence[Any]) -> str:
    """Alt text for a player: how many frames, and what each shows (its caption)."""
    steps = "; ".join(_label(f, i) for i, f in enumerate(frames))
    text = f"Step-through player of {len(frames)} frames: {steps}"
    return text if len(text) <= 600 else text[:597] + "..."


def animate(frames: Sequence[F], draw: Callable[[F], Figure], *, interval: int = 900,
            dpi: int = 80, alt: str | None = None) -> HTML:
    """A JavaScript player over ``[draw(f) for f in frames]`` (play/pause, step slider).
    ``alt`` is the picture's alt text (by default the frames' captions, in order)."""
    if not frames:
        raise ValueError("animate() needs at least one frame")
    imgs = _pad([render(draw(f)) for f in frames])
    h, w = imgs[0].shape[:2]
    captions = [wrap_title(_label(f, i), w / dpi - 0.1, 10) for i, f in enumerate(frames)]
    top = 0.3 + 0.2 * max(c.count("\n") for c in captions)  # inches: the longest caption
    fig = new_figure(w / dpi, h / dpi + top)
    fig.set_dpi(dpi)
    ax = fig.add_axes((0, 0, 1, h / (h + top * dpi)))
    ax.set_axis_off()
    im = ax.imshow(imgs[0], interpolation="nearest")
    caption = fig.text(0.01, 0.995, captions[0], va="top", fontsize=10)

    def update(i: int) -> list[Any]:
        im.set_data(imgs[i])
        caption.set_text(captions[i])
        return [im, caption]

    anim = FuncAnimation(fig, update, frames=len(imgs), interval=interval, blit=False)
    html = anim.to_jshtml(default_mode="once")
    # matplotlib links Font Awesome from a CDN; the book serves it locally (offline pages).
    html = re.sub(r"<link rel=\"stylesheet\"\s+href=\"https?://[^>]*>", "", html)
    html = html.replace('<img id="_anim_img',
                        f'<img alt="{escape(alt or _alt(frames), quote=True)}" id="_anim_img', 1)
    fig.clf()
    return HTML(html)


def before_after(frame0: F, frame1: F, draw: Callable[[F], Figure], *,
                 labels: tuple[str, str] = ("before", "after")) -> Figure:
    """One still for print: ``draw(frame0)`` above ``draw(frame1)``, each captioned."""
    a, b = _pad([render(draw(frame0)), render(draw(frame1))])
    h, w = a.shape[:2]
    dpi = 100
    fig = new_figure(w / dpi, 2 * h / dpi + 0.6)
    for k, (img, lbl, fr) in enumerate(((a, labels[0], frame0), (b, labels[1], frame1))):
        top = 1 - k * 0.5
        ax = fig.add_axes((0, top - 0.5, 1, 0.5 - 0.3 / (2 * h / dpi + 0.6)))
        ax.imshow(img, interpolation="nearest")
        ax.set_axis_off()
        what = getattr(fr, "label", "")
        fig.text(0.01, top - 0.005, f"{lbl}" + (f": {what}" if what else ""), va="top",
                 fontsize=10, weight="bold")
    return fig


def _trim(img: np.ndarray, margin: int = 8) -> np.ndarray:
    """Cut the all-white rows above and below the picture (keeping ``margin`` rows)."""
    rows = np.flatnonzero((img < 250).any(axis=(1, 2)))
    if not len(rows):
        return img
    return img[max(0, rows[0] - margin):rows[-1] + 1 + margin]


def stack(*figs: Figure, dpi: int = 100) -> Figure:
    """One figure showing ``figs`` one above the other (each rendered to pixels, blank
    rows above and below cut), for a frame that needs two views at once (for example a
    region and its frames)."""
    trimmed = [_trim(render(f)) for f in figs]
    w = max(i.shape[1] for i in trimmed)
    img = np.concatenate([np.pad(i, ((0, 0), (0, w - i.shape[1]), (0, 0)),
                                 constant_values=255) for i in trimmed])
    fig = new_figure(w / dpi, img.shape[0] / dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(img, interpolation="nearest")
    ax.set_axis_off()
    return fig
