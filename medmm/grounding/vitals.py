"""The patient's vital-sign grid read for grounding: per-channel summaries and the adult finding rules.

The grid is the study's window (it ends at the study time); each cell is the mean of the
readings of one step, so a summary's time is the start of its step. Rules are the table of
CLINICAL.md and hold for adults only: a child's or an unknown age's grid is summarised but no
finding is stated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from medmm.codes import VITAL_SIGNS
from medmm.grounding.findings import VITAL_RULES
from medmm.records import Study, VitalSeries

ADULT_YEARS = 18.0
_DISPLAY = {v.name: v.display.lower() for v in VITAL_SIGNS}
_UNIT = {v.name: v.unit for v in VITAL_SIGNS}


@dataclass(frozen=True)
class Reading:
    value: float
    time: datetime  # the start of the grid step


@dataclass(frozen=True)
class ChannelSummary:
    """One channel's observed steps inside the window: how many, first, last, lowest and highest."""

    channel: str
    unit: str
    count: int
    first: Reading
    last: Reading
    low: Reading
    high: Reading
    largest_fall: float  # the largest drop from an earlier step to a later one (>= 0)
    fall_from: Reading
    fall_to: Reading

    @property
    def display(self) -> str:
        return _DISPLAY.get(self.channel, self.channel)


@dataclass(frozen=True)
class RuleCheck:
    """Whether a vital-sign finding holds: True, False, or None when its channel has no reading."""

    holds: bool | None
    reason: str


def when(t: datetime) -> str:
    """A step time as shown to a reader: "2026-03-01 08:00 UTC" (naive times are shown as given)."""
    zone = t.tzname() if t.tzinfo is not None else None
    return t.strftime("%Y-%m-%d %H:%M") + (f" {zone}" if zone else "")


def number(value: float) -> str:
    """At most two decimals, trailing zeros dropped (37.99 stays 37.99, so it never reads as 38 beside a 38.0 rule)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def value_text(value: float, unit: str) -> str:
    return f"{number(value)}{'' if unit == '%' else ' '}{unit}"


def summarise(series: VitalSeries | None) -> dict[str, ChannelSummary]:
    """Channel -> summary of its observed steps; channels without a reading are left out."""
    if series is None:
        return {}
    out = {}
    for c, channel in enumerate(series.channels):
        steps = np.flatnonzero(series.mask[:, c] & np.isfinite(series.values[:, c]))
        if steps.size == 0:
            continue
        values = series.values[steps, c].astype(np.float64)
        times = [series.times[int(t)] for t in steps]
        reading = [Reading(float(v), t) for v, t in zip(values, times)]
        peak = np.maximum.accumulate(values)
        drops = peak - values
        j = int(np.argmax(drops))
        i = int(np.argmax(values[: j + 1]))
        out[channel] = ChannelSummary(
            channel,
            series.units[c] if c < len(series.units) else _UNIT.get(channel, ""),
            int(steps.size),
            reading[0],
            reading[-1],
            reading[int(np.argmin(values))],
            reading[int(np.argmax(values))],
            float(drops[j]),
            reading[i],
            reading[j],
        )
    return out


def age_text(years: float) -> str:
    if years < 1.0:
        return f"{max(int(round(years * 12)), 0)} months old"
    return f"{int(years)} year{'s' if int(years) != 1 else ''} old"


def adult_thresholds_apply(study: Study) -> tuple[bool, str]:
    """(whether adult thresholds apply to this patient, why not when they do not)."""
    age = study.demographics.age_years if study.demographics is not None else None
    if age is None:
        return (
            False,
            "the patient's age is unknown, and the thresholds are for adults (children need age-specific ranges)",
        )
    if age < ADULT_YEARS:
        return (
            False,
            f"the patient is {age_text(age)}; the thresholds are for adults (children need age-specific ranges)",
        )
    return True, ""


def check_rule(name: str, summaries: dict[str, ChannelSummary]) -> RuleCheck:
    """Whether the adult finding `name` (a key of VITAL_RULES) holds on the summarised grid, with the values behind it."""
    rule = VITAL_RULES[name]
    channel = rule.channels[0]
    s = summaries.get(channel)
    if s is None:
        return RuleCheck(None, f"no {_DISPLAY.get(channel, channel)} reading inside the window")

    def at(r: Reading) -> str:
        return f"{value_text(r.value, s.unit)} at {when(r.time)}"

    if name == "fever":
        return RuleCheck(s.high.value >= 38.0, f"max temperature {at(s.high)} (fever: >= 38.0 Cel)")
    if name == "hypothermia":
        return RuleCheck(s.low.value < 36.0, f"min temperature {at(s.low)} (hypothermia: < 36.0 Cel)")
    if name == "tachycardia":
        return RuleCheck(s.high.value > 100.0, f"max heart rate {at(s.high)} (tachycardia: > 100 /min)")
    if name == "bradycardia":
        return RuleCheck(s.low.value < 50.0, f"min heart rate {at(s.low)} (bradycardia: < 50 /min)")
    if name == "tachypnoea":
        return RuleCheck(s.high.value > 22.0, f"max respiratory rate {at(s.high)} (tachypnoea: > 22 /min)")
    if name == "hypotension":
        return RuleCheck(s.low.value < 90.0, f"min systolic {at(s.low)} (hypotension: < 90 mm[Hg])")
    if name == "hypoxaemia":
        low, fall = s.low.value < 92.0, s.largest_fall >= 4.0
        fell = f"largest fall {s.largest_fall:.1f} points, from {at(s.fall_from)} to {at(s.fall_to)}"
        return RuleCheck(
            low or fall, f"min SpO2 {at(s.low)}; {fell} (low or falling saturation: < 92% or a fall of >= 4 points)"
        )
    if name == "weight gain":
        if s.count < 2:
            return RuleCheck(None, f"one weight reading inside the window ({at(s.first)}): no change can be read")
        gain = s.last.value - s.first.value
        return RuleCheck(
            gain >= 2.0, f"weight {at(s.first)}, then {at(s.last)}: change {gain:+.1f} kg (weight gain: >= 2 kg)"
        )
    raise KeyError(name)
