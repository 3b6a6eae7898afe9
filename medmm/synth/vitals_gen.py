"""Hourly vital signs over the 48 h before the study, with each diagnosis's signal planted in a known window.

Signals start in the second half of the window or later (an acute presentation), so that the
planted window is a minority of the grid and an evidence map can be scored against it.

Reading t of a channel sits at the middle of grid step t: study_time - 48 h + (t + 0.5) h.
Weight is measured once a day (steps 6 and 30), so heart-failure weight gain shows between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

import numpy as np

from medmm.codes import VITAL_SIGNS
from medmm.synth.plan import PatientPlan

HOURS = 48
HOURLY = ("heart_rate", "resp_rate", "spo2", "temperature", "sbp", "dbp")
WEIGHT_STEPS = (6, 30)
HOUR_GAP_RATE = 0.08  # a whole hour unobserved
CHANNEL_GAP_RATE = 0.04  # one channel of an hour unobserved
OUTLIER_RATE = 0.3  # patients with one isolated benign outlier
NOISE = {"heart_rate": 4.0, "resp_rate": 1.2, "spo2": 0.7, "temperature": 0.15, "sbp": 7.0, "dbp": 5.0}
LIMITS = {  # generated values stay well inside the plausible ranges
    "heart_rate": (35.0, 190.0),
    "resp_rate": (6.0, 45.0),
    "spo2": (70.0, 100.0),
    "temperature": (34.0, 41.5),
    "sbp": (65.0, 230.0),
    "dbp": (35.0, 140.0),
    "weight": (35.0, 200.0),
}


@dataclass(frozen=True)
class VitalWindow:
    """Where a diagnosis's vital-sign signal lives, in hours from the grid start."""

    start_hour: float
    end_hour: float
    channels: tuple[str, ...]


@dataclass(frozen=True)
class VitalsDraft:
    """All readings of a patient in canonical units, plus where signals and outliers were planted."""

    times: tuple[datetime, ...]
    channels: tuple[str, ...]
    values: tuple[float, ...]  # rounded to 1 decimal
    windows: Mapping[str, VitalWindow]  # diagnosis -> window of its planted signal
    outliers: tuple[tuple[str, float], ...]  # (channel, hour) of isolated benign outliers

    def rows(self) -> list[tuple[datetime, str, float]]:
        return list(zip(self.times, self.channels, self.values))


def _ramp(t: np.ndarray, start: float, rise: float) -> np.ndarray:
    return np.clip((t - start) / rise, 0.0, 1.0)


def _baselines(rng: np.random.Generator, plan: PatientPlan) -> dict[str, float]:
    male = plan.sex == "male"
    return {
        "heart_rate": rng.normal(76, 8),
        "resp_rate": rng.normal(15, 1.5),
        "spo2": min(99.5, rng.normal(97.5, 0.8)),
        "temperature": rng.normal(36.8, 0.2),
        "sbp": rng.normal(122 + 0.15 * (plan.age_years - 50), 12),
        "dbp": rng.normal(76, 7),
        "weight": float(np.clip(rng.normal(82 if male else 70, 14), 40, 160)),
    }


def generate_vitals(rng: np.random.Generator, plan: PatientPlan) -> VitalsDraft:
    """Readings for the patient; diagnoses with vitals evidence shift the channels they affect."""
    t = np.arange(HOURS) + 0.5  # hour of each reading from the grid start
    base = _baselines(rng, plan)
    drift = rng.uniform(0, 2 * np.pi)
    series = {c: np.full(HOURS, base[c]) for c in HOURLY}
    series["heart_rate"] += 3 * np.sin(2 * np.pi * t / 24 + drift)
    series["temperature"] += 0.2 * np.sin(2 * np.pi * t / 24 + drift)
    weight_gain = 0.0
    windows: dict[str, VitalWindow] = {}
    for d in plan.evidence_in("vitals"):
        s = plan.strength[d]
        if d == "pneumonia":
            start = float(rng.uniform(18, 36))
            r = _ramp(t, start, 6.0)
            series["temperature"] += r * s * rng.uniform(1.6, 2.4)
            series["resp_rate"] += r * s * rng.uniform(6, 12)
            series["heart_rate"] += r * s * rng.uniform(12, 28)
            series["spo2"] -= r * s * rng.uniform(3, 7)
            channels = ("heart_rate", "resp_rate", "spo2", "temperature")
        elif d == "heart_failure":
            start = float(rng.uniform(12, 26))
            r = _ramp(t, start, 10.0)
            series["sbp"] += r * s * rng.uniform(14, 30)
            series["dbp"] += r * s * rng.uniform(5, 12)
            series["spo2"] -= r * s * rng.uniform(2, 5)
            series["resp_rate"] += r * s * rng.uniform(2, 5)
            weight_gain = s * rng.uniform(1.5, 3.5)
            channels = ("resp_rate", "spo2", "sbp", "dbp", "weight")
        elif d == "pneumothorax":
            start = float(rng.uniform(36, 45))
            r = _ramp(t, start, 1.0)  # sudden
            series["spo2"] -= r * s * rng.uniform(6, 12)
            series["heart_rate"] += r * s * rng.uniform(18, 35)
            series["resp_rate"] += r * s * rng.uniform(5, 10)
            channels = ("heart_rate", "resp_rate", "spo2")
        else:  # sepsis: SIRS and qSOFA criteria building up over hours
            start = float(rng.uniform(20, 38))
            r = _ramp(t, start, 6.0)
            cold = rng.random() < 0.2
            series["temperature"] += r * s * (-rng.uniform(1.2, 1.8) if cold else rng.uniform(1.5, 2.5))
            series["heart_rate"] += r * s * rng.uniform(25, 45)
            series["resp_rate"] += r * s * rng.uniform(7, 12)
            series["sbp"] -= r * s * rng.uniform(20, 35)
            series["dbp"] -= r * s * rng.uniform(10, 18)
            channels = ("heart_rate", "resp_rate", "temperature", "sbp", "dbp")
        windows[d] = VitalWindow(round(start, 2), float(HOURS), channels)

    for c in HOURLY:
        series[c] = series[c] + rng.normal(0, NOISE[c], HOURS)
    outliers: list[tuple[str, float]] = []
    if rng.random() < OUTLIER_RATE:  # one isolated benign outlier, e.g. a probe slipping
        channel = ("heart_rate", "temperature", "spo2", "resp_rate")[int(rng.integers(4))]
        step = int(rng.integers(HOURS))
        series[channel][step] += {"heart_rate": 30.0, "temperature": 1.2, "spo2": -7.0, "resp_rate": 8.0}[channel]
        outliers.append((channel, float(t[step])))

    hour_gap = rng.random(HOURS) < HOUR_GAP_RATE
    chan_gap = rng.random((HOURS, len(HOURLY))) < CHANNEL_GAP_RATE
    grid_start = plan.study_time - timedelta(hours=HOURS)
    rows: list[tuple[datetime, str, float]] = []
    weights = {WEIGHT_STEPS[0]: base["weight"], WEIGHT_STEPS[1]: base["weight"] + weight_gain}
    for step in range(HOURS):
        when = grid_start + timedelta(minutes=60 * step + 30)
        if step in weights:  # daily weights are never skipped
            rows.append((when, "weight", _finish("weight", weights[step] + rng.normal(0, 0.2))))
        if hour_gap[step]:
            continue
        rows.extend((when, c, _finish(c, series[c][step])) for k, c in enumerate(HOURLY) if not chan_gap[step, k])
    times, chans, values = zip(*rows)
    return VitalsDraft(tuple(times), tuple(chans), tuple(values), windows, tuple(outliers))


def _finish(channel: str, value: float) -> float:
    lo, hi = LIMITS[channel]
    if channel == "spo2":
        hi = 100.0
    return round(min(max(float(value), lo), hi), 1)


LOINC_OF: Mapping[str, str] = {v.name: v.loinc[0] for v in VITAL_SIGNS}  # preferred code per channel
