"""The patient's values as the language model reads them, and questions about them it learns to answer.

A question about a vital sign's value is asked after a record line that states each channel's
last reading in the window ("Record, last vital signs: heart rate 112 /min; ..."),
as a clinical assistant reads an excerpt of the chart beside the question. Stage 2 trains on
such pairs (`value_pairs`); the evaluation asks them of held-out patients and checks whether the
answer quotes the patient's actual value (`quotes_value`). The readings are the preprocessor's
`meta["vitals_last"]`: channel -> [value, unit], the last observed step of the model's grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from medmm.grounding.questions import VITAL_CHANNELS, VITAL_SIGN_NAMES, sign_title
from medmm.lm.prompts import qa_prompt

RECORD_PREFIX = "Record, last vital signs:"
# the question asked about each vital sign (the wording of the evaluation's question set)
VALUE_QUESTIONS: dict[str, str] = {
    "temperature": "What is the patient's temperature?",
    "heart_rate": "What is the heart rate?",
    "resp_rate": "What is the respiratory rate?",
    "spo2": "What is the SpO2?",
    "blood_pressure": "What is the blood pressure?",
    "weight": "What is the patient's weight?",
}
# decimals a chart gives each channel (the record rounds to them; the rest are whole numbers)
DECIMALS = {"temperature": 1, "weight": 1}
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
Readings = Mapping[str, Sequence]  # channel -> (value, unit)


def signs_of(channels: Sequence[str]) -> tuple[str, ...]:
    """The vital signs whose channels are all among a model's `channels` (its task's), in VALUE_QUESTIONS order."""
    have = set(channels)
    return tuple(s for s in VALUE_QUESTIONS if set(VITAL_CHANNELS[s]) <= have)


def charted(channel: str, value: float) -> str:
    """A reading as a chart states it: temperature and weight to 0.1, the others whole."""
    text = f"{float(value):.{DECIMALS.get(channel, 0)}f}"
    return "0" if text.strip("-0.") == "" else text


def sign_value(sign: str, readings: Readings) -> str | None:
    """A sign's last value as the record states it ("94/58 mm[Hg]" for blood pressure), or None without a reading."""
    channels = VITAL_CHANNELS[sign]
    if not all(c in readings for c in channels):
        return None
    unit = str(readings[channels[0]][1])
    value = "/".join(charted(c, readings[c][0]) for c in channels)
    return f"{value}{'' if unit == '%' else ' '}{unit}"


def record_text(readings: Readings, signs: Sequence[str] = tuple(VALUE_QUESTIONS)) -> str:
    """The record line: each of `signs` with its last reading, in order; the signs without one are left out."""
    parts = [f"{VITAL_SIGN_NAMES[s]} {v}" for s in signs if (v := sign_value(s, readings)) is not None]
    return f"{RECORD_PREFIX} {'; '.join(parts)}." if parts else f"{RECORD_PREFIX} none."


def value_prompt(question: str, readings: Readings, signs: Sequence[str] = tuple(VALUE_QUESTIONS)) -> str:
    """The prompt of a value question: the record line, then the question."""
    return f"{record_text(readings, signs)} {qa_prompt(question)}"


def value_answer(sign: str, readings: Readings) -> str:
    """The answer a value question is trained towards."""
    value = sign_value(sign, readings)
    title = sign_title(sign)
    if value is None:
        return f"No {VITAL_SIGN_NAMES[sign]} reading in the window."
    return f"{title} {value} (last reading)."


def value_pairs(readings: Readings, signs: Sequence[str] = tuple(VALUE_QUESTIONS)) -> list[tuple[str, str]]:
    """(prompt, answer) of every value question about `signs`, for stage 2's question-answer rows."""
    return [(value_prompt(VALUE_QUESTIONS[s], readings, signs), value_answer(s, readings)) for s in signs]


@dataclass(frozen=True)
class ValueCheck:
    """How one answer to a value question reads against the patient's values."""

    has_reading: bool  # the patient has a reading of the sign in the window
    quotes: bool  # every value of the sign appears in the answer (with a reading)
    wrong_number: bool  # the answer states a number that is none of the sign's values (with a reading)
    declines: bool  # no number, and says there is none (without a reading)


def quotes_value(answer: str, sign: str, readings: Readings) -> ValueCheck:
    """Whether `answer` quotes the sign's last values: each as a number equal to it as the record charts it."""
    numbers = [float(m.group()) for m in _NUMBER.finditer(answer.replace(",", " "))]
    channels = VITAL_CHANNELS[sign]
    if not all(c in readings for c in channels):
        return ValueCheck(False, False, False, not numbers and bool(re.search(r"\b(no|not|none)\b", answer.lower())))
    truth = [float(charted(c, readings[c][0])) for c in channels]
    quotes = all(any(abs(n - t) < 1e-9 for n in numbers) for t in truth)
    wrong = any(all(abs(n - t) >= 1e-9 for t in truth) for n in numbers)
    return ValueCheck(True, quotes, wrong, False)
