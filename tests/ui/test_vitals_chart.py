"""The vitals chart: display names and units, adult normal ranges, times in the clinician's zone, relevance signed or not."""

from __future__ import annotations

import base64
import io
import re
from datetime import datetime, timezone

import numpy as np
from PIL import Image

from medmm.records import VitalSeries
from ui.localtime import zone_named
from ui.vitals_chart import Relevance, chart_figure, chart_html, display_unit, legend_html, range_text, render_chart

START = datetime(2024, 1, 1, 22, 0, tzinfo=timezone.utc)


def vitals() -> VitalSeries:
    values = np.array([[80.0, np.nan, 37.2], [95.0, 18.0, 38.4], [110.0, 24.0, np.nan]], dtype=np.float32)
    return VitalSeries(
        START, 3600.0, ("heart_rate", "resp_rate", "temperature"), ("/min", "/min", "Cel"), values, ~np.isnan(values)
    )


def test_units_and_ranges_read_as_people_write_them():
    assert (
        display_unit("heart_rate", "/min"),
        display_unit("resp_rate", "/min"),
        display_unit("temperature", "Cel"),
        display_unit("sbp", "mm[Hg]"),
    ) == ("beats/min", "breaths/min", "\u00b0C", "mmHg")
    assert range_text("temperature", "Cel") == "36\u201338 \u00b0C"
    assert range_text("heart_rate", "/min") == "50\u2013100 beats/min"
    assert range_text("resp_rate", "/min") == "\u2264 22 breaths/min" and range_text("spo2", "%") == "\u2265 92 %"
    assert range_text("weight", "kg") == ""


def test_the_chart_is_a_png_one_panel_per_observed_sign_and_shading_changes_it():
    zone = zone_named("Europe/Berlin")
    plain = render_chart(vitals(), None, "Vital signs", zone)
    signed = render_chart(
        vitals(),
        Relevance(
            ("heart_rate", "resp_rate", "temperature"),
            np.array([[0.0, 0, 0], [0, 0, 0], [1.0, -0.5, 0]]),
            True,
            "integrated gradients",
        ),
        "Sepsis",
        zone,
    )
    a, b = (np.asarray(Image.open(io.BytesIO(x)).convert("RGB")) for x in (plain, signed))
    assert a.shape == b.shape and a.shape[0] > 300 and not np.array_equal(a, b)

    def warm(x):  # pixels coloured like the "supports" orange, or a paler tint of it
        r, g, bl = (x[..., i].astype(int) for i in range(3))
        return int(((r - bl > 60) & (r > g)).sum())

    def cool(x):  # pixels coloured like the "argues against" blue
        r, g, bl = (x[..., i].astype(int) for i in range(3))
        return int(((bl - r > 40) & (bl > g)).sum())

    assert warm(b) > warm(a) + 500 and cool(b) > cool(a) + 200
    empty = VitalSeries(
        START, 3600.0, ("heart_rate",), ("/min",), np.full((2, 1), np.nan, np.float32), np.zeros((2, 1), bool)
    )
    assert render_chart(empty, None, "x", zone) is None


def test_panels_have_names_units_a_value_axis_and_times_in_the_clinicians_zone():
    fig = chart_figure(vitals(), None, "Vital signs", zone_named("Asia/Kolkata"))
    fig.canvas.draw()
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "Heart rate\n(beats/min)",
        "Respiratory\nrate\n(breaths/min)",
        "Body\ntemperature\n(\u00b0C)",
    ]
    assert all(len(ax.get_yticklabels()) >= 2 for ax in fig.axes)  # a value axis on every panel
    assert fig.axes[-1].get_xlabel() == "time (Asia/Kolkata, UTC+05:30)"
    ticks = [t.get_text() for t in fig.axes[-1].get_xticklabels() if t.get_text()]
    assert ticks == [
        "04:00",
        "05:00",
        "06:00",
    ]  # 22:00-01:00 UTC is 03:30-06:30 in Kolkata: whole hours there, not in UTC
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "normal\n50\u2013100 beats/min" in texts and "normal\n36\u201338 \u00b0C" in texts


def test_the_legend_says_what_the_shading_means_signed_or_not():
    signed = legend_html(Relevance((), np.zeros((0, 0)), True, "integrated gradients"), "Sepsis")
    assert "support Sepsis" in signed and "argue against it" in signed
    unsigned = legend_html(Relevance((), np.zeros((0, 0)), False, "attention (gradient-weighted)"), "Sepsis")
    assert "unsigned" in unsigned and "not whether the values speak for or against" in unsigned
    assert "adult normal range" in signed


def test_the_chart_travels_inside_the_page_as_a_data_uri():
    page = chart_html(vitals(), None, "Vital signs", "Sepsis", zone_named("UTC"))
    data = re.search(r'src="data:image/png;base64,([^"]+)"', page)[1]
    assert base64.b64decode(data)[:4] == b"\x89PNG" and "/gradio_api/file" not in page
    assert "No vital signs" in chart_html(None, None, "x", "Sepsis", zone_named("UTC"))
