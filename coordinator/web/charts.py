"""Charts as SVG drawn on the server by pygal: no JavaScript to load, nothing from a CDN,
and every chart comes with the table of its numbers for screen readers and text browsers."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import pygal
from django.utils.safestring import SafeString, mark_safe
from pygal.style import Style

STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1b1b1b",
    foreground_strong="#1b1b1b",
    foreground_subtle="#4a4a4a",
    colors=("#0b57a4",),
    font_family="system-ui, sans-serif",
    label_font_size=12,
    major_label_font_size=12,
    title_font_size=14,
)
SCRIPT = re.compile(r"<script.*?</script>", re.S)


@dataclass(frozen=True)
class Chart:
    title: str
    svg: SafeString
    rows: list[tuple[str, float]]  # the same numbers, for the table behind the chart
    unit: str


def bar_chart(
    title: str, points: Sequence[tuple[str, float | Decimal]], *, unit: str, label_every: int = 1
) -> Chart:
    """A bar chart of ``points`` (label, value); labels are ours (dates, hours), never a user's text."""
    chart = pygal.Bar(
        style=STYLE,
        js=[],  # pygal would otherwise fetch its tooltip script from the web
        disable_xml_declaration=True,
        show_legend=False,
        width=720,
        height=260,
        x_label_rotation=35,
        show_minor_x_labels=False,
        y_title=unit,
        title=title,
        print_values=False,
    )
    chart.x_labels = [label for label, _ in points]
    chart.x_labels_major = [label for n, (label, _) in enumerate(points) if n % label_every == 0]
    chart.add(unit, [float(value) for _, value in points])
    svg = SCRIPT.sub("", chart.render(is_unicode=True))
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{title}" ', 1)
    return Chart(title, mark_safe(svg), [(label, float(value)) for label, value in points], unit)
