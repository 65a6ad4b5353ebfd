"""Static figures for the report: point-and-interval ("forest") plots as inline SVG.

Hand-written on purpose: plotly's static export needs kaleido, which drives its own Chrome
download (impossible offline) and launches a browser per figure; matplotlib is not a
dependency of auditkit. A forest plot is a few lines, rectangles and labels, and an inline
SVG keeps the HTML report one self-contained file that prints sharply to PDF. The page
draws the same :class:`~auditkit.overview.FigureData` with plotly.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from .. import wording as w

__all__ = ["forest_svg"]

_ROW = 22
_LEFT = 300
_WIDTH = 660
_PLOT = _WIDTH - _LEFT - 20


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and x == x else None


def forest_svg(figure: Any) -> str:
    """An SVG of ``figure.rows`` (label, value, low, high) with an optional reference line."""
    rows = list(figure.rows)
    values = [v for r in rows for v in (_num(r.get("value")), _num(r.get("low")),
                                        _num(r.get("high"))) if v is not None]
    ref = _num(figure.reference)
    if ref is not None:
        values.append(ref)
    if figure.pct:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = (min(values + [0.0]), max(values + [1.0])) if values else (0.0, 1.0)
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return _LEFT + _PLOT * (v - lo) / span

    height = 40 + _ROW * max(len(rows), 1) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
           f'viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{escape(figure.title)}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="4" y="14" font-weight="bold">{escape(figure.title)}</text>']
    top = 26
    for i, r in enumerate(rows):
        y = top + _ROW * i + _ROW / 2
        out.append(f'<text x="{_LEFT - 8}" y="{y + 4}" text-anchor="end">'
                   f'{escape(str(r.get("label", "")))[:60]}</text>')
        v, a, b = _num(r.get("value")), _num(r.get("low")), _num(r.get("high"))
        if v is None:
            out.append(f'<text x="{_LEFT + 4}" y="{y + 4}" fill="#555">not shown</text>')
            continue
        if a is not None and b is not None:
            out.append(f'<line x1="{x(a):.1f}" y1="{y}" x2="{x(b):.1f}" y2="{y}" '
                       'stroke="#1f4e79" stroke-width="2"/>')
        out.append(f'<rect x="{x(v) - 4:.1f}" y="{y - 4}" width="8" height="8" fill="#1f4e79"/>')
    bottom = top + _ROW * max(len(rows), 1)
    out.append(f'<line x1="{_LEFT}" y1="{bottom}" x2="{_LEFT + _PLOT}" y2="{bottom}" '
               'stroke="#333"/>')
    for k in range(5):
        t = lo + span * k / 4
        out.append(f'<line x1="{x(t):.1f}" y1="{bottom}" x2="{x(t):.1f}" y2="{bottom + 4}" '
                   'stroke="#333"/>')
        out.append(f'<text x="{x(t):.1f}" y="{bottom + 15}" text-anchor="middle">'
                   f'{escape(w.fmt_value(t, pct=figure.pct))}</text>')
    if ref is not None:
        out.append(f'<line x1="{x(ref):.1f}" y1="{top - 4}" x2="{x(ref):.1f}" y2="{bottom}" '
                   'stroke="#a00" stroke-dasharray="4 3"/>')
        right = x(ref) > _LEFT + _PLOT * 0.7  # keep the label inside the picture
        out.append(f'<text x="{x(ref) + (-3 if right else 3):.1f}" y="{top - 6}" fill="#a00" '
                   f'text-anchor="{"end" if right else "start"}">'
                   f'{escape(figure.reference_label or "reference")} '
                   f'{escape(w.fmt_value(ref, pct=figure.pct))}</text>')
    out.append(f'<text x="{_LEFT + _PLOT / 2:.1f}" y="{bottom + 28}" text-anchor="middle">'
               f'{escape(figure.axis)}</text>')
    out.append("</svg>")
    return "".join(s for s in out if s)
