"""A small SVG vocabulary for the course's diagrams: one style for every chapter.

Every diagram in the book is drawn by code in this folder (``python book/diagrams/build.py``
writes ``notebooks/figures/*.svg``; ``--check`` fails when a committed file is stale), so all of
them share the palette, fonts and arrow heads defined here and can be regenerated after a change.

Design rules, so that a figure reads in the book's light and dark themes and at phone width:

* every diagram paints its own white card (a dark theme shows it as a light panel);
* text is at least 13 px in a ``viewBox`` at most 720 units wide;
* colour only groups things (inputs, projections, attention, normalisation, feed-forward,
  outputs): each box also carries a label, so nothing depends on telling colours apart.

Labels accept a tiny math markup: ``x_{t-1}``, ``x_t`` (subscript), ``W^{Q}``, ``K^T``
(superscript); use Unicode for Greek letters (α, σ), √ and ·.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
INK = "#1a202c"      # text and arrows
MUTED = "#4a5568"    # secondary text
CARD = "#ffffff"     # the diagram's own background
CARD_EDGE = "#cbd5e0"

# (fill, stroke) per kind of box; the same kind has the same colour in every chapter.
PALETTE = {
    "input": ("#e8f1fb", "#2b6cb0"),       # data entering: tokens, embeddings, X, states
    "linear": ("#fdf0d5", "#b7791f"),      # learned projections: W^Q, W^K, W^V, W^O, heads
    "attention": ("#fde2e1", "#c53030"),   # scores, softmax, attention pooling
    "norm": ("#e6f4ea", "#2f855a"),        # LayerNorm, residual additions
    "ffn": ("#efe6fb", "#6b46c1"),         # position-wise feed-forward, recurrent cells
    "output": ("#edf2f7", "#4a5568"),      # results, logits, heads' outputs
    "special": ("#fff8e1", "#8d6e00"),     # special tokens: <cls>, <sep>, <start>...
    "plain": ("#ffffff", "#4a5568"),
    "masked": ("#e2e8f0", "#a0aec0"),      # masked / unused cells
}


def _num(v: float) -> str:
    """Coordinates with at most one decimal, so that regenerated files are byte-identical."""
    r = round(float(v), 1)
    return str(int(r)) if r == int(r) else f"{r:.1f}"


_MARKUP = re.compile(r"([_^])(\{[^}]*\}|.)")


def rich(text: str) -> str:
    """SVG ``<tspan>`` markup for ``x_{i}`` / ``x^{T}`` in a label (escaped)."""
    out, pos = [], 0
    for m in _MARKUP.finditer(text):
        out.append(escape(text[pos:m.start()]))
        body = m.group(2)
        body = body[1:-1] if body.startswith("{") else body
        shift = "-3" if m.group(1) == "^" else "4"  # dy in px: up for ^, down for _
        back = "3" if m.group(1) == "^" else "-4"
        out.append(f'<tspan dy="{shift}" font-size="75%">{escape(body)}</tspan>'
                   f'<tspan dy="{back}">\u200b</tspan>')
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)


@dataclass(frozen=True)
class Box:
    """A drawn rectangle, with anchor points for arrows."""
    x: float
    y: float
    w: float
    h: float

    @property
    def top(self): return (self.x + self.w / 2, self.y)

    @property
    def bottom(self): return (self.x + self.w / 2, self.y + self.h)

    @property
    def left(self): return (self.x, self.y + self.h / 2)

    @property
    def right(self): return (self.x + self.w, self.y + self.h / 2)

    @property
    def center(self): return (self.x + self.w / 2, self.y + self.h / 2)

    def at(self, fx: float, fy: float):
        """The point at fractions (fx, fy) of the box's width and height."""
        return (self.x + fx * self.w, self.y + fy * self.h)


class Diagram:
    """An SVG drawing of ``width`` × ``height`` units with a title and a description.

    ``title`` and ``desc`` become the SVG's ``<title>`` and ``<desc>`` (read by screen readers);
    the notebook that shows the diagram gives it alt text as well.
    """

    def __init__(self, width: float, height: float, title: str, desc: str):
        if width > 720:
            raise ValueError(f"width must be at most 720 units (phone legibility), got {width}")
        self.width, self.height, self.title, self.desc = width, height, title, desc
        self.items: list[str] = []

    # -- primitives -------------------------------------------------------------------------
    def text(self, x, y, s: str, size: float = 14, anchor: str = "middle", color: str = INK,
             weight: str = "normal", italic: bool = False) -> None:
        """Text centred (or ``anchor``-ed) at x, with its middle at y; ``\\n`` breaks lines."""
        lines = s.split("\n")
        y0 = y - (len(lines) - 1) * size * 0.6
        for i, line in enumerate(lines):
            style = ' font-style="italic"' if italic else ""
            w = f' font-weight="{weight}"' if weight != "normal" else ""
            self.items.append(
                f'<text x="{_num(x)}" y="{_num(y0 + i * size * 1.2)}" font-size="{_num(size)}" '
                f'text-anchor="{anchor}" dominant-baseline="central" fill="{color}"{w}{style}>'
                f'{rich(line)}</text>')

    def box(self, x, y, w, h, label: str = "", kind: str = "plain", size: float = 14,
            rx: float = 6, dashed: bool = False, weight: str = "normal") -> Box:
        """A filled, labelled rectangle coloured by ``kind`` (see PALETTE)."""
        fill, stroke = PALETTE[kind]
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.items.append(
            f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" '
            f'rx="{_num(rx)}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/>')
        if label:
            self.text(x + w / 2, y + h / 2, label, size=size, weight=weight)
        return Box(x, y, w, h)

    def frame(self, x, y, w, h, label: str = "", label_pos: str = "top-left") -> Box:
        """A dashed container (a block repeated N times, a module's boundary)."""
        self.items.append(
            f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" rx="10" '
            f'fill="none" stroke="{MUTED}" stroke-width="1.2" stroke-dasharray="6 4"/>')
        if label:
            if label_pos == "top-left":
                self.text(x + 8, y + 12, label, size=13, anchor="start", color=MUTED)
            else:  # right side, outside
                self.text(x + w + 8, y + h / 2, label, size=14, anchor="start", color=MUTED)
        return Box(x, y, w, h)

    def circle(self, x, y, r: float = 11, label: str = "+", kind: str = "norm",
               size: float = 15) -> Box:
        """A small round node: ⊕ for a residual addition, × for a product."""
        fill, stroke = PALETTE[kind]
        self.items.append(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(r)}" fill="{fill}" '
                          f'stroke="{stroke}" stroke-width="1.5"/>')
        if label:
            self.text(x, y, label, size=size, weight="bold")
        return Box(x - r, y - r, 2 * r, 2 * r)

    def arrow(self, *points, label: str = "", label_at: float = 0.5, dashed: bool = False,
              color: str = INK, head: bool = True, label_side: str = "right",
              size: float = 13) -> None:
        """A polyline through ``points`` ((x, y) pairs) with an arrow head at the end."""
        pts = " ".join(f"{_num(px)},{_num(py)}" for px, py in points)
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        mark = ' marker-end="url(#arrow)"' if head else ""
        self.items.append(f'<polyline points="{pts}" fill="none" stroke="{color}" '
                          f'stroke-width="1.5"{dash}{mark}/>')
        if label:
            # label beside the middle of the segment that holds the label_at fraction
            i = min(int(label_at * (len(points) - 1)), len(points) - 2)
            (x1, y1), (x2, y2) = points[i], points[i + 1]
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2
            if abs(x2 - x1) < abs(y2 - y1):  # vertical: label to the side
                dx = 8 if label_side == "right" else -8
                self.text(mx + dx, my, label, size=size, color=MUTED,
                          anchor="start" if label_side == "right" else "end")
            else:  # horizontal: label above
                self.text(mx, my - 10, label, size=size, color=MUTED)

    def line(self, *points, color: str = MUTED, dashed: bool = False) -> None:
        """A plain polyline without an arrow head."""
        self.arrow(*points, color=color, dashed=dashed, head=False)

    def grid(self, x, y, rows: int, cols: int, cell: float, fills=None, texts=None,
             size: float = 12) -> Box:
        """A matrix of cells; ``fills[i][j]`` is a PALETTE kind or a colour, ``texts[i][j]`` a label."""
        for i in range(rows):
            for j in range(cols):
                f = fills[i][j] if fills is not None else "plain"
                fill, stroke = PALETTE.get(f, (f, CARD_EDGE))
                self.items.append(
                    f'<rect x="{_num(x + j * cell)}" y="{_num(y + i * cell)}" width="{_num(cell)}" '
                    f'height="{_num(cell)}" fill="{fill}" stroke="{stroke}" stroke-width="1"/>')
                if texts is not None and texts[i][j]:
                    self.text(x + (j + 0.5) * cell, y + (i + 0.5) * cell, texts[i][j], size=size)
        return Box(x, y, cols * cell, rows * cell)

    def brace_label(self, x1, x2, y, label: str, size: float = 13) -> None:
        """A horizontal bracket from x1 to x2 at height y with a label under it."""
        self.line((x1, y - 5), (x1, y), (x2, y), (x2, y - 5))
        self.text((x1 + x2) / 2, y + 11, label, size=size, color=MUTED)

    # -- output -----------------------------------------------------------------------------
    def svg(self) -> str:
        w, h = _num(self.width), _num(self.height)
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
            f'height="{h}" role="img" aria-labelledby="title desc" font-family="{FONT}">\n'
            f'<title id="title">{escape(self.title)}</title>\n'
            f'<desc id="desc">{escape(self.desc)}</desc>\n'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
            f'fill="{INK}"/></marker></defs>\n'
            f'<rect x="0.5" y="0.5" width="{_num(self.width - 1)}" height="{_num(self.height - 1)}" '
            f'rx="12" fill="{CARD}" stroke="{CARD_EDGE}"/>\n')
        return head + "\n".join(self.items) + "\n</svg>\n"
