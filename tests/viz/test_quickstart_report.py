"""The demo's `comparison.png` and `report.md`: one unit (percent), one rounding of the gain.

`report.json` keeps accuracies as fractions rounded to 4 digits; the chart, the markdown
table and the README show percent with one decimal, and the gain is the difference of
the two percentages as shown, so the table's columns subtract exactly to its gain column.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg

from lxmert.quickstart import QuickstartOptions, comparison_figure, report_markdown, shown_gain, shown_percent

# (scratch, pretrained, shown scratch, shown pretrained, shown gain): the first row is the
# README's VQA row, where the exact difference (24.78) would round to +24.8.
ROWS = [
    (0.2226, 0.4704, 22.3, 47.0, 24.7),
    (0.2225, 0.4704, 22.2, 47.0, 24.8),  # 100 * 0.2225 is 22.249999... in binary
    (0.5250, 0.5083, 52.5, 50.8, -1.7),
    (0.0, 1.0, 0.0, 100.0, 100.0),
    (0.3333, 0.3333, 33.3, 33.3, 0.0),
]


@pytest.mark.parametrize("s,p,shown_s,shown_p,gain", ROWS)
def test_gain_is_the_difference_of_the_shown_percentages(s, p, shown_s, shown_p, gain):
    assert (shown_percent(s), shown_percent(p), shown_gain(s, p)) == (shown_s, shown_p, gain)
    md = report_markdown({"vqa": {"pretrained": p, "scratch": s}}, {}, QuickstartOptions())
    (row,) = [line for line in md.splitlines() if line.startswith("| VQA |")]
    assert row.endswith(f"| {shown_s:.1f} | {shown_p:.1f} | {gain:+.1f} |")


fractions = st.integers(0, 10_000).map(lambda k: k / 10_000)  # report.json's 4-digit fractions


@settings(max_examples=300, deadline=None)
@given(s=fractions, p=fractions)
def test_report_table_columns_subtract_to_the_gain(s, p):
    md = report_markdown({"gqa": {"pretrained": p, "scratch": s}}, {}, QuickstartOptions())
    (row,) = [line for line in md.splitlines() if line.startswith("| GQA |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    scratch, pre = float(cells[2]), float(cells[3])
    assert cells[4] == f"{round(pre - scratch, 1):+.1f}"  # exactly what a reader computes
    assert abs(scratch - 100 * s) <= 0.05 + 1e-9 and abs(pre - 100 * p) <= 0.05 + 1e-9


def test_comparison_chart_is_in_percent_labelled_and_uncovered():
    report = {"vqa": {"pretrained": 0.4704, "scratch": 0.2226}, "gqa": {"pretrained": 0.9951, "scratch": 0.40},
              "nlvr2": {"pretrained": 0.5083, "scratch": 0.5250}}
    fig = comparison_figure(report)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    (ax,) = fig.axes
    assert "%" in ax.get_ylabel() and ax.get_ylim()[1] >= 100
    bars = ax.patches
    heights = sorted(round(b.get_height(), 6) for b in bars)
    expected = sorted(shown_percent(row[v]) for row in report.values() for v in ("scratch", "pretrained"))
    assert heights == expected  # percent, not fractions
    labels = list(ax.texts)
    assert sorted(float(t.get_text()) for t in labels) == expected  # every bar carries its value
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    for artist in [*bars, *labels]:
        assert not box.overlaps(artist.get_window_extent(renderer))
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0] == f"VQA\n{shown_gain(0.2226, 0.4704):+.1f} points" == "VQA\n+24.7 points"
