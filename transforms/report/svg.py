"""Inline SVG charts drawn in Python: the report needs no JavaScript, no chart library and no network.

Every chart is an ``<svg class="chart">`` with a ``<title>`` per mark (the browser shows it on hover)
and all text escaped, so labels taken from the data cannot inject markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
LABEL_COLORS = {"negative": "#d62728", "neutral": "#9e9e9e", "positive": "#2ca02c", "spam": "#d62728",
                "ham": "#4e79a7", "unrouted": "#bab0ac"}
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def color(label: str, index: int) -> str:
    """A fixed colour for well-known labels (negative is always red), else the palette in order."""
    return LABEL_COLORS.get(label, PALETTE[index % len(PALETTE)])


def _text(x: float, y: float, value: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT} {extra}>{escape(value)}</text>'


def bar_chart(name: str, bars: Sequence[tuple[str, float]], unit: str = "", width: int = 640) -> str:
    """Horizontal bars, one per (label, value), longest scaled to the plot width."""
    row, left, right = 22, 190, 70
    height = row * len(bars) + 10
    top = max((value for _, value in bars), default=0) or 1
    marks = []
    for index, (label, value) in enumerate(bars):
        y = 5 + index * row
        length = (width - left - right) * value / top
        shown = f"{value:g}{unit}"
        marks.append(
            f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{row - 6}" fill="{color(label, index)}">'
            f"<title>{escape(label)}: {escape(shown)}</title></rect>"
            + _text(left - 6, y + row - 10, label[:30], "end")
            + _text(left + length + 4, y + row - 10, shown))
    return (f'<svg class="chart" data-chart="{escape(name)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img">{"".join(marks)}</svg>')


def stacked_columns(name: str, categories: Sequence[str], series: dict[str, Sequence[float]],
                    totals: Sequence[int] | None = None, width: int = 640, height: int = 220) -> str:
    """100 % stacked columns: one column per category (a day), one coloured segment per series (a label).

    ``series`` values are shares of their column (each column sums to 1); ``totals`` (documents per
    column) go in the hover titles.
    """
    left, bottom, top_pad, legend = 40, 48, 10, 24
    plot_h = height - bottom - top_pad - legend
    step = (width - left - 10) / max(len(categories), 1)
    bar_w = min(max(step * 0.8, 1), 60)
    marks = [f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{width - 10}" y2="{top_pad + plot_h}" stroke="#333"/>']
    for tick in (0, 0.5, 1):
        y = top_pad + plot_h * (1 - tick)
        marks.append(_text(left - 4, y + 4, f"{tick:.0%}", "end"))
    for column, category in enumerate(categories):
        x = left + column * step + (step - bar_w) / 2
        base = top_pad + plot_h
        for index, (label, values) in enumerate(series.items()):
            share = values[column]
            if share <= 0:
                continue
            segment = plot_h * share
            base -= segment
            count = f", {round(share * totals[column])} of {totals[column]}" if totals else ""
            marks.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{segment:.1f}" '
                         f'fill="{color(label, index)}"><title>{escape(category)} {escape(label)}: '
                         f"{share:.0%}{escape(count)}</title></rect>")
        if len(categories) <= 16 or column % max(len(categories) // 8, 1) == 0:
            marks.append(_text(x + bar_w / 2, top_pad + plot_h + 14, category[5:] if len(category) == 10 else category,
                               "middle"))
    x = left
    for index, label in enumerate(series):
        y = height - 8
        marks.append(f'<rect x="{x}" y="{y - 10}" width="10" height="10" fill="{color(label, index)}"/>'
                     + _text(x + 14, y, label))
        x += 24 + 7 * len(label)
    return (f'<svg class="chart" data-chart="{escape(name)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img">{"".join(marks)}</svg>')
