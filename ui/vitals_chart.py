"""The vital-signs chart of the page: one panel per sign with its name, unit and value axis, the adult
normal range, times in the clinician's zone, and the explanation's relevance shaded behind the values.

Relevance is drawn as it was computed: unsigned (attention: where the model looked, not which way
it pushed) in one colour, or signed (integrated gradients) in two, supporting the diagnosis in
orange and arguing against it in blue. The picture travels inside the page's HTML (a data URI),
never through a file URL.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from medmm.codes import vital_for_code
from medmm.records import VitalSeries
from ui.localtime import Zone

# Adult thresholds of the clinical reference for stating a vital-sign finding in words (children
# need age-specific ranges): (low, high), None where the reference gives no bound.
NORMAL_RANGES: dict[str, tuple[float | None, float | None]] = {
    "temperature": (36.0, 38.0),  # hypothermia < 36.0, fever >= 38.0 Cel
    "heart_rate": (50.0, 100.0),  # bradycardia < 50, tachycardia > 100 /min
    "resp_rate": (None, 22.0),  # tachypnoea > 22 /min
    "sbp": (90.0, None),  # hypotension < 90 mm[Hg]
    "spo2": (92.0, None),  # low saturation < 92 %
}
UNITS = {"/min": "/min", "%": "%", "Cel": "\u00b0C", "mm[Hg]": "mmHg", "kg": "kg", "[degF]": "\u00b0F"}
UNIT_NAMES = {"heart_rate": "beats/min", "resp_rate": "breaths/min"}
FOR, AGAINST, UNSIGNED = "#ea580c", "#2563eb", "#f59e0b"
MIN_SHADE = 0.02  # relevance below 2% of the largest is not drawn


@dataclass(frozen=True)
class Relevance:
    """Relevance per step and channel (T, C) in `channels` order; `signed`: values carry a direction."""

    channels: tuple[str, ...]
    values: np.ndarray
    signed: bool
    method: str  # e.g. "integrated gradients"


def display_unit(channel: str, unit: str) -> str:
    return UNIT_NAMES.get(channel, UNITS.get(unit, unit))


def range_text(channel: str, unit: str) -> str:
    """E.g. "36-38 °C", "<= 22 breaths/min", "" when the reference gives none."""
    low, high = NORMAL_RANGES.get(channel, (None, None))
    u = display_unit(channel, unit)
    if low is not None and high is not None:
        return f"{low:g}\u2013{high:g} {u}"
    if high is not None:
        return f"\u2264 {high:g} {u}"
    if low is not None:
        return f"\u2265 {low:g} {u}"
    return ""


def _shade(ax, times, step: timedelta, column: np.ndarray, signed: bool) -> None:
    top = float(np.max(np.abs(column))) if column.size else 0.0
    if top <= 0:
        return
    for t, r in zip(times, column):
        if abs(r) / top < MIN_SHADE:
            continue
        colour = (FOR if r > 0 else AGAINST) if signed else UNSIGNED
        ax.axvspan(t, t + step, color=colour, alpha=0.55 * abs(r) / top, linewidth=0, zorder=0)


def render_chart(series: VitalSeries, relevance: Relevance | None, title: str, zone: Zone) -> bytes | None:
    """PNG bytes of the chart, or None when no sign was observed."""
    fig = chart_figure(series, relevance, title, zone)
    if fig is None:
        return None
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def chart_figure(series: VitalSeries, relevance: Relevance | None, title: str, zone: Zone) -> Figure | None:
    """The chart's figure (one panel per observed sign), or None when no sign was observed."""
    rows = [c for c in range(len(series.channels)) if series.mask[:, c].any()]
    if not rows:
        return None
    step = series.step_span()
    times = list(series.times)
    centres = np.array([t + step / 2 for t in times])
    fig = Figure(figsize=(6.4, 1.0 * len(rows) + 1.0), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 1, sharex=True, squeeze=False)[:, 0]
    for ax, c in zip(axes, rows):
        name, unit = series.channels[c], series.units[c]
        sign = vital_for_code(name)
        observed = series.mask[:, c]
        values = series.values[observed, c].astype(np.float64)
        low, high = NORMAL_RANGES.get(name, (None, None))
        if relevance is not None and name in relevance.channels:
            _shade(ax, times, step, relevance.values[:, relevance.channels.index(name)], relevance.signed)
        if low is not None and high is not None:
            ax.axhspan(low, high, color="#16a34a", alpha=0.10, linewidth=0, zorder=1)
        for bound in (low, high):
            if bound is not None:
                ax.axhline(bound, color="#15803d", linestyle="--", linewidth=0.9, zorder=1)
        ax.plot(centres[observed], values, "o-", color="#111827", markersize=2.5, linewidth=1.2, zorder=3)
        span = [v for v in (values.min(), values.max(), low, high) if v is not None]
        pad = max((max(span) - min(span)) * 0.12, 0.5)
        ax.set_ylim(min(span) - pad, max(span) + pad)
        ax.yaxis.set_major_locator(MaxNLocator(4))
        label = textwrap.fill(sign.display if sign else name, 14)
        ax.set_ylabel(f"{label}\n({display_unit(name, unit)})", fontsize=8.5, rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=8)
        ax.grid(axis="y", color="#e5e7eb", linewidth=0.6)
        normal = range_text(name, unit)
        ax.text(
            1.015,
            0.5,
            f"normal\n{normal}" if normal else "no adult\nrange given",
            transform=ax.transAxes,
            fontsize=8,
            va="center",
            color="#15803d" if normal else "#6b7280",
        )
    locator = mdates.AutoDateLocator(tz=zone.tz, minticks=3, maxticks=6)
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=zone.tz))
    axes[-1].set_xlim(times[0], times[-1] + step)
    axes[-1].set_xlabel(f"time ({zone.label(times[-1])})", fontsize=8)
    fig.suptitle(title, fontsize=9.5, x=0.02, ha="left")
    fig.subplots_adjust(
        left=0.22, right=0.8, top=1 - 0.5 / fig.get_figheight(), bottom=0.55 / fig.get_figheight(), hspace=0.12
    )
    return fig


def legend_html(relevance: Relevance | None, target: str) -> str:
    """What the chart's marks mean, in words."""
    items = [
        "<li><span class='sw' style='background:#111827'></span>measured values (mean per step)</li>",
        "<li><span class='sw' style='background:#16a34a;opacity:.4'></span>green band / dashed lines: adult normal range "
        "(the clinical reference's thresholds; children need their own)</li>",
    ]
    if relevance is None:
        items.append("<li>no relevance computed for this view</li>")
    elif relevance.signed:
        items.append(
            f"<li><span class='sw' style='background:{FOR}'></span>hours that support {html.escape(target)} "
            f"<span class='sw' style='background:{AGAINST}'></span>hours that argue against it "
            f"({html.escape(relevance.method)}; darker = larger share of the largest)</li>"
        )
    else:
        items.append(
            f"<li><span class='sw' style='background:{UNSIGNED}'></span>hours the model attended to for "
            f"{html.escape(target)} ({html.escape(relevance.method)}; unsigned: it shows where the model looked, "
            "not whether the values speak for or against)</li>"
        )
    return f"<ul class='medmm-legend'>{''.join(items)}</ul>"


def chart_html(series: VitalSeries | None, relevance: Relevance | None, title: str, target: str, zone: Zone) -> str:
    """The chart as an <img> with its legend, or a line saying there is none."""
    png = render_chart(series, relevance, title, zone) if series is not None else None
    if png is None:
        return '<div class="medmm-vitals"><p>No vital signs in this study.</p></div>'
    data = base64.b64encode(png).decode("ascii")
    alt = f"Vital signs chart: {title}"
    return (
        f'<div class="medmm-vitals"><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"{legend_html(relevance, target)}</div>"
    )
