"""The grid read for grounding: summaries and the CLINICAL.md adult rules, with values chosen at the thresholds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from medmm.grounding.vitals import adult_thresholds_apply, check_rule, number, summarise, when
from tests.grounding.helpers import T0, grid, study


def test_summary_gives_count_first_last_low_high_and_the_largest_fall_with_step_times():
    s = summarise(grid(spo2=[97.0, None, 99.0, 95.5, 96.0, None]))["spo2"]
    assert s.count == 4 and (s.first.value, s.first.time) == (97.0, T0)
    assert (s.last.value, s.last.time) == (96.0, T0 + timedelta(hours=4))
    assert (s.low.value, s.low.time) == (95.5, T0 + timedelta(hours=3))
    assert (s.high.value, s.high.time) == (99.0, T0 + timedelta(hours=2))
    # the largest drop is from the peak 99 (step 2) to 95.5 (step 3), not from the first reading
    assert s.largest_fall == pytest.approx(3.5) and (s.fall_from.value, s.fall_to.value) == (99.0, 95.5)
    assert "temperature" not in summarise(grid(spo2=[97.0]))  # an unobserved channel has no summary


@pytest.mark.parametrize(
    ("rule", "columns", "holds"),
    [
        ("fever", {"temperature": [36.2, 37.1, 36.8]}, False),  # the clinician's example
        ("fever", {"temperature": [36.5, 38.0]}, True),  # >= 38.0
        ("fever", {"temperature": [36.5, 37.99]}, False),
        ("hypothermia", {"temperature": [36.0, 36.4]}, False),  # < 36.0 strictly
        ("hypothermia", {"temperature": [35.9]}, True),
        ("tachycardia", {"heart_rate": [100.0, 90.0]}, False),  # > 100 strictly
        ("tachycardia", {"heart_rate": [100.5]}, True),
        ("bradycardia", {"heart_rate": [50.0]}, False),
        ("bradycardia", {"heart_rate": [49.0, 70.0]}, True),
        ("tachypnoea", {"resp_rate": [11.5, 16.5]}, False),
        ("tachypnoea", {"resp_rate": [22.0]}, False),
        ("tachypnoea", {"resp_rate": [18.0, 23.0]}, True),
        ("hypotension", {"sbp": [90.0, 120.0]}, False),
        ("hypotension", {"sbp": [89.0]}, True),
        ("hypoxaemia", {"spo2": [98.0, 95.0]}, False),  # a fall of 3 points, never below 92
        ("hypoxaemia", {"spo2": [98.0, 94.0]}, True),  # a fall of 4 points
        ("hypoxaemia", {"spo2": [91.5]}, True),  # below 92 with one reading
        ("weight gain", {"weight": [70.0, 71.9]}, False),
        ("weight gain", {"weight": [70.0, 69.0, 72.0]}, True),  # last minus first
    ],
)
def test_each_rule_at_and_around_its_threshold(rule, columns, holds):
    assert check_rule(rule, summarise(grid(**columns))).holds is holds


def test_a_rule_without_its_channel_cannot_be_read_and_says_so():
    result = check_rule("fever", summarise(grid(heart_rate=[80.0])))
    assert result.holds is None and result.reason == "no body temperature reading inside the window"
    one = check_rule("weight gain", summarise(grid(weight=[80.0])))
    assert one.holds is None and "one weight reading" in one.reason


def test_the_reason_quotes_the_value_and_its_step_time_without_rounding_across_the_threshold():
    result = check_rule("fever", summarise(grid(temperature=[36.2, 37.99, 37.1])))
    assert result.reason == f"max temperature 37.99 Cel at {when(T0 + timedelta(hours=1))} (fever: >= 38.0 Cel)"
    assert when(T0) == "2026-03-01 00:00 UTC" and number(36.200001) == "36.2" and number(38.0) == "38"


@pytest.mark.parametrize(
    ("age", "applies", "words"),
    [
        (60.0, True, ""),
        (18.0, True, ""),
        (17.9, False, "17 years old"),
        (0.67, False, "8 months old"),
        (None, False, "age is unknown"),
    ],
)
def test_adult_thresholds_apply_from_18_and_never_to_an_unknown_age(age, applies, words):
    ok, why = adult_thresholds_apply(study(age=age))
    assert ok is applies and words in why
