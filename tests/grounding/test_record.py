"""The record line and value questions: values charted by hand, answers read back against them."""

from __future__ import annotations

import pytest

from medmm.grounding.record import (
    VALUE_QUESTIONS,
    charted,
    quotes_value,
    record_text,
    sign_value,
    signs_of,
    value_answer,
    value_pairs,
    value_prompt,
)

READINGS = {
    "temperature": [38.94, "Cel"],
    "heart_rate": [112.5, "/min"],
    "resp_rate": [23.49, "/min"],
    "spo2": [91.6, "%"],
    "sbp": [94.2, "mm[Hg]"],
    "dbp": [58.7, "mm[Hg]"],
    "weight": [82.05, "kg"],
}


def test_values_are_charted_at_a_charts_precision():
    assert [
        charted("temperature", 38.94),
        charted("heart_rate", 112.5),
        charted("resp_rate", 23.49),
        charted("weight", 82.05),
    ] == ["38.9", "112", "23", "82.0"]  # Python rounds half to even: 112.5 -> 112; 82.05 is 82.0499... in binary
    assert charted("spo2", -0.2) == "0"


def test_the_record_line_lists_each_sign_with_its_last_value():
    assert record_text(READINGS) == (
        "Record, last vital signs: temperature 38.9 Cel; heart rate 112 /min; respiratory rate 23 /min; SpO2 92%; "
        "blood pressure 94/59 mm[Hg]; weight 82.0 kg."
    )
    only_pulse = {
        "heart_rate": [80.0, "/min"],
        "sbp": [120.0, "mm[Hg]"],
    }  # a systolic without its diastolic is no blood pressure
    assert record_text(only_pulse) == "Record, last vital signs: heart rate 80 /min."
    assert sign_value("blood_pressure", only_pulse) is None
    assert record_text({}) == "Record, last vital signs: none."


def test_pairs_ask_every_sign_and_answer_with_the_charted_value_or_none():
    pairs = dict(value_pairs({"heart_rate": [80.4, "/min"]}))
    assert len(pairs) == len(VALUE_QUESTIONS)
    prompt = value_prompt("What is the heart rate?", {"heart_rate": [80.4, "/min"]})
    assert prompt == "Record, last vital signs: heart rate 80 /min. Question: What is the heart rate? Answer:"
    assert pairs[prompt] == "Heart rate 80 /min (last reading)."
    assert value_answer("spo2", {}) == "No SpO2 reading in the window."
    assert signs_of(("heart_rate", "sbp", "dbp", "lactate")) == ("heart_rate", "blood_pressure")


@pytest.mark.parametrize(
    ("answer", "sign", "quotes", "wrong"),
    [
        ("Heart rate 112 /min (last reading).", "heart_rate", True, False),
        ("Heart rate 112.0 /min.", "heart_rate", True, False),  # the same number
        ("Heart rate 113 /min (last reading).", "heart_rate", False, True),
        ("SpO2 92% (last reading).", "spo2", True, False),  # the 2 of "SpO2" is no number
        ("SpO2 is normal.", "spo2", False, False),
        ("Blood pressure 94/59 mm[Hg].", "blood_pressure", True, False),
        ("Blood pressure 94/60 mm[Hg].", "blood_pressure", False, True),  # both values are needed
        ("Temperature 38.9 Cel, up from 37.2.", "temperature", True, True),
    ],
)
def test_an_answer_quotes_the_value_only_with_every_number_of_the_sign(answer, sign, quotes, wrong):
    check = quotes_value(answer, sign, READINGS)
    assert (check.has_reading, check.quotes, check.wrong_number) == (True, quotes, wrong)


def test_without_a_reading_the_answer_should_say_there_is_none():
    assert quotes_value("No weight reading in the window.", "weight", {}).declines
    assert not quotes_value("Weight 80 kg.", "weight", {}).declines
    assert not quotes_value("No weight reading in the window.", "weight", {}).has_reading
